//! Threads of one process on one area at once: lock-free reads racing writers,
//! integer operations, and explicit read and write locks. Besides what it
//! asserts (no torn record is ever returned, counters exact), this is what
//! `scripts/tsan` runs under ThreadSanitizer, which sees races between threads
//! of one process only: a lock-free read that copied with plain loads while a
//! writer stores is reported there.

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// An unaligned record (so copies have byte-sized heads and tails), written
/// whole with one repeated byte.
const REC: u64 = 3;
const REC_LEN: usize = 203;
const COUNTER: u64 = 1024;

fn read_record(id: i32) -> Vec<u8> {
    read(id, REC, REC_LEN).expect("sharedarea_read of the record")
}

fn whole(rec: &[u8]) -> bool {
    rec.iter().all(|&b| b == rec[0])
}

#[test]
fn threads_reading_while_others_write_never_see_a_torn_record() {
    let _g = serial();
    let id = must_init("1");
    must_write(id, REC, &[0; REC_LEN]);
    let done = Arc::new(AtomicBool::new(false));
    let rounds = 20_000u32;

    let mut workers = Vec::new();
    // Writers: the record in one write, or in two parts under wlock.
    for t in 0..2u32 {
        workers.push(std::thread::spawn(move || {
            for i in 0..rounds {
                let v = [(t * 100 + i % 100) as u8; REC_LEN];
                if i % 2 == 0 {
                    must_write(id, REC, &v);
                } else {
                    assert_eq!(wlock(id), 0);
                    must_write(id, REC, &v[..100]);
                    must_write(id, REC + 100, &v[100..]);
                    assert_eq!(unlock(id), 0);
                }
            }
        }));
    }
    // Counters: integer operations beside everything else.
    for _ in 0..2 {
        workers.push(std::thread::spawn(move || {
            for _ in 0..rounds {
                let mut n = 0i64;
                assert_eq!(unsafe { sa::sharedarea_inc64(id, COUNTER, 1, &mut n) }, 0);
            }
        }));
    }
    // Readers: lock-free reads, and reads under rlock (where the counter must not
    // move either).
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) || reads < 100 {
                    if t == 0 || reads % 4 != 0 {
                        let rec = read_record(id);
                        assert!(
                            whole(&rec),
                            "a lock-free read returned a torn record: {rec:?}"
                        );
                    } else {
                        assert_eq!(rlock(id), 0);
                        let mut c1 = 0i64;
                        assert_eq!(unsafe { sa::sharedarea_read64(id, COUNTER, &mut c1) }, 0);
                        let rec = read_record(id);
                        let mut c2 = 0i64;
                        assert_eq!(unsafe { sa::sharedarea_read64(id, COUNTER, &mut c2) }, 0);
                        assert_eq!(unlock(id), 0);
                        assert!(whole(&rec), "a read under rlock saw a torn record: {rec:?}");
                        assert_eq!(c1, c2, "the counter moved under rlock");
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() >= 100);
    }
    let mut n = 0i64;
    assert_eq!(unsafe { sa::sharedarea_read64(id, COUNTER, &mut n) }, 0);
    assert_eq!(n, 2 * rounds as i64, "increments lost");
    assert!(whole(&read_record(id)));
}
