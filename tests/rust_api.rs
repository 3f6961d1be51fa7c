//! The safe Rust API (`sharedarea::Area`, its lock guards, `Error` with a
//! `Status`): what a Rust program sees, with real forked processes where the
//! behaviour is between processes.

mod common;
use common::*;

use std::time::{Duration, Instant};

use sharedarea::{Area, Held, Status};

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn bytes_and_integers_round_trip_and_each_failure_carries_its_status() {
    let _g = serial();
    let area = Area::init("pages=1").expect("init");
    assert_eq!(area.size(), page_size());
    area.write(10, b"hello").unwrap();
    let mut buf = [0u8; 5];
    area.read(10, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    assert_eq!(area.add_int::<i64>(64, 40).unwrap(), 40);
    assert_eq!(area.sub_int::<i64>(64, 2).unwrap(), 38);
    area.write_int::<i32>(128, -7).unwrap();
    assert_eq!(area.read_int::<i32>(128).unwrap(), -7);

    let before = area.info();
    let e = area.write(area.size() - 2, b"xyz").unwrap_err();
    assert_eq!(e.status, Status::OutOfRange);
    assert!(
        e.detail.starts_with(&format!("area {}: ", area.id())),
        "{e}"
    );
    assert_eq!(
        area.read_int::<i64>(area.size()).unwrap_err().status,
        Status::OutOfRange
    );
    assert_eq!(
        area.info().updates,
        before.updates,
        "a refused write counted"
    );

    let n = sharedarea::count();
    assert_eq!(
        Area::init("pages=banana").unwrap_err().status,
        Status::InvalidSpec
    );
    assert_eq!(sharedarea::count(), n, "a bad spec created an area");
    assert_eq!(Area::get(-1).unwrap_err().status, Status::NoSuchArea);
    assert_eq!(Area::get(n as i32).unwrap_err().status, Status::NoSuchArea);
}

#[test]
fn rust_and_c_callers_share_one_area_by_id() {
    let _g = serial();
    let area = Area::init("1").unwrap();
    area.write_int::<i64>(0, 1234).unwrap();
    let mut v = 0i64;
    // SAFETY: `v` is a valid i64 for the call.
    assert_eq!(unsafe { sa::sharedarea_read64(area.id(), 0, &mut v) }, 0);
    assert_eq!(v, 1234);
    let id = must_init("1");
    must_write(id, 3, b"abc");
    let mut buf = [0u8; 3];
    Area::get(id).unwrap().read(3, &mut buf).unwrap();
    assert_eq!(&buf, b"abc");
}

#[test]
fn a_write_guard_keeps_other_processes_out_until_it_is_dropped() {
    let _g = serial();
    let area = Area::init("1").unwrap();
    let id = area.id();
    let sc = Scratch::new(2);
    let guard = area.write_lock().unwrap();
    assert_eq!(area.held(), Held::Write);
    let mut child = {
        let sc = &sc;
        fork_child(move || {
            let a = Area::get(id).unwrap();
            // held by the parent: a timed attempt gives up with TimedOut
            match a.write_lock_for(Duration::from_millis(100)) {
                Err(e) if e.status == Status::TimedOut => {}
                other => return child_fail(2, &format!("timed write_lock: {other:?}")),
            }
            sc.set(0, 1);
            // then waits until the parent drops its guard
            let g = match a.read_lock_for(SECS(20)) {
                Ok(g) => g,
                Err(e) => return child_fail(3, &e.to_string()),
            };
            sc.set(1, a.read_int::<i64>(0).unwrap_or(-1) as u64);
            drop(g);
            0
        })
    };
    assert!(
        sc.wait_for(0, 1, SECS(20)),
        "the child's timed attempt never ended"
    );
    area.write_int::<i64>(0, 77).unwrap();
    sleep_ms(50);
    assert_eq!(
        sc.get(1),
        0,
        "the child read while the write guard was held"
    );
    drop(guard);
    assert_eq!(area.held(), Held::None);
    child.expect_success(SECS(20), "guarded reader");
    assert_eq!(sc.get(1), 77);
}

#[test]
fn guards_nest_and_a_read_guard_cannot_become_a_write_guard() {
    let _g = serial();
    let area = Area::init("1").unwrap();
    let outer = area.read_lock().unwrap();
    let inner = area.read_lock().unwrap();
    assert_eq!(
        area.write_lock().unwrap_err().status,
        Status::LockMisuse,
        "upgrade allowed"
    );
    drop(inner);
    assert_eq!(
        area.held(),
        Held::Read,
        "the inner guard released the outer hold"
    );
    outer.unlock().unwrap();
    assert_eq!(area.held(), Held::None);
    assert_eq!(area.unlock().unwrap_err().status, Status::LockMisuse);
}

#[test]
fn a_guard_taken_after_its_holder_was_killed_says_it_recovered() {
    let _g = serial();
    let name = ShmName::new("rustapi-rec");
    let area = Area::init(&format!("name={},size=4096", name.0)).unwrap();
    let id = area.id();
    let sc = Scratch::new(1);
    let mut holder = lock_holder(id, true, &sc, 0);
    let t = Instant::now();
    holder.kill_and_reap();
    let g = area
        .write_lock_for(SECS(10))
        .expect("lock after the holder died");
    assert!(g.recovered(), "recovery not reported");
    assert!(t.elapsed() < SECS(5), "took {:?}", t.elapsed());
    drop(g);
    let again = area.write_lock().unwrap();
    assert!(!again.recovered(), "recovery reported twice");
}

#[test]
fn the_notify_descriptor_becomes_readable_after_another_process_updates() {
    let _g = serial();
    let area = Area::init("1").unwrap();
    let id = area.id();
    let fd = sharedarea::notify_fd(area).unwrap();
    let mut child = fork_child(move || {
        sleep_ms(50);
        match Area::get(id).and_then(|a| a.add_int::<i64>(0, 1)) {
            Ok(_) => 0,
            Err(e) => child_fail(2, &e.to_string()),
        }
    });
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the call.
    let n = unsafe { libc::poll(&mut p, 1, 10_000) };
    assert_eq!(n, 1, "not readable after an update");
    child.expect_success(SECS(10), "updater");
    let mut count = 0u64;
    // SAFETY: reads 8 bytes into `count`.
    let r = unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
    assert_eq!(r, 8);
    assert!(count >= 1);
}

#[test]
fn a_guard_never_releases_a_hold_that_is_not_its_own() {
    let _g = serial();
    let area = Area::init("1").unwrap();
    // an explicit unlock_all ended the guard's hold; a later hold is not the guard's
    let g = area.read_lock().unwrap();
    assert_eq!(area.unlock_all().unwrap(), 1);
    let w = area.write_lock().unwrap();
    drop(g);
    assert_eq!(
        area.held(),
        Held::Write,
        "the stale guard released a later hold"
    );
    assert_eq!(
        w.unlock().map_err(|e| e.status),
        Ok(()),
        "the write guard lost its hold"
    );
    assert_eq!(area.held(), Held::None);
    // a stale guard's explicit unlock says so and changes nothing
    let g = area.read_lock().unwrap();
    area.unlock().unwrap();
    let r = area.read_lock().unwrap();
    assert_eq!(g.unlock().unwrap_err().status, Status::LockMisuse);
    assert_eq!(area.held(), Held::Read);
    drop(r);
    // nested guards may be dropped in any order
    let outer = area.read_lock().unwrap();
    let inner = area.read_lock().unwrap();
    drop(outer);
    assert_eq!(
        area.held(),
        Held::Read,
        "the first drop released the whole hold"
    );
    drop(inner);
    assert_eq!(area.held(), Held::None, "a level was left held");
}

#[test]
fn timeouts_too_long_to_represent_mean_no_limit() {
    let _g = serial();
    let area = Area::init("1").unwrap();
    let g = area.write_lock_for(Duration::MAX).expect("a free lock");
    drop(g);
    let g = area.read_lock_for(Duration::MAX).expect("a free lock");
    drop(g);
    let seen = area.updates();
    area.update().unwrap();
    area.wait_since(seen, Some(Duration::MAX))
        .expect("already updated");
}

/// Locks taken while a thread is being torn down (a thread-local destructor
/// that runs after the library's own, a C `atexit` handler) work like any other:
/// released by their guard, or, when still held as the thread ends, given back
/// by the thread's exit destructor, the next taker being told.
#[test]
fn locks_taken_while_a_thread_or_process_is_ending_are_recorded_and_released() {
    use std::sync::atomic::{AtomicI32, Ordering};
    static AREA_ID: AtomicI32 = AtomicI32::new(-1);
    static OUTCOME: AtomicI32 = AtomicI32::new(0);
    static KEEP: AtomicI32 = AtomicI32::new(0);
    struct LockAtExit;
    impl Drop for LockAtExit {
        fn drop(&mut self) {
            let a = Area::get(AREA_ID.load(Ordering::SeqCst)).unwrap();
            let code = match a.write_lock() {
                Ok(g) if KEEP.load(Ordering::SeqCst) == 1 => {
                    std::mem::forget(g); // still held when the thread ends
                    1
                }
                Ok(g) => match g.unlock() {
                    Ok(()) => 1,
                    Err(_) => 4,
                },
                Err(e) if e.status == Status::LockMisuse => 2,
                Err(_) => 3,
            };
            OUTCOME.store(code, Ordering::SeqCst);
        }
    }
    thread_local! {
        static AT_EXIT: LockAtExit = const { LockAtExit };
    }
    let _g = serial();
    let area = Area::init("1").unwrap();
    AREA_ID.store(area.id(), Ordering::SeqCst);
    for keep in [0, 1] {
        KEEP.store(keep, Ordering::SeqCst);
        OUTCOME.store(0, Ordering::SeqCst);
        std::thread::spawn(|| {
            // registered first, so destroyed after the library's own thread-locals
            AT_EXIT.with(|_| {});
            drop(
                Area::get(AREA_ID.load(Ordering::SeqCst))
                    .unwrap()
                    .read_lock()
                    .unwrap(),
            );
        })
        .join()
        .unwrap();
        assert_eq!(OUTCOME.load(Ordering::SeqCst), 1, "keep={keep}");
        let w = area
            .write_lock_for(SECS(2))
            .expect("the lock was left held by a thread that has exited");
        assert_eq!(w.recovered(), keep == 1, "keep={keep}: recovery flag");
    }

    // A C atexit handler in a process that used the lock.
    extern "C" fn lock_in_atexit() {
        let id = AREA_ID.load(Ordering::SeqCst);
        // SAFETY: plain C ABI calls on an area of this process.
        let st = unsafe { sa::sharedarea_wlock(id) };
        let un = unsafe { sa::sharedarea_unlock(id) };
        if st != 0 || un != 0 {
            raw_eprint(&format!("atexit: wlock {st}, unlock {un}\n"));
            // SAFETY: ends the process with a code the parent checks.
            unsafe { libc::_exit(7) };
        }
    }
    let mut child = fork_child(|| {
        let a = Area::get(AREA_ID.load(Ordering::SeqCst)).unwrap();
        drop(a.write_lock().unwrap());
        // SAFETY: registers a plain extern "C" fn; exit() then runs it.
        unsafe {
            libc::atexit(lock_in_atexit);
            libc::exit(0)
        }
    });
    child.expect_success(SECS(10), "atexit locker");
}
