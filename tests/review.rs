//! Review of the cross-process lock (src/lock.rs): targeted tests for races and
//! recovery corners the other suites do not reach. Every blocking step runs in a
//! forked child with a bounded wait, so no test can hang `cargo test`.
//!
//! Some tests look at the control block directly: a `name=` area keeps it in the
//! first pages of its POSIX shm object (layout in src/control.rs: the state word at
//! offset 64, the slot high-water mark at 68, slot i at 256 + 64 i with pid at +0,
//! readers at +4, start time at +8).

mod common;
use common::*;

use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const SECS: fn(u64) -> Duration = Duration::from_secs;

const SLOTS: usize = 255;
const CONTROL_BYTES: usize = 256 + 64 * SLOTS;
/// A slot mark "being claimed or freed by process P" is RESERVED_BIT | P; this one
/// names pid 0x7FFF_FFFF, which no process has (pid_max is at most 2^22): the mark of
/// a reclaimer that was killed.
const RESERVED: u32 = u32::MAX;
const WRITER_MASK: u32 = 0xFF;
const GEN_ONE: u32 = 1 << 10;

/// The control block of a `name=` area, mapped a second time.
struct ControlView {
    base: *mut u8,
    len: usize,
}

unsafe impl Send for ControlView {}
unsafe impl Sync for ControlView {}

impl ControlView {
    fn open(name: &str) -> ControlView {
        let c = CString::new(name).unwrap();
        let fd = unsafe { libc::shm_open(c.as_ptr(), libc::O_RDWR, 0) };
        assert!(
            fd >= 0,
            "shm_open {name}: {}",
            std::io::Error::last_os_error()
        );
        let len = CONTROL_BYTES.div_ceil(page_size() as usize) * page_size() as usize;
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        close(fd);
        assert_ne!(p, libc::MAP_FAILED, "mmap control block");
        let v = ControlView {
            base: p as *mut u8,
            len,
        };
        assert_eq!(unsafe { std::slice::from_raw_parts(v.base, 6) }, b"SHAREA");
        v
    }
    fn word(&self, off: usize) -> &AtomicU32 {
        assert!(off + 4 <= CONTROL_BYTES);
        unsafe { &*(self.base.add(off) as *const AtomicU32) }
    }
    fn state(&self) -> &AtomicU32 {
        self.word(64)
    }
    fn hwm(&self) -> &AtomicU32 {
        self.word(68)
    }
    fn pid(&self, i: usize) -> &AtomicU32 {
        self.word(256 + 64 * i)
    }
    fn readers(&self, i: usize) -> &AtomicU32 {
        self.word(256 + 64 * i + 4)
    }
    /// (slot, pid, readers) of every slot below the high-water mark with readers != 0.
    fn busy_readers(&self) -> Vec<(usize, u32, u32)> {
        let hwm = (self.hwm().load(Ordering::SeqCst) as usize).min(SLOTS);
        (0..hwm)
            .filter_map(|i| {
                let r = self.readers(i).load(Ordering::SeqCst);
                (r != 0).then(|| (i, self.pid(i).load(Ordering::SeqCst), r))
            })
            .collect()
    }
}

impl Drop for ControlView {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.base as *mut c_void, self.len) };
    }
}

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

// ---------------------------------------------------------------------------------------
// 1. Two threads of one process racing to claim its reader slot.
//
// `Area::rlock` claims the slot (caching it in `Area::slot`) and increments `readers`
// in the slot it got; `Area::unlock` looks the slot up again with `my_slot()`. When two
// threads of a process that has no slot yet (a fresh process, or any forked child)
// call into the area at once, both miss the cache and both run `claim_slot`: the
// process gets two slots and the cache keeps the last one stored. A thread whose
// rlock went into the *other* slot then decrements the wrong slot at unlock: its own
// slot stays at readers = 1 for as long as the process lives (and the other wraps to
// u32::MAX), so every writer in every process waits forever.

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
// 2. A live holder whose main thread has exited.
//
// `process::is_dead` treats state 'Z' in /proc/PID/stat as dead. But when the main
// thread (the thread-group leader) of a multithreaded process exits, /proc/PID/stat
// shows 'Z' while the other threads keep running: the process is alive, and a lock one
// of its threads holds is "recovered" from under it: two writers inside at once.

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
// 3. A process killed inside `reclaim_if_dead`.
//
// Reclaiming a dead reader's slot is: CAS pid -> RESERVED_BIT | me, swap readers to
// 0, store pid 0. A process SIGKILLed between the CAS and the swap (any process can be
// the reclaimer: a writer draining, or a first-time caller in claim_slot) leaves the
// slot marked with readers != 0. Found in review: the mark used to be anonymous, so
// nobody could tell its maker had died and every writer drained that slot forever.
// Now the mark names the reclaimer, and a dead reclaimer's job is finished by the
// next one. The test builds exactly that state and checks SPEC §2's one-second bound.

#[test]
fn slot_left_reserved_by_a_killed_reclaimer_does_not_block_writers() {
    let _g = serial();
    let name = ShmName::new("rev-reserved");
    let id = must_init(&format!("name={},size=4096", name.0));
    must_write(id, 0, b"x");
    let view = ControlView::open(&name.0);
    // A slot well above any in use, inside the high-water mark.
    let i = 200;
    assert_eq!(view.pid(i).load(Ordering::SeqCst), 0);
    view.readers(i).store(1, Ordering::SeqCst); // the dead reader's count
    view.pid(i).store(RESERVED, Ordering::SeqCst); // the reclaimer's CAS, then SIGKILL
    view.hwm().fetch_max(i as u32 + 1, Ordering::SeqCst);
    let wrote = write_in_child(id, SECS(3));
    assert!(
        wrote.is_some(),
        "a write still blocked after 3 s by a slot a killed reclaimer left RESERVED \
         (SPEC §2: a dead holder blocks others for at most one second)"
    );
}

// ---------------------------------------------------------------------------------------
// 4. Guarantees that hold (pinned).

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

/// The 22-bit generation wraps to 0 without disturbing the flags or the writer field,
/// and every write acquisition (including at the wrap) changes it: what the optimistic
/// readers rely on. A dead writer's recovery keeps its (already bumped) generation, so
/// a reader that started before that writer still sees a change.
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
    st.store(0x3F_FFFE * GEN_ONE, Ordering::SeqCst); // generation 2^22 - 2
    let mut prev = st.load(Ordering::SeqCst);
    for k in 0..4u8 {
        must_write(id, 0, &[k]);
        let now = st.load(Ordering::SeqCst);
        assert_eq!(now & WRITER_MASK, 0, "writer left behind");
        assert_eq!(
            now >> 10,
            (prev >> 10).wrapping_add(1) & 0x3F_FFFF,
            "{prev:#x} -> {now:#x}"
        );
        assert_eq!(read(id, 0, 1).unwrap(), [k]);
        prev = now;
    }
    // A writer that dies holding the lock: after recovery the generation differs from
    // the one before it acquired.
    let before = st.load(Ordering::SeqCst);
    let sc = Scratch::new(2);
    let mut dead = {
        let sc = &sc;
        fork_child(move || {
            if wlock(id) != 0 {
                return 2;
            }
            sc.set(0, 1);
            loop {
                unsafe { libc::pause() };
            }
        })
    };
    assert!(sc.wait_for(0, 1, SECS(5)));
    dead.kill_and_reap();
    assert!(write_in_child(id, SECS(3)).is_some());
    let after = st.load(Ordering::SeqCst);
    assert_ne!(after >> 10, before >> 10);
    assert_eq!(after & WRITER_MASK, 0);
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
