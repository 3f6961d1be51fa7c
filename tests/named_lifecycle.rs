//! Named areas over their life (SPEC §1, §8): names as given, creators racing for
//! one name, attachers waiting for a slow creator, foreign objects refused and left
//! alone, a refused attach changing nothing; `sharedarea_unlink` removes one (and
//! refuses what is not an area), creation reserves its memory so a full /dev/shm
//! is an error at init rather than a SIGBUS later, and backings that are not
//! regular files are refused instead of crashing on first access.

mod common;
use common::*;

use sharedarea::control::{Control, Identity};
use std::ffi::CString;
use std::mem::offset_of;
use std::process::Command;
use std::time::Duration;

const SPEC_ERR: i32 = sa::SHAREDAREA_E_INVALID_SPEC;
const NOT_AREA: i32 = sa::SHAREDAREA_E_NOT_AN_AREA;

/// Bytes of a named area's identity (the first cache line of its control block).
const IDENTITY_LEN: usize = offset_of!(Control, lock);

/// Bytes of the control block in front of a named area's data, measured on a real
/// named area.
fn named_header_len() -> u64 {
    let probe = ShmName::new("hdr");
    must_init(&format!("name={},size=4096", probe.0));
    std::fs::metadata(format!("/dev/shm{}", probe.0))
        .unwrap()
        .len()
        - 4096
}

/// The identity of a real named area of `size` bytes.
fn real_identity(size: u64) -> Vec<u8> {
    let probe = ShmName::new("ident");
    must_init(&format!("name={},size={size}", probe.0));
    std::fs::read(format!("/dev/shm{}", probe.0)).unwrap()[..IDENTITY_LEN].to_vec()
}

