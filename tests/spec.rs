//! SPEC §1: every spec form creates the area it describes; every bad spec is refused,
//! creates nothing and says why (naming the spec).

#![allow(unused_unsafe)]

mod common;
use common::*;

use std::ffi::c_void;
use std::os::fd::AsRawFd;

/// Asserts that `spec` is refused with `expected` (one of), creates nothing, and that
/// `sharedarea_last_error` names `sharedarea_init` and (for spec errors) the spec itself.
fn refused(spec: &str, expected: &[i32]) -> i32 {
    refused_naming(spec, expected, spec)
}

/// Like [`refused`], but the message must name `needle` (the file or the name) rather
/// than the whole spec: for problems found when opening the backing, not when parsing.
fn refused_naming(spec: &str, expected: &[i32], needle: &str) -> i32 {
    let before = count();
    let st = init(spec);
    let err = last_error();
    assert!(
        expected.contains(&st),
        "sharedarea_init(\"{spec}\") = {st} ({}), expected one of {expected:?}; last_error: {err}",
        strerror(st as i64)
    );
    assert_eq!(
        count(),
        before,
        "sharedarea_init(\"{spec}\") failed but the area count changed"
    );
    assert!(
        err.starts_with("sharedarea_init: "),
        "last_error for \"{spec}\" does not name the function: {err}"
    );
    if st == sa::SHAREDAREA_E_INVALID_SPEC && !needle.is_empty() {
        assert!(
            err.contains(needle),
            "last_error for \"{spec}\" does not name {needle:?}: {err}"
        );
    }
    st
}

const SPEC_ERR: &[i32] = &[sa::SHAREDAREA_E_INVALID_SPEC];

#[test]
fn digits_form_is_pages() {
    let _g = serial();
    let ps = page_size();
    let before = count();
    let id = must_init("4");
    assert_eq!(id, before, "ids are handed out in creation order");
    assert_eq!(count(), before + 1);
    let i = info(id);
    assert_eq!(i.size, 4 * ps);
    assert_eq!(i.pages, 4);
    assert_eq!(i.page_size, ps);
    assert_eq!(i.backing, sa::SHAREDAREA_BACKING_ANONYMOUS);
    assert_eq!(i.updates, 0);
    assert_eq!(i.honour_used, 0);
    // A fresh anonymous area is zero-filled.
    assert!(snapshot(id).iter().all(|&b| b == 0));
}

#[test]
fn pages_key() {
    let _g = serial();
    let id = must_init("pages=2");
    assert_eq!(info(id).size, 2 * page_size());
    assert_eq!(info(id).pages, 2);
}

#[test]
fn size_key_forms_and_anonymous_rounding() {
    let _g = serial();
    let ps = page_size();
    let cases: &[(&str, u64)] = &[
        ("size=100", ps),
        ("size=4096", 4096u64.div_ceil(ps) * ps),
        ("size=4097", 4097u64.div_ceil(ps) * ps),
        ("size=0x1000", 0x1000u64.div_ceil(ps) * ps),
        ("size=0X2001", 0x2001u64.div_ceil(ps) * ps),
        ("size=4K", 4096u64.div_ceil(ps) * ps),
        ("size=3K", 3072u64.div_ceil(ps) * ps),
        ("size=1M", 1 << 20),
        ("size=0x10K", 16 << 10),
        ("size=1G", 1 << 30),
    ];
    for &(spec, want) in cases {
        let id = must_init(spec);
        let i = info(id);
        assert_eq!(i.size, want, "{spec}: size");
        assert_eq!(i.pages, want / ps, "{spec}: pages");
        assert_eq!(i.backing, sa::SHAREDAREA_BACKING_ANONYMOUS, "{spec}");
    }
    // The last byte of the rounded-up area is usable.
    let id = must_init("size=100");
    must_write(id, ps - 1, b"Z");
    assert_eq!(read(id, ps - 1, 1).unwrap(), b"Z");
}

