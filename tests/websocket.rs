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

// ---------------------------------------------------------------------------------------
// Signals: a send that waits for a stalled client returns INTERRUPTED when a handler runs,
// keeps the frame's rest, and sharedarea_ws_flush / sharedarea_ws_forget finish or drop it.

/// CLOCK_MONOTONIC ns at which this process's SIGALRM handler last ran (0: not yet).
static ALARM_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn on_alarm(_sig: libc::c_int) {
    // clock_gettime and an atomic store are async-signal-safe.
    ALARM_AT.store(now_ns(), std::sync::atomic::Ordering::SeqCst);
}

/// In a child: a SIGALRM handler without SA_RESTART (like Perl's), then an alarm in `secs`.
fn alarm_in(secs: u32) {
    ALARM_AT.store(0, std::sync::atomic::Ordering::SeqCst);
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        libc::alarm(secs);
    }
}

fn alarm_at() -> u64 {
    ALARM_AT.load(std::sync::atomic::Ordering::SeqCst)
}

/// Waits until the socket's receive side stops growing (the sender is stuck on it).
fn wait_until_full(b: i32, what: &str) -> usize {
    let t = Instant::now();
    let mut last = 0;
    loop {
        sleep_ms(50);
        let now = pending_bytes(b);
        if now > 0 && now == last {
            return now;
        }
        last = now;
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{what}: the sender never filled the socket"
        );
    }
}

#[test]
fn interrupted_send_from_area_resumes_with_flush() {
    let _g = serial();
    let id = must_init("size=9M");
    let len = 8 * MIB;
    let content = pattern(len as usize, 21);
    must_write(id, 0, &content);
    let want = expected_frame(2, &content);
    let sc = Scratch::new(12);
    let (a, b) = socketpair();
    const NONE: u64 = u64::MAX;
    for i in 0..12 {
        sc.set(i, NONE);
    }
    let mut sender = {
        let sc = &sc;
        fork_child(move || {
            close(b);
            // 1. the send: stuck on the full socket until the alarm
            alarm_in(1);
            let n = unsafe { sa::sharedarea_ws_send_from_area(a, 2, id, 0, len) };
            let back = now_ns();
            sc.set(1, alarm_at());
            sc.set(2, back);
            let err = last_error();
            sc.set(0, n as u64);
            if n != sa::SHAREDAREA_E_INTERRUPTED as i64 {
                return child_fail(2, &format!("the send returned {n}: {err}"));
            }
            if !err.starts_with("sharedarea_ws_send_from_area: fd ") || !err.contains("unsent") {
                return child_fail(3, &format!("the INTERRUPTED detail: {err}"));
            }
            // 2. a new frame while this one is pending: refused, nothing sent
            let r = unsafe { sa::sharedarea_ws_send(a, 1, b"x".as_ptr() as *const c_void, 1) };
            let err = last_error();
            if r != sa::SHAREDAREA_E_INVALID_ARGUMENT as i64 || !err.contains("sharedarea_ws_flush")
            {
                return child_fail(4, &format!("a send with bytes pending returned {r}: {err}"));
            }
            let r = unsafe { sa::sharedarea_ws_send_from_area(a, 2, id, 0, 5) };
            if r != sa::SHAREDAREA_E_INVALID_ARGUMENT as i64 {
                return child_fail(4, &format!("an area send with bytes pending returned {r}"));
            }
            // 3. the flush is interrupted by the next signal too
            alarm_in(1);
            let f = unsafe { sa::sharedarea_ws_flush(a) };
            let back = now_ns();
            sc.set(4, alarm_at());
            sc.set(5, back);
            sc.set(3, f as u64);
            // 4. once the reader reads, the flush completes
            if !sc.wait_for(6, 1, Duration::from_secs(20)) {
                return child_fail(5, "no go from the parent");
            }
            let mut f = unsafe { sa::sharedarea_ws_flush(a) };
            while f == sa::SHAREDAREA_E_INTERRUPTED as i64 {
                f = unsafe { sa::sharedarea_ws_flush(a) };
            }
            sc.set(7, f as u64);
            sc.set(8, unsafe { sa::sharedarea_ws_flush(a) } as u64);
            sc.set(9, unsafe { sa::sharedarea_ws_forget(a) } as u64);
            0
        })
    };
    let full = wait_until_full(b, "ws_send_from_area");
    assert!(
        full < want.len(),
        "the whole frame fit the socket ({full} bytes)"
    );

    let t = Instant::now();
    while sc.get(0) == NONE {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the send did not return within 4 s of the alarm"
        );
        sleep_ms(5);
    }
    let n = sc.get(0) as i64;
    assert_eq!(
        n,
        sa::SHAREDAREA_E_INTERRUPTED as i64,
        "the stalled send returned {n}"
    );
    let (sig, back) = (sc.get(1), sc.get(2));
    assert!(sig != 0 && sig != NONE, "the alarm handler never ran");
    let late = Duration::from_nanos(back.saturating_sub(sig));
    eprintln!("stalled 8 MiB send from an area: INTERRUPTED {late:?} after the signal");
    assert!(
        late < Duration::from_secs(1),
        "INTERRUPTED came {late:?} after the signal"
    );

    // the child now waits in sharedarea_ws_flush: the area's write lock is free
    let t = Instant::now();
    assert_eq!(wlock(id), 0);
    assert_eq!(unlock(id), 0);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "wlock took {:?} while the send was pending",
        t.elapsed()
    );

    while sc.get(3) == NONE {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the flush was not interrupted by the second alarm"
        );
        sleep_ms(10);
    }
    assert_eq!(
        sc.get(3) as i64,
        sa::SHAREDAREA_E_INTERRUPTED as i64,
        "the interrupted flush"
    );
    let late = Duration::from_nanos(sc.get(5).saturating_sub(sc.get(4)));
    assert!(
        late < Duration::from_secs(1),
        "the flush returned {late:?} after the signal"
    );
    assert_eq!(pending_bytes(b), full, "bytes arrived although nobody read");

    // the reader starts; the flush completes; exactly one well-formed frame arrives
    let expect = want.len();
    let reader = std::thread::spawn(move || read_exact_fd(b, expect, Duration::from_secs(20)));
    sc.set(6, 1);
    let got = join_within(reader, Duration::from_secs(30), "socket reader")
        .unwrap_or_else(|e| panic!("reading the resumed frame: {e}"));
    sender.expect_success(Duration::from_secs(10), "the interrupted sender");
    assert_eq!(
        sc.get(7),
        len,
        "sharedarea_ws_flush returns the frame's payload length"
    );
    assert_eq!(sc.get(8), 0, "a second flush finds nothing pending");
    assert_eq!(sc.get(9), 0, "forget after the flush drops nothing");
    assert_eq!(&got[..10], &want[..10], "the frame header");
    assert!(
        got == want,
        "the resumed frame's bytes differ (loss or duplication)"
    );
    sleep_ms(50);
    assert_eq!(pending_bytes(b), 0, "bytes beyond the one frame");
    close(a);
    close(b);
}