/// Creates a foreign shm object `name` of `len` bytes whose first bytes are `head`.
fn foreign_object(name: &str, len: u64, head: &[u8]) {
    use std::os::unix::fs::{FileExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(format!("/dev/shm{name}"))
        .unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .unwrap();
    f.set_len(len).unwrap();
    f.write_all_at(head, 0).unwrap();
}

fn unlink(name: &str) -> i32 {
    let c = CString::new(name).unwrap();
    unsafe { sa::sharedarea_unlink(c.as_ptr()) }
}

fn shm_path(name: &str) -> String {
    format!("/dev/shm/{}", name.trim_start_matches('/'))
}

#[test]
fn unlink_removes_the_name_and_attached_processes_keep_their_memory() {
    let _g = serial();
    let name = ShmName::new("unlink");
    let id = must_init(&format!("name={},size=4096", name.0));
    must_write(id, 0, b"before");
    assert!(std::path::Path::new(&shm_path(&name.0)).exists());

    assert_eq!(unlink(&name.0), 0, "{}", last_error());
    assert!(
        !std::path::Path::new(&shm_path(&name.0)).exists(),
        "the name is gone"
    );
    // This process still has the memory, its lock and counters.
    assert_eq!(read(id, 0, 6).unwrap(), b"before");
    must_write(id, 0, b"after!");
    assert_eq!(read(id, 0, 6).unwrap(), b"after!");
    assert_eq!(inc64(id, 8, 1).unwrap(), 1);

    // Attaching by name now finds nothing; creating makes a new, empty area.
    assert_eq!(
        init(&format!("name={}", name.0)),
        sa::SHAREDAREA_E_INVALID_SPEC
    );
    let fresh = must_init(&format!("name={},size=4096", name.0));
    assert_ne!(fresh, id);
    assert_eq!(read(fresh, 0, 6).unwrap(), vec![0u8; 6], "a new area");
    assert_eq!(
        read(id, 0, 6).unwrap(),
        b"after!",
        "the old one is separate"
    );
    // Without the leading '/' too.
    assert_eq!(
        unlink(name.0.trim_start_matches('/')),
        0,
        "{}",
        last_error()
    );
    assert!(!std::path::Path::new(&shm_path(&name.0)).exists());
}

#[test]
fn unlink_a_name_held_by_another_process_leaves_it_working() {
    let _g = serial();
    let name = ShmName::new("unlink-other");
    let id = must_init(&format!("name={},size=4096", name.0));
    // A child removes the name while this process is attached.
    let n = name.0.clone();
    let mut child = fork_child(move || {
        if unlink(&n) == 0 {
            0
        } else {
            child_fail(2, &last_error())
        }
    });
    child.expect_success(std::time::Duration::from_secs(10), "child unlinks");
    assert_eq!(inc64(id, 0, 5).unwrap(), 5);
    assert_eq!(unlink(&name.0), sa::SHAREDAREA_E_NO_SUCH_AREA);
}

#[test]
fn unlink_errors_name_the_function_and_change_nothing() {
    let _g = serial();
    let missing = unique_name("missing");
    assert_eq!(unlink(&missing), sa::SHAREDAREA_E_NO_SUCH_AREA);
    let e = last_error();
    assert!(e.starts_with("sharedarea_unlink: "), "{e}");
    assert!(e.contains(missing.trim_start_matches('/')), "{e}");

    // Another program's shared memory is not removed.
    let foreign = ShmName::new("foreign");
    std::fs::write(shm_path(&foreign.0), vec![7u8; 1 << 20]).unwrap();
    assert_eq!(unlink(&foreign.0), sa::SHAREDAREA_E_NOT_AN_AREA);
    assert!(
        last_error().contains("not a sharedarea"),
        "{}",
        last_error()
    );
    assert!(std::path::Path::new(&shm_path(&foreign.0)).exists());
    std::fs::write(shm_path(&foreign.0), b"tiny").unwrap();
    assert_eq!(unlink(&foreign.0), sa::SHAREDAREA_E_NOT_AN_AREA);
    assert!(std::path::Path::new(&shm_path(&foreign.0)).exists());

    for bad in ["", "/", "a/b", ".."] {
        assert_eq!(unlink(bad), sa::SHAREDAREA_E_INVALID_ARGUMENT, "{bad:?}");
    }
    assert_eq!(
        unsafe { sa::sharedarea_unlink(std::ptr::null()) },
        sa::SHAREDAREA_E_NULL_POINTER
    );
}

#[test]
fn devices_are_refused_not_mapped() {
    let _g = serial();
    for spec in [
        "file=/dev/zero,size=4096,offset=4096",
        "file=/dev/zero,size=4096",
        "file=/dev/zero",
    ] {
        let before = count();
        assert_eq!(init(spec), sa::SHAREDAREA_E_INVALID_SPEC, "{spec}");
        let e = last_error();
        assert!(
            e.contains("/dev/zero") && e.contains("character device"),
            "{e}"
        );
        assert_eq!(count(), before);
    }
    let f = std::fs::File::open("/dev/zero").unwrap();
    use std::os::fd::AsRawFd;
    let st = unsafe { sa::sharedarea_init_fd(f.as_raw_fd(), 4096, 4096) };
    assert_eq!(st, sa::SHAREDAREA_E_INVALID_ARGUMENT, "{}", last_error());
}

/// Runs `full_dev_shm_is_an_error_at_init_inner` in a new user and mount namespace
/// with a 2 MiB tmpfs on /dev/shm; skips when such namespaces are not permitted.
#[test]
fn full_dev_shm_is_an_error_at_init_not_a_sigbus() {
    let _g = serial();
    let exe = std::env::current_exe().unwrap();
    let probe = Command::new("unshare")
        .args([
            "-Urm",
            "sh",
            "-c",
            "mount -t tmpfs -o size=2M none /dev/shm",
        ])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "skipped: cannot mount a small tmpfs in a user namespace (unshare -Urm): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped: unshare not available: {e}");
            return;
        }
    }
    let out = Command::new("unshare")
        .args([
            "-Urm",
            "sh",
            "-c",
            "mount -t tmpfs -o size=2M none /dev/shm && exec \"$0\" --exact full_dev_shm_is_an_error_at_init_inner --ignored --nocapture --test-threads=1",
        ])
        .arg(&exe)
        .env("SHAREDAREA_SMALL_SHM", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "inner test failed ({}): {text}",
        out.status
    );
    assert!(
        text.contains("1 passed"),
        "the inner test did not run: {text}"
    );
}

#[test]
#[ignore = "run by full_dev_shm_is_an_error_at_init_not_a_sigbus inside a namespace"]
fn full_dev_shm_is_an_error_at_init_inner() {
    if std::env::var("SHAREDAREA_SMALL_SHM").as_deref() != Ok("1") {
        return;
    }
    // Larger than the whole tmpfs: refused at init, nothing left behind.
    assert_eq!(init("name=big,size=4M"), sa::SHAREDAREA_E_IO);
    let e = last_error();
    assert!(
        e.contains("name=big") && e.contains("No space left on device"),
        "{e}"
    );
    assert!(
        !std::path::Path::new("/dev/shm/big").exists(),
        "left behind"
    );

    // Fill most of it, then an area that would have fit the free space only on
    // paper: every byte of an area that is created can be written.
    let id = must_init("name=half,size=1200K");
    let full = vec![0xA5u8; 1200 * 1024];
    must_write(id, 0, &full);
    assert_eq!(init("name=more,size=1200K"), sa::SHAREDAREA_E_IO);
    assert!(!std::path::Path::new("/dev/shm/more").exists());
    let small = must_init("name=small,size=64K");
    must_write(small, 0, &vec![1u8; 64 * 1024]);
    assert_eq!(read(id, 1200 * 1024 - 4, 4).unwrap(), vec![0xA5u8; 4]);
}

