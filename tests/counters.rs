//! Integer operations that run side by side (src/lock/mod.rs, "Integer
//! operations"): exact under any contention, excluded by read and write lock
//! sections, counted as updates that wake waiters, and recovered when a process
//! dies in the middle of one. Real processes (fork) throughout.

mod common;
use common::*;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const SECS: fn(u64) -> Duration = Duration::from_secs;
const PROCS: usize = 8;
const EACH: i64 = 1_000_000;

fn read64(id: i32, pos: u64) -> i64 {
    let mut v = 0;
    assert_eq!(
        unsafe { sa::sharedarea_read64(id, pos, &mut v) },
        0,
        "{}",
        last_error()
    );
    v
}

/// Runs `f(i)` in `n` forked processes at once and waits for them all.
fn in_processes(n: usize, f: impl Fn(usize) -> i32 + Copy) {
    let go = Scratch::new(1);
    let mut kids = Vec::new();
    for i in 0..n {
        let go = &go;
        kids.push(fork_child(move || {
            while go.get(0) == 0 {
                std::hint::spin_loop();
            }
            f(i)
        }));
    }
    go.set(0, 1);
    for k in kids.iter_mut() {
        k.expect_success(SECS(120), "counter worker");
    }
}

#[test]
fn eight_processes_a_million_increments_each_are_exact_on_shared_and_own_counters() {
    let _g = serial();
    let id = must_init("1");
    // one shared counter at 0; own counters one cache line apart from 64; an
    // unaligned shared one at 1001 (through the write lock); 32- and 16-bit ones
    in_processes(PROCS, move |i| {
        for _ in 0..EACH {
            let mut v = 0i64;
            if unsafe { sa::sharedarea_inc64(id, 0, 1, &mut v) } != 0
                || unsafe { sa::sharedarea_inc64(id, 64 * (i as u64 + 1), 1, &mut v) } != 0
            {
                return child_fail(2, &last_error());
            }
        }
        for _ in 0..10_000 {
            let (mut a, mut b, mut c) = (0i64, 0i32, 0i16);
            if unsafe { sa::sharedarea_inc64(id, 1001, 1, &mut a) } != 0
                || unsafe { sa::sharedarea_inc32(id, 2048, 1, &mut b) } != 0
                || unsafe { sa::sharedarea_dec16(id, 2100, 1, &mut c) } != 0
            {
                return child_fail(3, &last_error());
            }
        }
        0
    });
    assert_eq!(read64(id, 0), PROCS as i64 * EACH, "shared counter");
    for i in 0..PROCS {
        assert_eq!(read64(id, 64 * (i as u64 + 1)), EACH, "own counter {i}");
    }
    assert_eq!(read64(id, 1001), PROCS as i64 * 10_000, "unaligned counter");
    let mut v32 = 0i32;
    assert_eq!(unsafe { sa::sharedarea_read32(id, 2048, &mut v32) }, 0);
    assert_eq!(v32, PROCS as i32 * 10_000);
    let mut v16 = 0i16;
    assert_eq!(unsafe { sa::sharedarea_read16(id, 2100, &mut v16) }, 0);
    assert_eq!(
        v16,
        (-(PROCS as i32 * 10_000)) as i16,
        "wrapping 16-bit dec"
    );
    // every operation counted one update
    let expected = 2 * PROCS as u64 * EACH as u64 + 3 * PROCS as u64 * 10_000;
    assert_eq!(info(id).updates, expected, "update count");
}

