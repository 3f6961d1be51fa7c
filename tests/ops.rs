//! SPEC §2-§3 in one process: every operation, its range checks (never overflowing,
//! changing nothing on error), NULL pointers, status texts, last_error, the reentrant
//! lock rules, used/honour_used and info.

#![allow(unused_unsafe)]

mod common;
use common::*;

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const E_RANGE: i32 = sa::SHAREDAREA_E_OUT_OF_RANGE;

#[test]
fn abi_version() {
    let _g = serial();
    assert_eq!(unsafe { sa::sharedarea_abi_version() }, 1);
    assert_eq!(sa::SHAREDAREA_ABI_VERSION as u64, 1);
}

#[test]
fn read_write_round_trip_and_zero_lengths() {
    let _g = serial();
    let id = must_init("2");
    let size = size_of(id);
    let data = pattern(5000, 1);
    must_write(id, 100, &data);
    assert_eq!(read(id, 100, 5000).unwrap(), data);
    // read of len 0 copies nothing, returns 0, even with a NULL buffer
    let mut sentinel = [0xEEu8; 4];
    let n = unsafe { sa::sharedarea_read(id, 0, sentinel.as_mut_ptr() as *mut c_void, 0) };
    assert_eq!(n, 0);
    assert_eq!(sentinel, [0xEE; 4]);
    // write of len 0 at pos == size is fine and counts one update; past size is not
    let u = updates(id);
    assert_eq!(
        unsafe { sa::sharedarea_write(id, size, b"".as_ptr() as *const c_void, 0) },
        sa::SHAREDAREA_OK
    );
    assert_eq!(updates(id), u + 1, "a write of 0 bytes counts one update");
    assert_eq!(
        unsafe { sa::sharedarea_write(id, size + 1, b"".as_ptr() as *const c_void, 0) },
        E_RANGE
    );
    assert_eq!(updates(id), u + 1, "a failed write counts nothing");
    // whole area
    let all = pattern(size as usize, 2);
    must_write(id, 0, &all);
    assert_eq!(snapshot(id), all);
    // the last byte and the byte after it
    assert_eq!(read(id, size - 1, 1).unwrap(), &all[size as usize - 1..]);
    assert_eq!(read(id, size, 1), Err(E_RANGE as i64));
}

#[test]
fn extent_rules() {
    let _g = serial();
    let id = must_init("1");
    let size = size_of(id);
    assert_eq!(extent(id, 0, 0), Ok(size));
    assert_eq!(extent(id, 10, 0), Ok(size - 10));
    assert_eq!(extent(id, size - 1, 0), Ok(1));
    assert_eq!(
        extent(id, size, 0),
        Err(E_RANGE),
        "pos >= size is out of range"
    );
    assert_eq!(extent(id, 0, size), Ok(size));
    assert_eq!(extent(id, 1, size), Err(E_RANGE));
    assert_eq!(extent(id, u64::MAX, 2), Err(E_RANGE));
    assert_eq!(extent(id, 2, u64::MAX), Err(E_RANGE));
    assert_eq!(extent(9999, 0, 0), Err(sa::SHAREDAREA_E_NO_SUCH_AREA));
    assert_eq!(
        unsafe { sa::sharedarea_extent(id, 0, 0, std::ptr::null_mut()) },
        sa::SHAREDAREA_E_NULL_POINTER
    );
}