// ---------------------------------------------------------------------------------------
// Creating and attaching by name

/// Names with spaces, non-ASCII, '%', an escaped comma, '=' and dots, and the
/// longest allowed name, are created and attached, and the object is exactly
/// /dev/shm/NAME; one character more than the longest is refused.
#[test]
fn named_areas_with_odd_characters() {
    let _g = serial();
    let base = unique_name("odd");
    for (spec_name, real) in [
        (format!("{base} sp"), format!("{base} sp")),
        (
            format!("{base}-\u{e9}\u{263a}"),
            format!("{base}-\u{e9}\u{263a}"),
        ),
        (format!("{base}-%n%s"), format!("{base}-%n%s")),
        (format!("{base}-a\\,b"), format!("{base}-a,b")),
        (format!("{base}-a=b"), format!("{base}-a=b")),
        (format!("{base}-...."), format!("{base}-....")),
    ] {
        let _cleanup = ShmName(real.clone());
        let id = must_init(&format!("name={spec_name},size=100"));
        assert!(
            shm_exists(&real),
            "{spec_name:?} did not become /dev/shm{real:?}"
        );
        must_write(id, 99, b"!");
        let id2 = must_init(&format!("name={spec_name}"));
        assert_eq!(read(id2, 99, 1).unwrap(), b"!");
        assert_eq!(size_of(id2), 100, "named areas are exactly size= bytes");
    }
    let long = "L".repeat(250);
    let _c = ShmName(format!("/{long}"));
    must_init(&format!("name={long},size=1"));
    refused_cleanly(
        format!("name={}L,size=1", long).as_bytes(),
        &[SPEC_ERR],
        "too long",
    );
}

