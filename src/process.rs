//! Process identity and liveness.
//!
//! A pid alone is not an identity: pids are reused. A process is named by its pid,
//! its start time (field 22 of `/proc/PID/stat`, clock ticks since boot) and its
//! pid namespace. Liveness proper is the lock's tokens' business (`lock::token`);
//! this file answers the two questions left: is a process whose token is gone
//! perhaps still alive (`token_free_verdict`), and is a holder that has no token
//! dead (`untokened_verdict`, from `pidfd_open`/`kill` and `/proc` where shown).

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

/// What can be said of a process recorded in a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    /// Cannot be told; the reason, for messages.
    Unknown(String),
}

/// For a slot whose liveness token is free (see `lock::token`): dead, unless a
/// process with the recorded pid and start time still runs in this pid
/// namespace — an owner that lost its token because its descriptor was closed
/// under the library. Only what is *seen* can save it: no `/proc`, a hidden
/// `/proc` or another namespace leave the token's answer (dead) standing.
pub fn token_free_verdict(pid: u32, start: u64, ns: u64) -> Liveness {
    if pid == 0 || start == 0 || (ns != 0 && ns != pid_namespace()) {
        return Liveness::Dead;
    }
    match stat_of(pid) {
        Some(s) if s.start == start && (!is_zombie_state(s.state) || has_live_thread(pid)) => {
            Liveness::Alive
        }
        _ => Liveness::Dead,
    }
}

/// For a holder with no token (a slotless writer): what the kernel says of the
/// pid, checked against the start time where `/proc` shows it. Errs toward
/// "alive" (`Unknown`) when it cannot tell.
pub fn untokened_verdict(pid: u32, start: u64, ns: u64) -> Liveness {
    if pid == 0 {
        return Liveness::Unknown("the holder has not named itself yet".into());
    }
    if ns != 0 && ns != pid_namespace() {
        return Liveness::Unknown(format!(
            "pid {pid} is in another pid namespace, and it holds no liveness token"
        ));
    }
    match pid_exit_state(pid) {
        PidState::Gone | PidState::Exited => return Liveness::Dead,
        PidState::Running | PidState::CannotTell => {}
    }
    match stat_of(pid) {
        Some(s) if start != 0 && s.start != start => Liveness::Dead,
        Some(s) if is_zombie_state(s.state) && !has_live_thread(pid) => Liveness::Dead,
        Some(_) if start != 0 => Liveness::Alive,
        _ => Liveness::Unknown(format!(
            "a process with pid {pid} runs, and /proc does not show whether it is the holder"
        )),
    }
}

enum PidState {
    /// No such pid.
    Gone,
    /// The pid's process has exited (a zombie not yet reaped).
    Exited,
    Running,
    CannotTell,
}

/// Asks the kernel, without `/proc`: `pidfd_open` + `poll` (a zombie's pidfd is
/// readable), else `kill(pid, 0)`.
fn pid_exit_state(pid: u32) -> PidState {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return PidState::Gone;
    };
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid_t, 0) } as i32;
    if fd >= 0 {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own; zero timeout. Then close the fd we opened.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        // SAFETY: `fd` is ours.
        unsafe { libc::close(fd) };
        return if n > 0 && p.revents & libc::POLLIN != 0 {
            PidState::Exited
        } else {
            PidState::Running
        };
    }
    if std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return PidState::Gone;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    if unsafe { libc::kill(pid_t, 0) } == 0 {
        return PidState::Running;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ESRCH) => PidState::Gone,
        Some(libc::EPERM) => PidState::Running,
        _ => PidState::CannotTell,
    }
}

/// Whether the process (pid, start) is certainly gone (tests and tools).
pub fn is_dead(pid: u32, start: u64) -> bool {
    untokened_verdict(pid, start, 0) == Liveness::Dead
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

/// The inode of this process's pid namespace (0 if unknown). Pids recorded in a
/// named area are only meaningful inside the namespace that wrote them.
pub fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    static NS: AtomicU64 = AtomicU64::new(u64::MAX);
    static NS_GENERATION: AtomicU32 = AtomicU32::new(u32::MAX);
    let generation = FORK_GENERATION.load(Ordering::Acquire);
    if NS_GENERATION.load(Ordering::Acquire) == generation {
        return NS.load(Ordering::Relaxed);
    }
    // (A forked child may be the first process of a new pid namespace.)
    let ns = std::fs::metadata("/proc/self/ns/pid")
        .map(|m| m.ino())
        .unwrap_or(0);
    NS.store(ns, Ordering::Relaxed);
    NS_GENERATION.store(generation, Ordering::Release);
    ns
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
        assert_eq!(token_free_verdict(pid, start, 0), Liveness::Alive);
        assert_eq!(token_free_verdict(pid, start + 1, 0), Liveness::Dead);
        assert_eq!(
            token_free_verdict(pid, start, pid_namespace() + 1),
            Liveness::Dead
        );
    }
}
