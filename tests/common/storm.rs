//! The kill-storm shared by `tests/chaos.rs` (a few seconds, asserted) and
//! `bench/soak.rs` (minutes, reported): worker processes hammer two areas — an
//! anonymous one inherited over `fork`, and a `name=` one that each worker
//! attaches by name after it starts, as an unrelated process would — while a
//! killer SIGKILLs two or three of them at once and starts new ones in their
//! place. Every worker loops over:
//!
//! * **a record in parts under `wlock`**: `PARTS` separate `write64`s of one
//!   sequence number, yielding the CPU between parts, then the recovery mark
//!   (below);
//! * **the record checked under `rlock`**: the parts read one by one (yielding
//!   between them) must be equal, and the first part must not have changed by
//!   the end of the read. A writer killed between parts leaves a torn record
//!   until the next writer completes one: that tear is *explained* when the
//!   area's `writer_recovery_updates` (set at every recovery of a dead writer)
//!   differs from the mark the last complete writer left beside the record.
//!   Any other tear, and any change seen under the read lock, is a
//!   mutual-exclusion failure;
//! * **`inc64` on a counter**, each worker then adding one to its own slot of
//!   scratch memory: a kill between the two loses at most one recording, so
//!   `recorded <= counter <= recorded + kills`;
//! * in odd-numbered workers, now and then **a thread that takes the lock and
//!   exits**, half the time still holding it.
//!
//! Each worker records its longest wait for a lock or an operation. Results go
//! to scratch memory outside the areas, so a kill never loses them.

use crate::common::*;

use std::time::{Duration, Instant};

/// The record's parts: one per cache line.
const PARTS: [u64; 4] = [0, 64, 128, 192];
/// `writer_recovery_updates` as the last writer to complete the record saw it.
const MARK: u64 = 256;
const COUNTER: u64 = 512;

// Scratch layout: global slots, then `PER` slots per worker.
const STOP: usize = 0;
const KILLS: usize = 1;
const BASE: usize = 8;
const PER: usize = 16;
const OPS: usize = 0;
const WORST_NS: usize = 1;
const FAILED: usize = 2;
const TEARS: usize = 3;
const EXPLAINED: usize = 4;
const RECORDED: usize = 5; // + area index (2 areas)
const THREAD_EXITS: usize = 7;

/// How hard to storm.
#[derive(Clone, Copy, Debug)]
pub struct Storm {
    pub workers: usize,
    pub run: Duration,
    /// Pause between kill rounds: `pause_ms.0 + random % pause_ms.1`.
    pub pause_ms: (u64, u64),
}

/// What a storm did and what it found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ops: u64,
    pub ops_per_worker: Vec<u64>,
    pub kills: u64,
    pub recoveries: u64,
    pub thread_exits_holding: u64,
    pub longest_wait: Duration,
    pub failed_ops: u64,
    /// Torn records (or changes under `rlock`) no recovery explains.
    pub unexplained_tears: u64,
    /// Torn records left by a writer killed mid-update (and seen before healed).
    pub explained_tears: u64,
    /// Per area: the counter, and the increments the workers recorded.
    pub counters: [i64; 2],
    pub recorded: [i64; 2],
    /// Per area: after the storm, a final wlock (its wait is in `longest_wait`),
    /// then lock_info's writer pid and read locks held.
    pub final_writer_pid: [u32; 2],
    pub final_readers: [u64; 2],
    /// Torn records left at the end, explained or not (a writer killed
    /// mid-update as the storm ended).
    pub final_torn: [bool; 2],
    pub final_explained: [bool; 2],
}

impl Outcome {
    /// Increments done but not recorded (the worker died in between): at most
    /// one per kill.
    pub fn unrecorded(&self) -> i64 {
        (self.counters[0] - self.recorded[0]) + (self.counters[1] - self.recorded[1])
    }
    /// Increments recorded that the counter lacks: lost updates.
    pub fn lost(&self) -> i64 {
        (0..2)
            .map(|a| (self.recorded[a] - self.counters[a]).max(0))
            .sum()
    }

