//! RFC 6455 server frames, sent straight from an area.
//!
//! A server frame is FIN + opcode, an unmasked length (7 bits, or 126 + 16 bits, or
//! 127 + 64 bits, network order), then the payload. A send from an area writes the
//! header and the area's bytes with one `sendmsg` (an iovec pair: no user-space
//! copy) on a non-blocking call (`MSG_DONTWAIT`) while holding the read lock. If
//! the kernel takes everything (the common case) that is all. If it takes part,
//! only the rest is copied into a private buffer, the lock is dropped, and the
//! rest is sent from the copy, waiting for the socket as long as it takes (up to
//! `STALL_LIMIT` without progress). So the lock is held for one system call, never
//! across a client's slowness, and a producer's write never waits on a socket.

use std::time::Duration;

use crate::area::Area;
use crate::status::{Error, Result, Status};

/// Give up on a client that accepts nothing for this long.
pub const STALL_LIMIT: Duration = Duration::from_secs(60);

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

fn send_error(fd: i32, err: std::io::Error) -> Error {
    match err.raw_os_error() {
        Some(libc::EPIPE)
        | Some(libc::ECONNRESET)
        | Some(libc::ENOTCONN)
        | Some(libc::ESHUTDOWN) => Error::new(
            Status::PeerClosed,
            format!("fd {fd}: the peer closed the connection"),
        ),
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

/// One non-blocking `sendmsg` of up to two pieces. Ok(bytes taken); EAGAIN is Ok(0).
fn send_pieces(fd: i32, a: &[u8], b: *const u8, b_len: usize) -> Result<usize> {
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
    loop {
        // SAFETY: the iovecs point at `a` and at `b_len` readable bytes at `b`
        // (the caller's contract), both valid for the duration of the call.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(0),
            _ => return Err(send_error(fd, err)),
        }
    }
}

/// Sends all of `bytes`, waiting for the socket when it is full.
fn send_all(fd: i32, mut bytes: &[u8]) -> Result<()> {
    while !bytes.is_empty() {
        let n = send_pieces(fd, bytes, std::ptr::null(), 0)?;
        if n == 0 {
            wait_writable(fd)?;
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

fn wait_writable(fd: i32) -> Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let deadline = std::time::Instant::now() + STALL_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        if r > 0 {
            if pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0
                && pfd.revents & libc::POLLOUT == 0
            {
                return Err(Error::new(
                    Status::PeerClosed,
                    format!("fd {fd}: the peer closed the connection"),
                ));
            }
            return Ok(());
        }
        if r == 0 {
            return Err(Error::new(
                Status::TimedOut,
                format!(
                    "fd {fd}: the client accepted nothing for {} s",
                    STALL_LIMIT.as_secs()
                ),
            ));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(send_error(fd, err));
        }
    }
}

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

/// Sends one frame carrying `payload`.
pub fn send(fd: i32, opcode: u8, payload: &[u8]) -> Result<u64> {
    check_opcode(opcode, payload.len() as u64)?;
    let mut hdr = [0u8; 10];
    let h = frame_header(opcode, payload.len() as u64, &mut hdr);
    let sent = send_pieces(fd, &hdr[..h], payload.as_ptr(), payload.len())?;
    finish(fd, &hdr[..h], payload, sent)?;
    Ok(payload.len() as u64)
}

/// Sends whatever of (header, payload) the first `sent` bytes did not cover.
fn finish(fd: i32, hdr: &[u8], payload: &[u8], sent: usize) -> Result<()> {
    if sent < hdr.len() {
        send_all(fd, &hdr[sent..])?;
        send_all(fd, payload)
    } else {
        send_all(fd, &payload[sent - hdr.len()..])
    }
}

/// Sends one frame carrying the area's bytes at `pos` (`len` 0: to the end, or
/// to `used` when honoured). Returns the payload length.
pub fn send_from_area(fd: i32, opcode: u8, area: &Area, pos: u64, len: u64) -> Result<u64> {
    let n = area.extent(pos, len)?;
    check_opcode(opcode, n)?;
    let mut hdr = [0u8; 10];
    let h = frame_header(opcode, n, &mut hdr);
    // Under the read lock: one non-blocking sendmsg straight from shared memory,
    // and a private copy of whatever the kernel did not take.
    let (sent, rest) = area.with_bytes_locked(pos, n, |p, l| -> Result<(usize, Vec<u8>)> {
        let sent = send_pieces(fd, &hdr[..h], p, l)?;
        let from = sent.saturating_sub(h);
        // SAFETY: `p` points at `l` bytes of the area, valid while the lock is held
        // (inside this closure); `from <= l` because sendmsg took at most h + l.
        let rest = unsafe { std::slice::from_raw_parts(p.add(from), l - from) }.to_vec();
        Ok((sent, rest))
    })??;
    if sent < h {
        send_all(fd, &hdr[sent..h])?;
    }
    send_all(fd, &rest)?;
    Ok(n)
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
}
