//! Looking at named areas from outside, without attaching to them: what the
//! `sharedarea` command shows (`ls`, `info`, `rm`) and what `sharedarea_unlink`
//! checks before it removes a name.
//!
//! `read_control` is the one function that interprets a control block's
//! counters, reader slots and lock word for reporting; a change of the block's
//! layout is adapted there.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;

use memmap2::{MmapOptions, MmapRaw};

use crate::area::Object;
use crate::backing::page_size;
/// The directory named areas live in (`/dev/shm` on Linux).
pub use crate::backing::shm_dir;
use crate::control::{Control, Invalid, SLOTS, VERSION};
use crate::lock;
use crate::lock::token::{Token, TokenFile};
use crate::process::{self, Liveness};
use crate::status::{Error, Result, Status};

/// One process recorded in an area's reader slots (a process claims a slot the
/// first time it locks the area, and keeps it until it exits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotProcess {
    pub pid: u32,
    /// Read locks its threads hold right now.
    pub read_locks: u32,
    /// False when the process is certainly gone (its slot is reclaimed by the
    /// next process that needs one).
    pub alive: bool,
}

/// What a control block says about an area's use, at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlView {
    /// Updates counted so far.
    pub updates: u64,
    /// Locks recovered from holders that died.
    pub recoveries: u64,
    pub used: u64,
    pub honour_used: bool,
    /// Every process in a reader slot.
    pub processes: Vec<SlotProcess>,
    /// The process holding the write lock, if any.
    pub writer: Option<SlotProcess>,
}

impl ControlView {
    /// Pids holding the lock now: the writer, or the processes with read locks.
    pub fn lock_holders(&self) -> Vec<u32> {
        match &self.writer {
            Some(w) => vec![w.pid],
            None => self
                .processes
                .iter()
                .filter(|p| p.read_locks > 0)
                .map(|p| p.pid)
                .collect(),
        }
    }
}

/// Reads an area's counters, process slots and lock holder (a snapshot: the block
/// keeps changing under other processes). A slot's process is alive while it holds
/// the slot's liveness token (see `lock::token`); without the token file (or for
/// this process's own slots, whose tokens never conflict with it) `/proc` is asked.
pub(crate) fn read_control(ctl: &Control, tokens: Option<&TokenFile>) -> ControlView {
    let slot_of = |i: usize| -> Option<SlotProcess> {
        let s = ctl.slots.get(i)?;
        let pid = s.pid.load(Ordering::Acquire);
        if pid == 0 {
            return None;
        }
        let start = s.start.load(Ordering::Relaxed);
        let ns = s.ns.load(Ordering::Relaxed);
        let alive = match tokens.map(|t| t.holder(i)) {
            Some(Token::Held(_)) => true,
            Some(Token::Free) if pid != std::process::id() => {
                process::token_free_verdict(pid, start, ns) == Liveness::Alive
            }
            _ => !process::is_dead(pid, start),
        };
        Some(SlotProcess {
            pid,
            read_locks: s.readers.load(Ordering::Relaxed),
            alive,
        })
    };
    let hwm = (ctl.lock.slot_hwm.load(Ordering::Acquire) as usize).min(SLOTS);
    ControlView {
        updates: ctl.updates_total(),
        recoveries: ctl.used.recoveries.load(Ordering::Relaxed),
        used: ctl.used.used.load(Ordering::Relaxed),
        honour_used: ctl.used.honour_used.load(Ordering::Relaxed) != 0,
        processes: (0..hwm).filter_map(slot_of).collect(),
        writer: lock::writer_slot(ctl).and_then(|w| slot_of(w as usize)),
    }
}

/// A named area as seen from outside.
#[derive(Debug)]
pub struct NamedArea {
    /// The name without its leading '/'.
    pub name: String,
    /// Where the object lives: /dev/shm/NAME.
    pub path: String,
    /// Bytes of data (the object is larger by its control block).
    pub size: u64,
    /// Bytes the object occupies, control block included.
    pub object_bytes: u64,
    pub owner_uid: u32,
    /// Permission bits (0600 at creation).
    pub mode: u32,
    /// Seconds since the epoch of the object's last change.
    pub modified: i64,
    /// False when it was created in another pid namespace: its pids mean
    /// nothing here.
    pub same_pid_namespace: bool,
    pub control: ControlView,
    /// Processes that have the object mapped now (from /proc/PID/maps; only
    /// the processes this user may inspect).
    pub mapped_by: Vec<u32>,
}

