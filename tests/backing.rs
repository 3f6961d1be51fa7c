//! The backings under odd conditions (SPEC §1, §3): resource limits, sizes and
//! offsets near the limits, special files and descriptors, files that change, specs
//! that are not text, and the caller's memory (sharedarea_init_fd,
//! sharedarea_init_ptr). A refused init changes nothing: no area, no object, no
//! descriptor left behind, and last_error names the function and the cause.

#![allow(unused_unsafe)]

mod common;
use common::*;

use std::ffi::{c_void, CString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::Duration;

const SPEC_ERR: i32 = sa::SHAREDAREA_E_INVALID_SPEC;
const IO_ERR: i32 = sa::SHAREDAREA_E_IO;

// ---------------------------------------------------------------------------------------
// Resource limits: an error, never a dead process

/// Under a file-size limit (`ulimit -f`, systemd's LimitFSIZE=) growing a memfd or
/// shm object past it raises SIGXFSZ, which kills by default. sharedarea_init
/// returns an area or an error instead: anonymous memory is not a file, and file=
/// keeps its control block in a small memfd.
#[test]
fn init_under_rlimit_fsize_does_not_kill_the_process() {
    let _g = serial();
    let file = TempFile::with_bytes("fsize", &pattern(4096, 1));
    let cases = [
        ("size=4M".to_string(), 1u64 << 20),
        (format!("file={},size=4096", file.path()), 8192),
        ("pages=1".to_string(), 8192),
    ];
    let mut dead = Vec::new();
    for (spec, limit) in cases {
        let s = spec.clone();
        let mut child = fork_child(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: libc::RLIM_INFINITY,
            };
            if unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) } != 0 {
                return child_fail(3, "setrlimit(RLIMIT_FSIZE) failed");
            }
            let st = init(&s);
            if st >= 0 {
                // Created: it must be usable.
                return if write8(st, 0, 1) == 0 { 0 } else { 4 };
            }
            // Refused: acceptable, with a reason.
            if last_error().starts_with("sharedarea_init: ") {
                0
            } else {
                5
            }
        });
        match child.wait(Duration::from_secs(10)) {
            Ok(Exit::Code(0)) => {}
            other => dead.push(format!("{spec} under RLIMIT_FSIZE={limit}: {other:?}")),
        }
    }
    assert!(
        dead.is_empty(),
        "sharedarea_init must return (an area or an error), not die (signal 25 = SIGXFSZ):\n{}",
        dead.join("\n")
    );
}

/// The same for name=, whose object is sized to its header plus the area; no
/// half-made object is left behind.
#[test]
fn named_create_under_rlimit_fsize_is_an_error_not_a_kill() {
    let _g = serial();
    let name = ShmName::new("fsize");
    let n = name.0.clone();
    let mut child = fork_child(move || {
        let lim = libc::rlimit {
            rlim_cur: 1 << 20,
            rlim_max: libc::RLIM_INFINITY,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) } != 0 {
            return child_fail(3, "setrlimit(RLIMIT_FSIZE) failed");
        }
        let st = init(&format!("name={n},size=4M"));
        if st >= 0 || last_error().contains(&n) {
            0
        } else {
            child_fail(5, &last_error())
        }
    });
    let r = child.wait(Duration::from_secs(10));
    assert_eq!(
        r,
        Ok(Exit::Code(0)),
        "name=..,size=4M under RLIMIT_FSIZE=1M must return, not die (signal 25 = SIGXFSZ)"
    );
    assert!(
        !shm_exists(&name.0) || init(&format!("name={}", name.0)) >= 0,
        "a half-made object was left behind"
    );
}

