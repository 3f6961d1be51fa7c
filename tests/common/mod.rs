//! Helpers shared by the integration tests: thin safe wrappers over the C ABI, real
//! `fork()`ed children with bounded waits, scratch shared memory for results, unique
//! shm names and temporary files that clean up after themselves.
//!
//! Every test takes [`serial()`] first: the tests fork, and a fork while another test
//! thread holds a lock inside the library (its area table, a thread-local, malloc) could
//! leave the child stuck. One test at a time per binary keeps children clean.
//! Children run only the closure they were given plus libc, then `_exit`.

#![allow(dead_code, unused_unsafe, clippy::missing_safety_doc)]

pub use sharedarea as sa;

use std::ffi::{c_void, CStr, CString};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Serialisation

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs tests of one binary one at a time (see the module comment).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Thin wrappers over the C ABI (they pass real pointers through the real boundary)

pub fn init(spec: &str) -> i32 {
    let c = CString::new(spec).expect("spec without NUL");
    unsafe { sa::sharedarea_init(c.as_ptr()) }
}

/// Creates an area or fails the test with the library's own explanation.
pub fn must_init(spec: &str) -> i32 {
    let id = init(spec);
    assert!(
        id >= 0,
        "sharedarea_init(\"{spec}\") = {id} ({}): {}",
        strerror(id as i64),
        last_error()
    );
    id
}

pub fn count() -> i32 {
    unsafe { sa::sharedarea_count() }
}

