//! SharedArea: pages of memory shared by processes, with integer counters, a
//! cross-process reader/writer lock that survives dead holders, and an update
//! counter that waiters sleep on — uWSGI's *sharedarea*, standalone, behind a
//! stable C ABI (`include/sharedarea.h`).
//!
//! Rust programs use the safe API at the crate root: [`Area`] (made by
//! [`Area::init`] from a uWSGI spec, found by [`Area::get`]), its [`LockGuard`]s,
//! [`Error`] with its [`Status`], and the named-area tools in [`inspect`]. See
//! [`api`] for an example. C programs use the header and the `unsafe extern "C"`
//! entry points in [`ffi`].
//!
//! The map (modules not listed as public are internal):
//! * [`api`]       the safe Rust API's constructors, guards and free functions
//! * `spec`        spec strings -> typed description (no I/O)
//! * `backing`     the mappings: anonymous, file, fd, named, pointer
//! * `control`     the shared control block's layout
//! * `lock`        the futex reader/writer lock, liveness tokens, dead-holder
//!   recovery, and this thread's holds
//! * `seqcopy`     atomic copies for lock-free reads
//! * `futex`       the two futex(2) calls
//! * `sync`        the atomics the lock uses (loom's in its model test)
//! * `process`     process identity and liveness
//! * `area`        bounds-checked operations on one area ([`Area`])
//! * `registry`    this process's table of areas
//! * [`websocket`] RFC 6455 frames sent straight from an area
//! * [`inspect`]   named areas seen from outside (the `sharedarea` command, unlink)
//! * `notify`      a descriptor readable after an area's updates, for event loops
//! * `status`      status codes and error texts ([`Status`], [`Error`])
//! * [`ffi`]       the C boundary
//!
//! Unsafe code follows two rules the compiler enforces: an `unsafe fn` states its
//! caller's obligations under `# Safety` and still marks each unsafe operation in
//! its body, and every `unsafe` block says why it is sound in a `// SAFETY:`
//! comment.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod api;
mod area;
mod backing;
// The control block's layout is internal; the project's own tests read it through
// a second mapping to check the lock from outside, so it is reachable but hidden.
#[doc(hidden)]
pub mod control;
pub mod ffi;
pub(crate) mod futex;
pub mod inspect;
pub(crate) mod lock;
mod notify;
pub(crate) mod process;
mod registry;
pub(crate) mod seqcopy;
mod spec;
mod status;
pub(crate) mod sync;
pub mod websocket;

pub use api::{count, notify_fd, LockGuard};
pub use area::{Area, Info, Int};
pub use backing::{page_size, Backing};
pub use lock::holds::Held;
pub use lock::Snapshot as LockInfo;
// For the project's language bindings (slice-by-slice waits), not Rust callers.
#[doc(hidden)]
pub use lock::Patience;
pub use status::{Error, Result, Status};

pub use ffi::areas::*;
pub use ffi::errors::*;
pub use ffi::integers::*;
pub use ffi::locking::*;
pub use ffi::notify::*;
pub use ffi::websocket::*;