/// Under rlock no integer changes; under wlock nothing else runs.
#[test]
fn lock_sections_see_no_integer_change_while_others_increment() {
    let _g = serial();
    let id = must_init("1");
    let stop = Scratch::new(2);
    let mut kids = Vec::new();
    for i in 0..3u64 {
        let stop = &stop;
        kids.push(fork_child(move || {
            let mut v = 0i64;
            while stop.get(0) == 0 {
                for c in 0..16u64 {
                    if unsafe { sa::sharedarea_inc64(id, 8 * c + 256 * i, 1, &mut v) } != 0 {
                        return child_fail(2, &last_error());
                    }
                }
            }
            0
        }));
    }
    let snap = |id: i32| -> Vec<i64> {
        (0..3u64)
            .flat_map(|i| (0..16u64).map(move |c| 8 * c + 256 * i))
            .map(|p| read64(id, p))
            .collect()
    };
    sleep_ms(50);
    let t = Instant::now();
    let mut sections = 0;
    while t.elapsed() < Duration::from_millis(1500) {
        assert_eq!(unsafe { sa::sharedarea_rlock(id) }, 0);
        let a = snap(id);
        std::thread::sleep(Duration::from_micros(300));
        let b = snap(id);
        assert_eq!(unsafe { sa::sharedarea_unlock(id) }, 0);
        assert_eq!(a, b, "an integer changed under rlock");
        assert_eq!(unsafe { sa::sharedarea_wlock(id) }, 0);
        let a = snap(id);
        std::thread::sleep(Duration::from_micros(300));
        let b = snap(id);
        assert_eq!(unsafe { sa::sharedarea_unlock(id) }, 0);
        assert_eq!(a, b, "an integer changed under wlock");
        sections += 1;
    }
    let before = snap(id);
    sleep_ms(50);
    assert_ne!(
        before,
        snap(id),
        "the incrementers made no progress between sections"
    );
    stop.set(0, 1);
    for k in kids.iter_mut() {
        k.expect_success(SECS(10), "incrementer");
    }
    assert!(sections > 10, "only {sections} sections ran");
}

/// A waiter is woken by an integer operation of another process.
#[test]
fn waiters_are_woken_by_integer_operations() {
    let _g = serial();
    let id = must_init("1");
    for op in 0..3 {
        let seen = updates(id);
        let mut kid = fork_child(move || {
            sleep_ms(100);
            let mut v = 0i64;
            let st = match op {
                0 => unsafe { sa::sharedarea_inc64(id, 8, 1, &mut v) },
                1 => unsafe { sa::sharedarea_write64(id, 16, 7) },
                _ => unsafe { sa::sharedarea_dec64(id, 24, 1, &mut v) },
            };
            if st == 0 {
                0
            } else {
                2
            }
        });
        let t = Instant::now();
        assert_eq!(wait_since(id, seen, 5000), 0, "op {op}: {}", last_error());
        assert!(
            t.elapsed() < SECS(2),
            "op {op}: woken after {:?}",
            t.elapsed()
        );
        kid.expect_success(SECS(5), "updater");
    }
}

/// A process that died in the middle of an integer operation (its slot still
/// counts it in progress) does not block writers or read lockers past a second.
#[test]
fn a_process_dead_in_an_integer_operation_is_recovered() {
    let _g = serial();
    let name = ShmName::new("int-dead");
    let id = must_init(&format!("name={},size=4096", name.0));
    must_write(id, 64, b"x"); // this process's own slot first
    let view = ControlView::open(&name.0);
    let ctl = view.ctl();
    let updates_before = info(id).updates;
    for (what, f) in [
        (
            "wlock",
            sa::sharedarea_wlock as unsafe extern "C" fn(i32) -> i32,
        ),
        (
            "rlock",
            sa::sharedarea_rlock as unsafe extern "C" fn(i32) -> i32,
        ),
    ] {
        // A child takes a slot and dies; then its slot is made to say "in an
        // integer operation", as if it had been killed inside one.
        let spec = format!("name={}", name.0);
        let mut dead = fork_child(move || {
            let other = init(&spec);
            if other < 0 || unsafe { sa::sharedarea_write64(other, 0, 1) } != 0 {
                return 2;
            }
            0
        });
        dead.expect_success(SECS(5), "slot taker");
        let slot = view
            .slot_of(dead.pid as u32)
            .expect("the dead child's slot");
        ctl.slots[slot].ints.fetch_add(1, Ordering::SeqCst);
        let t = Instant::now();
        let st = unsafe { f(id) };
        assert!(st >= 0, "{what}: {}", last_error());
        assert!(t.elapsed() <= SECS(1), "{what} waited {:?}", t.elapsed());
        assert_eq!(unsafe { sa::sharedarea_unlock(id) }, 0);
    }
    // the two children's writes, and nothing else
    let updates_before = updates_before + 2;
    assert_eq!(
        info(id).updates,
        updates_before,
        "a recovery lost or made updates"
    );
    assert!(info(id).recoveries >= 2);
}