/// Objects in /dev/shm that are not areas (no magic, another layout version, an
/// identity that contradicts the object's size) but have exactly an area's size are
/// refused as NOT_AN_AREA, without a long wait, and never modified.
#[test]
fn named_foreign_object_of_the_right_size_is_refused_and_untouched() {
    let _g = serial();
    let header = named_header_len();
    let ident = real_identity(4096);
    let mut other_version = ident.clone();
    let version = offset_of!(Identity, version);
    other_version[version..version + 4].copy_from_slice(&99u32.to_ne_bytes());
    let mut wrong_size = ident.clone();
    let size = offset_of!(Identity, size);
    wrong_size[size..size + 8].copy_from_slice(&8192u64.to_ne_bytes()); // says 8192, object holds 4096
    for (tag, head, needle) in [
        ("zeros", vec![0u8; IDENTITY_LEN], "magic"),
        ("version", other_version, "version"),
        ("inconsistent", wrong_size, "inconsistent"),
    ] {
        let name = ShmName::new(tag);
        foreign_object(&name.0, header + 4096, &head);
        let before = std::fs::read(format!("/dev/shm{}", name.0)).unwrap();
        let t = std::time::Instant::now();
        for spec in [
            format!("name={}", name.0),
            format!("name={},size=4096", name.0),
        ] {
            let e = refused_cleanly(spec.as_bytes(), &[NOT_AREA], &name.0);
            assert!(e.contains(needle), "{tag}: {e}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{tag}: waited too long"
        );
        assert_eq!(
            std::fs::read(format!("/dev/shm{}", name.0)).unwrap(),
            before,
            "{tag}: the foreign object was modified"
        );
    }
}

/// Processes creating the same name at the same moment with the same size all get
/// the one area: one creates, the rest attach, and the counter sees every
/// increment.
#[test]
fn named_same_size_created_at_once_is_one_area() {
    let _g = serial();
    const KIDS: usize = 6;
    for round in 0..15 {
        let name = ShmName::new("race");
        let go = Scratch::new(2);
        let mut kids = Vec::new();
        for _ in 0..KIDS {
            let n = name.0.clone();
            let go = &go;
            kids.push(fork_child(move || {
                go.add(1, 1);
                while go.get(0) == 0 {
                    std::hint::spin_loop();
                }
                let id = init(&format!("name={n},size=8192"));
                if id < 0 {
                    return child_fail(2, &format!("init: {id} {}", last_error()));
                }
                if size_of(id) != 8192 {
                    return 3;
                }
                if inc64(id, 0, 1).is_err() {
                    return 4;
                }
                0
            }));
        }
        assert!(go.wait_for(1, KIDS as u64, Duration::from_secs(5)));
        go.set(0, 1);
        for k in &mut kids {
            k.expect_success(Duration::from_secs(10), &format!("round {round}"));
        }
        let id = must_init(&format!("name={}", name.0));
        assert_eq!(read64(id, 0), Ok(KIDS as i64), "round {round}");
    }
}

/// Processes creating one name at once with different sizes: exactly one size wins,
/// and every process of the other size gets a size-mismatch error naming the name
/// (never NOT_AN_AREA, never a crash).
#[test]
fn named_different_sizes_created_at_once_one_wins() {
    let _g = serial();
    const KIDS: usize = 6;
    for round in 0..15 {
        let name = ShmName::new("race2");
        let go = Scratch::new(2);
        let mut kids = Vec::new();
        for k in 0..KIDS {
            let n = name.0.clone();
            let size = if k % 2 == 0 { 4096 } else { 12288 };
            let go = &go;
            kids.push(fork_child(move || {
                go.add(1, 1);
                while go.get(0) == 0 {
                    std::hint::spin_loop();
                }
                let id = init(&format!("name={n},size={size}"));
                if id >= 0 {
                    return if size == 4096 { 10 } else { 11 };
                }
                let e = last_error();
                if id == sa::SHAREDAREA_E_INVALID_SPEC
                    && e.contains("exists with")
                    && e.contains(&n)
                {
                    20
                } else {
                    child_fail(30, &format!("{size}: {id} {e}"))
                }
            }));
        }
        assert!(go.wait_for(1, KIDS as u64, Duration::from_secs(5)));
        go.set(0, 1);
        let mut codes = Vec::new();
        for k in &mut kids {
            match k.wait(Duration::from_secs(10)) {
                Ok(Exit::Code(c)) => codes.push(c),
                other => panic!("round {round}: child {other:?}"),
            }
        }
        let winners: std::collections::BTreeSet<_> =
            codes.iter().filter(|&&c| c == 10 || c == 11).collect();
        assert_eq!(winners.len(), 1, "round {round}: codes {codes:?}");
        assert!(
            codes.iter().all(|&c| c == 10 || c == 11 || c == 20),
            "round {round}: codes {codes:?}"
        );
        assert_eq!(
            codes.iter().filter(|&&c| c == 20).count(),
            KIDS / 2,
            "round {round}: every process of the other size is refused: {codes:?}"
        );
    }
}

/// An attacher waits (bounded) for a creator that is slow between creating the
/// object and finishing its header (a busy host, a debugger, SIGSTOP): here the
/// object holds the creator's flock, gets its size after 300 ms and its identity,
/// magic last, 50 ms later.
#[test]
fn named_attach_waits_for_a_slow_creator() {
    let _g = serial();
    let header = named_header_len();
    let ident = real_identity(4096);
    let name = ShmName::new("slow");
    let path = format!("/dev/shm{}", name.0);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    // A creator holds flock(LOCK_EX) on the object from shm_open to the end of its
    // set-up (the protocol attachers wait on); this one takes it, then stalls.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) },
        0
    );
    let creator = std::thread::spawn(move || {
        use std::os::unix::fs::FileExt;
        sleep_ms(300);
        f.set_len(header + 4096).unwrap();
        sleep_ms(50);
        let magic_end = offset_of!(Identity, magic) + 8;
        f.write_all_at(&ident[magic_end..], magic_end as u64)
            .unwrap();
        f.write_all_at(&ident[..magic_end], 0).unwrap();
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_UN) };
    });
    let id = init(&format!("name={},size=4096", name.0));
    let e = last_error();
    join_within(creator, Duration::from_secs(5), "creator");
    assert!(id >= 0, "attach during a slow creation: {id}: {e}");
}

/// A refused attach (size mismatch) changes nothing in the existing area: its bytes,
/// updates, used and honour_used stay, and no id is added.
#[test]
fn failed_named_attach_changes_nothing() {
    let _g = serial();
    let name = ShmName::new("nochange");
    let id = must_init(&format!("name={},size=8192", name.0));
    must_write(id, 0, &pattern(8192, 9));
    assert_eq!(set_used(id, 100), 0);
    let (bytes, i) = (snapshot(id), info(id));
    refused_cleanly(
        format!("name={},size=4096", name.0).as_bytes(),
        &[SPEC_ERR],
        &name.0,
    );
    refused_cleanly(
        format!("name={},pages=1", name.0).as_bytes(),
        &[SPEC_ERR],
        &name.0,
    );
    let j = info(id);
    assert_eq!(snapshot(id), bytes);
    assert_eq!(
        (j.updates, j.used, j.honour_used, j.size),
        (i.updates, i.used, i.honour_used, i.size)
    );
}