#[test]
fn integers_are_signed_native_and_unaligned() {
    let _g = serial();
    let id = must_init("1");
    must_write(id, 0, &[0xFF; 16]);
    assert_eq!(read8(id, 0), Ok(-1));
    assert_eq!(read16(id, 1), Ok(-1));
    assert_eq!(read32(id, 3), Ok(-1));
    assert_eq!(read64(id, 5), Ok(-1));
    must_write(id, 0, &[0x80, 0x00, 0x80, 0x00, 0x00, 0x00, 0x80]);
    assert_eq!(read8(id, 0), Ok(-128));
    assert_eq!(read16(id, 1), Ok(i16::from_ne_bytes([0x00, 0x80])));
    assert_eq!(read16(id, 1), Ok(i16::MIN));
    assert_eq!(read32(id, 3), Ok(i32::from_ne_bytes([0, 0, 0, 0x80])));
    // write at odd offsets, read the bytes back in native order
    for pos in [0u64, 1, 3, 5, 7, 4093 - 8] {
        assert_eq!(write64(id, pos, 0x0102_0304_0506_0708), sa::SHAREDAREA_OK);
        assert_eq!(
            read(id, pos, 8).unwrap(),
            0x0102_0304_0506_0708i64.to_ne_bytes()
        );
        assert_eq!(read64(id, pos), Ok(0x0102_0304_0506_0708));
        assert_eq!(write32(id, pos, -2), sa::SHAREDAREA_OK);
        assert_eq!(read(id, pos, 4).unwrap(), (-2i32).to_ne_bytes());
        assert_eq!(write16(id, pos, 0x1234), sa::SHAREDAREA_OK);
        assert_eq!(read(id, pos, 2).unwrap(), 0x1234i16.to_ne_bytes());
        assert_eq!(write8(id, pos, -3), sa::SHAREDAREA_OK);
        assert_eq!(read(id, pos, 1).unwrap(), [0xFD]);
    }
    // writeN touches exactly N bytes
    must_write(id, 100, &[0xAA; 16]);
    assert_eq!(write32(id, 104, 0), sa::SHAREDAREA_OK);
    assert_eq!(
        read(id, 100, 16).unwrap(),
        [0xAA, 0xAA, 0xAA, 0xAA, 0, 0, 0, 0, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA]
    );
    // writeN keeps the low bits of a wider value (two's complement): what a C caller
    // gets from a conversion to int8_t etc.
    assert_eq!(write8(id, 200, 0x1FFi32 as i8), sa::SHAREDAREA_OK);
    assert_eq!(read8(id, 200), Ok(-1));
    assert_eq!(write16(id, 200, 0x12345i32 as i16), sa::SHAREDAREA_OK);
    assert_eq!(read16(id, 200), Ok(0x2345));
    assert_eq!(write32(id, 200, 0x1_8000_0000i64 as i32), sa::SHAREDAREA_OK);
    assert_eq!(read32(id, 200), Ok(i32::MIN));
}

#[test]
fn inc_dec_wrap_and_return_the_new_value() {
    let _g = serial();
    let id = must_init("1");
    let u0 = updates(id);
    assert_eq!(inc8(id, 1, 1), Ok(1));
    assert_eq!(inc8(id, 1, 126), Ok(127));
    assert_eq!(inc8(id, 1, 1), Ok(-128), "inc8 wraps");
    assert_eq!(dec8(id, 1, 1), Ok(127), "dec8 wraps back");
    assert_eq!(dec8(id, 1, -1), Ok(-128), "negative amounts");
    assert_eq!(read8(id, 1), Ok(-128));

    assert_eq!(write16(id, 11, i16::MAX), sa::SHAREDAREA_OK);
    assert_eq!(inc16(id, 11, 1), Ok(i16::MIN));
    assert_eq!(dec16(id, 11, 2), Ok(i16::MAX - 1));

    assert_eq!(write32(id, 21, i32::MIN), sa::SHAREDAREA_OK);
    assert_eq!(dec32(id, 21, 1), Ok(i32::MAX));
    assert_eq!(inc32(id, 21, i32::MIN), Ok(-1));

    for pos in [40u64, 51, 4088] {
        assert_eq!(write64(id, pos, i64::MAX), sa::SHAREDAREA_OK);
        assert_eq!(inc64(id, pos, 1), Ok(i64::MIN), "inc64 at {pos} wraps");
        assert_eq!(dec64(id, pos, 1), Ok(i64::MAX), "dec64 at {pos} wraps");
        assert_eq!(inc64(id, pos, i64::MIN), Ok(-1));
        assert_eq!(dec64(id, pos, -10), Ok(9));
        assert_eq!(read64(id, pos), Ok(9));
    }
    // new_value may be NULL
    assert_eq!(
        unsafe { sa::sharedarea_inc64(id, 40, 5, std::ptr::null_mut()) },
        sa::SHAREDAREA_OK
    );
    assert_eq!(
        unsafe { sa::sharedarea_dec8(id, 1, 1, std::ptr::null_mut()) },
        sa::SHAREDAREA_OK
    );
    assert_eq!(read64(id, 40), Ok(14));
    assert_eq!(read8(id, 1), Ok(127));
    // neighbours untouched by an unaligned 64-bit increment
    must_write(id, 100, &[0x55; 12]);
    assert_eq!(inc64(id, 102, 1), Ok(0x5555_5555_5555_5556));
    let b = read(id, 100, 12).unwrap();
    assert_eq!(&b[..2], &[0x55, 0x55]);
    assert_eq!(&b[10..], &[0x55, 0x55]);

    // every inc/dec/write counts one update; reads count none
    let u = updates(id);
    assert!(u > u0);
    read64(id, 40).unwrap();
    read(id, 0, 100).unwrap();
    assert_eq!(updates(id), u);
    inc8(id, 0, 1).unwrap();
    dec64(id, 40, 1).unwrap();
    assert_eq!(write8(id, 0, 1), 0);
    assert_eq!(update(id), 0);
    assert_eq!(updates(id), u + 4);
    assert_eq!(info(id).updates, u + 4);
}