impl NamedArea {
    /// Live processes using the area: mapped, or alive in a reader slot.
    pub fn attached(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.mapped_by.clone();
        if self.same_pid_namespace {
            pids.extend(
                self.control
                    .processes
                    .iter()
                    .filter(|p| p.alive)
                    .map(|p| p.pid),
            );
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

/// Checks a name the way `name=` does and returns it without its leading '/'.
pub fn bare_name(name: &str) -> Result<&str> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() || bare.contains('/') || bare == "." || bare == ".." {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("\"{name}\" is not an area name (a name has no '/' after the first)"),
        ));
    }
    if bare.len() > 250 || bare.contains('\0') {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("\"{name}\" is not an area name (too long, or has a NUL)"),
        ));
    }
    Ok(bare)
}

fn control_len() -> u64 {
    (Control::SIZE as u64).div_ceil(page_size()) * page_size()
}

fn not_an_area(name: &str, why: impl std::fmt::Display) -> Error {
    Error::new(Status::NotAnArea, format!("{}/{name}: {why}", shm_dir()))
}

/// Opens the named object read-only and checks that it is an area: a regular
/// object, large enough, with the magic, this layout version and a consistent
/// header. Returns the object and its mapped control block.
fn open_checked(bare: &str) -> Result<(File, MmapRaw)> {
    let c_name = CString::new(format!("/{bare}")).map_err(|_| {
        Error::new(
            Status::InvalidArgument,
            format!("\"{bare}\" has a NUL byte"),
        )
    })?;
    // SAFETY: c_name is NUL-terminated; shm_open returns a new fd or -1.
    let fd = unsafe { libc::shm_open(c_name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return Err(if err.raw_os_error() == Some(libc::ENOENT) {
            Error::new(
                Status::NoSuchArea,
                format!("no area named \"{bare}\" (no {}/{bare})", shm_dir()),
            )
        } else {
            Error::io(format_args!("cannot open {}/{bare}", shm_dir()), err)
        });
    }
    // SAFETY: a fresh descriptor owned by this File.
    let file = unsafe { File::from_raw_fd(fd) };
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format_args!("cannot stat {}/{bare}", shm_dir()), e))?;
    let header = control_len();
    if !meta.file_type().is_file() || meta.len() < header {
        return Err(not_an_area(
            bare,
            format_args!("{} bytes, too small to be an area", meta.len()),
        ));
    }
    let map = MmapOptions::new()
        .len(header as usize)
        .map_raw_read_only(&file)
        .map_err(|e| Error::io(format_args!("cannot map {}/{bare}", shm_dir()), e))?;
    // SAFETY: the mapping is `header` >= size_of::<Control>() bytes, page
    // aligned, and lives as long as `map`; every bit pattern is a valid Control
    // (all atomics), and only loads are made through this read-only mapping.
    let ctl = unsafe { &*(map.as_ptr() as *const Control) };
    ctl.validate(header, meta.len()).map_err(|why| match why {
        Invalid::NoMagic => not_an_area(bare, "not a sharedarea (no area header)"),
        Invalid::Version(v) => not_an_area(
            bare,
            format_args!("layout version {v}; this library reads {VERSION}"),
        ),
        Invalid::Inconsistent { size } => not_an_area(
            bare,
            format_args!(
                "its header says {size} bytes of data but the object has {} (truncated?)",
                meta.len()
            ),
        ),
    })?;
    Ok((file, map))
}

/// The object this process has attached under `bare`, if any. Asked with `stat`:
/// opening and closing a second descriptor of an object this process has
/// attached would drop its liveness tokens (see `lock::token`).
fn attached_here(bare: &str) -> Option<&'static Object> {
    let meta = std::fs::metadata(format!("{}/{bare}", shm_dir())).ok()?;
    crate::registry::object_with_identity((meta.dev(), meta.ino()))
}

/// Looks at the named area `name` without attaching to it.
pub fn named_area(name: &str) -> Result<NamedArea> {
    let (mut area, object) = look(name)?;
    area.mapped_by = MapsIndex::read().pids(object);
    Ok(area)
}

/// The named area without `mapped_by`, and its object's (device, inode).
fn look(name: &str) -> Result<(NamedArea, (u64, u64))> {
    let bare = bare_name(name)?;
    if let Some(obj) = attached_here(bare) {
        let meta = std::fs::metadata(format!("{}/{bare}", shm_dir()))
            .map_err(|e| Error::io(format_args!("cannot stat {}/{bare}", shm_dir()), e))?;
        let area = describe(bare, &meta, obj.control(), obj.tokens());
        return Ok((area, (meta.dev(), meta.ino())));
    }
    let (file, map) = open_checked(bare)?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format_args!("cannot stat {}/{bare}", shm_dir()), e))?;
    let tokens = TokenFile::new(file);
    // SAFETY: as in open_checked: a read-only mapping of a whole Control.
    let ctl = unsafe { &*(map.as_ptr() as *const Control) };
    let area = describe(bare, &meta, ctl, Some(&tokens));
    // Unmapped before the caller scans /proc, so this look does not count as
    // an attachment.
    drop(map);
    Ok((area, (meta.dev(), meta.ino())))
}