/// A failed init names the spec even when the spec's digits ("4", "24") also occur
/// in the OS error's text ("os error 24"). Under EMFILE an anonymous area may
/// simply be created: it needs no descriptor.
#[test]
fn os_error_of_a_digits_spec_names_the_spec() {
    let _g = serial();
    for spec in ["4", "24", "pages=4"] {
        let s = spec.to_string();
        let mut child = fork_child(move || {
            // Make the next descriptor fail with EMFILE: memfd_create is refused.
            let nul = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
            let lowest = unsafe { libc::fcntl(nul, libc::F_DUPFD, 0) };
            unsafe { libc::close(lowest) };
            let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
            lim.rlim_cur = lowest as u64;
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
                return child_fail(3, "setrlimit(RLIMIT_NOFILE) failed");
            }
            let before = count();
            let st = init(&s);
            let e = last_error();
            if st >= 0 {
                return 0; // anonymous areas need no descriptor
            }
            if count() != before {
                return child_fail(6, &format!("{s}: failed init changed the count"));
            }
            if !e.contains(&format!("\"{s}\"")) {
                return child_fail(7, &format!("{s}: last_error does not name the spec: {e}"));
            }
            0
        });
        child.expect_success(
            Duration::from_secs(10),
            &format!("{spec}: see the child's message on stderr"),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Sizes near the limits

/// A size below isize::MAX whose header plus size passes i64::MAX is refused as
/// "does not fit", never in the words of Rust's integer conversions.
#[test]
fn size_just_under_2_pow_63_says_it_does_not_fit() {
    let _g = serial();
    let name = ShmName::new("huge");
    for spec in [
        "size=0x7ffffffffffff000".to_string(),
        format!("name={},size=0x7ffffffffffff000", name.0),
    ] {
        let e = refused_cleanly(spec.as_bytes(), &[SPEC_ERR, IO_ERR], &spec);
        assert!(
            !e.contains("integral type conversion"),
            "{spec}: Rust-internal error text leaks: {e}"
        );
        assert!(e.contains("does not fit"), "{spec}: {e}");
    }
    assert!(!shm_exists(&name.0));
}

/// Overflowing sizes, offsets and their sums are refused: nothing created, no
/// object and no descriptor left, the file untouched.
#[test]
fn size_and_offset_overflows_are_refused_cleanly() {
    let _g = serial();
    let ps = page_size();
    let original = pattern(2 * ps as usize, 4);
    let f = TempFile::with_bytes("ovf", &original);
    let p = f.path();
    for spec in [
        format!("file={p},offset=0xFFFFFFFFFFFFF000,size=4096"), // offset + size wraps
        format!("file={p},offset=0xFFFFFFFFFFFFF000"),           // len - offset < 0
        format!("file={p},offset=0x8000000000000000,size=4096"), // past i64
        format!("file={p},size=18446744073709551615"),
        format!("file={p},pages=4503599627370497"), // pages * 4096 wraps
        format!("file={p},size=16777216G"),         // K/M/G overflow
    ] {
        refused_cleanly(spec.as_bytes(), &[SPEC_ERR, IO_ERR], p);
    }
    let name = ShmName::new("ovf");
    for spec in [
        format!("name={},pages=2251799813685248", name.0), // 2^51 pages = 2^63 bytes
        format!("name={},size=0x7fffffffffffffff", name.0),
        format!("name={},size=0x7fffffffffff0000", name.0), // fits i64, not the address space
    ] {
        refused_cleanly(spec.as_bytes(), &[SPEC_ERR, IO_ERR], &name.0);
        assert!(
            !shm_exists(&name.0),
            "{spec}: a failed creation left /dev/shm{} behind",
            name.0
        );
    }
    assert_eq!(std::fs::read(p).unwrap(), original);
}

// ---------------------------------------------------------------------------------------
// file= / fd=

/// Special files (a directory, /dev/null, a FIFO, which must not hang, a socket) and
/// descriptors opened read-only or write-only are refused with a message naming
/// them: nothing created, no descriptor leaked, the file's bytes untouched.
#[test]
fn special_files_and_descriptors_are_refused_cleanly() {
    let _g = serial();
    let dir = std::env::temp_dir().join(format!("sa-test-{}-special", pid()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap().to_string();
    refused_cleanly(format!("file={d},size=4096").as_bytes(), &[IO_ERR], &d);
    refused_cleanly(format!("file={d}").as_bytes(), &[IO_ERR, SPEC_ERR], &d);
    refused_cleanly(
        b"file=/dev/null,size=4096",
        &[IO_ERR, SPEC_ERR],
        "/dev/null",
    );
    refused_cleanly(b"file=/dev/null", &[SPEC_ERR, IO_ERR], "/dev/null");

    // A FIFO: opening it read-write must not block, and it cannot be mapped.
    let fifo = dir.join("fifo");
    let cf = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(cf.as_ptr(), 0o600) }, 0);
    let fp = fifo.to_str().unwrap().to_string();
    let mut child = fork_child(move || {
        let a = init(&format!("file={fp},size=4096"));
        let b = init(&format!("file={fp}"));
        if a < 0 && b < 0 && last_error().contains(&fp) {
            0
        } else {
            child_fail(2, &format!("FIFO: {a} {b} {}", last_error()))
        }
    });
    child.expect_success(Duration::from_secs(5), "file= on a FIFO (a hang = killed)");

    // A socket descriptor.
    let (s1, s2) = socketpair();
    refused_cleanly(
        format!("fd={s1}").as_bytes(),
        &[SPEC_ERR, IO_ERR],
        &format!("fd {s1}"),
    );
    refused_cleanly(
        format!("fd={s1},size=4096").as_bytes(),
        &[IO_ERR, SPEC_ERR],
        &format!("fd {s1}"),
    );
    close(s1);
    close(s2);

    // A regular file opened read-only / write-only: MAP_SHARED read-write is refused.
    let original = pattern(8192, 6);
    let f = TempFile::with_bytes("modes", &original);
    let ro = std::fs::File::open(f.path()).unwrap();
    let wo = std::fs::OpenOptions::new()
        .write(true)
        .open(f.path())
        .unwrap();
    for file in [&ro, &wo] {
        let fd = file.as_raw_fd();
        refused_cleanly(
            format!("fd={fd}").as_bytes(),
            &[IO_ERR],
            &format!("fd {fd}"),
        );
        let (areas, fds) = (count(), open_fds());
        let st = unsafe { sa::sharedarea_init_fd(fd, 4096, 0) };
        assert!(st < 0, "init_fd on fd {fd}: {st}");
        assert!(
            last_error().starts_with("sharedarea_init_fd: "),
            "{}",
            last_error()
        );
        assert_eq!((count(), open_fds()), (areas, fds));
    }
    // fd of a file shorter than offset + size, and an offset not page aligned.
    let rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(f.path())
        .unwrap();
    let fd = rw.as_raw_fd();
    refused_cleanly(
        format!("fd={fd},size=8193").as_bytes(),
        &[SPEC_ERR, IO_ERR],
        "8192",
    );
    refused_cleanly(
        format!("fd={fd},offset=4096,size=4097").as_bytes(),
        &[SPEC_ERR, IO_ERR],
        "8192",
    );
    refused_cleanly(
        format!("fd={fd},offset=8192").as_bytes(),
        &[SPEC_ERR, IO_ERR],
        "8192",
    );
    refused_cleanly(
        format!("fd={fd},offset=100,size=10").as_bytes(),
        &[SPEC_ERR],
        "page",
    );
    // The caller's descriptor stays open and usable after all of this.
    assert!(unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0);
    assert_eq!(std::fs::read(f.path()).unwrap(), original);
    drop((ro, wo, rw));
    let _ = std::fs::remove_dir_all(&dir);
}

/// An area keeps the size it was created with when its file grows, its bytes stay
/// the file's, a new init sees the new length, and the caller may close its fd.
#[test]
fn file_area_keeps_its_size_when_the_file_grows_and_outlives_the_callers_fd() {
    let _g = serial();
    let f = TempFile::with_bytes("grow", &pattern(4096, 8));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(f.path())
        .unwrap();
    let id = must_init(&format!("fd={}", file.as_raw_fd()));
    drop(file); // the library holds its own mapping
    must_write(id, 0, b"after close");
    assert_eq!(&std::fs::read(f.path()).unwrap()[..11], b"after close");
    let g = std::fs::OpenOptions::new()
        .append(true)
        .open(f.path())
        .unwrap();
    g.set_len(3 * 4096).unwrap();
    assert_eq!(size_of(id), 4096, "an existing area keeps its size");
    assert_eq!(read(id, 4096, 1), Err(sa::SHAREDAREA_E_OUT_OF_RANGE as i64));
    let id2 = must_init(&format!("file={}", f.path()));
    assert_eq!(size_of(id2), 3 * 4096);
    assert_eq!(read(id2, 0, 11).unwrap(), b"after close");
}

/// Specs are UTF-8 text (SPEC §1): a file= path that is not UTF-8 is refused with
/// INVALID_SPEC saying so, before the path is looked at, even when the file exists;
/// nothing is created.
#[test]
fn a_spec_that_is_not_utf8_is_refused_before_the_path_is_used() {
    let _g = serial();
    let mut path = std::env::temp_dir()
        .join(format!("sa-test-{}-latin1-", pid()))
        .into_os_string()
        .into_vec();
    path.extend_from_slice(b"caf\xe9.bin");
    let os = std::ffi::OsStr::from_bytes(&path).to_owned();
    std::fs::write(&os, pattern(4096, 2)).unwrap();
    struct Rm(std::ffi::OsString);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _rm = Rm(os);
    let mut spec = b"file=".to_vec();
    spec.extend_from_slice(&path);
    spec.extend_from_slice(b",size=4096");
    refused_cleanly(&spec, &[SPEC_ERR], "not UTF-8");
    refused_cleanly(b"name=caf\xe9,size=4096", &[SPEC_ERR], "not UTF-8");
}

/// A long but legal file= path, quoted twice (in the spec, then in "cannot open
/// PATH"), still leaves the OS's cause in last_error.
#[test]
fn long_file_path_error_keeps_the_cause() {
    let _g = serial();
    let mut path = format!("/nonexistent-sa-test-{}", pid());
    while path.len() < 480 {
        path.push_str("/0123456789abcdef0123456789abcdef");
    }
    let spec = format!("file={path},size=4096");
    let e = refused_cleanly(spec.as_bytes(), &[IO_ERR], "sharedarea_init");
    assert!(
        e.contains("No such file or directory") || e.contains("os error 2"),
        "the cause was cut off ({} bytes): {e}",
        e.len()
    );
}

// ---------------------------------------------------------------------------------------
// sharedarea_init_fd / sharedarea_init_ptr arguments

/// sharedarea_init_fd's argument errors are INVALID_ARGUMENT (it takes no spec), and
/// the message for a non-regular fd with len 0 does not tell a C caller to give
/// size=.
#[test]
fn init_fd_argument_errors_are_invalid_argument() {
    let _g = serial();
    let f = TempFile::with_bytes("initfd", &pattern(8192, 1));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(f.path())
        .unwrap();
    let fd = file.as_raw_fd();
    let inval = sa::SHAREDAREA_E_INVALID_ARGUMENT;
    assert_eq!(
        unsafe { sa::sharedarea_init_fd(fd, 10, 100) },
        inval,
        "{}",
        last_error()
    );
    assert_eq!(
        unsafe { sa::sharedarea_init_fd(fd, 8193, 0) },
        inval,
        "{}",
        last_error()
    );
    let (s1, s2) = socketpair();
    let st = unsafe { sa::sharedarea_init_fd(s1, 0, 0) };
    let e = last_error();
    close(s1);
    close(s2);
    assert!(st < 0);
    assert!(!e.contains("size="), "a C caller has no size= to give: {e}");
}

/// A (ptr, len) range that wraps the address space is refused with
/// INVALID_ARGUMENT and creates nothing.
#[test]
fn init_ptr_refuses_a_range_that_wraps() {
    let _g = serial();
    let before = count();
    let p = (usize::MAX - 4095) as *mut c_void;
    let st = unsafe { sa::sharedarea_init_ptr(p, 8192) };
    assert_eq!(st, sa::SHAREDAREA_E_INVALID_ARGUMENT, "{}", last_error());
    assert_eq!(count(), before, "a refused init_ptr created an area");
}

/// The caller's memory at an unaligned address with an odd length is an area:
/// every integer operation works unaligned, the range check uses exactly `len`,
/// nothing before `ptr` or past `len` is touched, and lengths past 2^63-1 are
/// refused.
#[test]
fn init_ptr_at_an_unaligned_address_with_an_odd_length() {
    let _g = serial();
    let mem: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
    let p = unsafe { mem.as_mut_ptr().add(3) };
    let id = unsafe { sa::sharedarea_init_ptr(p as *mut c_void, 13) };
    assert!(id >= 0, "{}", last_error());
    assert_eq!(size_of(id), 13);
    assert_eq!(info(id).pages, 1);
    assert_eq!(write64(id, 5, -2), 0);
    assert_eq!(inc64(id, 5, 1), Ok(-1));
    assert_eq!(write64(id, 6, 1), sa::SHAREDAREA_E_OUT_OF_RANGE);
    assert_eq!(inc16(id, 12, 1), Err(sa::SHAREDAREA_E_OUT_OF_RANGE));
    assert_eq!(&mem[8..16], &(-1i64).to_ne_bytes());
    assert_eq!(mem[16], 0, "nothing past len");
    assert_eq!(&mem[..3], &[0, 0, 0], "nothing before ptr");
    let before = count();
    assert_eq!(
        unsafe { sa::sharedarea_init_ptr(p as *mut c_void, u64::MAX) },
        sa::SHAREDAREA_E_INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { sa::sharedarea_init_ptr(p as *mut c_void, 1 << 63) },
        sa::SHAREDAREA_E_INVALID_ARGUMENT
    );
    assert_eq!(count(), before);
}
