//! Where an area's bytes and its control block live: the mappings.
//!
//! | source      | data                                   | control block                   |
//! |-------------|----------------------------------------|---------------------------------|
//! | anonymous   | `MAP_SHARED|MAP_ANONYMOUS` (fork shares it) | the same mapping, before the data |
//! | file / fd   | the file, `MAP_SHARED`, from `offset`  | its own anonymous shared mapping |
//! | name        | a POSIX shm object, after the control  | the object's first pages        |
//! | pointer     | the caller's memory                    | its own anonymous shared mapping |
//!
//! Nothing is ever written into a file's bytes but what callers write: the control
//! block of a file area lives in memory shared with forked children only.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::FromRawFd;

use memmap2::{MmapOptions, MmapRaw};

use crate::area::Object;
use crate::control::{Control, Invalid, VERSION};
use crate::lock::token::TokenFile;
use crate::process;
use crate::spec::{Size, Source, Spec};
use crate::status::{Error, Result, Status};

/// The kind of memory behind an area (numbers are part of the C ABI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Backing {
    Anonymous = 0,
    File = 1,
    Fd = 2,
    Named = 3,
    Pointer = 4,
}

/// An area's memory. The mappings it holds stay mapped for as long as it lives
/// (areas live until the process exits).
pub struct Mapping {
    pub data: *mut u8,
    pub size: u64,
    pub control: *const Control,
    pub backing: Backing,
    /// The lock's liveness tokens (see `lock::token`): the `name=` object itself,
    /// or a memfd made with the area; None if none could be had (slotless).
    pub tokens: Option<TokenFile>,
    /// Whether a second attach of the same object shares this mapping (`name=`).
    pub shareable: bool,
    _maps: Vec<Region>,
}

