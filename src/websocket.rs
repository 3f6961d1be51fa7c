//! RFC 6455 server frames, sent straight from an area.
//!
//! The functions take a socket's descriptor number, as libc's do: it must be a
//! connected socket this process owns (a failure that breaks the connection
//! shuts it down).
//!
//! A server frame is FIN + opcode, an unmasked length (7 bits, or 126 + 16 bits, or
//! 127 + 64 bits, network order), then the payload. A send from an area writes the
//! header and the area's bytes with one `sendmsg` (an iovec pair: no user-space
//! copy) on a non-blocking call (`MSG_DONTWAIT`) while holding the read lock. If
//! the kernel takes everything (the common case) that is all. If it takes part,
//! only the rest is copied into a private buffer, the lock is dropped, and the
//! rest is sent from the copy, waiting for the socket (`poll`) as long as the
//! client takes something at least every `STALL_LIMIT`. So the lock is held for
//! one system call, never across a client's slowness, and a producer's write
//! never waits on a socket. A send from a buffer works the same way, minus the
//! lock (and minus the copy, unless it is interrupted).
//!
//! # Signals: interrupted sends and their pending bytes
//!
//! The waiting phase (after the first `sendmsg`, never under the lock) gives up
//! at the first `EINTR` — a signal handler ran — so that the caller can run its
//! own handlers (Perl's `%SIG` run only between ops: a send that retried `EINTR`
//! kept Starman's graceful stop waiting for up to a minute behind a stalled
//! client). What is still unsent is not lost: it is kept in a process-wide
//! table of pending bytes, keyed by the socket's fd, and the send returns
//! `Interrupted`. The frame is committed: its bytes leave in order, whole, by
//! [`flush`] (call it until it stops returning `Interrupted`), or are dropped
//! by [`forget`] when the connection is ending.
//!
//! Rules that keep the stream a sequence of whole frames:
//! * A socket holds at most one interrupted frame. A new send on an fd that
//!   still has pending bytes is refused (`InvalidArgument`, nothing sent):
//!   flush first. Refusing rather than flushing silently also means that a new
//!   connection that got the number of a dead one (fds are reused) never
//!   receives the dead one's stale bytes by accident: whoever hands out
//!   connections forgets the number first (the Perl layer does at handshake
//!   and at the end of a session).
//! * A flush that fails (peer closed, stalled, I/O) drops the pending bytes:
//!   the connection is unusable anyway.
//!
//! # A frame cut off part-way breaks the connection for good
//!
//! A send (or flush) that fails after part of its frame left — the client
//! stopped taking bytes for the stall limit ([`set_stall_limit`], 60 s by
//! default), or the socket failed — leaves the client holding part of a frame:
//! anything sent after it would be read as that frame's payload. So the
//! socket is shut down (both ways) and marked broken: the failing call and
//! every later send, flush or [`queued`] on it fail with `ConnectionFailed`
//! (`PeerClosed` for the call that found the peer gone). The mark is keyed by
//! fd and remembers the socket's inode, so a new connection that gets the same
//! number is not refused; [`forget`] drops it too. A send that fails before
//! any byte of its frame left (the socket was full all along) leaves the
//! stream whole and reports `TimedOut`.
//!
//! # Non-blocking sends, for event loops
//!
//! [`send_nb`] and [`send_from_area_nb`] never wait: what the socket does not
//! take is copied into the fd's queue (the same table as interrupted frames),
//! behind what is already there, and [`flush_nb`] sends more of it when the
//! socket is writable. They return the bytes queued; [`queued`] adds the
//! kernel's unsent bytes (`SIOCOUTQ`), so that a loop can skip frames for a
//! client that lags and send it the latest one once it catches up.
//! * The stall limit counts from the last progress, across interruptions: a
//!   client that takes nothing for `STALL_LIMIT` fails the flush even when
//!   signals keep interrupting it.
//!
//! One thread at a time may send on a given socket (as with any stream). The
//! table is in-process state: a forked child starts with its parent's pending
//! bytes, and should forget them for connections it does not own.
//!
//! A signal that arrives after a handler ran but just before `poll` starts
//! (a window of microseconds, plus the copy under the lock) is only noticed at
//! the next signal, progress, or stall: the same limit as any wait on `poll`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::area::Area;
use crate::status::{Error, Result, Status};

/// Give up on a client that accepts nothing for this long (the default of
/// [`stall_limit`]).
pub const STALL_LIMIT: Duration = Duration::from_secs(60);