    /// Every property the storm promises, as a list of violations (empty: all hold).
    pub fn violations(&self, bound: Duration) -> Vec<String> {
        let mut v = Vec::new();
        if self.failed_ops != 0 {
            v.push(format!(
                "{} operations failed (neither OK nor RECOVERED)",
                self.failed_ops
            ));
        }
        if self.unexplained_tears != 0 {
            v.push(format!(
                "{} torn records or changes under rlock with no writer recovery to explain them",
                self.unexplained_tears
            ));
        }
        for a in 0..2 {
            if self.counters[a] < self.recorded[a] {
                v.push(format!(
                    "area {a}: counter {} < {} increments recorded (lost updates)",
                    self.counters[a], self.recorded[a]
                ));
            }
            if self.final_writer_pid[a] != 0 || self.final_readers[a] != 0 {
                v.push(format!(
                    "area {a}: lock not free at the end: writer pid {}, {} read locks",
                    self.final_writer_pid[a], self.final_readers[a]
                ));
            }
            if self.final_torn[a] && !self.final_explained[a] {
                v.push(format!("area {a}: record torn at the end, unexplained"));
            }
        }
        if self.unrecorded() > self.kills as i64 {
            v.push(format!(
                "{} increments unrecorded but only {} kills",
                self.unrecorded(),
                self.kills
            ));
        }
        if self.longest_wait > bound {
            v.push(format!(
                "an operation waited {:?} (bound {bound:?})",
                self.longest_wait
            ));
        }
        v
    }

    pub fn report(&self) -> String {
        format!(
            "{} operations, {} kills, {} recoveries ({} thread exits holding a lock), \
             longest wait {:.1} ms, {} failed operations, lost updates {}, \
             {} increments unrecorded (<= kills), torn records: {} explained by a killed writer, \
             {} unexplained",
            self.ops,
            self.kills,
            self.recoveries,
            self.thread_exits_holding,
            self.longest_wait.as_secs_f64() * 1e3,
            self.failed_ops,
            self.lost(),
            self.unrecorded(),
            self.explained_tears,
            self.unexplained_tears
        )
    }
}

fn lock_info(id: i32) -> Option<sa::sharedarea_lock_info> {
    let mut out: sa::sharedarea_lock_info = unsafe { std::mem::zeroed() };
    (unsafe { sa::sharedarea_lock_info(id, &mut out) } == sa::SHAREDAREA_OK).then_some(out)
}

fn ok(st: i32) -> bool {
    st == sa::SHAREDAREA_OK || st == sa::SHAREDAREA_RECOVERED
}

struct Worker<'a> {
    scratch: &'a Scratch,
    base: usize,
}

