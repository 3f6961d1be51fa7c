//! The cross-process lock's behaviour (src/lock/): liveness by tokens the kernel
//! drops at death, recovery of many dead holders at once, one lock per object,
//! holds that end with their thread, bounded and interruptible waits, ownership
//! checked at unlock, a scribbled control block, and hostile hosts (/proc hidden or
//! absent, non-dumpable setuid workers, pid namespaces). Every blocking step runs in
//! a forked child with a bounded wait, so no test can hang `cargo test`.
//!
//! Some tests look at the control block directly, through a second mapping of a
//! `name=` object laid out as `sharedarea::control::Control`.

mod common;
use common::*;

use sharedarea::control::SLOTS;
use std::ffi::{c_void, CStr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const SECS: fn(u64) -> Duration = Duration::from_secs;
/// The state word's layout (src/lock/mod.rs): writer field in the low 13 bits,
/// generation from bit 15 up.
const WRITER_MASK: u32 = 0x1FFF;
const GEN_ONE: u32 = 1 << 15;

/// In a forked child: `write(id, 0, b"w")`. Returns how long it took, or None if it
/// did not finish within `limit` (the child is killed then).
fn write_in_child(id: i32, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut c = fork_child(move || if write(id, 0, b"w") == 0 { 0 } else { 2 });
    match c.wait(limit) {
        Ok(Exit::Code(0)) => Some(t.elapsed()),
        Ok(other) => panic!("writer child ended with {other:?}: {}", last_error()),
        Err(_) => None,
    }
}

fn wlock_timeout(id: i32, ms: i64) -> i32 {
    unsafe { sa::sharedarea_wlock_timeout(id, ms) }
}
fn rlock_timeout(id: i32, ms: i64) -> i32 {
    unsafe { sa::sharedarea_rlock_timeout(id, ms) }
}
fn lock_info(id: i32) -> sa::sharedarea_lock_info {
    let mut out: sa::sharedarea_lock_info = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { sa::sharedarea_lock_info(id, &mut out) },
        0,
        "{}",
        last_error()
    );
    out
}

// ---------------------------------------------------------------------------------------
// Slots: one per process, even when its threads race to claim it.

#[test]
fn first_use_rlock_race_between_threads_leaves_no_reader_behind() {
    let _g = serial();
    let name = ShmName::new("rev-race");
    let id = must_init(&format!("name={},size=4096", name.0));
    must_write(id, 0, b"x");
    let view = ControlView::open(&name.0);
    let sc = Scratch::new(4);
    const THREADS: usize = 8;
    for round in 0..30 {
        // A forked child has no slot (its fork generation changed): the first rlocks of
        // its threads race in claim_slot.
        let mut racer = {
            let sc = &sc;
            fork_child(move || {
                let barrier = Arc::new(Barrier::new(THREADS));
                let ts: Vec<_> = (0..THREADS)
                    .map(|_| {
                        let b = barrier.clone();
                        std::thread::spawn(move || {
                            b.wait();
                            let a = rlock(id);
                            let u = unlock(id);
                            (a, u)
                        })
                    })
                    .collect();
                for t in ts {
                    let (a, u) = t.join().unwrap();
                    if a < 0 || u < 0 {
                        return child_fail(2, &format!("rlock {a} unlock {u}"));
                    }
                }
                sc.set(0, round + 1);
                // Stay alive: a dead process's slots would be reclaimed.
                while sc.get(1) < round + 1 {
                    sleep_ms(1);
                }
                0
            })
        };
        assert!(
            sc.wait_for(0, round + 1, SECS(10)),
            "round {round}: the racing threads did not finish"
        );
        // Every thread has unlocked: no slot may still count a reader.
        let stuck = view.busy_readers();
        let wrote = if stuck.is_empty() {
            write_in_child(id, SECS(3))
        } else {
            None
        };
        sc.set(1, round + 1);
        racer.expect_success(SECS(5), "racing child");
        assert!(
            stuck.is_empty() && wrote.is_some(),
            "round {round}: after every thread of pid {} unlocked, slots still count \
             readers (slot, pid, readers) = {stuck:?}; a write then {}",
            racer.pid,
            if wrote.is_some() {
                "went through"
            } else {
                "hung"
            }
        );
    }
}

// ---------------------------------------------------------------------------------------
// Liveness: a live holder is never taken for dead.