pub fn last_error() -> String {
    let p = unsafe { sa::sharedarea_last_error() };
    if p.is_null() {
        return String::from("<NULL>");
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

pub fn strerror(status: i64) -> String {
    let p = unsafe { sa::sharedarea_strerror(status as i32) };
    if p.is_null() {
        return String::from("<NULL>");
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

pub fn info(id: i32) -> sa::sharedarea_info {
    let mut out: sa::sharedarea_info = unsafe { std::mem::zeroed() };
    let st = unsafe { sa::sharedarea_info(id, &mut out) };
    assert_eq!(
        st,
        sa::SHAREDAREA_OK,
        "sharedarea_info({id}): {}",
        last_error()
    );
    out
}

pub fn updates(id: i32) -> u64 {
    let mut out = 0u64;
    let st = unsafe { sa::sharedarea_updates(id, &mut out) };
    assert_eq!(
        st,
        sa::SHAREDAREA_OK,
        "sharedarea_updates({id}): {}",
        last_error()
    );
    out
}

pub fn size_of(id: i32) -> u64 {
    info(id).size
}

/// `sharedarea_read` of exactly `len` bytes; `Err(status)` on failure.
pub fn read(id: i32, pos: u64, len: usize) -> Result<Vec<u8>, i64> {
    let mut buf = vec![0u8; len];
    let n = unsafe { sa::sharedarea_read(id, pos, buf.as_mut_ptr() as *mut c_void, len as u64) };
    if n < 0 {
        return Err(n);
    }
    assert_eq!(
        n as usize, len,
        "sharedarea_read returned {n} for {len} bytes"
    );
    Ok(buf)
}

/// Every byte of an area (for "an error changes nothing" comparisons).
pub fn snapshot(id: i32) -> Vec<u8> {
    let size = size_of(id) as usize;
    read(id, 0, size).expect("snapshot read")
}

pub fn write(id: i32, pos: u64, bytes: &[u8]) -> i32 {
    unsafe { sa::sharedarea_write(id, pos, bytes.as_ptr() as *const c_void, bytes.len() as u64) }
}

pub fn must_write(id: i32, pos: u64, bytes: &[u8]) {
    let st = write(id, pos, bytes);
    assert_eq!(
        st,
        sa::SHAREDAREA_OK,
        "sharedarea_write({id}, {pos}, {} bytes): {}",
        bytes.len(),
        last_error()
    );
}

pub fn extent(id: i32, pos: u64, len: u64) -> Result<u64, i32> {
    let mut out = 0u64;
    let st = unsafe { sa::sharedarea_extent(id, pos, len, &mut out) };
    if st < 0 {
        Err(st)
    } else {
        Ok(out)
    }
}

macro_rules! int_wrappers {
    ($($t:ty: $r:ident $w:ident $i:ident $d:ident => $rr:ident $ww:ident $ii:ident $dd:ident;)*) => {$(
        pub fn $rr(id: i32, pos: u64) -> Result<$t, i32> {
            let mut out: $t = 0;
            let st = unsafe { sa::$r(id, pos, &mut out) };
            if st == sa::SHAREDAREA_OK { Ok(out) } else { Err(st) }
        }
        pub fn $ww(id: i32, pos: u64, value: $t) -> i32 {
            unsafe { sa::$w(id, pos, value) }
        }
        pub fn $ii(id: i32, pos: u64, amount: $t) -> Result<$t, i32> {
            let mut out: $t = 0;
            let st = unsafe { sa::$i(id, pos, amount, &mut out) };
            if st == sa::SHAREDAREA_OK { Ok(out) } else { Err(st) }
        }
        pub fn $dd(id: i32, pos: u64, amount: $t) -> Result<$t, i32> {
            let mut out: $t = 0;
            let st = unsafe { sa::$d(id, pos, amount, &mut out) };
            if st == sa::SHAREDAREA_OK { Ok(out) } else { Err(st) }
        }
    )*};
}

int_wrappers! {
    i8: sharedarea_read8 sharedarea_write8 sharedarea_inc8 sharedarea_dec8 => read8 write8 inc8 dec8;
    i16: sharedarea_read16 sharedarea_write16 sharedarea_inc16 sharedarea_dec16 => read16 write16 inc16 dec16;
    i32: sharedarea_read32 sharedarea_write32 sharedarea_inc32 sharedarea_dec32 => read32 write32 inc32 dec32;
    i64: sharedarea_read64 sharedarea_write64 sharedarea_inc64 sharedarea_dec64 => read64 write64 inc64 dec64;
}

pub fn rlock(id: i32) -> i32 {
    unsafe { sa::sharedarea_rlock(id) }
}
pub fn wlock(id: i32) -> i32 {
    unsafe { sa::sharedarea_wlock(id) }
}
pub fn unlock(id: i32) -> i32 {
    unsafe { sa::sharedarea_unlock(id) }
}
pub fn update(id: i32) -> i32 {
    unsafe { sa::sharedarea_update(id) }
}
pub fn wait(id: i32, freq_ms: i32, timeout_s: i32) -> i32 {
    unsafe { sa::sharedarea_wait(id, freq_ms, timeout_s) }
}
pub fn wait_since(id: i32, seen: u64, timeout_ms: i64) -> i32 {
    unsafe { sa::sharedarea_wait_since(id, seen, timeout_ms) }
}
pub fn set_used(id: i32, used: u64) -> i32 {
    unsafe { sa::sharedarea_set_used(id, used) }
}
pub fn honour_used(id: i32, on: bool) -> i32 {
    unsafe { sa::sharedarea_honour_used(id, on as i32) }
}

// ---------------------------------------------------------------------------------------
// System helpers

pub fn page_size() -> u64 {
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
}

pub fn pid() -> i32 {
    unsafe { libc::getpid() }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the host.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Writes a line to fd 2 without touching Rust's stdio locks (safe in a forked child).
pub fn raw_eprint(msg: &str) {
    let line = format!("[pid {}] {msg}\n", pid());
    unsafe { libc::write(2, line.as_ptr() as *const c_void, line.len()) };
}

/// In a child: report a failure on stderr and return a distinctive exit code.
pub fn child_fail(code: i32, msg: &str) -> i32 {
    raw_eprint(msg);
    code
}

/// Ignores SIGPIPE in this process (a send to a closed socket must return an error).
pub fn ignore_sigpipe() {
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A POSIX shm name unique to this process and call, e.g. `/sa-test-1234-named-3`.
pub fn unique_name(tag: &str) -> String {
    format!(
        "/sa-test-{}-{}-{}",
        pid(),
        tag,
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
        .saturating_sub(1) // read_dir's own descriptor
}

/// Asserts that `sharedarea_init(spec)` fails with one of `expected`, creates no
/// area, leaves no descriptor open, and says `sharedarea_init: ...` naming
/// `needle`. Returns last_error.
pub fn refused_cleanly(spec: &[u8], expected: &[i32], needle: &str) -> String {
    let c = CString::new(spec).unwrap();
    let shown = String::from_utf8_lossy(spec);
    let (areas, fds) = (count(), open_fds());
    let st = unsafe { sa::sharedarea_init(c.as_ptr()) };
    let err = last_error();
    assert!(
        expected.contains(&st),
        "sharedarea_init({shown:?}) = {st}, expected one of {expected:?}: {err}"
    );
    assert_eq!(count(), areas, "{shown:?}: a failed init created an area");
    assert_eq!(
        open_fds(),
        fds,
        "{shown:?}: a failed init leaked a descriptor"
    );
    assert!(
        err.starts_with("sharedarea_init: "),
        "{shown:?}: last_error does not name the function: {err}"
    );
    assert!(
        err.contains(needle),
        "{shown:?}: last_error does not name {needle:?}: {err}"
    );
    err
}

/// Whether the POSIX shm object `name` ("/NAME") exists.
pub fn shm_exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm{name}")).exists()
}

/// Unlinks a POSIX shm object when dropped.
pub struct ShmName(pub String);

impl ShmName {
    pub fn new(tag: &str) -> ShmName {
        ShmName(unique_name(tag))
    }
}

impl Drop for ShmName {
    fn drop(&mut self) {
        let c = CString::new(self.0.as_str()).unwrap();
        unsafe { libc::shm_unlink(c.as_ptr()) };
    }
}

/// A temporary file removed when dropped.
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    pub fn with_bytes(tag: &str, bytes: &[u8]) -> TempFile {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "sa-test-{}-{}-{}",
            pid(),
            tag,
            UNIQUE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, bytes).expect("write temp file");
        TempFile(path)
    }
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Deterministic bytes: byte i of the pattern with seed s.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Scratch shared memory: counters and flags parent and children use to talk, kept apart
// from the area under test.

pub struct Scratch {
    ptr: *mut AtomicU64,
    slots: usize,
}

unsafe impl Send for Scratch {}
unsafe impl Sync for Scratch {}

impl Scratch {
    pub fn new(slots: usize) -> Scratch {
        let len = slots * 8;
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap scratch");
        Scratch {
            ptr: p as *mut AtomicU64,
            slots,
        }
    }
    pub fn slot(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.slots);
        unsafe { &*self.ptr.add(i) }
    }
    pub fn get(&self, i: usize) -> u64 {
        self.slot(i).load(Ordering::SeqCst)
    }
    pub fn set(&self, i: usize, v: u64) {
        self.slot(i).store(v, Ordering::SeqCst)
    }
    pub fn add(&self, i: usize, v: u64) -> u64 {
        self.slot(i).fetch_add(v, Ordering::SeqCst) + v
    }
    /// Waits until slot `i` is at least `v`, at most `timeout`. True if it got there.
    pub fn wait_for(&self, i: usize, v: u64, timeout: Duration) -> bool {
        let start = Instant::now();
        while self.get(i) < v {
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr as *mut c_void, self.slots * 8) };
    }
}

// ---------------------------------------------------------------------------------------
// Forked children

/// A forked child. Dropping it (a failed assertion in the parent, say) SIGKILLs and reaps
/// it, so no test leaves a process behind.
pub struct Child {
    pub pid: libc::pid_t,
    reaped: bool,
}

/// A forked child that takes the area's write lock (`write`) or read lock, says
/// so in `sc` slot `flag` (set to 1), and then holds it until it is killed.
/// Returns once it holds the lock.
pub fn lock_holder(id: i32, write: bool, sc: &Scratch, flag: usize) -> Child {
    let child = fork_child(move || {
        let st = if write {
            unsafe { sa::sharedarea_wlock(id) }
        } else {
            unsafe { sa::sharedarea_rlock(id) }
        };
        if st != 0 {
            return child_fail(2, &format!("lock: {st}: {}", last_error()));
        }
        sc.set(flag, 1);
        loop {
            unsafe { libc::pause() };
        }
    });
    assert!(
        sc.wait_for(flag, 1, Duration::from_secs(10)),
        "the holder did not take the lock"
    );
    child
}

/// Forks; the child runs `f` and `_exit`s with its return value (101 if it panicked).
pub fn fork_child<F: FnOnce() -> i32>(f: F) -> Child {
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        unsafe { libc::_exit(code) };
    }
    Child { pid, reaped: false }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Child {
    /// Waits at most `timeout` for the child to end and reaps it; on overrun kills it
    /// and returns `Err`.
    pub fn wait(&mut self, timeout: Duration) -> Result<Exit, String> {
        let start = Instant::now();
        loop {
            let mut status = 0;
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r == self.pid {
                self.reaped = true;
                if libc::WIFEXITED(status) {
                    return Ok(Exit::Code(libc::WEXITSTATUS(status)));
                }
                return Ok(Exit::Signal(libc::WTERMSIG(status)));
            }
            if r < 0 {
                self.reaped = true;
                return Err(format!(
                    "waitpid({}): {}",
                    self.pid,
                    std::io::Error::last_os_error()
                ));
            }
            if start.elapsed() > timeout {
                self.kill_and_reap();
                return Err(format!(
                    "child {} still running after {:?}: killed",
                    self.pid, timeout
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for a clean exit 0, failing the test with `what` otherwise.
    pub fn expect_success(&mut self, timeout: Duration, what: &str) {
        match self.wait(timeout) {
            Ok(Exit::Code(0)) => {}
            other => panic!(
                "{what}: child {} ended with {other:?} (exit codes are set by the child's checks)",
                self.pid
            ),
        }
    }

    pub fn signal(&self, sig: i32) {
        if !self.reaped {
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// Waits (bounded) until the child is dead but does NOT reap it: it stays a zombie.
    pub fn wait_zombie(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pid as libc::id_t,
                    &mut si,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            if r == 0 && unsafe { si.si_pid() } == self.pid {
                return true;
            }
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn kill_and_reap(&mut self) {
        if self.reaped {
            return;
        }
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            let mut status = 0;
            libc::waitpid(self.pid, &mut status, 0);
        }
        self.reaped = true;
    }

    pub fn is_running(&self) -> bool {
        if self.reaped {
            return false;
        }
        let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut si,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        !(r == 0 && unsafe { si.si_pid() } == self.pid)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// A connected AF_UNIX stream socket pair (both ends blocking, close-on-exec).
pub fn socketpair() -> (RawFd, RawFd) {
    let mut fds = [0i32; 2];
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

pub fn close(fd: RawFd) {
    unsafe { libc::close(fd) };
}

pub fn set_nonblocking(fd: RawFd, on: bool) {
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        libc::fcntl(fd, libc::F_SETFL, flags);
    }
}

/// Reads exactly `n` bytes from `fd` (blocking), or fails after `timeout`.
pub fn read_exact_fd(fd: RawFd, n: usize, timeout: Duration) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    let start = Instant::now();
    while got < n {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!("read {got} of {n} bytes before the timeout"));
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32 + 1) };
        if r <= 0 {
            continue;
        }
        let r = unsafe { libc::read(fd, out[got..].as_mut_ptr() as *mut c_void, n - got) };
        if r == 0 {
            return Err(format!("EOF after {got} of {n} bytes"));
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted
                || e.kind() == std::io::ErrorKind::WouldBlock
            {
                continue;
            }
            return Err(format!("read: {e} after {got} of {n} bytes"));
        }
        got += r as usize;
    }
    Ok(out)
}

/// Bytes waiting to be read on a socket right now.
pub fn pending_bytes(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    n as usize
}

/// The RFC 6455 server frame header for `len` payload bytes.
pub fn ws_header(opcode: u8, len: u64) -> Vec<u8> {
    let mut h = vec![0x80 | opcode];
    if len < 126 {
        h.push(len as u8);
    } else if len <= 0xFFFF {
        h.push(126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(127);
        h.extend_from_slice(&len.to_be_bytes());
    }
    h
}

/// Joins a thread, failing the test (instead of hanging) if it has not finished within
/// `timeout`. The stuck thread is left behind; the test binary still exits.
pub fn join_within<T>(t: std::thread::JoinHandle<T>, timeout: Duration, what: &str) -> T {
    let start = Instant::now();
    while !t.is_finished() {
        assert!(
            start.elapsed() < timeout,
            "{what}: thread still blocked after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    t.join()
        .unwrap_or_else(|_| panic!("{what}: thread panicked"))
}

// ---------------------------------------------------------------------------------------
// The control block of a `name=` area, seen from the test (layout: src/control.rs)

/// The control block of a `name=` area, mapped a second time. Its descriptor stays
/// open for the life of the test process: closing a descriptor of the object would
/// drop this process's liveness tokens on it (see src/lock/token.rs).
pub struct ControlView {
    base: *mut u8,
    len: usize,
}

unsafe impl Send for ControlView {}
unsafe impl Sync for ControlView {}

impl ControlView {
    pub fn open(name: &str) -> ControlView {
        let c = CString::new(name).unwrap();
        let fd = unsafe { libc::shm_open(c.as_ptr(), libc::O_RDWR, 0) };
        assert!(
            fd >= 0,
            "shm_open {name}: {}",
            std::io::Error::last_os_error()
        );
        let len = sa::control::Control::SIZE.div_ceil(page_size() as usize) * page_size() as usize;
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap control block");
        let v = ControlView {
            base: p as *mut u8,
            len,
        };
        assert_eq!(unsafe { std::slice::from_raw_parts(v.base, 6) }, b"SHAREA");
        v
    }
    pub fn ctl(&self) -> &sa::control::Control {
        unsafe { &*(self.base as *const sa::control::Control) }
    }
    pub fn state(&self) -> &std::sync::atomic::AtomicU32 {
        &self.ctl().lock.state
    }
    pub fn hwm(&self) -> &std::sync::atomic::AtomicU32 {
        &self.ctl().lock.slot_hwm
    }
    pub fn pid(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
        &self.ctl().slots[i].pid
    }
    pub fn readers(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
        &self.ctl().slots[i].readers
    }
    /// The slot whose recorded pid is `pid`.
    pub fn slot_of(&self, pid: u32) -> Option<usize> {
        (0..sa::control::SLOTS).find(|&i| self.pid(i).load(Ordering::SeqCst) == pid)
    }
    /// (slot, pid, readers) of every slot below the high-water mark with readers != 0.
    pub fn busy_readers(&self) -> Vec<(usize, u32, u32)> {
        let hwm = (self.hwm().load(Ordering::SeqCst) as usize).min(sa::control::SLOTS);
        (0..hwm)
            .filter_map(|i| {
                let r = self.readers(i).load(Ordering::SeqCst);
                (r != 0).then(|| (i, self.pid(i).load(Ordering::SeqCst), r))
            })
            .collect()
    }
}

impl Drop for ControlView {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.base as *mut c_void, self.len) };
    }
}