/// Runs `op` expecting OUT_OF_RANGE, and checks that the area's bytes and update count
/// did not change.
fn refused_unchanged(id: i32, what: &str, op: impl FnOnce() -> i32) {
    let before = snapshot(id);
    let u = updates(id);
    let st = op();
    assert_eq!(
        st,
        E_RANGE,
        "{what}: expected OUT_OF_RANGE, got {st}: {}",
        last_error()
    );
    let e = last_error();
    assert!(
        e.contains(&format!("area {id}: ")),
        "{what}: last_error should name the area: {e}"
    );
    assert_eq!(
        updates(id),
        u,
        "{what}: a failed operation counted an update"
    );
    assert!(
        snapshot(id) == before,
        "{what}: a failed operation changed the area's bytes"
    );
}

#[test]
fn integer_ops_at_the_end_of_the_area() {
    let _g = serial();
    let id = must_init("1");
    let size = size_of(id);
    must_write(id, 0, &pattern(size as usize, 77));
    for (width, name) in [(8u64, "64"), (4, "32"), (2, "16"), (1, "8")] {
        // the last position that fits works (and is restored), every later one fails
        for pos in size.saturating_sub(8)..=size + 1 {
            let fits = pos + width <= size;
            let results: [(&str, i32); 4] = match width {
                8 => [
                    ("read", read64(id, pos).err().unwrap_or(0)),
                    ("write", {
                        let v = read64(id, pos).unwrap_or(0);
                        write64(id, pos, v)
                    }),
                    ("inc", inc64(id, pos, 0).err().unwrap_or(0)),
                    ("dec", dec64(id, pos, 0).err().unwrap_or(0)),
                ],
                4 => [
                    ("read", read32(id, pos).err().unwrap_or(0)),
                    ("write", {
                        let v = read32(id, pos).unwrap_or(0);
                        write32(id, pos, v)
                    }),
                    ("inc", inc32(id, pos, 0).err().unwrap_or(0)),
                    ("dec", dec32(id, pos, 0).err().unwrap_or(0)),
                ],
                2 => [
                    ("read", read16(id, pos).err().unwrap_or(0)),
                    ("write", {
                        let v = read16(id, pos).unwrap_or(0);
                        write16(id, pos, v)
                    }),
                    ("inc", inc16(id, pos, 0).err().unwrap_or(0)),
                    ("dec", dec16(id, pos, 0).err().unwrap_or(0)),
                ],
                _ => [
                    ("read", read8(id, pos).err().unwrap_or(0)),
                    ("write", {
                        let v = read8(id, pos).unwrap_or(0);
                        write8(id, pos, v)
                    }),
                    ("inc", inc8(id, pos, 0).err().unwrap_or(0)),
                    ("dec", dec8(id, pos, 0).err().unwrap_or(0)),
                ],
            };
            for (op, st) in results {
                if fits {
                    assert_eq!(
                        st,
                        0,
                        "{op}{name} at {pos} (size {size}) must work: {}",
                        last_error()
                    );
                } else {
                    assert_eq!(
                        st, E_RANGE,
                        "{op}{name} at {pos} (size {size}) must be OUT_OF_RANGE"
                    );
                }
            }
        }
    }
    assert_eq!(
        snapshot(id),
        pattern(size as usize, 77),
        "in-range no-op writes kept the bytes"
    );
    // and with the bytes/update-count check, one by one, for the 64-bit ops at the last 7 bytes
    for pos in size - 7..size {
        refused_unchanged(id, &format!("write64 at {pos}"), || write64(id, pos, -1));
        refused_unchanged(id, &format!("inc64 at {pos}"), || {
            inc64(id, pos, 0x1122334455667788).err().unwrap_or(0)
        });
        refused_unchanged(id, &format!("dec64 at {pos}"), || {
            dec64(id, pos, 0x100000000).err().unwrap_or(0)
        });
    }
    for pos in size - 3..size {
        refused_unchanged(id, &format!("inc32 at {pos}"), || {
            inc32(id, pos, 1).err().unwrap_or(0)
        });
        refused_unchanged(id, &format!("write32 at {pos}"), || write32(id, pos, -1));
    }
    refused_unchanged(id, "inc16 at size-1", || {
        inc16(id, size - 1, 1).err().unwrap_or(0)
    });
    refused_unchanged(id, "write8 at size", || write8(id, size, 1));
}