#[test]
fn forget_drops_the_pending_bytes_of_an_interrupted_send() {
    let _g = serial();
    let len = 4 * MIB as usize;
    let payload = pattern(len, 33);
    let first = expected_frame(2, &payload);
    let sc = Scratch::new(4);
    let (a, b) = socketpair();
    let mut sender = {
        let sc = &sc;
        let payload = &payload;
        fork_child(move || {
            close(b);
            alarm_in(1);
            let n = unsafe {
                sa::sharedarea_ws_send(a, 2, payload.as_ptr() as *const c_void, len as u64)
            };
            if n != sa::SHAREDAREA_E_INTERRUPTED as i64 {
                return child_fail(
                    2,
                    &format!("the send from a buffer returned {n}: {}", last_error()),
                );
            }
            let dropped = unsafe { sa::sharedarea_ws_forget(a) };
            sc.set(0, dropped as u64);
            sc.set(1, unsafe { sa::sharedarea_ws_forget(a) } as u64);
            sc.set(2, unsafe { sa::sharedarea_ws_flush(a) } as u64 + 1);
            if unsafe { sa::sharedarea_ws_forget(-1) } != sa::SHAREDAREA_E_INVALID_ARGUMENT as i64
                || unsafe { sa::sharedarea_ws_flush(-1) }
                    != sa::SHAREDAREA_E_INVALID_ARGUMENT as i64
            {
                return child_fail(3, "flush/forget of fd -1 were not refused");
            }
            // no longer refused: the next frame goes straight after what had left
            let n = unsafe { sa::sharedarea_ws_send(a, 1, b"after".as_ptr() as *const c_void, 5) };
            if n != 5 {
                return child_fail(
                    4,
                    &format!("the send after forget returned {n}: {}", last_error()),
                );
            }
            0
        })
    };
    let full = wait_until_full(b, "ws_send");
    assert!(
        sc.wait_for(2, 1, Duration::from_secs(5)),
        "the send was not interrupted"
    );
    let dropped = sc.get(0) as usize;
    assert!(
        dropped > 0 && dropped < first.len(),
        "forget dropped {dropped} bytes"
    );
    assert_eq!(sc.get(1), 0, "a second forget drops nothing");
    assert_eq!(sc.get(2), 1, "flush after forget finds nothing");
    let sent = first.len() - dropped;
    assert!(sent >= full, "{sent} bytes sent, {full} in the socket");
    let expect = sent + 7;
    let reader = std::thread::spawn(move || read_exact_fd(b, expect, Duration::from_secs(20)));
    let got = join_within(reader, Duration::from_secs(30), "socket reader")
        .unwrap_or_else(|e| panic!("reading: {e}"));
    sender.expect_success(Duration::from_secs(10), "the sender");
    assert!(
        got[..sent] == first[..sent],
        "the part sent before the signal differs"
    );
    assert_eq!(
        &got[sent..],
        b"\x81\x05after",
        "after forget: exactly the next frame"
    );
    sleep_ms(50);
    assert_eq!(pending_bytes(b), 0, "dropped bytes were sent after all");
    close(a);
    close(b);
}

