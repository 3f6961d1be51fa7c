//! Copies between private memory and an area's shared bytes with atomic
//! accesses, so that a lock-free (seqlock-style) read racing a writer in another
//! thread is defined behaviour: it may see a mix of old and new bytes — which the
//! optimistic protocol then throws away — but never undefined behaviour. Writers
//! store the same way, so no plain access ever races an atomic one.
//!
//! Relaxed atomics of the widest naturally aligned width at each step (the
//! approach of the `atomic-memcpy` crate: words in the middle, narrower at the
//! edges). On the CPUs we run on a relaxed
//! atomic load or store is an ordinary `mov`; ordering is the caller's business
//! (`lock::optimistic` fences after the copy, the writer after its acquisition).
//!
//! Copies of `BULK` bytes or more on x86-64 use `rep movsb` in inline assembly:
//! as fast as `memcpy` for large blocks (fast-string microcode), and, being
//! opaque to the compiler, outside the Rust memory model's data-race rules, as
//! code in another process is (the word loop runs at about half memcpy's speed
//! for 64 KiB).

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

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
    while i < len {
        // The widest naturally aligned access that fits: an unaligned 8-byte
        // integer is three accesses, not eight.
        let n = chunk(src as usize + i, len - i);
        // SAFETY: [i, i + n) lies in both ranges (n <= len - i); the shared side
        // is aligned to n, so it is a valid atomic of that width; the private
        // destination may be unaligned.
        unsafe {
            let (s, d) = (src.add(i), dst.add(i));
            match n {
                8 => std::ptr::write_unaligned(
                    d as *mut u64,
                    (*(s as *const AtomicU64)).load(Ordering::Relaxed),
                ),
                4 => std::ptr::write_unaligned(
                    d as *mut u32,
                    (*(s as *const AtomicU32)).load(Ordering::Relaxed),
                ),
                2 => std::ptr::write_unaligned(
                    d as *mut u16,
                    (*(s as *const AtomicU16)).load(Ordering::Relaxed),
                ),
                _ => *d = (*(s as *const AtomicU8)).load(Ordering::Relaxed),
            }
        }
        i += n;
    }
}

/// Loads a 2-, 4- or 8-byte unaligned integer from shared memory with one
/// instruction (inline assembly: opaque to the compiler, like `block`), into
/// the low bytes of the result (native order).
///
/// # Safety
/// `src` must be valid for reads of `n` bytes; `n` is 2, 4 or 8.
#[inline]
pub unsafe fn load_unaligned(src: *const u8, n: usize) -> [u8; 8] {
    #[cfg(target_arch = "x86_64")]
    {
        let v: u64;
        // SAFETY: one plain load of n bytes at src (x86 loads need no alignment);
        // the caller vouches for the range.
        unsafe {
            match n {
                8 => std::arch::asm!("mov {v}, qword ptr [{p}]", p = in(reg) src, v = out(reg) v,
                    options(nostack, readonly, preserves_flags)),
                4 => std::arch::asm!("mov {v:e}, dword ptr [{p}]", p = in(reg) src, v = out(reg) v,
                    options(nostack, readonly, preserves_flags)),
                _ => {
                    std::arch::asm!("movzx {v:e}, word ptr [{p}]", p = in(reg) src, v = out(reg) v,
                    options(nostack, readonly, preserves_flags))
                }
            }
        }
        v.to_le_bytes()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut b = [0u8; 8];
        // SAFETY: the caller's contract is load's.
        unsafe { load(src, b.as_mut_ptr(), n) };
        b
    }
}

/// Stores the low `n` bytes of `b` (2, 4 or 8) at `dst` with one instruction.
///
/// # Safety
/// `dst` must be valid for writes of `n` bytes; `n` is 2, 4 or 8.
#[inline]
pub unsafe fn store_unaligned(dst: *mut u8, b: [u8; 8], n: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let v = u64::from_le_bytes(b);
        // SAFETY: one plain store of n bytes at dst; the caller vouches for it.
        unsafe {
            match n {
                8 => std::arch::asm!("mov qword ptr [{p}], {v}", p = in(reg) dst, v = in(reg) v,
                    options(nostack, preserves_flags)),
                4 => std::arch::asm!("mov dword ptr [{p}], {v:e}", p = in(reg) dst, v = in(reg) v,
                    options(nostack, preserves_flags)),
                _ => std::arch::asm!("mov word ptr [{p}], {v:x}", p = in(reg) dst, v = in(reg) v,
                    options(nostack, preserves_flags)),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: the caller's contract is store's.
        unsafe { store(b.as_ptr(), dst, n) };
    }
}

/// The width of the next access at `addr` with `left` bytes to go.
#[inline(always)]
fn chunk(addr: usize, left: usize) -> usize {
    if addr % 8 == 0 && left >= 8 {
        8
    } else if addr % 4 == 0 && left >= 4 {
        4
    } else if addr % 2 == 0 && left >= 2 {
        2
    } else {
        1
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
    while i < len {
        let n = chunk(dst as usize + i, len - i);
        // SAFETY: as in `load`, with the shared side the destination.
        unsafe {
            let (s, d) = (src.add(i), dst.add(i));
            match n {
                8 => (*(d as *const AtomicU64))
                    .store(std::ptr::read_unaligned(s as *const u64), Ordering::Relaxed),
                4 => (*(d as *const AtomicU32))
                    .store(std::ptr::read_unaligned(s as *const u32), Ordering::Relaxed),
                2 => (*(d as *const AtomicU16))
                    .store(std::ptr::read_unaligned(s as *const u16), Ordering::Relaxed),
                _ => (*(d as *const AtomicU8)).store(*s, Ordering::Relaxed),
            }
        }
        i += n;
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

    #[test]
    fn unaligned_integers_round_trip_in_one_access() {
        let mut mem = [0u8; 32];
        for off in 0..16 {
            for n in [2usize, 4, 8] {
                let v: [u8; 8] = (1..=8u8)
                    .map(|x| x * 17 + off as u8)
                    .collect::<Vec<_>>()
                    .try_into()
                    .unwrap();
                mem.fill(0xEE);
                // SAFETY: off + n <= 24 < 32.
                unsafe { store_unaligned(mem.as_mut_ptr().add(off), v, n) };
                assert_eq!(&mem[off..off + n], &v[..n]);
                assert!(mem[..off].iter().chain(&mem[off + n..]).all(|&b| b == 0xEE));
                // SAFETY: as above.
                let back = unsafe { load_unaligned(mem.as_ptr().add(off), n) };
                assert_eq!(&back[..n], &v[..n]);
                assert!(back[n..].iter().all(|&b| b == 0));
            }
        }
    }
}