#[test]
fn file_exact_size_and_bytes_are_the_files() {
    let _g = serial();
    let original = pattern(8192, 7);
    let f = TempFile::with_bytes("file", &original);
    let id = must_init(&format!("file={},size=100", f.path()));
    let i = info(id);
    assert_eq!(i.size, 100, "file areas are exactly size= bytes");
    assert_eq!(i.backing, sa::SHAREDAREA_BACKING_FILE);
    assert_eq!(
        read(id, 0, 100).unwrap(),
        &original[..100],
        "area bytes are the file's bytes"
    );
    // Byte 100 is outside the area.
    assert_eq!(read(id, 100, 1), Err(sa::SHAREDAREA_E_OUT_OF_RANGE as i64));
    must_write(id, 0, b"hello");
    must_write(id, 95, b"WORLD");
    let now = std::fs::read(f.path()).unwrap();
    assert_eq!(now.len(), 8192, "the file's length must not change");
    assert_eq!(&now[..5], b"hello");
    assert_eq!(&now[95..100], b"WORLD");
    assert_eq!(&now[5..95], &original[5..95], "bytes not written stay");
    assert_eq!(
        &now[100..],
        &original[100..],
        "bytes outside the area are untouched"
    );
}

#[test]
fn file_without_size_is_length_minus_offset() {
    let _g = serial();
    let ps = page_size() as usize;
    let len = 3 * ps + 123;
    let original = pattern(len, 3);
    let f = TempFile::with_bytes("nosize", &original);

    let id = must_init(&format!("file={}", f.path()));
    assert_eq!(info(id).size, len as u64);
    assert_eq!(snapshot(id), original);

    let id = must_init(&format!("file={},offset={}", f.path(), ps));
    assert_eq!(info(id).size, (len - ps) as u64);
    assert_eq!(snapshot(id), &original[ps..]);

    // offset + size within the file, hex offset.
    let id = must_init(&format!("file={},offset={:#x},size=10", f.path(), 2 * ps));
    assert_eq!(info(id).size, 10);
    assert_eq!(read(id, 0, 10).unwrap(), &original[2 * ps..2 * ps + 10]);
    must_write(id, 0, b"0123456789");
    let now = std::fs::read(f.path()).unwrap();
    assert_eq!(&now[2 * ps..2 * ps + 10], b"0123456789");
    assert_eq!(&now[..2 * ps], &original[..2 * ps]);
    assert_eq!(&now[2 * ps + 10..], &original[2 * ps + 10..]);
}

#[test]
fn file_errors() {
    let _g = serial();
    let ps = page_size() as usize;
    let f = TempFile::with_bytes("short", &pattern(2 * ps, 1));
    // offset not a page multiple
    refused_naming(
        &format!("file={},size=100,offset=100", f.path()),
        SPEC_ERR,
        f.path(),
    );
    // shorter than offset + size (mapping past the end would SIGBUS)
    refused_naming(
        &format!("file={},size={}", f.path(), 2 * ps + 1),
        &[sa::SHAREDAREA_E_INVALID_SPEC, sa::SHAREDAREA_E_IO],
        f.path(),
    );
    refused_naming(
        &format!("file={},size=100,offset={}", f.path(), 2 * ps),
        &[sa::SHAREDAREA_E_INVALID_SPEC, sa::SHAREDAREA_E_IO],
        f.path(),
    );
    // offset at the end and no size: nothing left to map
    refused_naming(
        &format!("file={},offset={}", f.path(), 2 * ps),
        &[sa::SHAREDAREA_E_INVALID_SPEC, sa::SHAREDAREA_E_IO],
        f.path(),
    );
    // missing file
    refused(
        &format!("file=/nonexistent-sa-test-{}/x,size=4096", pid()),
        &[sa::SHAREDAREA_E_IO],
    );
    // empty file without size
    let empty = TempFile::with_bytes("empty", b"");
    refused_naming(
        &format!("file={}", empty.path()),
        &[sa::SHAREDAREA_E_INVALID_SPEC, sa::SHAREDAREA_E_IO],
        empty.path(),
    );
    // file contents unchanged by all these failures
    assert_eq!(std::fs::read(f.path()).unwrap(), pattern(2 * ps, 1));
}

