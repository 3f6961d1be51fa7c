//! The atomics and pauses the lock is built from: std's in every build, and
//! loom's in the lock's model test (`lock::model`, compiled only by
//! `cargo test --lib` with `RUSTFLAGS="--cfg loom"`), so that test runs the
//! lock's real code under a model checker. Normal builds get std's items
//! unchanged (re-exports and `#[inline(always)]` wrappers): no change to the
//! code they generate.

#[cfg(all(loom, test))]
pub use loom::sync::atomic;
#[cfg(not(all(loom, test)))]
pub use std::sync::atomic;

/// A busy-wait hint (in the model: a yield, so the checker runs the others).
#[inline(always)]
pub fn spin_loop() {
    #[cfg(not(all(loom, test)))]
    std::hint::spin_loop();
    #[cfg(all(loom, test))]
    loom::thread::yield_now();
}

/// Gives up the CPU (in the model: lets the checker run the other threads).
#[inline(always)]
pub fn yield_now() {
    #[cfg(not(all(loom, test)))]
    std::thread::yield_now();
    #[cfg(all(loom, test))]
    loom::thread::yield_now();
}

/// Sleeps for `d` (in the model: a yield; time does not pass there).
#[inline(always)]
pub fn sleep(d: std::time::Duration) {
    #[cfg(not(all(loom, test)))]
    std::thread::sleep(d);
    #[cfg(all(loom, test))]
    {
        let _ = d;
        loom::thread::yield_now();
    }
}