/// The stall limit in force in this process, in milliseconds.
static STALL_LIMIT_MS: AtomicU64 = AtomicU64::new(60_000);

/// How long a send waits for a client that accepts nothing before giving up.
pub fn stall_limit() -> Duration {
    Duration::from_millis(STALL_LIMIT_MS.load(Ordering::Relaxed))
}

/// Sets the stall limit for this process (at least 1 ms).
pub fn set_stall_limit(limit: Duration) {
    let ms = limit.as_millis().clamp(1, u64::MAX as u128) as u64;
    STALL_LIMIT_MS.store(ms, Ordering::Relaxed);
}

/// Frame opcodes a server may send.
pub fn valid_opcode(op: u8) -> bool {
    matches!(op, 0x1 | 0x2 | 0x8 | 0x9 | 0xA)
}

/// Writes the header of a final, unmasked frame into `out`; returns its length.
pub fn frame_header(opcode: u8, len: u64, out: &mut [u8; 10]) -> usize {
    out[0] = 0x80 | (opcode & 0x0F);
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= 0xFFFF {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&len.to_be_bytes());
        10
    }
}

// ---------------------------------------------------------------------------
// Pending bytes of interrupted frames

/// The unsent end of one interrupted frame.
struct Pending {
    /// The frame's bytes not yet sent when it was interrupted (header included
    /// when part of it was unsent); `bytes[done..]` is what is left.
    bytes: Vec<u8>,
    done: usize,
    /// The frame's payload length: what the interrupted send would have returned.
    payload: u64,
    /// When the client last took a byte: the stall limit counts from here.
    last_progress: Instant,
}

/// fd -> its interrupted frame. Touched only on the slow paths (an interrupted
/// send, a flush or forget with something pending); `PENDING_COUNT` lets every
/// other send skip the mutex.
static PENDING: Mutex<BTreeMap<i32, Pending>> = Mutex::new(BTreeMap::new());
/// Entries in `PENDING` (changed only under its mutex).
static PENDING_COUNT: AtomicUsize = AtomicUsize::new(0);

fn park(fd: i32, p: Pending) {
    let mut map = PENDING.lock();
    if map.insert(fd, p).is_none() {
        PENDING_COUNT.fetch_add(1, Ordering::Release);
    }
}

fn take(fd: i32) -> Option<Pending> {
    if PENDING_COUNT.load(Ordering::Acquire) == 0 {
        return None;
    }
    let mut map = PENDING.lock();
    let p = map.remove(&fd);
    if p.is_some() {
        PENDING_COUNT.fetch_sub(1, Ordering::Release);
    }
    p
}

/// Unsent bytes kept for `fd` (0 when none).
pub fn pending_len(fd: i32) -> u64 {
    if PENDING_COUNT.load(Ordering::Acquire) == 0 {
        return 0;
    }
    PENDING
        .lock()
        .get(&fd)
        .map_or(0, |p| (p.bytes.len() - p.done) as u64)
}

/// Refuses a new frame while an interrupted one is pending on `fd`, and any
/// frame at all on a connection that a cut-off frame broke.
fn check_nothing_pending(fd: i32) -> Result<()> {
    check_not_broken(fd)?;
    match pending_len(fd) {
        0 => Ok(()),
        left => Err(Error::new(
            Status::InvalidArgument,
            format!(
                "fd {fd} still has {left} unsent bytes of an interrupted frame: \
                 call sharedarea_ws_flush first (or sharedarea_ws_forget when the connection is over)"
            ),
        )),
    }
}

fn interrupted(fd: i32, left: usize, payload: u64) -> Error {
    let total = frame_header(2, payload, &mut [0; 10]) as u64 + payload;
    Error::new(
        Status::Interrupted,
        format!(
            "fd {fd}: interrupted by a signal with {left} of the frame's {total} bytes unsent \
             (kept: sharedarea_ws_flush sends them, sharedarea_ws_forget drops them)"
        ),
    )
}

