//! Named areas over their life (SPEC §8): `sharedarea_unlink` removes one (and
//! refuses what is not an area), creation reserves its memory so a full /dev/shm
//! is an error at init rather than a SIGBUS later, and backings that are not
//! regular files are refused instead of crashing on first access.

mod common;
use common::*;

use std::ffi::CString;
use std::process::Command;

fn unlink(name: &str) -> i32 {
    let c = CString::new(name).unwrap();
    sa::sharedarea_unlink(c.as_ptr())
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
        sa::sharedarea_unlink(std::ptr::null()),
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
    let st = sa::sharedarea_init_fd(f.as_raw_fd(), 4096, 4096);
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