#[test]
fn live_holder_with_exited_main_thread_is_not_recovered() {
    let _g = serial();
    let id = must_init("1");
    must_write(id, 0, b"x");
    let sc = Scratch::new(4);
    let rec0 = info(id).recoveries;
    let mut holder = {
        let sc = &sc;
        fork_child(move || {
            let sc: &'static Scratch = unsafe { &*(sc as *const Scratch) };
            std::thread::spawn(move || {
                if wlock(id) != 0 {
                    unsafe { libc::_exit(2) };
                }
                sc.set(0, 1);
                while sc.get(1) == 0 {
                    sleep_ms(1);
                }
                let _ = unlock(id);
                unsafe { libc::_exit(0) };
            });
            while sc.get(0) == 0 {
                sleep_ms(1);
            }
            // End only the main thread (no unwinding, no exit_group): the process lives on.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
            unreachable!()
        })
    };
    assert!(sc.wait_for(0, 1, SECS(5)), "holder thread took wlock");
    // Wait until the leader shows as a zombie while its other thread runs.
    let stat = format!("/proc/{}/stat", holder.pid);
    let start = Instant::now();
    loop {
        let s = std::fs::read_to_string(&stat).unwrap_or_default();
        let state = s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .chars()
            .next();
        if state == Some('Z') {
            break;
        }
        assert!(start.elapsed() < SECS(5), "leader never showed 'Z': {s}");
        sleep_ms(1);
    }
    assert!(std::path::Path::new(&format!("/proc/{}/task", holder.pid)).exists());
    let wrote = write_in_child(id, SECS(2));
    let rec1 = info(id).recoveries;
    sc.set(1, 1);
    let _ = holder.wait(SECS(5));
    assert!(
        wrote.is_none() && rec1 == rec0,
        "a write went through in {wrote:?} (recoveries {rec0} -> {rec1}) while a live \
         thread of pid {} held the write lock (its main thread had exited)",
        holder.pid
    );
}

// ---------------------------------------------------------------------------------------
// Reentrancy and nesting.

/// Thread A holds the read lock; thread B of the same process asks for the write lock.
/// B drains A's (its own process's) slot: it must wait, not deadlock and not barge in,
/// and get the lock as soon as A unlocks. No recovery is reported.
#[test]
fn same_process_writer_waits_for_a_sibling_threads_read_lock() {
    let _g = serial();
    let id = must_init("1");
    must_write(id, 0, b"x");
    let mut c = fork_child(move || {
        if rlock(id) != 0 {
            return 2;
        }
        let t = std::thread::spawn(move || {
            let t0 = Instant::now();
            let st = wlock(id);
            let got = t0.elapsed();
            let w = write(id, 0, b"B");
            let u = unlock(id);
            (st, got, w, u)
        });
        sleep_ms(600); // longer than two liveness checks
        if t.is_finished() {
            return child_fail(3, "wlock went through while a sibling thread held rlock");
        }
        if read(id, 0, 1).unwrap() != b"x" {
            return child_fail(4, "data changed under the read lock");
        }
        let released = Instant::now();
        if unlock(id) != 0 {
            return 5;
        }
        let start = Instant::now();
        while !t.is_finished() {
            if start.elapsed() > SECS(3) {
                return child_fail(6, "wlock not granted after the read lock ended");
            }
            sleep_ms(1);
        }
        let (st, got, w, u) = t.join().unwrap();
        if st != 0 || w != 0 || u != 0 {
            return child_fail(7, &format!("wlock {st} write {w} unlock {u}"));
        }
        if released.elapsed() > SECS(1) || got < Duration::from_millis(550) {
            return child_fail(8, &format!("woken late or early: {got:?}"));
        }
        if read(id, 0, 1).unwrap() != b"B" {
            return 9;
        }
        0
    });
    c.expect_success(SECS(10), "sibling-thread rlock/wlock");
}

