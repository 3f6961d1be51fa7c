//! Where an area's bytes and its control block live: the mappings.
//!
//! | source      | data                                   | control block                   |
//! |-------------|----------------------------------------|---------------------------------|
//! | anonymous   | a memfd, `MAP_SHARED` (fork shares it) | the same memfd, before the data |
//! | file / fd   | the file, `MAP_SHARED`, from `offset`  | its own memfd                   |
//! | name        | a POSIX shm object, after the control  | the object's first pages        |
//! | pointer     | the caller's memory                    | its own memfd                   |
//!
//! Nothing is ever written into a file's bytes but what callers write: the control
//! block of a file area lives in memory shared with forked children only.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::atomic::Ordering;

use memmap2::{MmapOptions, MmapRaw};

use crate::control::{Control, MAGIC, VERSION};
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
    _maps: Vec<MmapRaw>,
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

/// A memfd of `len` bytes (zeroed), closed on exec.
fn memfd(len: u64) -> Result<File> {
    let name = b"sharedarea\0";
    // SAFETY: `name` is NUL-terminated; memfd_create returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr().cast(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::io("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len)
        .map_err(|e| Error::io(format_args!("cannot size shared memory to {len} bytes"), e))?;
    Ok(file)
}

fn map(file: &File, offset: u64, len: u64, what: &str) -> Result<MmapRaw> {
    let len_usize = usize::try_from(len).map_err(|_| too_big(format_args!("{len} bytes")))?;
    MmapOptions::new()
        .offset(offset)
        .len(len_usize)
        .map_raw(file)
        .map_err(|e| Error::io(format_args!("cannot map {len} bytes of {what}"), e))
}

/// A fresh control block in its own shared memory.
fn private_control(size: u64) -> Result<(MmapRaw, *const Control)> {
    let file = memfd(control_len())?;
    let map = map(&file, 0, control_len(), "the control block")?;
    let control = map.as_ptr() as *const Control;
    // SAFETY: the mapping is control_len() >= size_of::<Control>() bytes, page
    // aligned, zero-filled (a valid Control: all atomics zero) and lives as long as
    // the returned MmapRaw.
    init_identity(unsafe { &*control }, size, 0);
    Ok((map, control))
}

fn init_identity(ctl: &Control, size: u64, data_offset: u64) {
    let id = &ctl.identity;
    id.version.store(VERSION, Ordering::Relaxed);
    // SAFETY: geteuid has no preconditions.
    id.owner_uid
        .store(unsafe { libc::geteuid() }, Ordering::Relaxed);
    id.pid_namespace
        .store(process::pid_namespace(), Ordering::Relaxed);
    id.size.store(size, Ordering::Relaxed);
    id.data_offset.store(data_offset, Ordering::Relaxed);
    id.magic.store(MAGIC, Ordering::Release);
}

fn size_in_bytes(spec_text: &str, size: Size, round_to_pages: bool) -> Result<Option<u64>> {
    let page = page_size();
    let bytes = match size {
        Size::Unspecified => return Ok(None),
        Size::Pages(p) => p
            .checked_mul(page)
            .ok_or_else(|| too_big(format_args!("spec \"{spec_text}\": {p} pages")))?,
        Size::Bytes(b) if round_to_pages => b
            .checked_next_multiple_of(page)
            .ok_or_else(|| too_big(format_args!("spec \"{spec_text}\": {b} bytes")))?,
        Size::Bytes(b) => b,
    };
    if bytes > isize::MAX as u64 {
        return Err(too_big(format_args!("spec \"{spec_text}\": {bytes} bytes")));
    }
    Ok(Some(bytes))
}

/// Creates (or attaches) the memory a parsed spec describes. Every error names
/// the spec.
pub fn create(spec_text: &str, spec: &Spec) -> Result<Mapping> {
    create_from(spec_text, spec).map_err(|e| {
        if e.detail.contains(spec_text) {
            e
        } else {
            Error::new(e.status, format!("spec \"{spec_text}\": {}", e.detail))
        }
    })
}

fn create_from(spec_text: &str, spec: &Spec) -> Result<Mapping> {
    match &spec.source {
        Source::Anonymous => {
            let size = size_in_bytes(spec_text, spec.size, true)?.unwrap_or(0);
            anonymous(size)
        }
        Source::File(path) => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| {
                    Error::io(format_args!("spec \"{spec_text}\": cannot open {path}"), e)
                })?;
            let size = size_in_bytes(spec_text, spec.size, false)?;
            over_file(
                &file,
                size,
                spec.offset,
                Backing::File,
                &format!("file {path}"),
            )
        }
        Source::Fd(fd) => {
            let size = size_in_bytes(spec_text, spec.size, false)?;
            from_fd(*fd, size, spec.offset)
        }
        Source::Named(name) => {
            let size = size_in_bytes(spec_text, spec.size, false)?;
            named(name, size)
        }
    }
}