#[test]
fn fd_key_and_init_fd() {
    let _g = serial();
    let ps = page_size() as usize;
    let original = pattern(2 * ps + 10, 9);
    let f = TempFile::with_bytes("fd", &original);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(f.path())
        .unwrap();
    let fd = file.as_raw_fd();

    let id = must_init(&format!("fd={fd},size=4096"));
    let i = info(id);
    assert_eq!(i.size, 4096);
    assert_eq!(i.backing, sa::SHAREDAREA_BACKING_FD);
    assert_eq!(read(id, 0, 4096).unwrap(), &original[..4096]);

    let id = must_init(&format!("fd={fd}"));
    assert_eq!(
        info(id).size,
        original.len() as u64,
        "fd= without size: file length"
    );

    let id = must_init(&format!("fd={fd},offset={ps}"));
    assert_eq!(snapshot(id), &original[ps..]);
    must_write(id, 1, b"xyz");
    assert_eq!(&std::fs::read(f.path()).unwrap()[ps + 1..ps + 4], b"xyz");

    // sharedarea_init_fd: len 0 = file length - offset
    let id = unsafe { sa::sharedarea_init_fd(fd, 0, 0) };
    assert!(id >= 0, "sharedarea_init_fd(fd, 0, 0): {}", last_error());
    assert_eq!(info(id).size, original.len() as u64);
    let id = unsafe { sa::sharedarea_init_fd(fd, 10, ps as i64) };
    assert!(id >= 0, "sharedarea_init_fd(fd, 10, ps): {}", last_error());
    assert_eq!(info(id).size, 10);
    assert_eq!(read(id, 1, 3).unwrap(), b"xyz");

    // errors from init_fd create nothing
    let before = count();
    let st = unsafe { sa::sharedarea_init_fd(fd, 10, 100) };
    assert!(st < 0, "offset 100 is not a page multiple, got {st}");
    let st = unsafe { sa::sharedarea_init_fd(fd, 10, -4096) };
    assert!(st < 0, "negative offset, got {st}");
    let st = unsafe { sa::sharedarea_init_fd(fd, (original.len() + 1) as u64, 0) };
    assert!(st < 0, "past the end of the file, got {st}");
    let st = unsafe { sa::sharedarea_init_fd(-1, 4096, 0) };
    assert!(st < 0, "fd -1, got {st}");
    assert_eq!(count(), before);

    // a descriptor that is not open
    refused("fd=987654,size=4096", &[sa::SHAREDAREA_E_IO]);
    drop(file);
}

#[test]
fn named_create_attach_and_errors() {
    let _g = serial();
    let name = ShmName::new("named");
    let id = must_init(&format!("name={},size=8192", name.0));
    let i = info(id);
    assert_eq!(i.size, 8192);
    assert_eq!(i.backing, sa::SHAREDAREA_BACKING_NAMED);
    must_write(id, 10, b"named!");
    assert_eq!(inc64(id, 100, 5), Ok(5));

    // attach (no size, and with the matching size): same bytes, same counters
    let id2 = must_init(&format!("name={}", name.0));
    assert_ne!(id, id2);
    assert_eq!(info(id2).size, 8192);
    assert_eq!(read(id2, 10, 6).unwrap(), b"named!");
    assert_eq!(inc64(id2, 100, 1), Ok(6));
    assert_eq!(read64(id, 100), Ok(6));
    let u = updates(id);
    must_write(id2, 0, b"x");
    assert_eq!(
        updates(id),
        u + 1,
        "the update counter lives in the named object"
    );
    let id3 = must_init(&format!("name={},size=8K", name.0));
    assert_eq!(read(id3, 10, 6).unwrap(), b"named!");

    // size mismatch
    refused_naming(
        &format!("name={},size=4096", name.0),
        &[sa::SHAREDAREA_E_INVALID_SPEC, sa::SHAREDAREA_E_NOT_AN_AREA],
        &name.0,
    );
    // absent object without a size: nothing to create
    let absent = ShmName::new("absent");
    refused_naming(
        &format!("name={}", absent.0),
        &[sa::SHAREDAREA_E_INVALID_SPEC, sa::SHAREDAREA_E_IO],
        &absent.0,
    );
    let c = std::ffi::CString::new(absent.0.as_str()).unwrap();
    let fd = unsafe { libc::shm_open(c.as_ptr(), libc::O_RDONLY, 0) };
    assert!(fd < 0, "a refused name= spec left an shm object behind");

    // a name without the leading slash, and with a slash inside
    refused("name=a/b,size=4096", SPEC_ERR);
    refused("name=,size=4096", SPEC_ERR);
}