/// Nested rlock inside wlock: the hold stays a write hold (writes go through), the
/// inner unlock releases nothing, the outer one releases the write lock; one more
/// unlock is an error. And a fresh process can then write at once.
#[test]
fn rlock_nested_in_wlock_keeps_the_write_hold_until_the_outer_unlock() {
    let _g = serial();
    let id = must_init("1");
    must_write(id, 0, b"x");
    let mut c = fork_child(move || {
        if wlock(id) != 0 || rlock(id) != 0 {
            return 2;
        }
        if write(id, 0, b"1") != 0 {
            return child_fail(3, "write under wlock+rlock refused");
        }
        if unlock(id) != 0 {
            return 4;
        }
        // Still the write lock: another process must not get in.
        if write_in_child(id, Duration::from_millis(500)).is_some() {
            return child_fail(5, "inner unlock released the write lock");
        }
        if write(id, 0, b"2") != 0 || unlock(id) != 0 {
            return 6;
        }
        if unlock(id) != sa::SHAREDAREA_E_LOCK_MISUSE {
            return child_fail(7, "extra unlock accepted");
        }
        match write_in_child(id, SECS(2)) {
            Some(t) if t < Duration::from_millis(300) => 0,
            other => child_fail(8, &format!("write after the outer unlock: {other:?}")),
        }
    });
    c.expect_success(SECS(10), "nested rlock in wlock");
}

// ---------------------------------------------------------------------------------------
// The state word.

/// The 17-bit generation wraps to 0 without disturbing the flags or the writer field,
/// and every write acquisition (including at the wrap) changes it: what the optimistic
/// readers rely on (with the update count). A dead writer's recovery takes a new
/// generation too.
#[test]
fn generation_changes_on_every_acquisition_and_wraps_cleanly() {
    let _g = serial();
    let name = ShmName::new("rev-gen");
    let id = must_init(&format!("name={},size=4096", name.0));
    must_write(id, 0, b"a");
    let view = ControlView::open(&name.0);
    let st = view.state();
    assert_eq!(st.load(Ordering::SeqCst) & WRITER_MASK, 0);
    // Put the generation just below the wrap (no writer, no flags).
    st.store(0x1_FFFE * GEN_ONE, Ordering::SeqCst); // generation 2^17 - 2
    let mut prev = st.load(Ordering::SeqCst);
    for k in 0..4u8 {
        must_write(id, 0, &[k]);
        let now = st.load(Ordering::SeqCst);
        assert_eq!(now & WRITER_MASK, 0, "writer left behind");
        assert_eq!(
            now / GEN_ONE,
            (prev / GEN_ONE).wrapping_add(1) & 0x1_FFFF,
            "{prev:#x} -> {now:#x}"
        );
        assert_eq!(read(id, 0, 1).unwrap(), [k]);
        prev = now;
    }
    // A writer that dies holding the lock: after recovery the generation differs from
    // the one before it acquired.
    let before = st.load(Ordering::SeqCst);
    let sc = Scratch::new(2);
    let mut dead = lock_holder(id, true, &sc, 0);
    dead.kill_and_reap();
    assert!(write_in_child(id, SECS(3)).is_some());
    let after = st.load(Ordering::SeqCst);
    assert_ne!(after / GEN_ONE, before / GEN_ONE);
    assert_eq!(after & WRITER_MASK, 0);
}

// ---------------------------------------------------------------------------------------
// Recovery: every dead holder cleared within one second in all.

/// 64 processes holding the read lock and a writer waiting for them are SIGKILLed
/// together (the OOM killer, `kill -9` of a process group): the next write waits at
/// most one second (SPEC §2), not one check interval per dead process.
#[test]
fn sixty_four_dead_readers_and_a_dead_writer_are_cleared_within_a_second() {
    let _g = serial();
    let id = must_init("1");
    must_write(id, 0, b"x");
    const READERS: usize = 64;
    let sc = Scratch::new(READERS + 2);
    let rec0 = info(id).recoveries;
    let mut kids = Vec::new();
    for i in 0..READERS {
        kids.push(lock_holder(id, false, &sc, i));
    }
    // A writer that has installed itself and waits for the readers to drain.
    let mut writer = fork_child(move || if wlock(id) == 0 { 0 } else { 2 });
    let t = Instant::now();
    while lock_info(id).writer_pid == 0 && t.elapsed() < SECS(5) {
        sleep_ms(1);
    }
    sleep_ms(50);
    for k in kids.iter().chain(std::iter::once(&writer)) {
        k.signal(libc::SIGKILL);
    }
    for k in kids.iter_mut() {
        k.kill_and_reap();
    }
    writer.kill_and_reap();
    let took = write_in_child(id, SECS(5)).expect("a write after the holders died");
    eprintln!("next write after 65 holders died: {took:?}");
    assert!(
        took <= SECS(1),
        "the next write waited {took:?} (SPEC §2: at most one second in all)"
    );
    assert!(
        info(id).recoveries > rec0,
        "the recoveries were not counted"
    );
    let li = lock_info(id);
    assert_eq!(li.readers, 0, "a dead reader's count is left");
}

