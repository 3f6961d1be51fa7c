//! Chaos: six worker processes write a record in several parts under `wlock`,
//! check it under `rlock` and count with `inc64`, on an inherited area and on a
//! `name=` area each attaches by name, while the test SIGKILLs two or three of
//! them at once every few tens of milliseconds and starts new ones in their
//! place; odd workers also let threads take the lock and exit, some still
//! holding it (the storm itself: `common/storm.rs`). What must hold:
//!
//! * mutual exclusion: no torn record under `rlock` and no change while it is
//!   held, except a record torn by a writer killed mid-update (which the
//!   area's `writer_recovery_updates` explains);
//! * exact counters: every recorded increment is in the counter, and at most
//!   one per kill is in the counter but unrecorded;
//! * no operation waits longer than a second, none fails, and afterwards both
//!   areas' locks are free (no writer, no read locks).
//!
//! `cargo bench --bench soak` runs the same storm for a minute and reports it.

mod common;
#[path = "common/storm.rs"]
mod storm;

use std::time::Duration;

#[test]
fn kill_storm_keeps_mutual_exclusion_and_exact_counters() {
    let _g = common::serial();
    let out = storm::run(storm::Storm {
        workers: 6,
        run: Duration::from_secs(3),
        pause_ms: (20, 40),
    });
    eprintln!("chaos: {}", out.report());
    let bad = out.violations(Duration::from_secs(1));
    assert!(
        bad.is_empty(),
        "chaos: {}\n{}",
        bad.join("\n"),
        out.report()
    );
    assert!(
        out.kills >= 60,
        "the storm was too mild: {} kills",
        out.kills
    );
    assert!(
        out.recoveries > 0 && out.thread_exits_holding > 0,
        "no holder was ever recovered: {}",
        out.report()
    );
    for (i, ops) in out.ops_per_worker.iter().enumerate() {
        assert!(
            *ops >= 100,
            "worker slot {i} made little progress: {ops} ops"
        );
    }
    let done: i64 = out.counters.iter().sum();
    assert!(done >= 1000, "only {done} increments in all");
}
