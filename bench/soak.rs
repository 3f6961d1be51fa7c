//! Soak: the chaos test's kill-storm (`tests/common/storm.rs`) for a minute or
//! more, reported rather than asserted. Stops by itself.
//!
//!     cargo bench --bench soak                 # 60 s
//!     SOAK_SECS=600 cargo bench --bench soak   # ten minutes
//!
//! Prints operations, kills, recoveries, the longest wait, lost and unrecorded
//! increments and torn records (explained by a writer killed mid-update, or
//! not), and exits 1 if any promise broke.

#![allow(clippy::missing_safety_doc)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/storm.rs"]
mod storm;

use std::time::Duration;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = match std::env::var("SOAK_SECS") {
        Ok(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("soak: SOAK_SECS={s:?} is not a whole number of seconds");
            std::process::exit(2)
        }),
        Err(_) => 60,
    };
    let storm = storm::Storm {
        workers: 6,
        run: Duration::from_secs(secs.max(1)),
        pause_ms: (20, 40),
    };
    println!(
        "soak: {} workers on an inherited and a name= area for {secs} s, SIGKILLing 2-3 at once every {}-{} ms",
        storm.workers,
        storm.pause_ms.0,
        storm.pause_ms.0 + storm.pause_ms.1
    );
    let out = storm::run(storm);
    println!("soak: {}", out.report());
    println!(
        "soak: counters {:?}, recorded {:?}",
        out.counters, out.recorded
    );
    let bad = out.violations(Duration::from_secs(1));
    if bad.is_empty() {
        println!("soak: every promise held (bound 1 s)");
    } else {
        for b in &bad {
            println!("soak: BROKEN: {b}");
        }
        std::process::exit(1);
    }
}