/// Reads everything `fd` gives until end of stream (or `timeout`); Err on timeout.
fn read_to_eof(fd: i32, timeout: Duration) -> Result<Vec<u8>, String> {
    let mut all = Vec::new();
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!("no end of stream after {} bytes", all.len()));
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        if unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32 + 1) } <= 0 {
            continue;
        }
        let r = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut c_void, buf.len()) };
        if r <= 0 {
            return Ok(all);
        }
        all.extend_from_slice(&buf[..r as usize]);
    }
}

/// Restores the default stall limit when a test that shortened it ends.
struct StallLimit;
impl StallLimit {
    fn set(ms: u64) -> StallLimit {
        assert_eq!(unsafe { sa::sharedarea_ws_set_stall_limit(ms) }, 0);
        StallLimit
    }
}
impl Drop for StallLimit {
    fn drop(&mut self) {
        unsafe { sa::sharedarea_ws_set_stall_limit(60_000) };
    }
}

#[test]
fn a_send_that_fails_part_way_breaks_the_connection_for_good() {
    let _g = serial();
    let _limit = StallLimit::set(300);
    let id = must_init("size=4M");
    must_write(id, 0, &pattern(4 * MIB as usize, 3));
    let (a, b) = socketpair();
    // the client takes 1000 bytes, then nothing
    let t = Instant::now();
    let reader = std::thread::spawn(move || read_exact_fd(b, 1000, Duration::from_secs(5)));
    let n = unsafe { sa::sharedarea_ws_send_from_area(a, 2, id, 0, 0) };
    assert_eq!(
        n,
        sa::SHAREDAREA_E_CONNECTION_FAILED as i64,
        "a send cut off by a stalled client: {}",
        last_error()
    );
    assert!(
        last_error().contains("part-way"),
        "the error says what happened: {}",
        last_error()
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "gave up after {:?}",
        t.elapsed()
    );
    join_within(reader, Duration::from_secs(10), "reader").unwrap();
    // every later send fails at once, and writes nothing
    for _ in 0..3 {
        let t = Instant::now();
        let n = unsafe { sa::sharedarea_ws_send(a, 2, b"next".as_ptr() as *const c_void, 4) };
        assert_eq!(
            n,
            sa::SHAREDAREA_E_CONNECTION_FAILED as i64,
            "{}",
            last_error()
        );
        let n = unsafe { sa::sharedarea_ws_send_from_area(a, 8, id, 0, 2) };
        assert_eq!(
            n,
            sa::SHAREDAREA_E_CONNECTION_FAILED as i64,
            "a close frame after a cut-off one"
        );
        assert_eq!(
            unsafe { sa::sharedarea_ws_flush(a) },
            sa::SHAREDAREA_E_CONNECTION_FAILED as i64
        );
        assert_eq!(
            unsafe { sa::sharedarea_ws_queued(a) },
            sa::SHAREDAREA_E_CONNECTION_FAILED as i64
        );
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
    // the socket is shut: the client reads what was sent (part of one frame), then the end
    let rest = read_to_eof(b, Duration::from_secs(5)).expect("the socket was shut down");
    let frame_len = 10 + 4 * MIB as usize;
    assert!(
        1000 + rest.len() < frame_len,
        "the client got {} bytes: more than the cut-off frame's part",
        1000 + rest.len()
    );
    // a new connection that gets the same number is not refused (the mark
    // belongs to the old socket), even without sharedarea_ws_forget
    close(a);
    close(b);
    let (a, b) = socketpair();
    let n = unsafe { sa::sharedarea_ws_send(a, 2, b"new".as_ptr() as *const c_void, 3) };
    assert_eq!(
        n,
        3,
        "a new connection on a reused number: {}",
        last_error()
    );
    close(a);
    close(b);
}

#[test]
fn a_send_that_times_out_before_its_first_byte_leaves_the_stream_whole() {
    let _g = serial();
    let _limit = StallLimit::set(200);
    let (a, b) = socketpair();
    let chunk = [0u8; 65536];
    while unsafe {
        libc::send(
            a,
            chunk.as_ptr() as *const c_void,
            chunk.len(),
            libc::MSG_DONTWAIT,
        )
    } > 0
    {}
    for _ in 0..2 {
        let t = Instant::now();
        let n = unsafe { sa::sharedarea_ws_send(a, 2, b"x".as_ptr() as *const c_void, 1) };
        assert_eq!(n, sa::SHAREDAREA_E_TIMED_OUT as i64, "{}", last_error());
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
    }
    close(a);
    close(b);
}

#[test]
fn nonblocking_sends_queue_what_the_socket_does_not_take_and_report_it() {
    let _g = serial();
    let id = must_init("size=2M");
    let content = pattern(2 * MIB as usize, 5);
    must_write(id, 0, &content);
    let (a, b) = socketpair();
    // nobody reads yet: most of a 2 MiB frame stays queued, and the call does not wait
    let t = Instant::now();
    let q1 = unsafe { sa::sharedarea_ws_send_from_area_nb(a, 2, id, 0, 0) };
    assert!(t.elapsed() < Duration::from_millis(500));
    assert!(
        q1 > 0 && q1 < (2 * MIB + 10) as i64,
        "queued after the first frame: {q1} ({})",
        last_error()
    );
    let q_all = unsafe { sa::sharedarea_ws_queued(a) };
    assert!(
        q_all > q1,
        "queued() counts the kernel's bytes too: {q_all} vs {q1}"
    );
    // a second frame goes behind the first, whole
    let q2 = unsafe { sa::sharedarea_ws_send_nb(a, 1, b"hello".as_ptr() as *const c_void, 5) };
    assert_eq!(q2, q1 + 7, "the second frame is queued behind the first");
    assert_eq!(
        unsafe { sa::sharedarea_ws_flush_nb(a) },
        q2,
        "a full socket takes nothing"
    );
    // the client reads; flush_nb sends the rest as the socket drains
    let mut want = expected_frame(2, &content);
    want.extend_from_slice(&expected_frame(1, b"hello"));
    let n = want.len();
    let reader = std::thread::spawn(move || read_exact_fd(b, n, Duration::from_secs(20)));
    let t = Instant::now();
    loop {
        let left = unsafe { sa::sharedarea_ws_flush_nb(a) };
        assert!(left >= 0, "flush_nb: {}", last_error());
        if left == 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "flush_nb never finished"
        );
        let mut pfd = libc::pollfd {
            fd: a,
            events: libc::POLLOUT,
            revents: 0,
        };
        unsafe { libc::poll(&mut pfd, 1, 100) };
    }
    let got = join_within(reader, Duration::from_secs(30), "reader").unwrap();
    assert!(got == want, "the frames arrived whole and in order");
    assert_eq!(unsafe { sa::sharedarea_ws_queued(a) }, 0);
    close(a);
    // a peer gone: an error, and the connection is broken for good
    let (a, b) = socketpair();
    ignore_sigpipe();
    close(b);
    let n = unsafe { sa::sharedarea_ws_send_nb(a, 2, b"x".as_ptr() as *const c_void, 1) };
    assert_eq!(n, sa::SHAREDAREA_E_PEER_CLOSED as i64, "{}", last_error());
    assert!(unsafe { sa::sharedarea_ws_queued(-1) } < 0);
    unsafe { sa::sharedarea_ws_forget(a) };
    close(a);
}