/// A thread that exits holding the lock releases it; the next taker is told.
#[test]
fn a_thread_that_exits_holding_the_lock_releases_it() {
    let _g = serial();
    let id = must_init("1");
    must_write(id, 0, b"x");
    for write_lock in [true, false] {
        let mut c = fork_child(move || {
            let t = std::thread::spawn(move || if write_lock { wlock(id) } else { rlock(id) });
            if t.join().unwrap() != 0 {
                return 2;
            }
            // The thread is gone: another process writes at once.
            if write_in_child(id, SECS(2)).is_none() {
                return child_fail(3, "a lock held by an exited thread still blocks writers");
            }
            // And the next taker learns that a holder went away.
            let st = wlock(id);
            if st != sa::SHAREDAREA_RECOVERED {
                return child_fail(4, &format!("wlock after the exit: {st}, not RECOVERED"));
            }
            if unlock(id) != 0 {
                return 5;
            }
            0
        });
        c.expect_success(SECS(10), "thread exit with a lock held");
    }
}

// ---------------------------------------------------------------------------------------
// One lock per object.

/// The same `name=` object attached twice in one process: two ids, one object — one
/// lock, one slot, one record of this thread's holds.
#[test]
fn one_object_attached_twice_shares_its_lock_and_holds() {
    let _g = serial();
    let name = ShmName::new("twice");
    let mut c = fork_child(move || {
        let a = init(&format!("name={},size=4096", name.0));
        let b = init(&format!("name={}", name.0));
        if a < 0 || b < 0 || a == b {
            return child_fail(2, &format!("ids {a} {b}: {}", last_error()));
        }
        if init(&format!("name={},size=8192", name.0)) != sa::SHAREDAREA_E_INVALID_SPEC {
            return child_fail(3, "a second attach with another size was accepted");
        }
        if wlock(a) != 0 || write(b, 0, b"via b") != 0 || unlock(a) != 0 {
            return child_fail(4, &format!("wlock a, write b: {}", last_error()));
        }
        if read(a, 0, 5).unwrap() != b"via b" {
            return child_fail(5, "one object, two different contents");
        }
        if rlock(b) != 0 || read(a, 0, 1).is_err() {
            return child_fail(6, "rlock b, read a");
        }
        if write(a, 0, b"x") != sa::SHAREDAREA_E_LOCK_MISUSE {
            return child_fail(7, "write through a under b's read lock was not refused");
        }
        if unlock(a) != 0 || unlock(b) != sa::SHAREDAREA_E_LOCK_MISUSE {
            return child_fail(8, "unlock through the other id");
        }
        0
    });
    c.expect_success(SECS(10), "one object, two ids");
}

// ---------------------------------------------------------------------------------------
// Bounded and interruptible waits; ownership at unlock.

/// A stopped holder (SIGSTOP) blocks plain waits, but a timed wait ends on time,
/// naming the holder's pid; a zero timeout is one try.
#[test]
fn timed_locks_end_on_time_and_name_the_holder() {
    let _g = serial();
    let id = must_init("1");
    let sc = Scratch::new(2);
    let mut holder = lock_holder(id, true, &sc, 0);
    holder.signal(libc::SIGSTOP);
    let t = Instant::now();
    assert_eq!(wlock_timeout(id, 300), sa::SHAREDAREA_E_TIMED_OUT);
    let took = t.elapsed();
    let e = last_error();
    assert!(
        took >= Duration::from_millis(290) && took < SECS(3),
        "took {took:?}"
    );
    assert!(
        e.starts_with(&format!(
            "sharedarea_wlock_timeout: area {id}: timed out after 0.3 s"
        )) && e.contains(&format!("pid {}", holder.pid)),
        "{e}"
    );
    let t = Instant::now();
    assert_eq!(rlock_timeout(id, 0), sa::SHAREDAREA_E_TIMED_OUT);
    assert!(t.elapsed() < Duration::from_millis(100));
    assert_eq!(wlock_timeout(id, -2), sa::SHAREDAREA_E_INVALID_ARGUMENT);
    assert_eq!(
        unsafe { sa::sharedarea_held(id) },
        0,
        "a timed-out lock is held"
    );
    holder.signal(libc::SIGCONT);
    holder.kill_and_reap();
    assert_eq!(wlock_timeout(id, 2000), sa::SHAREDAREA_RECOVERED);
    assert_eq!(unsafe { sa::sharedarea_held(id) }, 2);
    assert_eq!(unlock(id), 0);
}