#[test]
fn ranges_never_wrap_64_bits() {
    let _g = serial();
    let id = must_init("1");
    must_write(id, 0, &pattern(4096, 3));
    let mut buf = [0u8; 16];
    let bp = buf.as_mut_ptr() as *mut c_void;
    // pos + len wraps 2**64
    assert_eq!(
        unsafe { sa::sharedarea_read(id, u64::MAX, bp, 2) },
        E_RANGE as i64
    );
    assert_eq!(
        unsafe { sa::sharedarea_read(id, u64::MAX - 1, bp, 16) },
        E_RANGE as i64
    );
    assert_eq!(
        unsafe { sa::sharedarea_read(id, 16, bp, u64::MAX) },
        E_RANGE as i64,
        "huge len is checked before the buffer is touched"
    );
    assert_eq!(
        unsafe { sa::sharedarea_read(id, 1 << 63, bp, 1 << 63) },
        E_RANGE as i64
    );
    refused_unchanged(id, "write at u64::MAX, len 2", || unsafe {
        sa::sharedarea_write(id, u64::MAX, b"ab".as_ptr() as *const c_void, 2)
    });
    refused_unchanged(
        id,
        "write at 2**64-4095, len 4096 (wraps to 0)",
        || unsafe {
            let page = [0u8; 4096];
            sa::sharedarea_write(id, u64::MAX - 4094, page.as_ptr() as *const c_void, 4096)
        },
    );
    refused_unchanged(id, "write at u64::MAX-4 (uWSGI's -5), len 5", || unsafe {
        sa::sharedarea_write(id, u64::MAX - 4, b"hello".as_ptr() as *const c_void, 5)
    });
    for pos in [u64::MAX, u64::MAX - 1, u64::MAX - 3, u64::MAX - 7] {
        refused_unchanged(id, &format!("write64 at {pos}"), || write64(id, pos, 1));
        refused_unchanged(id, &format!("inc64 at {pos}"), || {
            inc64(id, pos, 1).err().unwrap_or(0)
        });
        refused_unchanged(id, &format!("inc32 at {pos}"), || {
            inc32(id, pos, 1).err().unwrap_or(0)
        });
        refused_unchanged(id, &format!("write8 at {pos}"), || write8(id, pos, 1));
        assert_eq!(read64(id, pos), Err(E_RANGE));
        assert_eq!(read8(id, pos), Err(E_RANGE));
    }
    assert_eq!(
        buf, [0u8; 16],
        "failed reads wrote nothing into the caller's buffer"
    );
}

#[test]
fn out_params_untouched_on_failure() {
    let _g = serial();
    let id = must_init("1");
    let mut v: i64 = 0x5A5A;
    assert_eq!(unsafe { sa::sharedarea_read64(id, 4093, &mut v) }, E_RANGE);
    assert_eq!(v, 0x5A5A);
    assert_eq!(
        unsafe { sa::sharedarea_inc64(id, 4093, 1, &mut v) },
        E_RANGE
    );
    assert_eq!(v, 0x5A5A);
    let mut i: sa::sharedarea_info = unsafe { std::mem::zeroed() };
    i.size = 77;
    assert_eq!(
        unsafe { sa::sharedarea_info(12345, &mut i) },
        sa::SHAREDAREA_E_NO_SUCH_AREA
    );
    assert_eq!(i.size, 77);
}

#[test]
fn no_such_area() {
    let _g = serial();
    must_init("1");
    let bad = [count(), count() + 1, 1 << 30, -1, i32::MIN];
    let mut buf = [0u8; 4];
    for id in bad {
        let nsa = sa::SHAREDAREA_E_NO_SUCH_AREA;
        assert_eq!(
            unsafe { sa::sharedarea_read(id, 0, buf.as_mut_ptr() as *mut c_void, 4) },
            nsa as i64,
            "read {id}"
        );
        assert_eq!(write(id, 0, b"x"), nsa, "write {id}");
        assert_eq!(read64(id, 0), Err(nsa));
        assert_eq!(write64(id, 0, 1), nsa);
        assert_eq!(inc64(id, 0, 1), Err(nsa));
        assert_eq!(dec8(id, 0, 1), Err(nsa));
        assert_eq!(wait(id, 10, 1), nsa);
        assert_eq!(wait_since(id, 0, 10), nsa);
        assert_eq!(update(id), nsa);
        assert_eq!(rlock(id), nsa);
        assert_eq!(wlock(id), nsa);
        assert_eq!(unlock(id), nsa);
        assert_eq!(set_used(id, 0), nsa);
        assert_eq!(honour_used(id, true), nsa);
        assert_eq!(extent(id, 0, 0), Err(nsa));
        let mut u = 0u64;
        assert_eq!(unsafe { sa::sharedarea_updates(id, &mut u) }, nsa);
        assert_eq!(
            unsafe { sa::sharedarea_ws_send_from_area(0, 2, id, 0, 1) },
            nsa as i64
        );
        let e = last_error();
        assert!(
            e.contains(&id.to_string()),
            "last_error should name area {id}: {e}"
        );
    }
}