/// An anonymous shared area of `size` bytes (already a page multiple).
pub fn anonymous(size: u64) -> Result<Mapping> {
    let total = control_len()
        .checked_add(size)
        .ok_or_else(|| too_big(format_args!("{size} bytes")))?;
    let file = memfd(total)?;
    let map = map(&file, 0, total, "anonymous shared memory")?;
    let base = map.as_mut_ptr();
    // SAFETY: the mapping starts with control_len() zeroed bytes, page aligned,
    // that live as long as `map` (moved into the Mapping below).
    init_identity(unsafe { &*(base as *const Control) }, size, control_len());
    Ok(Mapping {
        // SAFETY: control_len() < total, so the offset stays inside the mapping.
        data: unsafe { base.add(control_len() as usize) },
        size,
        control: base as *const Control,
        backing: Backing::Anonymous,
        _maps: vec![map],
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
    let regular = meta.file_type().is_file();
    let size = match size {
        Some(s) => s,
        None if regular => match meta.len().checked_sub(offset) {
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
        None => {
            return Err(Error::new(
                Status::InvalidSpec,
                format!("{what} is not a regular file: give size="),
            ))
        }
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
    if regular && meta.len() < end {
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
        _maps: vec![data_map, control_map],
    })
}

/// An area over the caller's memory.
pub fn pointer(ptr: *mut u8, len: u64) -> Result<Mapping> {
    let (control_map, control) = private_control(len)?;
    Ok(Mapping {
        data: ptr,
        size: len,
        control,
        backing: Backing::Pointer,
        _maps: vec![control_map],
    })
}

fn not_an_area(name: &str, why: impl std::fmt::Display) -> Error {
    Error::new(Status::NotAnArea, format!("name={name}: {why}"))
}

/// Creates the named area, or attaches to it if it exists.
pub fn named(name: &str, size: Option<u64>) -> Result<Mapping> {
    let shm_name = format!("/{}", name.strip_prefix('/').unwrap_or(name));
    let c_name = CString::new(shm_name.clone())
        .map_err(|_| Error::new(Status::InvalidSpec, format!("name={name} has a NUL byte")))?;
    let header = control_len();
    // First try to create it: the creator sizes and initialises it.
    if let Some(size) = size {
        // SAFETY: c_name is NUL-terminated; shm_open returns a new fd or -1.
        let fd = unsafe {
            libc::shm_open(
                c_name.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh descriptor owned by this File.
            let file = unsafe { File::from_raw_fd(fd) };
            let made = (|| {
                let total = header
                    .checked_add(size)
                    .ok_or_else(|| too_big(format_args!("name={name}: {size} bytes")))?;
                file.set_len(total).map_err(|e| {
                    Error::io(format_args!("name={name}: cannot size to {total} bytes"), e)
                })?;
                let map = map(&file, 0, total, &format!("name={name}"))?;
                let base = map.as_mut_ptr();
                // SAFETY: the object was just created and sized: its first
                // `header` bytes are zero and mapped for as long as `map` lives.
                init_identity(unsafe { &*(base as *const Control) }, size, header);
                Ok(finish_named(map, base, size, header))
            })();
            if made.is_err() {
                // SAFETY: unlinking the name we created; c_name is NUL-terminated.
                unsafe { libc::shm_unlink(c_name.as_ptr()) };
            }
            return made;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(Error::io(
                format_args!("name={name}: cannot create {shm_name}"),
                err,
            ));
        }
    }
    // Attach to an existing object.
    // SAFETY: as above.
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
    // The creator may be between shm_open and ftruncate/initialisation: wait a little.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
    let meta = loop {
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format_args!("name={name}: cannot stat"), e))?;
        if meta.len() >= header || std::time::Instant::now() > deadline {
            break meta;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
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
    let id = &ctl.identity;
    let mut waited = 0;
    while id.magic.load(Ordering::Acquire) != MAGIC && waited < 20 {
        std::thread::sleep(std::time::Duration::from_millis(5));
        waited += 1;
    }
    if id.magic.load(Ordering::Acquire) != MAGIC {
        return Err(not_an_area(
            name,
            format_args!("{shm_name} is not a sharedarea (bad magic); if it is a leftover, remove /dev/shm{shm_name}"),
        ));
    }
    let version = id.version.load(Ordering::Relaxed);
    if version != VERSION {
        return Err(not_an_area(
            name,
            format_args!("{shm_name} has layout version {version}, this library speaks {VERSION}"),
        ));
    }
    let area_size = id.size.load(Ordering::Relaxed);
    if id.data_offset.load(Ordering::Relaxed) != header
        || header.checked_add(area_size) != Some(total)
    {
        return Err(not_an_area(
            name,
            format_args!("{shm_name} has an inconsistent header"),
        ));
    }
    let ns = id.pid_namespace.load(Ordering::Relaxed);
    if ns != 0 && ns != process::pid_namespace() {
        return Err(not_an_area(
            name,
            "it was created in another pid namespace, where its lock holders cannot be checked",
        ));
    }
    if let Some(s) = size {
        if s != area_size {
            return Err(Error::new(
                Status::InvalidSpec,
                format!("name={name}: the area exists with {area_size} bytes, not {s}"),
            ));
        }
    }
    Ok(finish_named(map, base, area_size, header))
}

fn finish_named(map: MmapRaw, base: *mut u8, size: u64, header: u64) -> Mapping {
    Mapping {
        // SAFETY: header < mapping length (header + size, size > 0 or == 0 at end).
        data: unsafe { base.add(header as usize) },
        size,
        control: base as *const Control,
        backing: Backing::Named,
        _maps: vec![map],
    }
}