/// What creating an area from a spec found.
pub enum Made {
    New(Mapping),
    /// The `name=` object is already attached in this process.
    Attached(&'static Object),
}

/// One mapping an area keeps alive (held only to be unmapped on drop).
#[allow(dead_code)]
enum Region {
    /// A file or shared-memory object, through memmap2.
    File(MmapRaw),
    /// Anonymous shared memory (`MAP_SHARED | MAP_ANONYMOUS`): shared with forked
    /// children, and with no file size, so no `ftruncate` that a file-size limit
    /// (`ulimit -f`, SIGXFSZ) could turn into the death of the process.
    Anon(AnonMap),
}

struct AnonMap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; it is only
// unmapped in Drop, and all access through it goes through atomics or the area's lock.
unsafe impl Send for AnonMap {}
// SAFETY: as above.
unsafe impl Sync for AnonMap {}

impl AnonMap {
    fn new(len: u64, what: &str) -> Result<AnonMap> {
        let len_usize = usize::try_from(len).map_err(|_| too_big(format_args!("{len} bytes")))?;
        // SAFETY: a fresh anonymous mapping: no address hint, no file; the kernel
        // returns MAP_FAILED or a new mapping of `len` zeroed bytes.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len_usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::io(
                format_args!("cannot map {len} bytes of {what}"),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(AnonMap {
            ptr: p.cast(),
            len: len_usize,
        })
    }
}

impl Drop for AnonMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping this value created.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

fn control_len() -> u64 {
    (Control::SIZE as u64).div_ceil(page_size()) * page_size()
}

fn too_big(what: impl std::fmt::Display) -> Error {
    Error::new(
        Status::InvalidSpec,
        format!("{what} does not fit this machine's address space"),
    )
}

fn map(file: &File, offset: u64, len: u64, what: &str) -> Result<MmapRaw> {
    let len_usize = usize::try_from(len).map_err(|_| too_big(format_args!("{len} bytes")))?;
    MmapOptions::new()
        .offset(offset)
        .len(len_usize)
        .map_raw(file)
        .map_err(|e| Error::io(format_args!("cannot map {len} bytes of {what}"), e))
}

/// A fresh control block in its own (anonymous, fork-shared) memory.
fn private_control(size: u64) -> Result<(Region, *const Control)> {
    // (The tokens go with it: see `TokenFile::memfd` at the callers.)
    let map = AnonMap::new(control_len(), "the control block")?;
    let control = map.ptr as *const Control;
    // SAFETY: the mapping is control_len() >= size_of::<Control>() bytes, page
    // aligned, zero-filled (a valid Control: all atomics zero) and lives as long as
    // the returned Region.
    init_identity(unsafe { &*control }, size, 0);
    Ok((Region::Anon(map), control))
}

fn init_identity(ctl: &Control, size: u64, data_offset: u64) {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    ctl.init(size, data_offset, uid, process::pid_namespace());
}

fn size_in_bytes(size: Size, round_to_pages: bool) -> Result<Option<u64>> {
    let page = page_size();
    let bytes = match size {
        Size::Unspecified => return Ok(None),
        Size::Pages(p) => p
            .checked_mul(page)
            .ok_or_else(|| too_big(format_args!("{p} pages")))?,
        Size::Bytes(b) if round_to_pages => b
            .checked_next_multiple_of(page)
            .ok_or_else(|| too_big(format_args!("{b} bytes")))?,
        Size::Bytes(b) => b,
    };
    // With its control block in front it must still fit a file offset.
    if bytes > (i64::MAX as u64) - control_len() {
        return Err(too_big(format_args!("{bytes} bytes")));
    }
    Ok(Some(bytes))
}

/// Creates (or attaches) the memory a parsed spec describes. Every error names
/// the spec.
pub fn create(spec_text: &str, spec: &Spec) -> Result<Made> {
    create_from(spec)
        .map_err(|e| Error::new(e.status, format!("spec \"{spec_text}\": {}", e.detail)))
}

fn create_from(spec: &Spec) -> Result<Made> {
    match &spec.source {
        Source::Anonymous => {
            let size = size_in_bytes(spec.size, true)?.unwrap_or(0);
            anonymous(size).map(Made::New)
        }
        Source::File(path) => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| Error::io(format_args!("cannot open {path}"), e))?;
            let size = size_in_bytes(spec.size, false)?;
            over_file(
                &file,
                size,
                spec.offset,
                Backing::File,
                &format!("file {path}"),
            )
            .map(Made::New)
        }
        Source::Fd(fd) => {
            let size = size_in_bytes(spec.size, false)?;
            from_fd(*fd, size, spec.offset).map(Made::New)
        }
        Source::Named(name) => {
            let size = size_in_bytes(spec.size, false)?;
            if let Some(obj) = already_attached(name) {
                if let Some(s) = size {
                    if s != obj.size() {
                        return Err(Error::new(
                            Status::InvalidSpec,
                            format!(
                                "name={name}: the area exists with {} bytes, not {s}",
                                obj.size()
                            ),
                        ));
                    }
                }
                return Ok(Made::Attached(obj));
            }
            named(name, size).map(Made::New)
        }
    }
}

/// An anonymous shared area of `size` bytes (already a page multiple).
pub fn anonymous(size: u64) -> Result<Mapping> {
    let total = control_len()
        .checked_add(size)
        .ok_or_else(|| too_big(format_args!("{size} bytes")))?;
    let map = AnonMap::new(total, "anonymous shared memory")?;
    let base = map.ptr;
    // SAFETY: the mapping starts with control_len() zeroed bytes, page aligned,
    // that live as long as `map` (moved into the Mapping below).
    init_identity(unsafe { &*(base as *const Control) }, size, control_len());
    Ok(Mapping {
        // SAFETY: control_len() < total, so the offset stays inside the mapping.
        data: unsafe { base.add(control_len() as usize) },
        size,
        control: base as *const Control,
        backing: Backing::Anonymous,
        tokens: TokenFile::memfd(),
        shareable: false,
        _maps: vec![Region::Anon(map)],
    })
}

/// Maps an open descriptor by number, leaving it open.
pub fn from_fd(fd: i32, size: Option<u64>, offset: u64) -> Result<Mapping> {
    // SAFETY: fcntl(F_GETFD) only queries the descriptor.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(Error::new(
            Status::Io,
            format!("fd {fd} is not an open descriptor"),
        ));
    }
    // SAFETY: dup returns a new descriptor we own; the caller's stays open.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(Error::io(
            format_args!("cannot use fd {fd}"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `dup` is a fresh descriptor owned by this File.
    let file = unsafe { File::from_raw_fd(dup) };
    over_file(&file, size, offset, Backing::Fd, &format!("fd {fd}"))
}