#[test]
fn null_pointers_are_errors_not_crashes() {
    let _g = serial();
    let id = must_init("1");
    let np = sa::SHAREDAREA_E_NULL_POINTER;
    let before = snapshot(id);
    assert_eq!(unsafe { sa::sharedarea_init(std::ptr::null()) }, np);
    assert_eq!(
        unsafe { sa::sharedarea_init_ptr(std::ptr::null_mut(), 4096) },
        np
    );
    assert_eq!(
        unsafe { sa::sharedarea_read(id, 0, std::ptr::null_mut(), 4) },
        np as i64
    );
    assert_eq!(
        unsafe { sa::sharedarea_write(id, 0, std::ptr::null(), 4) },
        np
    );
    assert_eq!(
        unsafe { sa::sharedarea_read8(id, 0, std::ptr::null_mut()) },
        np
    );
    assert_eq!(
        unsafe { sa::sharedarea_read16(id, 0, std::ptr::null_mut()) },
        np
    );
    assert_eq!(
        unsafe { sa::sharedarea_read32(id, 0, std::ptr::null_mut()) },
        np
    );
    assert_eq!(
        unsafe { sa::sharedarea_read64(id, 0, std::ptr::null_mut()) },
        np
    );
    assert_eq!(unsafe { sa::sharedarea_info(id, std::ptr::null_mut()) }, np);
    assert_eq!(
        unsafe { sa::sharedarea_updates(id, std::ptr::null_mut()) },
        np
    );
    assert_eq!(
        unsafe { sa::sharedarea_extent(id, 0, 0, std::ptr::null_mut()) },
        np
    );
    assert_eq!(
        unsafe { sa::sharedarea_ws_send(0, 2, std::ptr::null(), 4) },
        np as i64
    );
    assert!(
        last_error().starts_with("sharedarea_ws_send"),
        "{}",
        last_error()
    );
    assert_eq!(snapshot(id), before);
}

#[test]
fn strerror_for_every_status_is_distinct_static_text() {
    let _g = serial();
    let statuses = [
        sa::SHAREDAREA_OK,
        sa::SHAREDAREA_RECOVERED,
        sa::SHAREDAREA_E_NO_SUCH_AREA,
        sa::SHAREDAREA_E_OUT_OF_RANGE,
        sa::SHAREDAREA_E_INVALID_SPEC,
        sa::SHAREDAREA_E_IO,
        sa::SHAREDAREA_E_TIMED_OUT,
        sa::SHAREDAREA_E_LOCK_MISUSE,
        sa::SHAREDAREA_E_INTERRUPTED,
        sa::SHAREDAREA_E_NULL_POINTER,
        sa::SHAREDAREA_E_INVALID_ARGUMENT,
        sa::SHAREDAREA_E_PANIC,
        sa::SHAREDAREA_E_LIMIT,
        sa::SHAREDAREA_E_PEER_CLOSED,
        sa::SHAREDAREA_E_NOT_AN_AREA,
        sa::SHAREDAREA_E_CONNECTION_FAILED,
    ];
    // the documented numbers
    assert_eq!(
        statuses,
        [0, 1, -1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12, -13, -14]
    );
    let mut texts = std::collections::HashSet::new();
    for st in statuses {
        let p = unsafe { sa::sharedarea_strerror(st) };
        assert!(!p.is_null(), "strerror({st}) is NULL");
        let t = unsafe { CStr::from_ptr(p) }
            .to_str()
            .expect("UTF-8")
            .to_string();
        assert!(!t.is_empty(), "strerror({st}) is empty");
        assert!(
            texts.insert(t.clone()),
            "strerror({st}) = {t:?} is not distinct"
        );
        // static: the same pointer every time
        assert_eq!(unsafe { sa::sharedarea_strerror(st) }, p);
    }
    for st in [-14, -999, 2, 42, i32::MIN, i32::MAX] {
        let p = unsafe { sa::sharedarea_strerror(st) };
        assert!(!p.is_null(), "strerror({st}) of an unknown status is NULL");
        assert!(!unsafe { CStr::from_ptr(p) }.to_bytes().is_empty());
    }
}

