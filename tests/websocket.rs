//! WebSocket sends (SPEC §5, C ABI): exact RFC 6455 server frames from an area or a
//! buffer, `pos`/`len` rules, range errors, a closed peer, and a stalled reader that
//! never blocks another process's writes.

#![allow(unused_unsafe)]

mod common;
use common::*;

use std::ffi::c_void;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Sends from the area on one end of a socket pair while a thread reads the other end;
/// returns (send result, every byte received up to the expected count).
fn send_from_area(
    id: i32,
    opcode: u8,
    pos: u64,
    len: u64,
    expect: usize,
    nonblocking: bool,
) -> (i64, Vec<u8>) {
    let (a, b) = socketpair();
    if nonblocking {
        set_nonblocking(a, true);
    }
    let reader = std::thread::spawn(move || read_exact_fd(b, expect, Duration::from_secs(20)));
    let n = unsafe { sa::sharedarea_ws_send_from_area(a, opcode, id, pos, len) };
    let got = join_within(reader, Duration::from_secs(30), "socket reader");
    // nothing beyond the frame
    let extra = pending_bytes(b);
    close(a);
    close(b);
    let got = got.unwrap_or_else(|e| panic!("ws_send_from_area(pos {pos}, len {len}) = {n}: {e}"));
    assert_eq!(
        extra, 0,
        "ws_send_from_area(pos {pos}, len {len}) sent {extra} bytes more than one frame"
    );
    (n, got)
}

fn expected_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ws_header(opcode, payload.len() as u64);
    f.extend_from_slice(payload);
    f
}

#[test]
fn frames_for_every_length_class() {
    let _g = serial();
    let id = must_init("size=2M");
    let content = pattern(2 * MIB as usize, 11);
    must_write(id, 0, &content);
    for len in [1u64, 5, 125, 126, 127, 65535, 65536, MIB] {
        for &(pos, nonblocking) in &[(0u64, false), (7, true)] {
            let payload = &content[pos as usize..(pos + len) as usize];
            let want = expected_frame(2, payload);
            let (n, got) = send_from_area(id, 2, pos, len, want.len(), nonblocking);
            assert_eq!(
                n,
                len as i64,
                "payload bytes sent for len {len} at {pos}: {}",
                last_error()
            );
            assert_eq!(
                &got[..want.len() - payload.len()],
                &want[..want.len() - payload.len()],
                "frame header for len {len}"
            );
            assert!(got == want, "frame bytes for len {len} at pos {pos} differ");
        }
    }
}

