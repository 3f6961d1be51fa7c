//! Core benchmark: the C ABI's hot operations against bare-metal baselines, in one run.
//!
//!     cargo bench --bench core
//!
//! Every row is the median of 5 repetitions (min and max shown). Targets:
//! small ops (read64/write64/inc64) <= 2x a bare AtomicI64::fetch_add plus a bounds
//! check; a 64 KiB read <= 1.2x a plain 64 KiB memcpy; wake-up p50 < 100 us across
//! processes. The whole run stays well under 60 s.

use std::ffi::c_void;
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sharedarea as sa;

const REPS: usize = 5;
const REP_TARGET: Duration = Duration::from_millis(100);

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Anonymous MAP_SHARED memory, the same kind of pages an area lives in.
fn shared_pages(len: usize) -> *mut u8 {
    // SAFETY: a fresh anonymous mapping; checked for failure below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap");
    p as *mut u8
}

fn last_error() -> String {
    // SAFETY: the library returns a valid NUL-terminated string (or NULL).
    unsafe {
        let p = sa::sharedarea_last_error();
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

fn init(spec: &str) -> i32 {
    let c = std::ffi::CString::new(spec).unwrap();
    #[allow(unused_unsafe)]
    let id = unsafe { sa::sharedarea_init(c.as_ptr()) };
    assert!(id >= 0, "sharedarea_init({spec}): {}", last_error());
    id
}

struct Row {
    name: String,
    med: f64,
    min: f64,
    max: f64,
    unit: &'static str,
    note: String,
}

impl Row {
    /// A row from a (median, min, max) triple.
    fn new(
        name: String,
        (med, min, max): (f64, f64, f64),
        unit: &'static str,
        note: String,
    ) -> Row {
        Row {
            name,
            med,
            min,
            max,
            unit,
            note,
        }
    }
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// How many calls of `f` take about REP_TARGET.
fn calibrate(f: &mut impl FnMut(u64)) -> u64 {
    let mut n = 1000u64;
    loop {
        let t = Instant::now();
        for i in 0..n {
            f(i);
        }
        let e = t.elapsed();
        if e >= Duration::from_millis(20) {
            return ((n as f64) * REP_TARGET.as_secs_f64() / e.as_secs_f64()).max(1.0) as u64;
        }
        n *= 4;
    }
}

fn run(f: &mut impl FnMut(u64), n: u64) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// An operation measured against its baseline: (median, min, max) ns of each, and
/// the median of the per-repetition ratios.
struct Paired {
    op: (f64, f64, f64),
    base: (f64, f64, f64),
    ratio: f64,
}

/// Runs baseline and operation alternately, REPS times each (so a noisy neighbour
/// hits both alike), and reports medians and the median ratio.
fn paired(mut base: impl FnMut(u64), mut op: impl FnMut(u64)) -> Paired {
    let nb = calibrate(&mut base);
    let no = calibrate(&mut op);
    let (mut b, mut o, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPS {
        let tb = run(&mut base, nb);
        let to = run(&mut op, no);
        b.push(tb);
        o.push(to);
        r.push(to / tb);
    }
    Paired {
        op: stats(o),
        base: stats(b),
        ratio: stats(r).0,
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

/// Forks `procs` children that wait for a start flag, each run `per` calls of `f`,
/// and exit; returns wall ns from the start flag to the last exit.
fn contended(procs: usize, per: u64, f: fn(u64)) -> f64 {
    let flag = shared_pages(4096) as *const AtomicU64;
    // SAFETY: the mapping is 4096 bytes, aligned, and lives for the process.
    let flag = unsafe { &*flag };
    let kids: Vec<libc::pid_t> = (0..procs)
        .map(|_| {
            // SAFETY: the child only spins, calls `f` and _exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork");
            if pid == 0 {
                let deadline = Instant::now() + Duration::from_secs(10);
                while flag.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
                    std::hint::spin_loop();
                }
                for i in 0..per {
                    f(i);
                }
                // SAFETY: ends the child without running the parent's destructors.
                unsafe { libc::_exit(0) };
            }
            pid
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    let t = Instant::now();
    flag.store(1, Ordering::Release);
    for pid in kids {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child failed"
        );
    }
    let ns = t.elapsed().as_nanos() as f64;
    // SAFETY: unmapping the 4096 bytes mapped above.
    unsafe { libc::munmap(flag as *const AtomicU64 as *mut c_void, 4096) };
    ns
}

static mut AREA: i32 = 0;
static mut ATOMIC: *const AtomicI64 = std::ptr::null();

fn area() -> i32 {
    // SAFETY: set once in main before any fork or measurement.
    unsafe { AREA }
}

fn bench_main() {
    let mut rows: Vec<Row> = Vec::new();
    let id = init("pages=32");
    // SAFETY: single-threaded setup.
    unsafe { AREA = id };
    let size = 32 * 4096u64;
    let atom_mem = shared_pages(4096);
    // SAFETY: 8-aligned, in a live mapping.
    unsafe { ATOMIC = atom_mem as *const AtomicI64 };
    // SAFETY: as above.
    let atom = unsafe { &*(atom_mem as *const AtomicI64) };

    // --- small ops, each paired with a bare atomic add plus a bounds check
    let base = |_: u64| {
        let pos = black_box(8u64);
        let end = pos.checked_add(8);
        if end.is_none_or(|e| e > black_box(size)) {
            panic!("out of range");
        }
        black_box(atom.fetch_add(1, Ordering::SeqCst));
    };
    let small = |name: &str, p: Paired, rows: &mut Vec<Row>| {
        if rows.is_empty() {
            rows.push(Row::new(
                "baseline: AtomicI64::fetch_add + bounds check".into(),
                p.base,
                "ns/op",
                String::new(),
            ));
        }
        rows.push(Row::new(
            name.into(),
            p.op,
            "ns/op",
            format!(
                "{:.2}x baseline (target <= 2x) {}",
                p.ratio,
                verdict(p.ratio <= 2.0)
            ),
        ));
    };
    let mut v = 0i64;
    let p = paired(base, |_| {
        black_box(unsafe { sa::sharedarea_read64(black_box(id), black_box(8), &mut v) });
    });
    small("sharedarea_read64", p, &mut rows);
    let p = paired(base, |i| {
        black_box(unsafe { sa::sharedarea_write64(black_box(id), black_box(8), i as i64) });
    });
    small("sharedarea_write64", p, &mut rows);
    let p = paired(base, |_| {
        black_box(unsafe {
            sa::sharedarea_inc64(black_box(id), black_box(16), 1, std::ptr::null_mut())
        });
    });
    small("sharedarea_inc64", p, &mut rows);
    let p = paired(base, |_| {
        black_box(unsafe {
            sa::sharedarea_inc64(black_box(id), black_box(19), 1, std::ptr::null_mut())
        });
    });
    small("sharedarea_inc64 (unaligned, pos 19)", p, &mut rows);

    // --- lock pairs vs two bare atomics
    let base2 = |_: u64| {
        black_box(atom.fetch_add(1, Ordering::SeqCst));
        black_box(atom.fetch_sub(1, Ordering::SeqCst));
    };
    let p = paired(base2, |_| {
        let a = unsafe { sa::sharedarea_rlock(black_box(id)) };
        let b = unsafe { sa::sharedarea_unlock(black_box(id)) };
        black_box((a, b));
    });
    rows.push(Row::new(
        "sharedarea_rlock + sharedarea_unlock".into(),
        p.op,
        "ns/pair",
        format!(
            "{:.2}x fetch_add+fetch_sub ({:.1} ns) (target <= 2x) {}",
            p.ratio,
            p.base.0,
            verdict(p.ratio <= 2.0)
        ),
    ));
    let p = paired(base2, |_| {
        let a = unsafe { sa::sharedarea_wlock(black_box(id)) };
        let b = unsafe { sa::sharedarea_unlock(black_box(id)) };
        black_box((a, b));
    });
    rows.push(Row::new(
        "sharedarea_wlock + sharedarea_unlock".into(),
        p.op,
        "ns/pair",
        format!("{:.2}x fetch_add+fetch_sub", p.ratio),
    ));

    // --- 64 KiB read vs memcpy from the same kind of memory (shared pages)
    let src = shared_pages(65536);
    // SAFETY: filling our own 64 KiB mapping.
    unsafe { std::ptr::write_bytes(src, 0x5A, 65536) };
    let block = vec![0x5Au8; 65536];
    let st = unsafe { sa::sharedarea_write(id, 0, block.as_ptr() as *const c_void, 65536) };
    assert_eq!(st, 0);
    let dst = std::cell::RefCell::new(vec![0u8; 65536]);
    let memcpy = |_: u64| {
        let mut d = dst.borrow_mut();
        // SAFETY: both buffers are 64 KiB and do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(black_box(src as *const u8), d.as_mut_ptr(), 65536)
        };
        black_box(&mut *d);
    };
    let p = paired(memcpy, |_| {
        let mut d = dst.borrow_mut();
        black_box(unsafe {
            sa::sharedarea_read(black_box(id), 0, d.as_mut_ptr() as *mut c_void, 65536)
        });
    });
    rows.push(Row::new(
        "baseline: memcpy 64 KiB (shared pages -> buffer)".into(),
        p.base,
        "ns/op",
        format!("{:.1} GB/s", 65536.0 / p.base.0),
    ));
    rows.push(Row::new(
        "sharedarea_read 64 KiB".into(),
        p.op,
        "ns/op",
        format!(
            "{:.2}x memcpy (target <= 1.2x) {}",
            p.ratio,
            verdict(p.ratio <= 1.2)
        ),
    ));
    let p = paired(memcpy, |_| {
        black_box(unsafe {
            sa::sharedarea_write(black_box(id), 0, block.as_ptr() as *const c_void, 65536)
        });
    });
    rows.push(Row::new(
        "sharedarea_write 64 KiB".into(),
        p.op,
        "ns/op",
        format!("{:.2}x memcpy", p.ratio),
    ));

    // --- two processes contending on one counter
    let per = 500_000u64;
    let mut reps = Vec::new();
    for _ in 0..REPS {
        assert_eq!(unsafe { sa::sharedarea_write64(id, 24, 0) }, 0);
        let ns = contended(2, per, |_| {
            let st = unsafe { sa::sharedarea_inc64(area(), 24, 1, std::ptr::null_mut()) };
            if st != 0 {
                // SAFETY: ends the child with a failure.
                unsafe { libc::_exit(2) };
            }
        });
        let mut total = 0i64;
        assert_eq!(unsafe { sa::sharedarea_read64(id, 24, &mut total) }, 0);
        assert_eq!(
            total,
            2 * per as i64,
            "2 processes x {per} inc64: total is not exact"
        );
        reps.push(ns / (2 * per) as f64);
    }
    let (c_med, c_min, c_max) = stats(reps);
    let mut reps = Vec::new();
    for _ in 0..REPS {
        let ns = contended(2, per, |_| {
            // SAFETY: ATOMIC points into a live shared mapping.
            black_box(unsafe { &*ATOMIC }.fetch_add(1, Ordering::SeqCst));
        });
        reps.push(ns / (2 * per) as f64);
    }
    let (a_med, a_min, a_max) = stats(reps);
    rows.push(Row {
        name: "baseline: 2 processes x AtomicI64::fetch_add, one counter".into(),
        med: a_med,
        min: a_min,
        max: a_max,
        unit: "ns/incr",
        note: String::new(),
    });
    rows.push(Row {
        name: "sharedarea_inc64, 2 processes, one counter".into(),
        med: c_med,
        min: c_min,
        max: c_max,
        unit: "ns/incr",
        note: format!("{:.2}x contended atomic; totals exact", c_med / a_med),
    });

    // --- wake-up latency across processes
    let (p50, p99, pmax) = wake_latency(id, 500);
    rows.push(Row {
        name: "wait_since wake-up, writer process -> waiter process (500 samples)".into(),
        med: p50,
        min: p99,
        max: pmax,
        unit: "us p50",
        note: format!(
            "p99 {p99:.1} us, max {pmax:.1} us (target p50 < 100 us) {}",
            verdict(p50 < 100.0)
        ),
    });
    let (p50, p99, pmax) = wake_latency_wait(id, 100);
    rows.push(Row {
        name: "sharedarea_wait wake-up, freq 1000 ms (100 samples)".into(),
        med: p50,
        min: p99,
        max: pmax,
        unit: "us p50",
        note: format!(
            "p99 {p99:.1} us, max {pmax:.1} us (target p50 < 100 us) {}",
            verdict(p50 < 100.0)
        ),
    });

    println!();
    println!(
        "{:<66} {:>11} {:>11} {:>11}  {:<8} note",
        "operation", "median", "min", "max", "unit"
    );
    println!("{}", "-".repeat(140));
    for r in rows {
        let (mn, mx) = if r.unit == "us p50" {
            (String::from("-"), String::from("-"))
        } else {
            (format!("{:.1}", r.min), format!("{:.1}", r.max))
        };
        println!(
            "{:<66} {:>11.1} {:>11} {:>11}  {:<8} {}",
            r.name, r.med, mn, mx, r.unit, r.note
        );
    }
}

/// A waiter process sleeps in `sharedarea_wait_since`; this process writes
/// CLOCK_MONOTONIC into the area (the write is the update); the waiter subtracts it
/// from the time it woke. Returns (p50, p99, max) in microseconds.
fn wake_latency(id: i32, samples: usize) -> (f64, f64, f64) {
    wake_latency_with(id, samples, false)
}

fn wake_latency_wait(id: i32, samples: usize) -> (f64, f64, f64) {
    wake_latency_with(id, samples, true)
}

fn wake_latency_with(id: i32, samples: usize, plain_wait: bool) -> (f64, f64, f64) {
    let mem = shared_pages(8 * (samples + 2));
    // SAFETY: 8-aligned slots in a live mapping of samples + 2 words.
    let slot = |i: usize| unsafe { &*(mem.add(8 * i) as *const AtomicU64) };
    // SAFETY: the child waits, records, and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        for i in 0..samples {
            let mut seen = 0u64;
            unsafe { sa::sharedarea_updates(id, &mut seen) };
            slot(0).store(i as u64 + 1, Ordering::Release);
            let st = if plain_wait {
                unsafe { sa::sharedarea_wait(id, 1000, 5) }
            } else {
                unsafe { sa::sharedarea_wait_since(id, seen, 5000) }
            };
            let woke = now_ns();
            let mut ts = 0i64;
            unsafe { sa::sharedarea_read64(id, 32, &mut ts) };
            if st != 0 {
                // SAFETY: ends the child with a failure.
                unsafe { libc::_exit(2) };
            }
            slot(2 + i).store(woke.saturating_sub(ts as u64), Ordering::Release);
            slot(1).store(i as u64 + 1, Ordering::Release);
        }
        // SAFETY: ends the child.
        unsafe { libc::_exit(0) };
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..samples {
        while slot(0).load(Ordering::Acquire) < i as u64 + 1 {
            assert!(Instant::now() < deadline, "waiter stopped");
            std::hint::spin_loop();
        }
        // let the waiter reach its futex sleep
        std::thread::sleep(Duration::from_micros(if plain_wait { 5000 } else { 1000 }));
        assert_eq!(
            unsafe { sa::sharedarea_write64(id, 32, now_ns() as i64) },
            0
        );
        while slot(1).load(Ordering::Acquire) < i as u64 + 1 {
            assert!(Instant::now() < deadline, "waiter did not wake");
            std::hint::spin_loop();
        }
    }
    let mut status = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "waiter failed"
    );
    let mut us: Vec<f64> = (0..samples)
        .map(|i| slot(2 + i).load(Ordering::Acquire) as f64 / 1000.0)
        .collect();
    us.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| us[((us.len() as f64 * p) as usize).min(us.len() - 1)];
    (pct(0.50), pct(0.99), us[us.len() - 1])
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes other flags: run once either way.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let t = Instant::now();
    bench_main();
    println!("\ntotal bench time {:.1} s", t.elapsed().as_secs_f64());
}
