//! A descriptor that becomes readable when an area is updated, for event loops.
//!
//! `sharedarea_wait` blocks its thread, which an event loop (AnyEvent, Mojo,
//! libuv, epoll) cannot afford. Here, per process and area, one helper thread
//! sleeps on the area's update futex (through [`Area::wait_since`], the same
//! wait any caller uses) and, after each update, adds 1 to an `eventfd`. The
//! loop watches that descriptor for reading; when it fires, the loop reads the
//! 8-byte counter (which re-arms it) and then reads the area. Many updates
//! before the loop gets round to it make one wake-up, so a slow loop never
//! queues stale work; an update after the loop's read makes a new one.
//!
//! * Every watcher in the process shares one descriptor per area (one reader
//!   of the counter: the event-loop glue dispatches to its callbacks).
//! * The helper blocks every signal, so signals keep going to the threads
//!   that handle them (a Perl loop sleeping in epoll gets its `EINTR`).
//! * After `fork`, the child has the descriptor but not the thread (threads do
//!   not survive fork): the first call in the child makes a fresh eventfd,
//!   puts it on the same descriptor number (so a watcher set up before the
//!   fork sees the child's own counter, not the parent's), and starts the
//!   child's own helper.
//! * The helper lives as long as the process (so do areas).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;

use crate::area::Area;
use crate::process::FORK_GENERATION;
use crate::status::{Error, Result, Status};

/// The longest the helper sleeps between checks (it wakes at once on updates).
const RECHECK: Duration = Duration::from_secs(1);

/// area id -> (eventfd, the fork generation that owns its helper thread).
static NOTIFIERS: Mutex<BTreeMap<i32, (i32, u32)>> = Mutex::new(BTreeMap::new());

/// The descriptor that becomes readable after `area` is updated (see the
/// module's notes). The same one on every call in this process.
pub fn fd(area: &'static Area) -> Result<i32> {
    let generation = FORK_GENERATION.load(Ordering::Acquire);
    let mut map = NOTIFIERS.lock();
    let old = match map.get(&area.id()) {
        Some(&(fd, g)) if g == generation => return Ok(fd),
        Some(&(fd, _)) => Some(fd), // inherited from before a fork: no helper here
        None => None,
    };
    let fd = new_eventfd(area.id(), old)?;
    start_helper(area, fd).inspect_err(|_| {
        if old.is_none() {
            // SAFETY: closing the eventfd made above, which nobody else has seen.
            unsafe { libc::close(fd) };
        }
    })?;
    map.insert(area.id(), (fd, generation));
    Ok(fd)
}

/// A non-blocking, close-on-exec eventfd; on the number `reuse` when given.
fn new_eventfd(id: i32, reuse: Option<i32>) -> Result<i32> {
    // SAFETY: eventfd has no memory arguments.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(Error::area(
            Status::Io,
            id,
            format!("eventfd: {}", std::io::Error::last_os_error()),
        ));
    }
    let Some(target) = reuse else {
        return Ok(fd);
    };
    // SAFETY: dup3 and close on descriptor numbers; `target` is the
    // descriptor this module made before the fork, which it owns.
    unsafe {
        let r = libc::dup3(fd, target, libc::O_CLOEXEC);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            return Err(Error::area(Status::Io, id, format!("dup3: {err}")));
        }
    }
    Ok(target)
}

/// Starts the thread that signals `fd` after each update of `area`, with every
/// signal blocked.
fn start_helper(area: &'static Area, fd: i32) -> Result<()> {
    // Counted from here, so that an update after `fd` returns is never missed
    // however late the thread starts.
    let seen = area.updates();
    // SAFETY: sigset_t is plain data, for which all zero bytes are a value.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut before: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigfillset and pthread_sigmask write only into the sets given.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut before);
    }
    // The new thread inherits the blocked mask; this thread gets its own back.
    let spawned = std::thread::Builder::new()
        .name(format!("sharedarea-notify-{}", area.id()))
        .stack_size(64 * 1024)
        .spawn(move || signal_updates(area, fd, seen));
    // SAFETY: as above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
    spawned.map(|_| ()).map_err(|e| {
        Error::area(
            Status::Io,
            area.id(),
            format!("cannot start the notification thread: {e}"),
        )
    })
}

/// The helper's loop: wait for an update, add 1 to the eventfd, repeat.
fn signal_updates(area: &'static Area, fd: i32, mut seen: u64) {
    loop {
        match area.wait_since(seen, Some(RECHECK)) {
            Ok(()) => {
                seen = area.updates();
                let one: u64 = 1;
                // SAFETY: writes the 8 bytes of `one`. A full counter (EAGAIN,
                // after 2^64-2 unread updates) already says "updated".
                unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
            }
            Err(e) if matches!(e.status, Status::TimedOut | Status::Interrupted) => {}
            // Nothing else is expected; never spin on it.
            Err(_) => std::thread::sleep(RECHECK),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    fn readable(fd: i32, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) == 1 }
    }

    fn drain(fd: i32) -> u64 {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into `v`.
        let r = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
        if r == 8 {
            v
        } else {
            0
        }
    }

    #[test]
    fn the_descriptor_is_readable_after_each_update_and_quiet_otherwise() {
        let spec = crate::spec::Spec::parse("1").unwrap();
        let id = registry::add(|| crate::backing::create("1", &spec)).unwrap();
        let area = registry::get(id).unwrap();
        let fd = fd(area).unwrap();
        assert_eq!(super::fd(area).unwrap(), fd, "one descriptor per area");
        assert!(!readable(fd, 50), "nothing happened yet");
        for _ in 0..3 {
            area.update().unwrap();
            assert!(readable(fd, 2000), "an update makes it readable");
            assert!(drain(fd) >= 1);
            assert!(!readable(fd, 20), "reading the counter re-arms it");
        }
    }
}