#[test]
fn named_object_that_is_not_an_area() {
    let _g = serial();
    for (tag, len, fill) in [
        ("zeros", 8192usize, 0u8),
        ("junk", 8192, 0xA5),
        ("tiny", 10, 0x11),
        ("empty", 0, 0),
    ] {
        let name = ShmName::new(tag);
        let c = std::ffi::CString::new(name.0.as_str()).unwrap();
        let fd = unsafe {
            libc::shm_open(
                c.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                0o600,
            )
        };
        assert!(fd >= 0, "shm_open: {}", std::io::Error::last_os_error());
        let bytes = vec![fill; len];
        if len > 0 {
            let n = unsafe { libc::write(fd, bytes.as_ptr() as *const c_void, len) };
            assert_eq!(n, len as isize);
        }
        unsafe { libc::close(fd) };
        refused(&format!("name={}", name.0), &[sa::SHAREDAREA_E_NOT_AN_AREA]);
        if len > 0 {
            refused(
                &format!("name={},size={len}", name.0),
                &[sa::SHAREDAREA_E_NOT_AN_AREA, sa::SHAREDAREA_E_INVALID_SPEC],
            );
        }
        // ... and the foreign object is left as it was.
        let fd = unsafe { libc::shm_open(c.as_ptr(), libc::O_RDONLY, 0) };
        assert!(fd >= 0);
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        unsafe { libc::fstat(fd, &mut st) };
        assert_eq!(
            st.st_size as usize, len,
            "{tag}: the foreign object's size changed"
        );
        if len > 0 {
            let mut back = vec![0u8; len];
            let n = unsafe { libc::read(fd, back.as_mut_ptr() as *mut c_void, len) };
            assert_eq!(n, len as isize);
            assert_eq!(back, bytes, "{tag}: the foreign object's bytes changed");
        }
        unsafe { libc::close(fd) };
    }
}

#[test]
fn named_area_owned_by_another_user_is_refused() {
    let _g = serial();
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIP named_area_owned_by_another_user_is_refused: needs root to chown the object"
        );
        return;
    }
    let name = ShmName::new("owner");
    // Created by another process: this one, having never attached it, checks it
    // afresh (an object already attached here is shared, whoever owns it now).
    let spec = format!("name={},size=4096", name.0);
    fork_child(move || if init(&spec) >= 0 { 0 } else { 1 })
        .expect_success(std::time::Duration::from_secs(10), "creator");
    let c = std::ffi::CString::new(name.0.as_str()).unwrap();
    let fd = unsafe { libc::shm_open(c.as_ptr(), libc::O_RDWR, 0) };
    assert!(fd >= 0);
    assert_eq!(
        unsafe { libc::fchown(fd, 65534, 65534) },
        0,
        "fchown: {}",
        std::io::Error::last_os_error()
    );
    unsafe { libc::close(fd) };
    refused(&format!("name={}", name.0), &[sa::SHAREDAREA_E_NOT_AN_AREA]);
}

#[test]
fn init_ptr_maps_callers_memory() {
    let _g = serial();
    // Areas live until the process exits, so the memory must too.
    let mem: &'static mut [u8] = Box::leak(vec![0u8; 1000].into_boxed_slice());
    mem[0] = 42;
    let id = unsafe { sa::sharedarea_init_ptr(mem.as_mut_ptr() as *mut c_void, 1000) };
    assert!(id >= 0, "sharedarea_init_ptr: {}", last_error());
    let i = info(id);
    assert_eq!(i.size, 1000);
    assert_eq!(i.backing, sa::SHAREDAREA_BACKING_POINTER);
    assert_eq!(read8(id, 0), Ok(42));
    must_write(id, 996, b"tail");
    assert_eq!(inc32(id, 500, 7), Ok(7));
    assert_eq!(read(id, 996, 4).unwrap(), b"tail");
    let tail = unsafe { std::ptr::read_volatile(&mem[996..1000] as *const [u8] as *const [u8; 4]) };
    assert_eq!(&tail, b"tail", "writes land in the caller's memory");
    assert_eq!(read(id, 997, 4), Err(sa::SHAREDAREA_E_OUT_OF_RANGE as i64));

    let before = count();
    let st = unsafe { sa::sharedarea_init_ptr(std::ptr::null_mut(), 100) };
    assert_eq!(
        st,
        sa::SHAREDAREA_E_NULL_POINTER,
        "init_ptr(NULL): {}",
        last_error()
    );
    let st = unsafe { sa::sharedarea_init_ptr(mem.as_mut_ptr() as *mut c_void, 0) };
    assert!(st < 0, "init_ptr with len 0 must fail, got {st}");
    assert_eq!(count(), before);
}