/// Sends the bytes an interrupted send left on `fd`, waiting for the socket.
/// Ok(Some(payload length of that frame)) once they are all out, Ok(None) when
/// nothing was pending. `Interrupted` again on the next signal (the rest stays
/// pending); any other failure drops them.
pub fn flush(fd: i32) -> Result<Option<u64>> {
    check_not_broken(fd)?;
    let Some(mut p) = take(fd) else {
        return Ok(None);
    };
    let total = p.bytes.len();
    match drain(fd, &p.bytes, &[], &mut p.done, &mut p.last_progress) {
        Ok(()) => Ok(Some(p.payload)),
        Err(Stop::Interrupted) => {
            let (left, payload) = (total - p.done, p.payload);
            park(fd, p);
            Err(interrupted(fd, left, payload))
        }
        Err(Stop::Failed(e)) => Err(cut_off(fd, e)),
    }
}

/// Drops the bytes an interrupted send left on `fd`, and the mark of a broken
/// connection; returns how many bytes.
pub fn forget(fd: i32) -> u64 {
    unmark_broken(fd);
    take(fd).map_or(0, |p| (p.bytes.len() - p.done) as u64)
}

// ---------------------------------------------------------------------------
// Connections broken by a cut-off frame

/// fd -> (the socket's inode, why its stream was cut off part-way through a
/// frame). Once a frame is cut off, whatever is sent next would be read as that
/// frame's payload: the connection is unusable for good, so every later send on
/// it fails at once (`ConnectionFailed`). The inode tells a later connection
/// that got the same number (the mark is then dropped); [`forget`] drops it too.
static BROKEN: Mutex<BTreeMap<i32, (u64, String)>> = Mutex::new(BTreeMap::new());
/// Entries in `BROKEN` (changed only under its mutex).
static BROKEN_COUNT: AtomicUsize = AtomicUsize::new(0);

/// The inode of what `fd` refers to (sockets have distinct ones), if open.
fn inode(fd: i32) -> Option<u64> {
    // SAFETY: a zeroed stat is a valid out-buffer for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes only into `st`.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino)
}

fn unmark_broken(fd: i32) {
    if BROKEN_COUNT.load(Ordering::Acquire) == 0 {
        return;
    }
    if BROKEN.lock().remove(&fd).is_some() {
        BROKEN_COUNT.fetch_sub(1, Ordering::Release);
    }
}

/// Why `fd`'s stream is broken, if it is (a mark left by an earlier socket
/// with the same number is dropped here).
pub fn broken(fd: i32) -> Option<String> {
    if BROKEN_COUNT.load(Ordering::Acquire) == 0 {
        return None;
    }
    let mut map = BROKEN.lock();
    let (ino, why) = map.get(&fd)?;
    if inode(fd) == Some(*ino) {
        return Some(why.clone());
    }
    map.remove(&fd);
    BROKEN_COUNT.fetch_sub(1, Ordering::Release);
    None
}

fn check_not_broken(fd: i32) -> Result<()> {
    match broken(fd) {
        None => Ok(()),
        Some(why) => Err(Error::new(
            Status::ConnectionFailed,
            format!("fd {fd}: the connection failed earlier ({why}): no frame can follow"),
        )),
    }
}

/// A send failed after part of a frame had left: marks `fd` broken, drops
/// anything pending, shuts the socket down (both ways, so that the client sees
/// the end and a reader of this side stops at once), and returns the error to
/// report: `PeerClosed` when that was the cause, else `ConnectionFailed`.
#[cold]
fn cut_off(fd: i32, cause: Error) -> Error {
    let why = cause.detail.clone();
    let why = why
        .strip_prefix(&format!("fd {fd}: "))
        .unwrap_or(&why)
        .to_string();
    take(fd);
    if let Some(ino) = inode(fd) {
        let mut map = BROKEN.lock();
        let mark = (ino, format!("a frame was cut off part-way: {why}"));
        if map.insert(fd, mark).is_none() {
            BROKEN_COUNT.fetch_add(1, Ordering::Release);
        }
    }
    // SAFETY: shutdown on a descriptor number has no memory effects; a bad one
    // just fails.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    if cause.status == Status::PeerClosed {
        return cause;
    }
    Error::new(
        Status::ConnectionFailed,
        format!("fd {fd}: the connection failed part-way through a frame ({why}); it is shut down"),
    )
}

// ---------------------------------------------------------------------------
// System calls

fn peer_closed(fd: i32) -> Error {
    Error::new(
        Status::PeerClosed,
        format!("fd {fd}: the peer closed the connection"),
    )
}

