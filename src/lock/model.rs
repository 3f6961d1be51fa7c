//! A model test of the lock's state machine: the lock's own functions
//! (`lock_exclusive`, `lock_shared`, `int_op`, `optimistic`, the unlocks, and
//! every wait loop behind them), run under the loom model checker, which tries
//! the threads' interleavings and the values each atomic load may return under
//! the C++/Rust memory model (bounded by `LOOM_MAX_PREEMPTIONS`, 2 by default).
//!
//! Built only by `RUSTFLAGS="--cfg loom" cargo test --lib lock::model` (what
//! `scripts/test-all` runs, in its own target directory). Under that cfg
//! `crate::sync` hands the lock loom's atomics (its spins become yields),
//! `futex::wait` sleeps on a loom condition variable until a `futex::wake_all`
//! (without a timeout: a lost wake-up is a deadlock the checker reports), and
//! the block holds 3 slots. What the model does not cover: processes that die
//! (liveness tokens, recovery: the holder checks are off in the model), slotless
//! processes, timed waits.
//!
//! What it checks, each in every explored interleaving:
//! * a write section excludes every other write and read section (the data they
//!   touch is a loom `UnsafeCell`: two sections overlapping, or one not ordered
//!   after the other by happens-before, fails the run);
//! * no integer operation runs inside a read- or write-locked section, and every
//!   one counts (three-way exclusion of integer operations, the read-lock gate
//!   and the writer);
//! * an optimistic read never accepts a torn value (the writer's
//!   `fence(Release)` after taking the lock against the reader's
//!   `fence(Acquire)` after copying);
//! * unlocking a lock one no longer holds is refused, and releases nobody's.

use std::sync::Arc;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU64};
use loom::thread;

use super::*;
use crate::control::Control;

/// Runs `f` under the model checker, bounded by `LOOM_MAX_PREEMPTIONS` (2 when
/// unset). `LOOM_DEBUG=1`: loom's own defaults (no bound) and its tracing
/// (`LOOM_LOG=trace LOOM_LOCATION=1` show every atomic access of a failing run).
fn model(f: impl Fn() + Sync + Send + 'static) {
    if std::env::var_os("LOOM_DEBUG").is_some() {
        return loom::model(f);
    }
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

fn lock(ctl: &Control) -> Lock<'_> {
    Lock { ctl, tokens: None }
}

/// A block with `n` claimed slots, shared by the model's threads.
fn block(n: u32) -> Arc<Control> {
    Arc::from(Control::for_model(n))
}

fn wlock(ctl: &Control, slot: u32) -> u32 {
    match lock_exclusive(lock(ctl), Me::Slot(slot), Patience::FOREVER) {
        Ok(Acquired {
            taken: Taken::Exclusive(a),
            recovered: false,
        }) => a,
        other => panic!("wlock: {other:?}"),
    }
}

fn rlock(ctl: &Control, slot: u32) {
    match lock_shared(lock(ctl), Me::Slot(slot), Patience::FOREVER) {
        Ok(Acquired {
            taken: Taken::Shared(s),
            recovered: false,
        }) => assert_eq!(s, slot),
        other => panic!("rlock: {other:?}"),
    }
}