impl Worker<'_> {
    fn note(&self, field: usize, n: u64) {
        self.scratch.add(self.base + field, n);
    }
    fn waited(&self, t0: Instant) {
        let ns = t0.elapsed().as_nanos() as u64;
        self.scratch
            .slot(self.base + WORST_NS)
            .fetch_max(ns, std::sync::atomic::Ordering::SeqCst);
    }
    fn fail(&self, what: &str, id: i32, st: i64) {
        self.note(FAILED, 1);
        raw_eprint(&format!(
            "storm: {what} on area {id}: {st}: {}",
            last_error()
        ));
    }

    /// Under the write lock: check the record, write the next one in parts.
    fn write_record(&self, id: i32, release: bool) {
        let t0 = Instant::now();
        let st = wlock(id);
        self.waited(t0);
        if !ok(st) {
            return self.fail("wlock", id, st as i64);
        }
        let seq = self.check_parts(id).map_or(0, |(max, _)| max) + 1;
        for (k, &pos) in PARTS.iter().enumerate() {
            let st = write64(id, pos, seq);
            if st != sa::SHAREDAREA_OK {
                self.fail("write64 of a part", id, st as i64);
            }
            if k + 1 < PARTS.len() {
                std::thread::yield_now();
            }
        }
        match lock_info(id) {
            Some(li) => {
                let _ = write64(id, MARK, li.writer_recovery_updates as i64);
            }
            None => self.fail("sharedarea_lock_info", id, -1),
        }
        if release {
            let st = unlock(id);
            if st != sa::SHAREDAREA_OK {
                self.fail("unlock after wlock", id, st as i64);
            }
        }
        self.note(OPS, 1);
    }

    /// Under the read lock: check the record.
    fn read_record(&self, id: i32, release: bool) {
        let t0 = Instant::now();
        let st = rlock(id);
        self.waited(t0);
        if !ok(st) {
            return self.fail("rlock", id, st as i64);
        }
        if let Some((_, first)) = self.check_parts(id) {
            std::thread::yield_now();
            match read64(id, PARTS[0]) {
                Ok(again) if again == first => {}
                Ok(again) => {
                    self.note(TEARS, 1);
                    raw_eprint(&format!(
                        "storm: area {id}: record changed from {first} to {again} under rlock"
                    ));
                }
                Err(st) => self.fail("read64", id, st as i64),
            }
        }
        if release {
            let st = unlock(id);
            if st != sa::SHAREDAREA_OK {
                self.fail("unlock after rlock", id, st as i64);
            }
        }
        self.note(OPS, 1);
    }

    /// Reads the parts one by one (yielding between them); counts a tear,
    /// explained or not. Returns the largest part and the first.
    fn check_parts(&self, id: i32) -> Option<(i64, i64)> {
        let mut parts = [0i64; PARTS.len()];
        for (k, &pos) in PARTS.iter().enumerate() {
            match read64(id, pos) {
                Ok(v) => parts[k] = v,
                Err(st) => {
                    self.fail("read64 of a part", id, st as i64);
                    return None;
                }
            }
            if k + 1 < PARTS.len() {
                std::thread::yield_now();
            }
        }
        if parts.iter().any(|&p| p != parts[0]) {
            if torn_is_explained(id) {
                self.note(EXPLAINED, 1);
            } else {
                self.note(TEARS, 1);
                raw_eprint(&format!(
                    "storm: area {id}: torn record {parts:?} and no writer recovery since it was whole"
                ));
            }
        }
        Some((*parts.iter().max().unwrap(), parts[0]))
    }

    fn inc(&self, id: i32, area: usize) {
        let t0 = Instant::now();
        let r = inc64(id, COUNTER, 1);
        self.waited(t0);
        match r {
            Ok(_) => self.note(RECORDED + area, 1),
            Err(st) => self.fail("inc64", id, st as i64),
        }
        self.note(OPS, 1);
    }

    /// A thread that takes the lock and exits, holding it if `hold`.
    fn thread_op(&self, id: i32, write: bool, hold: bool) {
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                if write {
                    self.write_record(id, !hold)
                } else {
                    self.read_record(id, !hold)
                }
            });
            let _ = t.join();
        });
        if hold {
            self.note(THREAD_EXITS, 1);
        }
    }
}

/// A torn record is explained when a dead writer was recovered since the last
/// writer completed the record (the mark beside it is older).
fn torn_is_explained(id: i32) -> bool {
    match (lock_info(id), read64(id, MARK)) {
        (Some(li), Ok(mark)) => li.writer_recovery_updates != mark as u64,
        _ => false,
    }
}

fn worker(scratch: &Scratch, i: usize, anon: i32, name: &str) -> i32 {
    let w = Worker {
        scratch,
        base: BASE + PER * i,
    };
    let t0 = Instant::now();
    let named = init(&format!("name={name}"));
    w.waited(t0);
    if named < 0 {
        return child_fail(
            2,
            &format!("storm: attaching {name} by name: {named}: {}", last_error()),
        );
    }
    let ids = [anon, named];
    let mut seed = (pid() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while scratch.get(STOP) == 0 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let area = (seed >> 8) as usize & 1;
        let id = ids[area];
        match seed % 32 {
            0..=9 => w.write_record(id, true),
            10..=19 => w.read_record(id, true),
            20..=29 => w.inc(id, area),
            _ if i % 2 == 1 => w.thread_op(id, seed & (1 << 12) != 0, seed & (1 << 13) != 0),
            _ => w.read_record(id, true),
        }
    }
    0
}