#[test]
fn last_error_text() {
    let _g = serial();
    let id = must_init("1");
    assert_eq!(page_size(), 4096, "this test assumes 4 KiB pages");
    let mut buf = [0u8; 16];
    let n = unsafe { sa::sharedarea_read(id, 4090, buf.as_mut_ptr() as *mut c_void, 16) };
    assert_eq!(n, E_RANGE as i64);
    assert_eq!(
        last_error(),
        format!("sharedarea_read: area {id}: 16 bytes at 4090 run past the end (4096 bytes)")
    );
    // a later success does not have to clear it, but another failure replaces it
    assert_eq!(write64(id, 4092, 1), E_RANGE);
    let e = last_error();
    assert!(
        e.starts_with(&format!("sharedarea_write64: area {id}: ")),
        "{e}"
    );
    assert!(e.contains("4092") && e.contains("4096"), "{e}");
    assert_eq!(inc32(id, u64::MAX, 1), Err(E_RANGE));
    assert!(
        last_error().starts_with(&format!("sharedarea_inc32: area {id}: ")),
        "{}",
        last_error()
    );
    assert_eq!(wait_since(id, 0, -1), sa::SHAREDAREA_E_INVALID_ARGUMENT);
    assert!(
        last_error().starts_with("sharedarea_wait_since: "),
        "{}",
        last_error()
    );
    assert_eq!(unlock(id), sa::SHAREDAREA_E_LOCK_MISUSE);
    assert!(
        last_error().starts_with(&format!("sharedarea_unlock: area {id}: ")),
        "{}",
        last_error()
    );
    // the pointer stays valid and readable until this thread's next call
    let p = unsafe { sa::sharedarea_last_error() };
    assert!(!p.is_null());

    // per thread: another thread's failure does not replace ours
    let mine = last_error();
    let t = std::thread::spawn(move || {
        assert_eq!(read64(id, 4095), Err(E_RANGE));
        assert!(
            last_error().starts_with("sharedarea_read64: "),
            "{}",
            last_error()
        );
    });
    join_within(t, Duration::from_secs(2), "failure in another thread");
    assert_eq!(last_error(), mine);
    // a fresh thread with no failure yet gets a non-NULL string
    std::thread::spawn(|| {
        let p = unsafe { sa::sharedarea_last_error() };
        assert!(!p.is_null());
    })
    .join()
    .unwrap();
}

#[test]
fn wait_argument_errors() {
    let _g = serial();
    let id = must_init("1");
    assert_eq!(wait(id, 100, -1), sa::SHAREDAREA_E_INVALID_ARGUMENT);
    assert_eq!(wait_since(id, 0, -1), sa::SHAREDAREA_E_INVALID_ARGUMENT);
    // A negative freq must never mean "forever" (uWSGI's poll(-1)): either it is ignored
    // and the wait times out, or it is refused at once. (The core refuses it.)
    let t = Instant::now();
    let st = wait(id, -1, 1);
    assert!(
        st == sa::SHAREDAREA_E_TIMED_OUT || st == sa::SHAREDAREA_E_INVALID_ARGUMENT,
        "wait with freq -1: {st}"
    );
    assert!(t.elapsed() < Duration::from_millis(1500));
    // freq 0 is accepted: waking does not depend on it
    let t = Instant::now();
    assert_eq!(wait(id, 0, 1), sa::SHAREDAREA_E_TIMED_OUT);
    assert!(t.elapsed() >= Duration::from_millis(950) && t.elapsed() < Duration::from_millis(1500));
}

#[test]
fn write_lock_lets_every_op_through() {
    let _g = serial();
    let id = must_init("1");
    assert_eq!(wlock(id), sa::SHAREDAREA_OK);
    must_write(id, 0, b"under wlock");
    assert_eq!(read(id, 0, 11).unwrap(), b"under wlock");
    assert_eq!(inc64(id, 16, 1), Ok(1));
    assert_eq!(dec32(id, 24, 1), Ok(-1));
    assert_eq!(write16(id, 30, 7), 0);
    assert_eq!(read16(id, 30), Ok(7));
    assert_eq!(update(id), 0);
    assert_eq!(set_used(id, 100), 0);
    assert_eq!(extent(id, 0, 0), Ok(100));
    let _ = info(id);
    let _ = updates(id);
    // nesting: a second wlock needs a second unlock
    assert_eq!(wlock(id), sa::SHAREDAREA_OK);
    assert_eq!(unlock(id), sa::SHAREDAREA_OK);
    must_write(id, 0, b"still held");
    assert_eq!(unlock(id), sa::SHAREDAREA_OK);
    assert_eq!(
        unlock(id),
        sa::SHAREDAREA_E_LOCK_MISUSE,
        "unlock without a lock"
    );
    // and the lock is really free: another thread gets it
    let t = std::thread::spawn(move || {
        let a = wlock(id);
        let b = unlock(id);
        (a, b)
    });
    assert_eq!(
        join_within(t, Duration::from_secs(2), "wlock in another thread"),
        (0, 0)
    );
}