/// What `Area::count_update` does under the write lock.
fn count_update(ctl: &Control) {
    let u = &ctl.updates.updates;
    u.store(u.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
}

/// A record written in two parts under the write lock, read under the read lock.
struct Record(UnsafeCell<[u64; 2]>);

// SAFETY: accessed only inside lock sections; loom's UnsafeCell itself reports
// any access that is not ordered after a conflicting one.
unsafe impl Sync for Record {}

impl Record {
    fn write(&self, v: u64) {
        self.0.with_mut(|p| {
            // SAFETY: under the write lock (what the model checks).
            unsafe {
                (*p)[0] = v;
                (*p)[1] = v;
            }
        })
    }
    fn read(&self) -> [u64; 2] {
        // SAFETY: under a lock (what the model checks).
        self.0.with(|p| unsafe { *p })
    }
}

#[test]
fn a_writer_excludes_writers_and_readers() {
    model(|| {
        let ctl = block(3);
        let rec = Arc::new(Record(UnsafeCell::new([0; 2])));
        let writers: Vec<_> = (0..2u32)
            .map(|slot| {
                let (ctl, rec) = (ctl.clone(), rec.clone());
                thread::spawn(move || {
                    let a = wlock(&ctl, slot);
                    rec.write(slot as u64 + 1);
                    count_update(&ctl);
                    unlock_exclusive(&ctl, a).expect("unlock of a held write lock");
                })
            })
            .collect();
        rlock(&ctl, 2);
        let [x, y] = rec.read();
        assert_eq!(x, y, "a read-locked section saw a write in progress");
        unlock_shared(&ctl, 2).expect("unlock of a held read lock");
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(ctl.updates.updates.load(Ordering::Relaxed), 2);
        assert_eq!(ctl.lock.state.load(Ordering::Relaxed) & WRITER_MASK, 0);
        assert_eq!(ctl.lock.rgate.load(Ordering::Relaxed) & GATE_COUNT, 0);
    });
}

#[test]
fn readers_share_and_a_writer_waits_for_both() {
    model(|| {
        let ctl = block(3);
        let rec = Arc::new(Record(UnsafeCell::new([0; 2])));
        let readers: Vec<_> = (0..2u32)
            .map(|slot| {
                let (ctl, rec) = (ctl.clone(), rec.clone());
                thread::spawn(move || {
                    rlock(&ctl, slot);
                    let [x, y] = rec.read();
                    assert_eq!(x, y, "a read-locked section saw a write in progress");
                    unlock_shared(&ctl, slot).expect("unlock of a held read lock");
                })
            })
            .collect();
        let a = wlock(&ctl, 2);
        rec.write(7);
        unlock_exclusive(&ctl, a).expect("unlock of a held write lock");
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(rec.read(), [7, 7]);
    });
}

#[test]
fn integer_operations_never_run_inside_a_locked_section() {
    model(|| {
        let ctl = block(3);
        let counter = Arc::new(AtomicU64::new(0));
        let int = {
            let (ctl, counter) = (ctl.clone(), counter.clone());
            thread::spawn(move || {
                // What `Area::add_int` runs: one atomic add as slot 0's operation.
                let v = int_op(lock(&ctl), 0, || {
                    counter.fetch_add(1, Ordering::Relaxed) + 1
                });
                assert_eq!(v, 1);
            })
        };
        let reader = {
            let (ctl, counter) = (ctl.clone(), counter.clone());
            thread::spawn(move || {
                rlock(&ctl, 1);
                let before = counter.load(Ordering::Relaxed);
                thread::yield_now();
                let after = counter.load(Ordering::Relaxed);
                assert_eq!(before, after, "an integer operation ran inside a read lock");
                unlock_shared(&ctl, 1).expect("unlock of a held read lock");
            })
        };
        let a = wlock(&ctl, 2);
        let before = counter.load(Ordering::Relaxed);
        thread::yield_now();
        let after = counter.load(Ordering::Relaxed);
        assert_eq!(
            before, after,
            "an integer operation ran inside a write lock"
        );
        unlock_exclusive(&ctl, a).expect("unlock of a held write lock");
        int.join().unwrap();
        reader.join().unwrap();
        assert_eq!(counter.load(Ordering::Relaxed), 1);
        // The operation counted its update in its slot, and left no count in progress.
        let ints = ctl.slots[0].ints.load(Ordering::Relaxed);
        assert_eq!(ints & INT_OPS_MASK, 0);
        assert_eq!(ints >> crate::control::INT_OPS_BITS, 1);
    });
}

#[test]
fn an_optimistic_read_never_accepts_a_torn_value() {
    model(|| {
        let ctl = block(2);
        // The area's bytes: two words, stored and loaded with relaxed atomics as
        // `seqcopy::store` and `seqcopy::load` do.
        let data = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let writer = {
            let (ctl, data) = (ctl.clone(), data.clone());
            thread::spawn(move || {
                for v in 1..=2 {
                    let a = wlock(&ctl, 0);
                    data[0].store(v, Ordering::Relaxed);
                    data[1].store(v, Ordering::Relaxed);
                    count_update(&ctl);
                    unlock_exclusive(&ctl, a).expect("unlock of a held write lock");
                }
            })
        };
        let got = optimistic(&ctl, || {
            [
                data[0].load(Ordering::Relaxed),
                data[1].load(Ordering::Relaxed),
            ]
        });
        if let Some([x, y]) = got {
            assert_eq!(x, y, "an optimistic read accepted a torn value");
        }
        writer.join().unwrap();
    });
}

#[test]
fn unlocking_a_lock_no_longer_held_is_refused() {
    model(|| {
        let ctl = block(2);
        let rec = Arc::new(Record(UnsafeCell::new([0; 2])));
        // Set by the other thread once it holds the write lock; by this one once
        // it has tried its stale unlocks.
        let held = Arc::new(AtomicBool::new(false));
        let tried = Arc::new(AtomicBool::new(false));
        let a = wlock(&ctl, 0);
        rec.write(1);
        let other = {
            let (ctl, rec) = (ctl.clone(), rec.clone());
            let (held, tried) = (held.clone(), tried.clone());
            thread::spawn(move || {
                let b = wlock(&ctl, 1);
                held.store(true, Ordering::SeqCst);
                while !tried.load(Ordering::SeqCst) {
                    thread::yield_now();
                }
                rec.write(2);
                unlock_exclusive(&ctl, b).expect("unlock of a held write lock");
            })
        };
        unlock_exclusive(&ctl, a).expect("unlock of a held write lock");
        while !held.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        // The other thread's lock is held now: our stale unlocks are refused
        // and leave it held (else its unlock above fails).
        assert_eq!(unlock_exclusive(&ctl, a), Err(Stolen));
        assert_eq!(unlock_shared(&ctl, 0), Err(Stolen));
        tried.store(true, Ordering::SeqCst);
        other.join().unwrap();
        rlock(&ctl, 0);
        assert_eq!(rec.read(), [2, 2]);
        unlock_shared(&ctl, 0).expect("unlock of a held read lock");
        assert_eq!(unlock_shared(&ctl, 0), Err(Stolen));
        assert_eq!(ctl.lock.rgate.load(Ordering::Relaxed) & GATE_COUNT, 0);
        assert_eq!(ctl.lock.state.load(Ordering::Relaxed) & WRITER_MASK, 0);
    });
}