/// A wait in slices with an absolute deadline (as the Perl and Python bindings
/// wait, running their signal handlers between slices): each slice ends on its
/// own deadline, and the last one's timeout text counts the whole wait from
/// `since`, not from the last slice; the detail comes without the function name.
#[test]
fn sliced_lock_waits_report_the_whole_wait_when_they_time_out() {
    let _g = serial();
    let id = must_init("1");
    let sc = Scratch::new(2);
    let mut holder = lock_holder(id, true, &sc, 0);
    let since = now_ns() as i64;
    let deadline = since + 600_000_000;
    let mut slices = 0;
    let st = loop {
        let slice_end = (now_ns() as i64 + 200_000_000).min(deadline);
        let st = unsafe { sa::sharedarea_wlock_until(id, slice_end, since) };
        slices += 1;
        if st != sa::SHAREDAREA_E_TIMED_OUT || slice_end == deadline || slices > 50 {
            break st;
        }
    };
    let took = Duration::from_nanos(now_ns() - since as u64);
    assert_eq!(st, sa::SHAREDAREA_E_TIMED_OUT);
    assert!(slices >= 3, "{slices} slices");
    assert!(
        took >= Duration::from_millis(590) && took < SECS(3),
        "took {took:?}"
    );
    let e = last_error();
    let detail = unsafe { CStr::from_ptr(sa::sharedarea_last_error_detail()) }
        .to_string_lossy()
        .into_owned();
    assert_eq!(e, format!("sharedarea_wlock_until: {detail}"));
    let lead = format!(
        "area {id}: timed out after 0.6 s waiting for the lock: the write lock is held by pid {} (for at least ",
        holder.pid
    );
    assert!(detail.starts_with(&lead), "{detail}");
    let waited: f64 = detail[lead.len()..]
        .split(' ')
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no figure in {detail}"));
    assert!(
        waited >= 0.59,
        "the text counts {waited} s, not the whole wait: {detail}"
    );
    // a read lock the same way; bad arguments change nothing
    let st = unsafe { sa::sharedarea_rlock_until(id, now_ns() as i64 + 50_000_000, 0) };
    assert_eq!(st, sa::SHAREDAREA_E_TIMED_OUT);
    assert_eq!(
        unsafe { sa::sharedarea_rlock_until(id, -1, 0) },
        sa::SHAREDAREA_E_INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { sa::sharedarea_held(id) },
        0,
        "a timed-out lock is held"
    );
    holder.kill_and_reap();
    assert_eq!(
        unsafe { sa::sharedarea_wlock_until(id, now_ns() as i64 + 2_000_000_000, 0) },
        sa::SHAREDAREA_RECOVERED
    );
    assert_eq!(unlock(id), 0);
    assert_eq!(
        unsafe { sa::sharedarea_wlock_until(id, 0, 0) },
        0,
        "no deadline: taken at once when free"
    );
    assert_eq!(unlock(id), 0);
}

extern "C" fn on_alarm(_: i32) {}