#[test]
fn header_shapes() {
    assert_eq!(ws_header(2, 5), [0x82, 5]);
    assert_eq!(ws_header(1, 125), [0x81, 125]);
    assert_eq!(ws_header(2, 126), [0x82, 126, 0, 126]);
    assert_eq!(ws_header(2, 65535), [0x82, 126, 0xFF, 0xFF]);
    assert_eq!(ws_header(2, 65536), [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
}

#[test]
fn text_opcode_pos_and_len_zero() {
    let _g = serial();
    let id = must_init("1");
    let size = size_of(id);
    let content = pattern(size as usize, 4);
    must_write(id, 0, &content);
    // pos honoured (uWSGI always sent from 0)
    let (n, got) = send_from_area(id, 1, 4, 8, 10, false);
    assert_eq!(n, 8);
    assert_eq!(got, expected_frame(1, &content[4..12]));
    // len 0: to the end of the area
    let (n, got) = send_from_area(id, 2, size - 10, 0, 12, false);
    assert_eq!(n, 10);
    assert_eq!(got, expected_frame(2, &content[size as usize - 10..]));
    let (n, got) = send_from_area(id, 2, 96, 0, 4 + size as usize - 96, false);
    assert_eq!(n, size as i64 - 96);
    assert_eq!(got, expected_frame(2, &content[96..]));
    // len 0 with `used` honoured: to used
    assert_eq!(set_used(id, 100), 0);
    let (n, got) = send_from_area(id, 2, 40, 0, 62, false);
    assert_eq!(n, 60);
    assert_eq!(got, expected_frame(2, &content[40..100]));
    // pos at or beyond used: an empty frame
    let (n, got) = send_from_area(id, 2, 100, 0, 2, false);
    assert_eq!(n, 0);
    assert_eq!(got, [0x82, 0]);
    // an explicit len is not clipped by used
    let (n, got) = send_from_area(id, 2, 40, 200, 204, false);
    assert_eq!(n, 200);
    assert_eq!(got, expected_frame(2, &content[40..240]));
    assert_eq!(honour_used(id, false), 0);
    let (n, _) = send_from_area(id, 2, 40, 0, 2 + 2 + size as usize - 40, false);
    assert_eq!(n, size as i64 - 40);
    // control opcodes
    let (n, got) = send_from_area(id, 9, 0, 3, 5, false);
    assert_eq!(n, 3);
    assert_eq!(got, expected_frame(9, &content[..3]));
}

#[test]
fn range_errors_send_nothing() {
    let _g = serial();
    let id = must_init("1");
    let size = size_of(id);
    let (a, b) = socketpair();
    let cases = [
        (0, size + 1),
        (size - 3, 4),
        (size, 0),
        (size, 1),
        (u64::MAX, 2),
        (1, u64::MAX),
        (u64::MAX, 0),
    ];
    for (pos, len) in cases {
        let n = unsafe { sa::sharedarea_ws_send_from_area(a, 2, id, pos, len) };
        assert_eq!(
            n,
            sa::SHAREDAREA_E_OUT_OF_RANGE as i64,
            "pos {pos} len {len}"
        );
        let e = last_error();
        assert!(
            e.starts_with(&format!("sharedarea_ws_send_from_area: area {id}: ")),
            "{e}"
        );
    }
    assert_eq!(pending_bytes(b), 0, "a refused send wrote to the socket");
    close(a);
    close(b);
}

#[test]
fn send_from_buffer() {
    let _g = serial();
    for len in [0usize, 5, 126, 70_000] {
        let payload = pattern(len, 9);
        let want = expected_frame(1, &payload);
        let (a, b) = socketpair();
        let reader = std::thread::spawn(move || {
            read_exact_fd(b, want.len(), Duration::from_secs(10)).map(|v| (v, want))
        });
        let n =
            unsafe { sa::sharedarea_ws_send(a, 1, payload.as_ptr() as *const c_void, len as u64) };
        let (got, want) = join_within(reader, Duration::from_secs(15), "reader").unwrap();
        assert_eq!(n, len as i64);
        assert!(got == want, "ws_send frame for {len} bytes differs");
        close(a);
        close(b);
    }
}

#[test]
fn peer_closed() {
    let _g = serial();
    ignore_sigpipe();
    let id = must_init("1");
    for len in [5u64, 4096] {
        let (a, b) = socketpair();
        close(b);
        let n = unsafe { sa::sharedarea_ws_send_from_area(a, 2, id, 0, len) };
        assert_eq!(
            n,
            sa::SHAREDAREA_E_PEER_CLOSED as i64,
            "send to a closed peer: {}",
            last_error()
        );
        let n = unsafe { sa::sharedarea_ws_send(a, 2, b"hello".as_ptr() as *const c_void, 5) };
        assert_eq!(n, sa::SHAREDAREA_E_PEER_CLOSED as i64);
        close(a);
    }
    // the peer closes in the middle of a large send
    let id = must_init("size=8M");
    let (a, b) = socketpair();
    let closer = std::thread::spawn(move || {
        let _ = read_exact_fd(b, 100_000, Duration::from_secs(5));
        close(b);
    });
    let t = Instant::now();
    let n = unsafe { sa::sharedarea_ws_send_from_area(a, 2, id, 0, 0) };
    join_within(closer, Duration::from_secs(10), "closer");
    assert_eq!(
        n,
        sa::SHAREDAREA_E_PEER_CLOSED as i64,
        "peer closed mid-send: {}",
        last_error()
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    close(a);
    // not a socket at all / a bad descriptor: an error, not a crash
    let n = unsafe { sa::sharedarea_ws_send_from_area(-1, 2, id, 0, 5) };
    assert!(n < 0, "fd -1: {n}");
}

#[test]
fn stalled_reader_does_not_block_writers() {
    let _g = serial();
    let id = must_init("size=9M");
    let len = 8 * MIB;
    let sc = Scratch::new(4);
    let (a, b) = socketpair();
    // process 1: a send of 8 MiB to a reader that never reads
    let mut sender = {
        let sc = &sc;
        fork_child(move || {
            close(b);
            sc.set(0, 1);
            let n = unsafe { sa::sharedarea_ws_send_from_area(a, 2, id, 0, len) };
            sc.set(1, 1);
            child_fail(2, &format!("the send to a stalled reader returned {n}"))
        })
    };
    assert!(sc.wait_for(0, 1, Duration::from_secs(5)));
    // wait until the socket is full (the send is stuck)
    let t = Instant::now();
    let mut last = 0;
    loop {
        sleep_ms(50);
        let now = pending_bytes(b);
        if now > 0 && now == last {
            break;
        }
        last = now;
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the sender never filled the socket"
        );
    }
    assert_eq!(sc.get(1), 0, "the send finished although nobody reads");
    // process 2: 1000 writes
    let mut writer = {
        let sc = &sc;
        fork_child(move || {
            let t = Instant::now();
            let block = [0x5Au8; 4096];
            for i in 0..1000u64 {
                let st = write(id, (i * 4096) % (8 * MIB), &block);
                if st != 0 {
                    return child_fail(2, &format!("write {i}: {st}"));
                }
            }
            sc.set(2, t.elapsed().as_micros() as u64 + 1);
            0
        })
    };
    let res = writer.wait(Duration::from_secs(3));
    assert!(sender.is_running(), "the sender gave up");
    sender.kill_and_reap();
    close(a);
    close(b);
    assert_eq!(
        res,
        Ok(Exit::Code(0)),
        "1000 writes while a send is stuck on a full socket did not finish"
    );
    let took = Duration::from_micros(sc.get(2));
    eprintln!("1000 writes of 4 KiB beside a stalled 8 MiB send: {took:?}");
    assert!(took < Duration::from_secs(1), "1000 writes took {took:?}");
    // and this process can take the write lock too
    assert_eq!(wlock(id), 0);
    assert_eq!(unlock(id), 0);
}

#[test]
fn invalid_opcodes_are_refused_and_send_nothing() {
    let _g = serial();
    let id = must_init("1");
    let (a, b) = socketpair();
    for op in [0u8, 3, 7, 11, 15, 16, 0x81, 0xFF] {
        let n = unsafe { sa::sharedarea_ws_send_from_area(a, op, id, 0, 5) };
        assert_eq!(n, sa::SHAREDAREA_E_INVALID_ARGUMENT as i64, "opcode {op}");
        let n = unsafe { sa::sharedarea_ws_send(a, op, b"hello".as_ptr() as *const c_void, 5) };
        assert_eq!(n, sa::SHAREDAREA_E_INVALID_ARGUMENT as i64, "opcode {op}");
    }
    assert_eq!(pending_bytes(b), 0);
    close(a);
    close(b);
}

// CORE BUG (reported to the lead): RFC 6455 5.5 says control frames (close 8, ping 9,
// pong 10) carry at most 125 payload bytes and are never fragmented; the core sends a
// close/ping/pong frame of any length (e.g. a 200-byte close frame with a 16-bit length).
#[test]
fn control_frames_longer_than_125_bytes_are_refused() {
    let _g = serial();
    let id = must_init("1");
    let (a, b) = socketpair();
    for op in [8u8, 9, 10] {
        // 125 bytes is fine
        let n = unsafe { sa::sharedarea_ws_send_from_area(a, op, id, 0, 125) };
        assert_eq!(n, 125, "opcode {op}, 125 bytes: {}", last_error());
        let got = read_exact_fd(b, 127, Duration::from_secs(2)).unwrap();
        assert_eq!(&got[..2], &[0x80 | op, 125]);
        // 126 bytes is not: refused, nothing sent
        let n = unsafe { sa::sharedarea_ws_send_from_area(a, op, id, 0, 126) };
        let sent = pending_bytes(b);
        let _ = read_exact_fd(b, sent, Duration::from_secs(2));
        assert_eq!(
            n,
            sa::SHAREDAREA_E_INVALID_ARGUMENT as i64,
            "opcode {op} with 126 payload bytes (sent {sent} bytes)"
        );
        assert_eq!(sent, 0, "a refused control frame wrote to the socket");
        let big = [0u8; 200];
        let n = unsafe { sa::sharedarea_ws_send(a, op, big.as_ptr() as *const c_void, 200) };
        let sent = pending_bytes(b);
        let _ = read_exact_fd(b, sent, Duration::from_secs(2));
        assert_eq!(
            n,
            sa::SHAREDAREA_E_INVALID_ARGUMENT as i64,
            "ws_send opcode {op} with 200 bytes"
        );
    }
    close(a);
    close(b);
}
