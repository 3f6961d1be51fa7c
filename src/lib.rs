//! SharedArea: pages of memory shared by processes, with integer counters, a
//! cross-process reader/writer lock that survives dead holders, and an update
//! counter that waiters sleep on — uWSGI's *sharedarea*, standalone, behind a
//! stable C ABI (`include/sharedarea.h`).
//!
//! The map:
//! * [`spec`]      spec strings -> typed description (no I/O)
//! * [`backing`]   the mappings: anonymous, file, fd, named, pointer
//! * [`control`]   the shared control block's layout
//! * [`lock`]      the futex reader/writer lock, liveness tokens, dead-holder
//!   recovery, and this thread's holds
//! * `seqcopy`     atomic copies for lock-free reads
//! * `futex`       the two futex(2) calls
//! * `sync`        the atomics the lock uses (loom's in its model test)
//! * `process`     process identity and liveness
//! * [`area`]      bounds-checked operations on one area
//! * [`registry`]  this process's table of areas
//! * [`websocket`] RFC 6455 frames sent straight from an area
//! * [`inspect`]   named areas seen from outside (the `sharedarea` command, unlink)
//! * [`notify`]    a descriptor readable after an area's updates, for event loops
//! * [`status`]    status codes and error texts
//! * [`ffi`]       the C boundary
//!
//! Unsafe code follows two rules the compiler enforces: an `unsafe fn` states its
//! caller's obligations under `# Safety` and still marks each unsafe operation in
//! its body, and every `unsafe` block says why it is sound in a `// SAFETY:`
//! comment.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod area;
pub mod backing;
pub mod control;
pub mod ffi;
pub(crate) mod futex;
pub mod inspect;
pub mod lock;
pub mod notify;
pub(crate) mod process;
pub mod registry;
pub(crate) mod seqcopy;
pub mod spec;
pub mod status;
pub(crate) mod sync;
pub mod websocket;

pub use ffi::areas::*;
pub use ffi::errors::*;
pub use ffi::integers::*;
pub use ffi::locking::*;
pub use ffi::notify::*;
pub use ffi::websocket::*;