/// A signal ends an interruptible wait (INTERRUPTED, nothing held); the plain
/// `wlock` resumes by itself.
#[test]
fn a_signal_interrupts_a_blocked_timed_lock_and_leaves_nothing_held() {
    let _g = serial();
    let id = must_init("1");
    let sc = Scratch::new(3);
    let mut holder = {
        let sc = &sc;
        fork_child(move || {
            if wlock(id) != 0 {
                return 2;
            }
            sc.set(0, 1);
            while sc.get(1) == 0 {
                sleep_ms(1);
            }
            if unlock(id) != 0 {
                return 3;
            }
            0
        })
    };
    assert!(sc.wait_for(0, 1, SECS(5)));
    let mut c = {
        let sc = &sc;
        fork_child(move || {
            unsafe {
                let mut sa_: libc::sigaction = std::mem::zeroed();
                sa_.sa_sigaction = on_alarm as extern "C" fn(i32) as usize;
                libc::sigaction(libc::SIGALRM, &sa_, std::ptr::null_mut());
            }
            sc.set(2, 1);
            let t = Instant::now();
            let st = wlock_timeout(id, -1);
            if st != sa::SHAREDAREA_E_INTERRUPTED || unsafe { sa::sharedarea_held(id) } != 0 {
                return child_fail(2, &format!("wlock_timeout: {st}: {}", last_error()));
            }
            if t.elapsed() > SECS(5) {
                return child_fail(3, "the signal was not noticed promptly");
            }
            0
        })
    };
    // Signal it until it ends: a signal that lands while the waiter is between
    // two sleeps runs its handler without interrupting the wait (as with any
    // EINTR-based wait); the next one finds it asleep.
    assert!(sc.wait_for(2, 1, SECS(5)));
    let t = Instant::now();
    while c.is_running() && t.elapsed() < SECS(5) {
        sleep_ms(150);
        c.signal(libc::SIGALRM);
    }
    c.expect_success(SECS(10), "interrupted lock");
    sc.set(1, 1);
    holder.expect_success(SECS(5), "holder");
}

/// Unlock checks ownership: a lock taken from this process (here by scribbling the
/// state word) is an error at unlock and is left alone, never released.
#[test]
fn unlock_of_a_lock_no_longer_held_is_an_error_and_releases_nothing() {
    let _g = serial();
    let name = ShmName::new("stolen");
    let id = must_init(&format!("name={},size=4096", name.0));
    let view = ControlView::open(&name.0);
    assert_eq!(wlock(id), 0);
    let s = view.state().load(Ordering::SeqCst);
    // Someone else's acquisition now (another generation, slot 7).
    let other = ((s & !WRITER_MASK).wrapping_add(GEN_ONE) & !WRITER_MASK & !0x6000) | 8;
    view.state().store(other, Ordering::SeqCst);
    assert_eq!(unlock(id), sa::SHAREDAREA_E_LOCK_MISUSE);
    assert!(
        last_error().contains("taken from this process"),
        "{}",
        last_error()
    );
    assert_eq!(
        view.state().load(Ordering::SeqCst),
        other,
        "released someone else's lock"
    );
    view.state().store(s & !WRITER_MASK, Ordering::SeqCst);
    // A read count cleared under us: unlock refuses rather than wrapping it.
    assert_eq!(rlock(id), 0);
    let mine = view
        .slot_of(std::process::id())
        .expect("this process's slot");
    view.readers(mine).store(0, Ordering::SeqCst);
    assert_eq!(unlock(id), sa::SHAREDAREA_E_LOCK_MISUSE);
    assert_eq!(
        view.readers(mine).load(Ordering::SeqCst),
        0,
        "a read count wrapped"
    );
}

// ---------------------------------------------------------------------------------------
// A scribbled control block never hangs a caller.

#[test]
fn scribbled_slots_and_writer_fields_are_recovered() {
    let _g = serial();
    let name = ShmName::new("scribble");
    let id = must_init(&format!("name={},size=4096", name.0));
    must_write(id, 0, b"x");
    let view = ControlView::open(&name.0);
    // A slot nobody owns that counts readers.
    view.readers(300).store(5, Ordering::SeqCst);
    view.hwm().fetch_max(301, Ordering::SeqCst);
    let took = write_in_child(id, SECS(3));
    assert!(
        took.is_some_and(|t| t <= SECS(1)),
        "pid 0, readers 5: {took:?}"
    );
    assert_eq!(view.readers(300).load(Ordering::SeqCst), 0);
    // A writer field naming this (live) process's slot, which holds no write lock.
    let mine = view
        .slot_of(std::process::id())
        .expect("this process's slot");
    let s = view.state().load(Ordering::SeqCst);
    view.state()
        .store((s & !WRITER_MASK) | (mine as u32 + 1), Ordering::SeqCst);
    let took = write_in_child(id, SECS(3));
    assert!(
        took.is_some_and(|t| t <= SECS(1)),
        "live slot named: {took:?}"
    );
    // A writer field naming no slot at all.
    let s = view.state().load(Ordering::SeqCst);
    view.state()
        .store((s & !WRITER_MASK) | (SLOTS as u32 + 100), Ordering::SeqCst);
    let took = write_in_child(id, SECS(3));
    assert!(took.is_some_and(|t| t <= SECS(1)), "no such slot: {took:?}");
    assert_eq!(read(id, 0, 1).unwrap(), b"w");
}