fn send_error(fd: i32, err: std::io::Error) -> Error {
    match err.raw_os_error() {
        Some(libc::EPIPE)
        | Some(libc::ECONNRESET)
        | Some(libc::ENOTCONN)
        | Some(libc::ESHUTDOWN) => peer_closed(fd),
        Some(libc::ENOTSOCK) => {
            Error::new(Status::InvalidArgument, format!("fd {fd} is not a socket"))
        }
        Some(libc::EBADF) => Error::new(
            Status::InvalidArgument,
            format!("fd {fd} is not an open descriptor"),
        ),
        _ => Error::io(format_args!("fd {fd}: send failed"), err),
    }
}

/// Why the waiting phase stopped short.
enum Stop {
    /// A signal handler ran (EINTR): the caller keeps what is left.
    Interrupted,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Failed(e)
    }
}

/// A private copy of `len` bytes of an area at `p`, made with atomic loads (as
/// reads are): no Rust reference to shared memory, which code outside the lock
/// (a zero-copy view, another process) might write at the same time.
///
/// # Safety
/// `p` is valid for reads of `len` bytes during the call.
unsafe fn copy_out(p: *const u8, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    // SAFETY: `p` is valid for `len` bytes (the caller's contract); `v` is ours.
    unsafe { crate::seqcopy::load(p, v.as_mut_ptr(), len) };
    v
}

/// One non-blocking `sendmsg` of up to two pieces. Ok(Some(bytes taken)),
/// Ok(None) on EINTR; EAGAIN is Ok(Some(0)).
///
/// # Safety
/// `b` is valid for reads of `b_len` bytes during the call (any pointer when
/// `b_len` is 0). A raw pointer, not a slice: it may point into an area, whose
/// bytes other processes may change.
unsafe fn send_once(fd: i32, a: &[u8], b: *const u8, b_len: usize) -> Result<Option<usize>> {
    let mut iov = [
        libc::iovec {
            iov_base: a.as_ptr() as *mut libc::c_void,
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b as *mut libc::c_void,
            iov_len: b_len,
        },
    ];
    // SAFETY: a zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = if b_len == 0 { 1 } else { 2 };
    // SAFETY: the iovecs point at `a` and at `b_len` readable bytes at `b`
    // (the caller's contract), both valid for the duration of the call.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINTR) => Ok(None),
        Some(libc::EAGAIN) => Ok(Some(0)),
        _ => Err(send_error(fd, err)),
    }
}

/// The first send of a frame (under the area's lock for a send from an area):
/// non-blocking, retrying EINTR (it never waits, so a retry costs nothing).
///
/// # Safety
/// As for [`send_once`]: `b` is valid for reads of `b_len` bytes during the call.
unsafe fn send_first(fd: i32, a: &[u8], b: *const u8, b_len: usize) -> Result<usize> {
    loop {
        // SAFETY: the caller's contract is send_once's.
        if let Some(n) = unsafe { send_once(fd, a, b, b_len) }? {
            return Ok(n);
        }
    }
}

/// The waiting phase: sends `head` then `body` from byte `*done` of the two
/// together until all are out, waiting for the socket when it is full.
/// `*done` and `*last_progress` follow the progress, so an interrupted drain
/// resumes where it stopped with the same stall deadline.
fn drain(
    fd: i32,
    head: &[u8],
    body: &[u8],
    done: &mut usize,
    last_progress: &mut Instant,
) -> std::result::Result<(), Stop> {
    let total = head.len() + body.len();
    while *done < total {
        let (a, b) = if *done < head.len() {
            (&head[*done..], body)
        } else {
            (&body[*done - head.len()..], &[][..])
        };
        // SAFETY: `b` is a slice, valid for its length.
        match unsafe { send_once(fd, a, b.as_ptr(), b.len()) }? {
            None => return Err(Stop::Interrupted),
            Some(0) => wait_writable(fd, *last_progress + stall_limit())?,
            Some(n) => {
                *done += n;
                *last_progress = Instant::now();
            }
        }
    }
    Ok(())
}

/// Waits until `fd` takes bytes again, a signal arrives, or `deadline`.
fn wait_writable(fd: i32, deadline: Instant) -> std::result::Result<(), Stop> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let left = deadline.saturating_duration_since(Instant::now());
    // Round up, so that a wait never ends just before its deadline and spins.
    let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r > 0 {
        if pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0 && pfd.revents & libc::POLLOUT == 0 {
            return Err(Stop::Failed(peer_closed(fd)));
        }
        if pfd.revents & libc::POLLNVAL != 0 {
            return Err(Stop::Failed(Error::new(
                Status::InvalidArgument,
                format!("fd {fd} is not an open descriptor"),
            )));
        }
        return Ok(());
    }
    if r == 0 {
        return Err(Stop::Failed(Error::new(
            Status::TimedOut,
            format!(
                "fd {fd}: the client accepted nothing for {} s",
                crate::area::fmt_secs(stall_limit())
            ),
        )));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINTR) {
        return Err(Stop::Interrupted);
    }
    Err(Stop::Failed(send_error(fd, err)))
}

