//! Process identity and liveness.
//!
//! A pid alone is not an identity: pids are reused. A process is named by its pid
//! and its start time (field 22 of `/proc/PID/stat`, clock ticks since boot). A
//! holder is dead when `/proc/PID` is gone, names a process with another start
//! time, or is a zombie (killed but not yet reaped: it can never release anything).
//! The check errs toward "alive" when it cannot tell.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bumped in the child after every `fork()` (see `registry`), so per-process caches
/// can tell they were inherited.
pub static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);

static CACHED_GENERATION: AtomicU32 = AtomicU32::new(u32::MAX);
static CACHED_PID: AtomicU32 = AtomicU32::new(0);
static CACHED_START: AtomicU64 = AtomicU64::new(0);

/// This process: (pid, start time).
pub fn current() -> (u32, u64) {
    let generation = FORK_GENERATION.load(Ordering::Acquire);
    if CACHED_GENERATION.load(Ordering::Acquire) == generation {
        return (
            CACHED_PID.load(Ordering::Relaxed),
            CACHED_START.load(Ordering::Relaxed),
        );
    }
    let pid = std::process::id();
    let start = match stat_of(pid) {
        Some(Stat { start, .. }) => start,
        None => 0,
    };
    CACHED_PID.store(pid, Ordering::Relaxed);
    CACHED_START.store(start, Ordering::Relaxed);
    CACHED_GENERATION.store(generation, Ordering::Release);
    (pid, start)
}

struct Stat {
    state: u8,
    start: u64,
}

fn stat_of(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    let state = *fields.first()?.as_bytes().first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some(Stat { state, start })
}

/// Whether the process (pid, start) is certainly gone.
pub fn is_dead(pid: u32, start: u64) -> bool {
    if pid == 0 {
        return false;
    }
    match stat_of(pid) {
        Some(s) if s.start != start => true,
        Some(s) => is_zombie_state(s.state) && !has_live_thread(pid),
        None => no_such_pid(pid),
    }
}

/// Whether no process `pid` runs (for a short-lived mark where no start time
/// was recorded: a pid is not reused within microseconds).
pub fn pid_is_gone(pid: u32) -> bool {
    match stat_of(pid) {
        Some(s) => is_zombie_state(s.state) && !has_live_thread(pid),
        None => no_such_pid(pid),
    }
}

fn is_zombie_state(state: u8) -> bool {
    state == b'Z' || state == b'X'
}

/// A process whose main thread exited shows 'Z' while its other threads run:
/// it is dead only when every thread is.
fn has_live_thread(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|text| {
                let after = &text[text.rfind(')')? + 1..];
                after.split_whitespace().next()?.bytes().next()
            })
            .is_some_and(|state| !is_zombie_state(state))
    })
}

fn no_such_pid(pid: u32) -> bool {
    // No stat: gone, unless /proc is not readable at all.
    std::path::Path::new("/proc/self/stat").exists()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The inode of this process's pid namespace (0 if unknown). Pids recorded in a
/// named area are only meaningful inside the namespace that wrote them.
pub fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid")
        .map(|m| m.ino())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive_and_reused_pid_is_dead() {
        let (pid, start) = current();
        assert_eq!(pid, std::process::id());
        assert!(start > 0);
        assert!(!is_dead(pid, start));
        assert!(
            is_dead(pid, start + 1),
            "another start time is another process"
        );
        assert!(is_dead(0x3fff_fff0, 1), "no such pid");
    }
}