// ---------------------------------------------------------------------------------------
// Hostile hosts. These need root (namespaces, mounts, setuid); they skip otherwise.

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// In a forked child with its own mount namespace (and, with `new_pid_ns`, its own
/// pid namespace: `body` then runs as pid 1 of it), with /proc remounted by
/// `remount_proc`. Returns the child's exit code (None: namespaces not permitted).
fn in_namespaces(new_pid_ns: bool, remount_proc: fn() -> bool, body: fn() -> i32) -> Option<i32> {
    let mut c = fork_child(move || unsafe {
        let flags = libc::CLONE_NEWNS | if new_pid_ns { libc::CLONE_NEWPID } else { 0 };
        if libc::unshare(flags) != 0 {
            return 77;
        }
        let inner = || {
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
                || !remount_proc()
            {
                return 77;
            }
            body()
        };
        if !new_pid_ns {
            return inner();
        }
        let mut g = fork_child(inner);
        match g.wait(SECS(60)) {
            Ok(Exit::Code(c)) => c,
            other => child_fail(90, &format!("namespace child: {other:?}")),
        }
    });
    match c.wait(SECS(90)) {
        Ok(Exit::Code(77)) => None,
        Ok(Exit::Code(code)) => Some(code),
        other => panic!("namespace test child: {other:?}"),
    }
}

fn proc_hidepid() -> bool {
    unsafe {
        libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            0,
            c"hidepid=2".as_ptr() as *const c_void,
        ) == 0
    }
}

fn no_proc() -> bool {
    unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            c"/proc".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        ) == 0
    }
}

/// Drops to uid/gid 65534 and makes the process non-dumpable: what a root master's
/// setuid workers look like.
fn become_setuid_worker() -> bool {
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
            && libc::setgid(65534) == 0
            && libc::setuid(65534) == 0
    }
}

/// The scenario every hostile host must pass: a live holder that others cannot see
/// in /proc keeps its lock (the contender waits, and is not told RECOVERED); a
/// holder killed with the lock is recovered within a second.
fn live_holder_kept_dead_holder_freed(hidden_check: bool) -> i32 {
    let id = init("1");
    if id < 0 {
        return child_fail(10, &last_error());
    }
    let sc = Scratch::new(4);
    let scr: &'static Scratch = unsafe { &*(&sc as *const Scratch) };
    let mut holder = fork_child(move || {
        if !become_setuid_worker() {
            return child_fail(11, "setuid");
        }
        if wlock(id) != 0 {
            return 12;
        }
        scr.set(0, std::process::id() as u64);
        sleep_ms(700);
        if write(id, 0, b"h") != 0 {
            return 13;
        }
        // Said before the unlock: the contender may run the moment it is done.
        scr.set(1, 1);
        if unlock(id) != 0 {
            return 13;
        }
        loop {
            unsafe { libc::pause() };
        }
    });
    let mut contender = fork_child(move || {
        if !become_setuid_worker() {
            return child_fail(14, "setuid");
        }
        while scr.get(0) == 0 {
            sleep_ms(1);
        }
        let hpid = scr.get(0);
        if hidden_check && std::fs::read_to_string(format!("/proc/{hpid}/stat")).is_ok() {
            return child_fail(15, "the holder is visible in /proc: the test tests nothing");
        }
        let t = Instant::now();
        let st = wlock(id);
        let took = t.elapsed();
        if st != 0 {
            return child_fail(16, &format!("wlock while a live holder held: {st}"));
        }
        if scr.get(1) != 1 || took < Duration::from_millis(300) {
            return child_fail(
                17,
                &format!("took the lock from a live holder after {took:?}"),
            );
        }
        // Now die holding it.
        scr.set(2, 1);
        loop {
            unsafe { libc::pause() };
        }
    });
    let t = Instant::now();
    while scr.get(2) == 0 && t.elapsed() < SECS(30) {
        sleep_ms(1);
    }
    if scr.get(2) == 0 {
        let li = lock_info(id);
        holder.kill_and_reap();
        let code = contender.wait(SECS(2));
        return child_fail(
            18,
            &format!(
                "contender never got the lock: {code:?}; holder unlocked: {}; writer pid {} readers {} processes {} recoveries {}",
                scr.get(1),
                li.writer_pid,
                li.readers,
                li.processes,
                li.recoveries
            ),
        );
    }
    contender.kill_and_reap();
    let mut next = fork_child(move || {
        if !become_setuid_worker() {
            return 19;
        }
        let t = Instant::now();
        let st = wlock(id);
        if st != sa::SHAREDAREA_RECOVERED || t.elapsed() > SECS(1) {
            return child_fail(
                20,
                &format!("wlock after the holder died: {st} after {:?}", t.elapsed()),
            );
        }
        0
    });
    let r = match next.wait(SECS(5)) {
        Ok(Exit::Code(c)) => c,
        other => child_fail(21, &format!("{other:?}")),
    };
    holder.kill_and_reap();
    r
}