// ---------------------------------------------------------------------------
// Sends

fn check_opcode(opcode: u8, len: u64) -> Result<()> {
    if !valid_opcode(opcode) {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("opcode {opcode} is not one a server sends (1 text, 2 binary, 8 close, 9 ping, 10 pong)"),
        ));
    }
    if opcode >= 0x8 && len > 125 {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("a control frame (opcode {opcode}) carries at most 125 bytes, not {len} (RFC 6455 5.5)"),
        ));
    }
    Ok(())
}

/// What follows the header in the waiting phase: the caller's payload
/// (borrowed) or the private copy of an area's rest (owned, so parking it
/// moves rather than copies).
enum Body<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

/// The waiting phase of a send whose first `sendmsg` took `sent` bytes of
/// `head` + `body` (`started`: bytes of the frame before `head` already left).
/// On a signal, parks what is left and returns `Interrupted`. A failure once
/// any byte of the frame has left breaks the connection for good.
fn finish(
    fd: i32,
    head: &[u8],
    body: Body,
    payload: u64,
    sent: usize,
    started: bool,
) -> Result<()> {
    let body_bytes: &[u8] = match &body {
        Body::Borrowed(s) => s,
        Body::Owned(v) => v,
    };
    let total = head.len() + body_bytes.len();
    if sent == total {
        return Ok(());
    }
    let mut done = sent;
    let mut last_progress = Instant::now();
    match drain(fd, head, body_bytes, &mut done, &mut last_progress) {
        Ok(()) => Ok(()),
        // Nothing of the frame left: the stream is still whole.
        Err(Stop::Failed(e)) if done == 0 && !started => Err(e),
        Err(Stop::Failed(e)) => Err(cut_off(fd, e)),
        Err(Stop::Interrupted) => {
            let (bytes, from) = if done < head.len() {
                let mut v = Vec::with_capacity(total - done);
                v.extend_from_slice(&head[done..]);
                v.extend_from_slice(body_bytes);
                (v, 0)
            } else {
                match body {
                    Body::Owned(v) => (v, done - head.len()),
                    Body::Borrowed(s) => (s[done - head.len()..].to_vec(), 0),
                }
            };
            park(
                fd,
                Pending {
                    bytes,
                    done: from,
                    payload,
                    last_progress,
                },
            );
            Err(interrupted(fd, total - done, payload))
        }
    }
}

/// Sends one frame carrying `payload`. Returns the payload length, or
/// `Interrupted` with the frame's rest pending (see the module's notes).
pub fn send(fd: i32, opcode: u8, payload: &[u8]) -> Result<u64> {
    check_opcode(opcode, payload.len() as u64)?;
    check_nothing_pending(fd)?;
    let mut hdr = [0u8; 10];
    let h = frame_header(opcode, payload.len() as u64, &mut hdr);
    // SAFETY: `payload` is a slice, valid for its length.
    let sent = unsafe { send_first(fd, &hdr[..h], payload.as_ptr(), payload.len()) }?;
    let n = payload.len() as u64;
    finish(fd, &hdr[..h], Body::Borrowed(payload), n, sent, false)?;
    Ok(n)
}

