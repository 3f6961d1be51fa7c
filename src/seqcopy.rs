//! Copies between private memory and an area's shared bytes with atomic
//! accesses, so that a lock-free (seqlock-style) read racing a writer in another
//! thread is defined behaviour: it may see a mix of old and new bytes — which the
//! optimistic protocol then throws away — but never undefined behaviour. Writers
//! store the same way, so no plain access ever races an atomic one.
//!
//! Relaxed word-sized atomics for the aligned middle, byte atomics at the edges
//! (the approach of the `atomic-memcpy` crate). On the CPUs we run on a relaxed
//! atomic load or store is an ordinary `mov`; ordering is the caller's business
//! (`lock::optimistic` fences after the copy, the writer after its acquisition).
//!
//! Copies of `BULK` bytes or more on x86-64 use `rep movsb` in inline assembly:
//! as fast as `memcpy` for large blocks (fast-string microcode), and, being
//! opaque to the compiler, outside the Rust memory model's data-race rules, as
//! code in another process is (the word loop runs at about half memcpy's speed
//! for 64 KiB).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const WORD: usize = 8;
/// From this many bytes on, the block copy.
const BULK: usize = 512;

/// Copies `len` bytes with the CPU's block-copy instruction.
///
/// # Safety
/// `src` valid for reads and `dst` for writes of `len` bytes, not overlapping.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn block(src: *const u8, dst: *mut u8, len: usize) -> bool {
    // SAFETY: rep movsb copies rcx bytes from [rsi] to [rdi] forward (the
    // direction flag is clear per the ABI); the caller vouches for both ranges.
    unsafe {
        std::arch::asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rsi") src => _,
            inout("rdi") dst => _,
            options(nostack, preserves_flags)
        );
    }
    true
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
unsafe fn block(_src: *const u8, _dst: *mut u8, _len: usize) -> bool {
    false
}

/// Copies `len` bytes from shared `src` to private `dst`.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `len` bytes, and `dst`
/// must not be accessed concurrently by anyone else.
#[inline]
pub unsafe fn load(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract is block's.
    if len >= BULK && unsafe { block(src, dst, len) } {
        return;
    }
    let mut i = 0;
    let head = (src as usize).wrapping_neg() % WORD;
    while i < len.min(head) {
        // SAFETY: i < len: in bounds of both ranges; AtomicU8 has alignment 1.
        unsafe { *dst.add(i) = (*(src.add(i) as *const AtomicU8)).load(Ordering::Relaxed) };
        i += 1;
    }
    while i + WORD <= len {
        // SAFETY: src + i is 8-aligned (past the head) and 8 bytes lie in bounds;
        // the private destination may be unaligned.
        unsafe {
            let w = (*(src.add(i) as *const AtomicU64)).load(Ordering::Relaxed);
            std::ptr::write_unaligned(dst.add(i) as *mut u64, w);
        }
        i += WORD;
    }
    while i < len {
        // SAFETY: as for the head.
        unsafe { *dst.add(i) = (*(src.add(i) as *const AtomicU8)).load(Ordering::Relaxed) };
        i += 1;
    }
}

/// Copies `len` bytes from private `src` to shared `dst`.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `len` bytes, and the
/// ranges must not overlap.
#[inline]
pub unsafe fn store(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract is block's.
    if len >= BULK && unsafe { block(src, dst, len) } {
        return;
    }
    let mut i = 0;
    let head = (dst as usize).wrapping_neg() % WORD;
    while i < len.min(head) {
        // SAFETY: in bounds; AtomicU8 has alignment 1.
        unsafe { (*(dst.add(i) as *const AtomicU8)).store(*src.add(i), Ordering::Relaxed) };
        i += 1;
    }
    while i + WORD <= len {
        // SAFETY: dst + i is 8-aligned and 8 bytes lie in bounds.
        unsafe {
            let w = std::ptr::read_unaligned(src.add(i) as *const u64);
            (*(dst.add(i) as *const AtomicU64)).store(w, Ordering::Relaxed);
        }
        i += WORD;
    }
    while i < len {
        // SAFETY: as for the head.
        unsafe { (*(dst.add(i) as *const AtomicU8)).store(*src.add(i), Ordering::Relaxed) };
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_and_alignment_exactly() {
        let src: Vec<u8> = (0..2000u32).map(|i| (i * 7 + 3) as u8).collect();
        for off in 0..9 {
            for len in (0..80).chain([511, 512, 513, 1000, 1900]) {
                let mut dst = vec![0u8; 1910];
                // SAFETY: both ranges in bounds of their vectors.
                unsafe { load(src.as_ptr().add(off), dst.as_mut_ptr().add(3), len) };
                assert_eq!(&dst[3..3 + len], &src[off..off + len]);
                assert!(dst[..3].iter().all(|&b| b == 0));
                assert!(dst[3 + len..].iter().all(|&b| b == 0));
                let mut shared = vec![0u8; 1910];
                // SAFETY: as above.
                unsafe { store(src.as_ptr().add(off), shared.as_mut_ptr().add(5), len) };
                assert_eq!(&shared[5..5 + len], &src[off..off + len]);
            }
        }
    }
}