#[test]
fn hidepid_and_setuid_nondumpable_workers_never_lose_a_live_lock() {
    let _g = serial();
    if !is_root() {
        eprintln!("SKIP: needs root for namespaces and setuid");
        return;
    }
    match in_namespaces(true, proc_hidepid, || {
        live_holder_kept_dead_holder_freed(true)
    }) {
        None => eprintln!("SKIP: namespaces not permitted here"),
        Some(code) => assert_eq!(code, 0, "hidepid=2 + setuid non-dumpable workers"),
    }
}

#[test]
fn without_proc_a_live_lock_is_kept_and_a_dead_one_freed() {
    let _g = serial();
    if !is_root() {
        eprintln!("SKIP: needs root for namespaces and setuid");
        return;
    }
    match in_namespaces(false, no_proc, || {
        if std::path::Path::new("/proc/self/stat").exists() {
            return child_fail(30, "/proc is still there");
        }
        live_holder_kept_dead_holder_freed(false)
    }) {
        None => eprintln!("SKIP: namespaces not permitted here"),
        Some(code) => assert_eq!(code, 0, "no /proc"),
    }
}

/// A process in another pid namespace shares a `name=` area: its pid means nothing
/// here, but its lock is kept while it lives and recovered when it dies.
#[test]
fn a_holder_in_another_pid_namespace_is_kept_alive_and_recovered_when_dead() {
    let _g = serial();
    if !is_root() {
        eprintln!("SKIP: needs root for namespaces");
        return;
    }
    let name = ShmName::new("pidns");
    let id = must_init(&format!("name={},size=4096", name.0));
    let spec = format!("name={}", name.0);
    let sc = Scratch::new(2);
    let scr: &'static Scratch = unsafe { &*(&sc as *const Scratch) };
    let mut outer = fork_child(move || unsafe {
        if libc::unshare(libc::CLONE_NEWPID) != 0 {
            return 77;
        }
        let spec = spec.clone();
        let mut inner = fork_child(move || {
            // pid 1 of a new namespace, attaching the area afresh after exec-like reset
            let other = init(&spec);
            if other < 0 || wlock(other) != 0 {
                return child_fail(2, &last_error());
            }
            scr.set(0, 1);
            loop {
                libc::pause();
            }
        });
        scr.set(1, inner.pid as u64);
        let _ = inner.wait(SECS(60));
        0
    });
    if !sc.wait_for(0, 1, SECS(10)) {
        outer.kill_and_reap();
        eprintln!("SKIP: pid namespaces not permitted here");
        return;
    }
    // (The child attached its own id on the object its parent process had mapped.)
    let t = Instant::now();
    assert_eq!(
        wlock_timeout(id, 400),
        sa::SHAREDAREA_E_TIMED_OUT,
        "{}",
        last_error()
    );
    assert!(t.elapsed() >= Duration::from_millis(390));
    // pid 1 of the namespace dies (and with it the namespace).
    unsafe { libc::kill(sc.get(1) as i32, libc::SIGKILL) };
    let t = Instant::now();
    assert_eq!(
        wlock_timeout(id, 3000),
        sa::SHAREDAREA_RECOVERED,
        "{}",
        last_error()
    );
    assert!(t.elapsed() <= SECS(1), "recovered after {:?}", t.elapsed());
    assert_eq!(unlock(id), 0);
    outer.expect_success(SECS(10), "namespace parent");
}