fn over_file(
    file: &File,
    size: Option<u64>,
    offset: u64,
    backing: Backing,
    what: &str,
) -> Result<Mapping> {
    let page = page_size();
    if offset % page != 0 {
        return Err(Error::new(
            Status::InvalidSpec,
            format!("offset {offset} of {what} is not a multiple of the page size ({page})"),
        ));
    }
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format_args!("cannot stat {what}"), e))?;
    // Only a regular file (shared-memory objects and memfds are regular files
    // too) has a length to check a range against: a device such as /dev/zero
    // maps, then dies with SIGBUS on access past whatever it really backs.
    if !meta.file_type().is_file() {
        return Err(Error::new(
            Status::InvalidSpec,
            format!(
                "{what} is {}, not a regular file or shared-memory object (an area maps only those)",
                file_kind(&meta.file_type())
            ),
        ));
    }
    let size = match size {
        Some(s) => s,
        None => match meta.len().checked_sub(offset) {
            Some(s) if s > 0 => s,
            _ => {
                return Err(Error::new(
                    Status::InvalidSpec,
                    format!(
                        "{what} has {} bytes: nothing to map from offset {offset}",
                        meta.len()
                    ),
                ))
            }
        },
    };
    if size == 0 {
        return Err(Error::new(
            Status::InvalidSpec,
            format!("{what}: an area cannot be empty"),
        ));
    }
    let end = offset
        .checked_add(size)
        .ok_or_else(|| too_big(format_args!("{what}: offset {offset} + size {size}")))?;
    if meta.len() < end {
        return Err(Error::new(
            Status::InvalidSpec,
            format!(
                "{what} has {} bytes, shorter than offset {offset} + size {size} (mapping past its end would crash with SIGBUS)",
                meta.len()
            ),
        ));
    }
    let data_map = map(file, offset, size, what)?;
    let (control_map, control) = private_control(size)?;
    Ok(Mapping {
        data: data_map.as_mut_ptr(),
        size,
        control,
        backing,
        tokens: TokenFile::memfd(),
        shareable: false,
        _maps: vec![Region::File(data_map), control_map],
    })
}

/// An area over the caller's memory.
///
/// # Safety
/// `ptr` points at `len` bytes readable and writable for the rest of the
/// process's life, which nothing but areas reads or writes while they are in
/// use (the area's operations go through the pointer from any thread).
pub unsafe fn pointer(ptr: *mut u8, len: u64) -> Result<Mapping> {
    let (control_map, control) = private_control(len)?;
    Ok(Mapping {
        data: ptr,
        size: len,
        control,
        backing: Backing::Pointer,
        tokens: TokenFile::memfd(),
        shareable: false,
        _maps: vec![control_map],
    })
}

fn not_an_area(name: &str, why: impl std::fmt::Display) -> Error {
    Error::new(Status::NotAnArea, format!("name={name}: {why}"))
}

/// How long an attacher waits for a creator that is still setting the object up.
const CREATOR_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// flock(2) on the file; returns whether it succeeded.
fn flock(file: &File, op: i32) -> bool {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor this File owns.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return true;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

/// This process's file-size limit (RLIMIT_FSIZE), if any: growing a shared-memory
/// object past it would kill the process with SIGXFSZ.
fn file_size_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut r) } != 0
        || r.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(r.rlim_cur)
}

/// Sizes a fresh shared-memory object to `len` bytes with its memory reserved
/// (`posix_fallocate`): a full `/dev/shm` is an error now (ENOSPC), not a SIGBUS
/// at the first write to a page tmpfs cannot back.
fn reserve(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len =
        libc::off_t::try_from(len).map_err(|_| std::io::Error::from_raw_os_error(libc::EFBIG))?;
    loop {
        // SAFETY: posix_fallocate on a descriptor this File owns; it returns an
        // error number instead of setting errno.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
            0 => return Ok(()),
            libc::EINTR => continue,
            // A filesystem without fallocate (not tmpfs): size it the plain way.
            libc::EOPNOTSUPP => return file.set_len(len as u64),
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}

/// Where POSIX shared-memory objects live (for messages).
pub fn shm_dir() -> &'static str {
    "/dev/shm"
}

fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Creates the named area, or attaches to it if it exists.
pub fn named(name: &str, size: Option<u64>) -> Result<Mapping> {
    let shm_name = format!("/{}", name.strip_prefix('/').unwrap_or(name));
    let c_name = CString::new(shm_name.clone())
        .map_err(|_| Error::new(Status::InvalidSpec, format!("name={name} has a NUL byte")))?;
    // First try to create it: the creator sizes and initialises it.
    if let Some(size) = size {
        if let Some(made) = create_named(name, &shm_name, &c_name, size)? {
            return Ok(made);
        }
    }
    attach_named(name, &shm_name, &c_name, size)
}

/// Creates the object `shm_name` of `size` data bytes and sets it up, holding
/// an exclusive flock meanwhile (what attachers wait on). `None`: it exists
/// already (attach to it). A failed set-up removes the object again.
fn create_named(
    name: &str,
    shm_name: &str,
    c_name: &CString,
    size: u64,
) -> Result<Option<Mapping>> {
    let header = control_len();
    // SAFETY: c_name is NUL-terminated; shm_open returns a new fd or -1.
    let fd = unsafe {
        libc::shm_open(
            c_name.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EEXIST) {
            return Ok(None);
        }
        return Err(Error::io(
            format_args!("name={name}: cannot create {shm_name}"),
            err,
        ));
    }
    // SAFETY: a fresh descriptor owned by this File.
    let file = unsafe { File::from_raw_fd(fd) };
    // Attachers wait on this lock while the object is being set up; it
    // goes away by itself if this process dies meanwhile.
    flock(&file, libc::LOCK_EX);
    let made = (|| {
        let total = header
            .checked_add(size)
            .ok_or_else(|| too_big(format_args!("name={name}: {size} bytes")))?;
        if let Some(limit) = file_size_limit() {
            if total > limit {
                return Err(Error::new(
                    Status::Io,
                    format!(
                        "name={name}: {total} bytes exceed this process's file-size limit (ulimit -f: {limit} bytes)"
                    ),
                ));
            }
        }
        reserve(&file, total).map_err(|e| {
            Error::io(
                format_args!("name={name}: cannot reserve {total} bytes in {}", shm_dir()),
                e,
            )
        })?;
        let map = map(&file, 0, total, &format!("name={name}"))?;
        let base = map.as_mut_ptr();
        // SAFETY: the object was just created and sized: its first
        // `header` bytes are zero and mapped for as long as `map` lives.
        init_identity(unsafe { &*(base as *const Control) }, size, header);
        flock(&file, libc::LOCK_UN);
        Ok(finish_named(map, base, size, header, file))
    })();
    if made.is_err() {
        // SAFETY: unlinking the name we created; c_name is NUL-terminated.
        unsafe { libc::shm_unlink(c_name.as_ptr()) };
    }
    made.map(Some)
}