/// Sends one frame carrying the area's bytes at `pos` (`len` 0: to the end, or
/// to `used` when honoured). Returns the payload length, or `Interrupted`
/// with the frame's rest pending (see the module's notes).
pub fn send_from_area(fd: i32, opcode: u8, area: &Area, pos: u64, len: u64) -> Result<u64> {
    let n = area.extent(pos, len)?;
    check_opcode(opcode, n)?;
    check_nothing_pending(fd)?;
    let mut hdr = [0u8; 10];
    let h = frame_header(opcode, n, &mut hdr);
    // Under the read lock: one non-blocking sendmsg straight from shared memory,
    // and a private copy of whatever the kernel did not take.
    let (sent, rest) = area.with_bytes_locked(pos, n, |p, l| -> Result<(usize, Vec<u8>)> {
        // SAFETY: `p` points at `l` bytes of the area, valid while the lock is
        // held (inside this closure).
        let sent = unsafe { send_first(fd, &hdr[..h], p, l) }?;
        let from = sent.saturating_sub(h);
        // SAFETY: `p` points at `l` bytes of the area, valid while the lock is held
        // (inside this closure); `from <= l` because sendmsg took at most h + l.
        let rest = unsafe { copy_out(p.add(from), l - from) };
        Ok((sent, rest))
    })??;
    // What is left: the header's unsent end (if any), then `rest`.
    finish(fd, &hdr[sent.min(h)..h], Body::Owned(rest), n, 0, sent > 0)?;
    Ok(n)
}

// ---------------------------------------------------------------------------
// Non-blocking sends, for event loops

/// Puts `bytes` (a whole frame, or the unsent end of one) behind whatever is
/// already pending on `fd`.
fn queue(fd: i32, bytes: Vec<u8>, payload: u64) {
    let p = match take(fd) {
        None => Pending {
            bytes,
            done: 0,
            payload,
            last_progress: Instant::now(),
        },
        Some(mut p) => {
            p.bytes.drain(..p.done);
            p.bytes.extend_from_slice(&bytes);
            Pending {
                bytes: p.bytes,
                done: 0,
                payload,
                last_progress: p.last_progress,
            }
        }
    };
    park(fd, p);
}

/// Sends what the socket takes now of the bytes pending on `fd`, never
/// waiting. Returns the count still pending (0: all gone to the kernel).
pub fn flush_nb(fd: i32) -> Result<u64> {
    check_not_broken(fd)?;
    let Some(mut p) = take(fd) else {
        return Ok(0);
    };
    while p.done < p.bytes.len() {
        // SAFETY: no second piece (length 0).
        match unsafe { send_first(fd, &p.bytes[p.done..], std::ptr::null(), 0) } {
            Ok(0) => break,
            Ok(n) => {
                p.done += n;
                p.last_progress = Instant::now();
            }
            Err(e) => return Err(cut_off(fd, e)),
        }
    }
    let left = (p.bytes.len() - p.done) as u64;
    if left > 0 {
        park(fd, p);
    }
    Ok(left)
}

/// Sends one frame without waiting: what the socket does not take now is
/// copied and queued, in order, behind anything already queued on `fd`
/// ([`flush_nb`] sends it later). Returns the bytes queued on `fd` after the
/// call (0: the whole frame is with the kernel). The queue has no bound: look
/// at [`queued`] before sending.
pub fn send_nb(fd: i32, opcode: u8, payload: &[u8]) -> Result<u64> {
    check_opcode(opcode, payload.len() as u64)?;
    let mut hdr = [0u8; 10];
    let h = frame_header(opcode, payload.len() as u64, &mut hdr);
    if flush_nb(fd)? > 0 {
        let mut v = Vec::with_capacity(h + payload.len());
        v.extend_from_slice(&hdr[..h]);
        v.extend_from_slice(payload);
        queue(fd, v, payload.len() as u64);
        return Ok(pending_len(fd));
    }
    // SAFETY: `payload` is a slice, valid for its length.
    let sent = unsafe { send_first(fd, &hdr[..h], payload.as_ptr(), payload.len()) }?;
    if sent < h + payload.len() {
        let mut v = Vec::with_capacity(h + payload.len() - sent);
        if sent < h {
            v.extend_from_slice(&hdr[sent..h]);
        }
        v.extend_from_slice(&payload[sent.saturating_sub(h)..]);
        queue(fd, v, payload.len() as u64);
    }
    Ok(pending_len(fd))
}