/// Runs a storm and collects what it found. The caller holds `serial()`.
pub fn run(storm: Storm) -> Outcome {
    let anon = must_init("2");
    let name = ShmName::new("storm");
    // Created by a process that then exits: this process attaches it only
    // after the workers are done, so every worker attaches it as a stranger.
    let spec = format!("name={},size=4096", name.0);
    fork_child(move || i32::from(init(&spec) < 0)).expect_success(
        Duration::from_secs(10),
        "creating the name= area in a separate process",
    );
    let scratch = Scratch::new(BASE + PER * storm.workers);
    let start = |i: usize| {
        let (scratch, name) = (&scratch, name.0.clone());
        fork_child(move || worker(scratch, i, anon, &name))
    };
    let mut kids: Vec<Child> = (0..storm.workers).map(start).collect();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let began = Instant::now();
    let mut kills = 0u64;
    // The last quarter second kills nobody: the survivors recover what the
    // last victims held.
    while began.elapsed() + Duration::from_millis(250) < storm.run {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        sleep_ms(storm.pause_ms.0 + seed % storm.pause_ms.1);
        let n = 2 + (seed >> 20) as usize % 2;
        let first = (seed >> 8) as usize % storm.workers;
        let victims: Vec<usize> = (0..n.min(storm.workers))
            .map(|k| (first + k * 3) % storm.workers)
            .collect();
        for &v in &victims {
            kids[v].signal(libc::SIGKILL);
        }
        for &v in &victims {
            kids[v].kill_and_reap();
            kills += 1;
            kids[v] = start(v);
        }
    }
    while began.elapsed() < storm.run {
        sleep_ms(10);
    }
    scratch.set(STOP, 1);
    scratch.set(KILLS, kills);
    let mut out = Outcome {
        kills,
        ..Outcome::default()
    };
    for k in kids.iter_mut() {
        if k.wait(Duration::from_secs(10)) != Ok(Exit::Code(0)) {
            out.failed_ops += 1;
            raw_eprint("storm: a worker did not finish cleanly after the storm");
        }
    }
    for i in 0..storm.workers {
        let b = BASE + PER * i;
        out.ops_per_worker.push(scratch.get(b + OPS));
        out.ops += scratch.get(b + OPS);
        out.longest_wait = out
            .longest_wait
            .max(Duration::from_nanos(scratch.get(b + WORST_NS)));
        out.failed_ops += scratch.get(b + FAILED);
        out.unexplained_tears += scratch.get(b + TEARS);
        out.explained_tears += scratch.get(b + EXPLAINED);
        out.thread_exits_holding += scratch.get(b + THREAD_EXITS);
        for a in 0..2 {
            out.recorded[a] += scratch.get(b + RECORDED + a) as i64;
        }
    }
    let named = must_init(&format!("name={}", name.0));
    for (a, id) in [anon, named].into_iter().enumerate() {
        let t0 = Instant::now();
        let st = wlock(id);
        out.longest_wait = out.longest_wait.max(t0.elapsed());
        if ok(st) {
            let parts: Vec<i64> = PARTS.iter().map(|&p| read64(id, p).unwrap_or(-1)).collect();
            out.final_torn[a] = parts.iter().any(|&p| p != parts[0]);
            out.final_explained[a] = torn_is_explained(id);
            out.counters[a] = read64(id, COUNTER).unwrap_or(-1);
            if unlock(id) != sa::SHAREDAREA_OK {
                out.failed_ops += 1;
            }
        } else {
            out.failed_ops += 1;
        }
        let li = lock_info(id).unwrap_or_else(|| panic!("lock_info: {}", last_error()));
        out.final_writer_pid[a] = li.writer_pid;
        out.final_readers[a] = li.readers;
        out.recoveries += li.recoveries;
    }
    out
}