#[test]
fn read_lock_refuses_writes() {
    let _g = serial();
    let id = must_init("1");
    must_write(id, 0, b"before");
    let u = updates(id);
    assert_eq!(rlock(id), sa::SHAREDAREA_OK);
    assert_eq!(read(id, 0, 6).unwrap(), b"before");
    assert_eq!(read64(id, 0).map(|_| ()), Ok(()));
    assert_eq!(extent(id, 0, 0), Ok(4096));
    let lm = sa::SHAREDAREA_E_LOCK_MISUSE;
    assert_eq!(write(id, 0, b"after!"), lm, "write under own rlock");
    assert!(
        last_error().starts_with(&format!("sharedarea_write: area {id}: ")),
        "{}",
        last_error()
    );
    assert_eq!(write8(id, 0, 1), lm);
    assert_eq!(write64(id, 0, 1), lm);
    assert_eq!(inc64(id, 8, 1), Err(lm));
    assert_eq!(dec8(id, 8, 1), Err(lm));
    assert_eq!(update(id), lm);
    assert_eq!(wlock(id), lm, "wlock under own rlock");
    // nested read locks
    assert_eq!(rlock(id), sa::SHAREDAREA_OK);
    assert_eq!(unlock(id), sa::SHAREDAREA_OK);
    assert_eq!(write(id, 0, b"after!"), lm, "still under the outer rlock");
    assert_eq!(unlock(id), sa::SHAREDAREA_OK);
    assert_eq!(unlock(id), lm);
    // nothing changed
    assert_eq!(read(id, 0, 6).unwrap(), b"before");
    assert_eq!(updates(id), u);
    // unlocked now: writes work again
    must_write(id, 0, b"after!");
    // unlock without any lock, on a fresh area
    let id2 = must_init("1");
    assert_eq!(unlock(id2), lm);
}

#[test]
fn locks_are_per_area() {
    let _g = serial();
    let a = must_init("1");
    let b = must_init("1");
    assert_eq!(rlock(a), 0);
    // holding a's read lock says nothing about b
    must_write(b, 0, b"b is free");
    assert_eq!(unlock(b), sa::SHAREDAREA_E_LOCK_MISUSE);
    assert_eq!(wlock(b), 0);
    assert_eq!(write(a, 0, b"x"), sa::SHAREDAREA_E_LOCK_MISUSE);
    assert_eq!(unlock(b), 0);
    assert_eq!(unlock(a), 0);
}

#[test]
fn a_held_lock_blocks_other_threads() {
    let _g = serial();
    let id = must_init("1");
    // wlock held by this thread: another thread's read waits
    assert_eq!(wlock(id), 0);
    assert_eq!(wlock(id), 0); // nested
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let t = std::thread::spawn(move || {
        let r = read(id, 0, 4).map(|_| ());
        d.store(true, Ordering::SeqCst);
        r
    });
    sleep_ms(150);
    assert!(
        !done.load(Ordering::SeqCst),
        "another thread read through a held write lock"
    );
    assert_eq!(unlock(id), 0);
    sleep_ms(100);
    assert!(
        !done.load(Ordering::SeqCst),
        "released after only one of two nested unlocks"
    );
    assert_eq!(unlock(id), 0);
    let start = Instant::now();
    while !done.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(2) {
        sleep_ms(1);
    }
    assert!(
        done.load(Ordering::SeqCst),
        "the reader never got the lock after unlock"
    );
    assert_eq!(
        join_within(t, Duration::from_secs(2), "read after unlock"),
        Ok(())
    );

    // rlock held: another thread reads, but its write waits; the other thread's lock
    // state is its own (its unlock without a lock is misuse)
    assert_eq!(rlock(id), 0);
    let t = std::thread::spawn(move || {
        let misuse = unlock(id);
        let r = read(id, 0, 4).map(|_| ());
        let start = Instant::now();
        let w = write(id, 0, b"w");
        (misuse, r, w, start.elapsed())
    });
    sleep_ms(200);
    assert_eq!(unlock(id), 0);
    let (misuse, r, w, waited) = join_within(
        t,
        Duration::from_secs(2),
        "write after the read lock is released",
    );
    assert_eq!(misuse, sa::SHAREDAREA_E_LOCK_MISUSE);
    assert_eq!(r, Ok(()));
    assert_eq!(w, 0);
    assert!(
        waited >= Duration::from_millis(100),
        "the write did not wait for the read lock ({waited:?})"
    );
}