fn describe(
    bare: &str,
    meta: &std::fs::Metadata,
    ctl: &Control,
    tokens: Option<&TokenFile>,
) -> NamedArea {
    let ns = ctl.identity.pid_namespace.load(Ordering::Relaxed);
    NamedArea {
        name: bare.to_string(),
        path: format!("{}/{bare}", shm_dir()),
        size: ctl.identity.size.load(Ordering::Relaxed),
        object_bytes: meta.len(),
        owner_uid: meta.uid(),
        mode: meta.mode() & 0o7777,
        modified: meta.mtime(),
        same_pid_namespace: ns == 0 || ns == process::pid_namespace(),
        control: read_control(ctl, tokens),
        mapped_by: Vec::new(),
    }
}

/// Every named area in /dev/shm this user can open, by name. Objects that are
/// not areas (other programs' shared memory) are left out.
pub fn named_areas() -> Vec<NamedArea> {
    let Ok(dir) = std::fs::read_dir(shm_dir()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let looked: Vec<_> = names.iter().filter_map(|n| look(n).ok()).collect();
    if looked.is_empty() {
        return Vec::new();
    }
    let maps = MapsIndex::read(); // one pass over /proc for every area
    looked
        .into_iter()
        .map(|(mut area, object)| {
            area.mapped_by = maps.pids(object);
            area
        })
        .collect()
}

/// Which processes map which /dev/shm objects, by (device, inode), from one
/// pass over /proc/*/maps (only the processes this user may inspect).
struct MapsIndex(std::collections::HashMap<(u64, u64), Vec<u32>>);

impl MapsIndex {
    fn read() -> MapsIndex {
        let mut index: std::collections::HashMap<(u64, u64), Vec<u32>> = Default::default();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return MapsIndex(index);
        };
        let prefix = format!("{}/", shm_dir());
        for entry in procs.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
                continue;
            };
            for line in maps.lines() {
                // address perms offset dev(major:minor, hex) inode path
                let mut f = line.split_whitespace();
                let (Some(_), Some(_), Some(_), Some(dev), Some(ino), Some(path)) =
                    (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
                else {
                    continue;
                };
                if !path.starts_with(&prefix) {
                    continue;
                }
                let Some((major, minor)) = dev.split_once(':').and_then(|(a, b)| {
                    Some((
                        u32::from_str_radix(a, 16).ok()?,
                        u32::from_str_radix(b, 16).ok()?,
                    ))
                }) else {
                    continue;
                };
                let Ok(ino) = ino.parse::<u64>() else {
                    continue;
                };
                let pids = index.entry((libc::makedev(major, minor), ino)).or_default();
                if pids.last() != Some(&pid) {
                    pids.push(pid);
                }
            }
        }
        MapsIndex(index)
    }

    fn pids(&self, object: (u64, u64)) -> Vec<u32> {
        self.0.get(&object).cloned().unwrap_or_default()
    }
}

/// Removes the name of the named area `name` (it must be an area). Processes
/// that have it mapped keep using their memory; the next `name=` with that name
/// creates a new area. The memory is freed when the last process unmaps it.
pub fn unlink(name: &str) -> Result<()> {
    let bare = bare_name(name)?;
    if attached_here(bare).is_none() {
        drop(open_checked(bare)?);
    }
    let c_name = CString::new(format!("/{bare}")).map_err(|_| {
        Error::new(
            Status::InvalidArgument,
            format!("\"{bare}\" has a NUL byte"),
        )
    })?;
    // SAFETY: c_name is NUL-terminated.
    if unsafe { libc::shm_unlink(c_name.as_ptr()) } != 0 {
        let err = std::io::Error::last_os_error();
        return Err(if err.raw_os_error() == Some(libc::ENOENT) {
            Error::new(
                Status::NoSuchArea,
                format!("no area named \"{bare}\" (removed meanwhile)"),
            )
        } else {
            Error::io(format_args!("cannot remove {}/{bare}", shm_dir()), err)
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_name_specs() {
        assert_eq!(bare_name("/cam").unwrap(), "cam");
        assert_eq!(bare_name("cam").unwrap(), "cam");
        for bad in ["", "/", "a/b", "..", "."] {
            assert_eq!(
                bare_name(bad).unwrap_err().status,
                Status::InvalidArgument,
                "{bad:?}"
            );
        }
        assert!(bare_name(&"x".repeat(251)).is_err());
    }
}
