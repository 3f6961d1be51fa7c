//! How long `sharedarea_last_error()`'s pointer and text last, as the header states
//! it once (at `sharedarea_last_error`): the pointer is the calling thread's own
//! buffer and stays valid until that thread exits; the text is rewritten in place by
//! this thread's next failure or RECOVERED note, and by nothing else (not by a
//! success, not by another thread). `sharedarea_last_error_detail()` is the same
//! buffer from the detail on.

mod common;
use common::*;

use std::ffi::{c_char, CStr};
use std::time::Duration;

fn text_at(p: *const c_char) -> String {
    // SAFETY: `p` came from sharedarea_last_error(_detail) on this thread, which
    // promises a NUL-terminated buffer valid until this thread exits.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn last_error_ptr() -> *const c_char {
    // SAFETY: no arguments; never NULL.
    unsafe { sa::sharedarea_last_error() }
}

fn fail_updates_of_area_minus_one() -> i32 {
    let mut n = 0u64;
    // SAFETY: `n` is a valid u64 for the call's duration.
    unsafe { sa::sharedarea_updates(-1, &mut n) }
}

#[test]
fn the_text_changes_with_this_threads_next_failure_only() {
    let _g = serial();
    let id = must_init("1");
    let size = size_of(id);
    // the pointer, taken before the failure, shows it: one buffer, rewritten in place
    let p = last_error_ptr();
    assert_eq!(
        write(id, size, b"x"),
        sa::SHAREDAREA_E_OUT_OF_RANGE,
        "a write at the end fails"
    );
    let first = text_at(p);
    assert!(
        first.starts_with(&format!("sharedarea_write: area {id}: ")),
        "{first}"
    );
    // SAFETY: no arguments; never NULL.
    let detail = unsafe { sa::sharedarea_last_error_detail() };
    assert_eq!(
        format!("sharedarea_write: {}", text_at(detail)),
        first,
        "the detail is the same text without the function's name"
    );

    // successes leave it alone
    must_write(id, 0, b"ok");
    assert_eq!(read(id, 0, 2).unwrap(), b"ok");
    assert_eq!(wlock(id), 0);
    assert_eq!(unlock(id), 0);
    assert_eq!(text_at(p), first, "a success changed the text");
    assert_eq!(last_error_ptr(), p, "the pointer moved");

    // another thread's failures leave it alone (it has a buffer of its own)
    let other = std::thread::spawn(move || {
        assert_eq!(
            fail_updates_of_area_minus_one(),
            sa::SHAREDAREA_E_NO_SUCH_AREA
        );
        (last_error_ptr() as usize, text_at(last_error_ptr()))
    });
    let (q, their) = join_within(other, Duration::from_secs(10), "the other thread");
    assert_ne!(q, p as usize, "two threads share one buffer");
    assert!(
        their.starts_with("sharedarea_updates: area -1: "),
        "{their}"
    );
    assert_eq!(
        text_at(p),
        first,
        "another thread's failure changed this one's text"
    );

    // this thread's next failure rewrites it, at the same place
    assert_eq!(
        fail_updates_of_area_minus_one(),
        sa::SHAREDAREA_E_NO_SUCH_AREA
    );
    let second = text_at(p);
    assert!(
        second.starts_with("sharedarea_updates: area -1: "),
        "{second}"
    );
    assert_eq!(last_error_ptr(), p);
}

#[test]
fn a_recovered_lock_leaves_its_note() {
    let _g = serial();
    let id = must_init("1");
    assert_eq!(
        fail_updates_of_area_minus_one(),
        sa::SHAREDAREA_E_NO_SUCH_AREA
    );
    let p = last_error_ptr();
    // a thread that exits holding the write lock: the next taker recovers it
    let holder = std::thread::spawn(move || wlock(id));
    assert_eq!(
        join_within(holder, Duration::from_secs(10), "the holder"),
        0
    );
    assert_eq!(wlock(id), sa::SHAREDAREA_RECOVERED);
    assert_eq!(unlock(id), 0);
    let note = text_at(p);
    assert!(
        note.starts_with(&format!("sharedarea_wlock: area {id}: ")),
        "the RECOVERED note is not in the text: {note}"
    );
}