#[test]
fn used_and_honour_used() {
    let _g = serial();
    let id = must_init("1");
    let size = size_of(id);
    let i = info(id);
    assert_eq!(i.honour_used, 0);
    assert_eq!(set_used(id, 10), 0);
    let i = info(id);
    assert_eq!(i.used, 10);
    assert_eq!(i.honour_used, 1, "set_used turns honour_used on");
    assert_eq!(extent(id, 0, 0), Ok(10));
    assert_eq!(extent(id, 4, 0), Ok(6));
    assert_eq!(extent(id, 10, 0), Ok(0), "used <= pos gives 0");
    assert_eq!(extent(id, 20, 0), Ok(0));
    assert_eq!(
        extent(id, 4, 100),
        Ok(100),
        "an explicit len is not clipped to used"
    );
    assert_eq!(extent(id, size, 0), Err(E_RANGE));
    assert_eq!(honour_used(id, false), 0);
    assert_eq!(info(id).honour_used, 0);
    assert_eq!(info(id).used, 10);
    assert_eq!(extent(id, 4, 0), Ok(size - 4));
    assert_eq!(honour_used(id, true), 0);
    assert_eq!(extent(id, 4, 0), Ok(6));
    assert_eq!(set_used(id, size), 0);
    assert_eq!(extent(id, 0, 0), Ok(size));
    let before = info(id);
    assert!(set_used(id, size + 1) < 0, "used > size must fail");
    assert_eq!(
        info(id).used,
        before.used,
        "a failed set_used changes nothing"
    );
    assert_eq!(set_used(id, 0), 0);
    assert_eq!(extent(id, 0, 0), Ok(0));
}

#[test]
fn info_fields() {
    let _g = serial();
    let id = must_init("pages=3");
    let i = info(id);
    assert_eq!(
        (i.size, i.pages, i.page_size),
        (3 * page_size(), 3, page_size())
    );
    assert_eq!(
        (i.updates, i.used, i.recoveries, i.backing, i.honour_used),
        (0, 0, 0, sa::SHAREDAREA_BACKING_ANONYMOUS, 0)
    );
    must_write(id, 0, b"1");
    inc64(id, 8, 1).unwrap();
    update(id);
    assert_eq!(info(id).updates, 3);
    // the C struct layout: six u64 then two i32
    assert_eq!(std::mem::size_of::<sa::sharedarea_info>(), 56);
}

#[test]
fn waiting_under_own_lock_is_refused_not_a_hang() {
    let _g = serial();
    let id = must_init("1");
    for (mode, take) in [("wlock", wlock as fn(i32) -> i32), ("rlock", rlock)] {
        assert_eq!(take(id), 0);
        let t = Instant::now();
        let st = wait_since(id, updates(id), 0); // 0 = forever: must not hang
        assert_eq!(
            st,
            sa::SHAREDAREA_E_LOCK_MISUSE,
            "wait_since under own {mode}"
        );
        assert!(
            last_error().starts_with(&format!("sharedarea_wait_since: area {id}: ")),
            "{}",
            last_error()
        );
        let st = wait(id, 100, 0);
        assert_eq!(st, sa::SHAREDAREA_E_LOCK_MISUSE, "wait under own {mode}");
        assert!(t.elapsed() < Duration::from_millis(100));
        assert_eq!(unlock(id), 0);
    }
}

/// `used` at its edges: a refused set_used changes nothing (honour_used stays off);
/// set_used under this thread's read lock is lock misuse and changes nothing; a C
/// read of len 0 at pos == size succeeds with 0 bytes while extent there is out of
/// range; used == size with honour_used reads to the end; toggling honour_used
/// counts no update.
#[test]
fn used_and_extent_at_the_edges() {
    let _g = serial();
    let id = must_init("1");
    let size = size_of(id);
    assert_eq!(info(id).honour_used, 0);
    assert_eq!(set_used(id, size + 1), sa::SHAREDAREA_E_OUT_OF_RANGE);
    assert_eq!(set_used(id, u64::MAX), sa::SHAREDAREA_E_OUT_OF_RANGE);
    let i = info(id);
    assert_eq!(
        (i.honour_used, i.used, i.updates),
        (0, 0, 0),
        "refused set_used changed state"
    );
    assert!(last_error().starts_with(&format!("sharedarea_set_used: area {id}: ")));

    assert_eq!(rlock(id), 0);
    assert_eq!(set_used(id, 5), sa::SHAREDAREA_E_LOCK_MISUSE);
    assert_eq!(unlock(id), 0);
    let i = info(id);
    assert_eq!(
        (i.honour_used, i.used),
        (0, 0),
        "set_used under rlock changed state"
    );

    let mut b = [0u8; 1];
    assert_eq!(
        unsafe { sa::sharedarea_read(id, size, b.as_mut_ptr() as *mut c_void, 0) },
        0
    );
    assert_eq!(extent(id, size, 0), Err(sa::SHAREDAREA_E_OUT_OF_RANGE));
    assert_eq!(set_used(id, size), 0);
    assert_eq!(extent(id, size - 1, 0), Ok(1));
    // honour_used toggles without counting an update
    let u = updates(id);
    assert_eq!(honour_used(id, false), 0);
    assert_eq!(honour_used(id, true), 0);
    assert_eq!(updates(id), u);
}