/// [`send_nb`] of the area's bytes at `pos` (`len` 0: to the end, or to `used`
/// when honoured): one non-blocking `sendmsg` straight from shared memory under
/// the read lock, and a private copy of what the kernel did not take.
pub fn send_from_area_nb(fd: i32, opcode: u8, area: &Area, pos: u64, len: u64) -> Result<u64> {
    let n = area.extent(pos, len)?;
    check_opcode(opcode, n)?;
    let mut hdr = [0u8; 10];
    let h = frame_header(opcode, n, &mut hdr);
    let behind = flush_nb(fd)? > 0;
    let rest = area.with_bytes_locked(pos, n, |p, l| -> Result<Vec<u8>> {
        let sent = if behind {
            0
        } else {
            // SAFETY: `p` points at `l` bytes of the area, valid while the lock
            // is held (inside this closure).
            unsafe { send_first(fd, &hdr[..h], p, l) }?
        };
        let mut v = Vec::new();
        if sent < h + l {
            v.reserve(h + l - sent);
            if sent < h {
                v.extend_from_slice(&hdr[sent..h]);
            }
            let from = sent.saturating_sub(h);
            let at = v.len();
            v.resize(at + (l - from), 0);
            // SAFETY: `p` points at `l` bytes of the area, valid while the lock
            // is held (inside this closure), and `from <= l`; `v` has room for
            // `l - from` bytes from `at` (resized just now) and is ours.
            unsafe { crate::seqcopy::load(p.add(from), v.as_mut_ptr().add(at), l - from) };
        }
        Ok(v)
    })??;
    if !rest.is_empty() {
        queue(fd, rest, n);
    }
    Ok(pending_len(fd))
}

/// Bytes on their way to the client of `fd`: queued here plus those still in
/// the kernel's send queue (`SIOCOUTQ`: not yet sent, or not yet acknowledged).
pub fn queued(fd: i32) -> Result<u64> {
    check_not_broken(fd)?;
    let mut outq: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int at the pointer given.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut outq as *mut libc::c_int) };
    if r < 0 {
        let err = std::io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EBADF) => Error::new(
                Status::InvalidArgument,
                format!("fd {fd} is not an open descriptor"),
            ),
            Some(libc::ENOTTY) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
                Error::new(Status::InvalidArgument, format!("fd {fd} is not a socket"))
            }
            _ => Error::io(format_args!("fd {fd}: SIOCOUTQ"), err),
        });
    }
    Ok(pending_len(fd) + outq.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths() {
        let mut h = [0u8; 10];
        assert_eq!(frame_header(2, 125, &mut h), 2);
        assert_eq!(&h[..2], &[0x82, 125]);
        assert_eq!(frame_header(1, 126, &mut h), 4);
        assert_eq!(&h[..4], &[0x81, 126, 0, 126]);
        assert_eq!(frame_header(2, 65535, &mut h), 4);
        assert_eq!(&h[..4], &[0x82, 126, 0xFF, 0xFF]);
        assert_eq!(frame_header(2, 65536, &mut h), 10);
        assert_eq!(&h[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    /// A connected pair whose first end is full (nothing more fits).
    fn full_pair() -> (i32, i32) {
        let mut fds = [0i32; 2];
        // SAFETY: fds has room for the two descriptors socketpair writes.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(r, 0);
        let chunk = [0u8; 65536];
        // SAFETY: no second piece (length 0).
        while matches!(unsafe { send_first(fds[0], &chunk, std::ptr::null(), 0) }, Ok(n) if n > 0) {
        }
        (fds[0], fds[1])
    }

    #[test]
    fn the_stall_limit_counts_from_the_last_progress_across_flushes() {
        // A frame interrupted more than STALL_LIMIT after the client last took
        // a byte: the next flush gives up at once instead of waiting anew.
        let Some(long_ago) = Instant::now().checked_sub(STALL_LIMIT + Duration::from_secs(1))
        else {
            return; // the machine has been up for less than a minute
        };
        let (a, b) = full_pair();
        park(
            a,
            Pending {
                bytes: vec![7; 1000],
                done: 10,
                payload: 996,
                last_progress: long_ago,
            },
        );
        assert_eq!(pending_len(a), 990);
        let t = Instant::now();
        let e = flush(a).expect_err("a flush to a client stalled for over a minute");
        assert_eq!(e.status, Status::ConnectionFailed, "{e}");
        assert!(e.detail.contains("accepted nothing"), "{e}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "the flush waited {:?}",
            t.elapsed()
        );
        assert_eq!(pending_len(a), 0, "a failed flush drops the pending bytes");
        assert!(
            broken(a).is_some(),
            "... and breaks the connection for good"
        );
        forget(a);
        // SAFETY: closing the two descriptors this test opened.
        unsafe {
            libc::close(a);
            libc::close(b);
        }
    }

    #[test]
    fn nothing_pending_is_cheap_and_empty() {
        assert_eq!(pending_len(-5), 0);
        assert_eq!(forget(-5), 0);
        assert!(matches!(flush(-5), Ok(None)));
    }
}