#[test]
fn ptr_in_a_spec_is_an_error() {
    let _g = serial();
    for spec in ["ptr=0x1234,size=4096", "ptr=0x1234", "size=4096,ptr=1"] {
        refused(spec, SPEC_ERR);
        let e = last_error();
        assert!(
            e.contains("sharedarea_init_ptr"),
            "the message should point C callers to sharedarea_init_ptr: {e}"
        );
    }
}

#[test]
fn every_spec_error_is_refused_and_creates_nothing() {
    let _g = serial();
    let cases = [
        "0",
        "",
        "00",
        "foo=1",
        "foo=1,pages=1",
        "pages=1,pages=2",
        "size=4096,size=4096",
        "pages=abc",
        "size=abc",
        "pages=",
        "size=",
        "size=0x",
        "size=0",
        "size=0x0",
        "size=0K",
        "pages=0",
        "size=100,pages=0",
        "size=-1",
        "pages=-1",
        "size=4T",
        "size=12Q",
        "size=1.5",
        "pages = 2",
        " 4",
        "4 ",
        "4x",
        "abc",
        "=4",
        ",",
        "pages=1,",
        "offset=4096",
        "file=",
        "18446744073709551616",
        "pages=18446744073709551616",
        "size=18446744073709551616",
        "size=0x1ffffffffffffffff",
        "size=17179869184G",
    ];
    for spec in cases {
        refused(spec, SPEC_ERR);
    }
    // NULL spec
    let before = count();
    let st = unsafe { sa::sharedarea_init(std::ptr::null()) };
    assert_eq!(st, sa::SHAREDAREA_E_NULL_POINTER);
    assert_eq!(count(), before);
    // a spec that is not UTF-8
    let not_utf8 = std::ffi::CString::new(b"size=4096,file=\xff\xfe".to_vec()).unwrap();
    let st = unsafe { sa::sharedarea_init(not_utf8.as_ptr()) };
    assert!(
        st == sa::SHAREDAREA_E_INVALID_SPEC || st == sa::SHAREDAREA_E_IO,
        "non-UTF-8 spec: {st}"
    );
    assert_eq!(count(), before);
}

#[test]
fn huge_page_counts_never_wrap() {
    let _g = serial();
    // Page counts whose byte size overflows 64 bits (uWSGI multiplied in 32/64 bits and
    // wrapped): refused as a spec error, never a small area.
    let ps = page_size();
    let overflow = u64::MAX / ps + 1;
    for spec in [
        "18446744073709551615".to_string(),
        format!("{overflow}"),
        format!("pages={overflow}"),
        "pages=18446744073709551615".to_string(),
        "size=18446744073709551615".to_string(),
        "size=16777216T".to_string(),
    ] {
        refused(&spec, &[sa::SHAREDAREA_E_INVALID_SPEC, sa::SHAREDAREA_E_IO]);
    }
    // 2**32 + 1 pages must not silently become 1 page: it is either that many pages or
    // refused (16 TiB cannot be mapped here, so refused with a clear error).
    for spec in ["4294967297", "pages=4294967297"] {
        let before = count();
        let st = init(spec);
        if st >= 0 {
            assert_eq!(
                info(st).pages,
                4294967297,
                "{spec} became {} pages",
                info(st).pages
            );
        } else {
            assert!(
                st == sa::SHAREDAREA_E_INVALID_SPEC
                    || st == sa::SHAREDAREA_E_IO
                    || st == sa::SHAREDAREA_E_LIMIT,
                "{spec}: {st} {}",
                last_error()
            );
            assert_eq!(count(), before);
            assert!(
                last_error().starts_with("sharedarea_init: "),
                "{}",
                last_error()
            );
        }
    }
    // An anonymous mapping the address space / memory cannot hold: an OS error, nothing created.
    refused(
        "size=0x7fffffffffff0000",
        &[
            sa::SHAREDAREA_E_IO,
            sa::SHAREDAREA_E_INVALID_SPEC,
            sa::SHAREDAREA_E_LIMIT,
        ],
    );
}

#[test]
fn escaped_comma_in_file_path() {
    let _g = serial();
    let dir = std::env::temp_dir().join(format!("sa-test-{}-comma", pid()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a,b.bin");
    std::fs::write(&path, pattern(4096, 5)).unwrap();
    let spec = format!(
        "size=4096,file={}",
        path.to_str().unwrap().replace(',', "\\,")
    );
    let id = must_init(&spec);
    assert_eq!(snapshot(id), pattern(4096, 5));
    let _ = std::fs::remove_dir_all(&dir);
}