/// Attaches to the existing object `shm_name`: waits for a creator still
/// setting it up, refuses what is not an area of ours, and checks `size`
/// when one was given.
fn attach_named(
    name: &str,
    shm_name: &str,
    c_name: &CString,
    size: Option<u64>,
) -> Result<Mapping> {
    let header = control_len();
    // SAFETY: c_name is NUL-terminated; shm_open returns a new fd or -1.
    let fd = unsafe { libc::shm_open(c_name.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return Err(if err.raw_os_error() == Some(libc::ENOENT) {
            Error::new(
                Status::InvalidSpec,
                format!("name={name}: no such area yet; give size= or pages= to create it"),
            )
        } else {
            Error::io(format_args!("name={name}: cannot open {shm_name}"), err)
        });
    }
    // SAFETY: a fresh descriptor owned by this File.
    let file = unsafe { File::from_raw_fd(fd) };
    use std::os::unix::fs::MetadataExt;
    let meta = wait_for_creator(&file, name, shm_name, header)?;
    // SAFETY: geteuid has no preconditions.
    if meta.uid() != unsafe { libc::geteuid() } {
        return Err(not_an_area(
            name,
            format_args!("{shm_name} is owned by uid {}, not by us", meta.uid()),
        ));
    }
    if meta.len() < header {
        return Err(not_an_area(
            name,
            format_args!(
                "{shm_name} is too small to be an area ({} bytes); if it is a leftover, remove /dev/shm{shm_name}",
                meta.len()
            ),
        ));
    }
    let total = meta.len();
    let map = map(&file, 0, total, &format!("name={name}"))?;
    let base = map.as_mut_ptr();
    // SAFETY: the mapping has at least `header` >= size_of::<Control>() bytes,
    // page aligned; every bit pattern is a valid Control (all atomics).
    let ctl = unsafe { &*(base as *const Control) };
    let area_size = check_identity(ctl, name, shm_name, header, total)?;
    if let Some(s) = size {
        if s != area_size {
            return Err(Error::new(
                Status::InvalidSpec,
                format!("name={name}: the area exists with {area_size} bytes, not {s}"),
            ));
        }
    }
    Ok(finish_named(map, base, area_size, header, file))
}

/// Waits (bounded) for a creator that is still setting the object up: its
/// exclusive flock (gone by itself if it died), then the object's size (a
/// creator between shm_open and its flock). Returns the object's metadata.
fn wait_for_creator(
    file: &File,
    name: &str,
    shm_name: &str,
    header: u64,
) -> Result<std::fs::Metadata> {
    let setup_deadline = std::time::Instant::now() + CREATOR_WAIT;
    loop {
        if flock(file, libc::LOCK_SH | libc::LOCK_NB) {
            flock(file, libc::LOCK_UN);
            break;
        }
        if std::time::Instant::now() > setup_deadline {
            return Err(not_an_area(
                name,
                format_args!(
                    "its creator is still setting {shm_name} up after {} s",
                    CREATOR_WAIT.as_secs()
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // The creator may be between shm_open and its flock: wait a little.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
    loop {
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format_args!("name={name}: cannot stat"), e))?;
        if meta.len() >= header || std::time::Instant::now() > deadline {
            return Ok(meta);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The identity of an attached object of `total` bytes: our magic (waited
/// for briefly: a creator writes it last), our layout version, and a header
/// that agrees with the object's size. Returns the area's size.
fn check_identity(
    ctl: &Control,
    name: &str,
    shm_name: &str,
    header: u64,
    total: u64,
) -> Result<u64> {
    let mut waited = 0;
    while !ctl.has_magic() && waited < 20 {
        std::thread::sleep(std::time::Duration::from_millis(5));
        waited += 1;
    }
    ctl.validate(header, total).map_err(|why| {
        not_an_area(
            name,
            match why {
                Invalid::NoMagic => format!("{shm_name} is not a sharedarea (bad magic); if it is a leftover, remove /dev/shm{shm_name}"),
                Invalid::Version(v) => format!("{shm_name} has layout version {v}, this library speaks {VERSION}"),
                Invalid::Inconsistent { .. } => format!("{shm_name} has an inconsistent header"),
            },
        )
    })
}

/// Where glibc's `shm_open` keeps `name`.
fn shm_path(name: &str) -> String {
    format!("/dev/shm/{}", name.strip_prefix('/').unwrap_or(name))
}

/// The object `name=NAME` names, if this process has it attached already. Asked
/// with `stat`, never by opening it: closing a second descriptor of the object
/// would drop this process's record locks on it (see `lock::token`).
fn already_attached(name: &str) -> Option<&'static Object> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(shm_path(name)).ok()?;
    crate::registry::object_with_identity((meta.dev(), meta.ino()))
}

fn finish_named(map: MmapRaw, base: *mut u8, size: u64, header: u64, file: File) -> Mapping {
    let tokens = TokenFile::new(file);
    Mapping {
        // SAFETY: header < mapping length (header + size, size > 0 or == 0 at end).
        data: unsafe { base.add(header as usize) },
        size,
        control: base as *const Control,
        backing: Backing::Named,
        tokens: Some(tokens),
        shareable: true,
        _maps: vec![Region::File(map)],
    }
}
