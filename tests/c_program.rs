//! The C ABI as a C (and C++) user sees it: compiles tests/c/abi_test.c against the
//! committed include/sharedarea.h with `-std=c99 -Wall -Wextra -Wpedantic -Werror`, links
//! it against this profile's libsharedarea.so and, separately, libsharedarea.a with its
//! native libraries (scripts/native-static-libs), and runs both; checks that the header
//! compiles as C++.
//! Skips (saying so) only when no C compiler is installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CFLAGS: &[&str] = &["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror"];
/// The native libraries libsharedarea.a needs, from scripts/native-static-libs
/// (rustc's list; the one place it comes from).
fn native_static_libs() -> Vec<String> {
    let out = Command::new(root().join("scripts/native-static-libs"))
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/native-static-libs");
    assert!(out.status.success(), "scripts/native-static-libs failed");
    let libs: Vec<String> = String::from_utf8(out.stdout)
        .expect("scripts/native-static-libs prints text")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(
        !libs.is_empty() && libs.iter().all(|l| l.starts_with("-l")),
        "scripts/native-static-libs printed {libs:?}"
    );
    libs
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// target/<profile>: this test executable lives in target/<profile>/deps.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<exe>")
        .to_path_buf()
}

fn out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c-abi");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{cmd:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs a built program with a time limit, killing it on overrun.
fn run_bounded(mut cmd: Command, what: &str, limit: Duration) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} still running after {limit:?}: killed\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "{what}: {}{}",
        stdout.trim(),
        if stderr.is_empty() {
            String::new()
        } else {
            format!("\n{stderr}")
        }
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(", 0 failures"),
        "{what} did not report its checks: {stdout}"
    );
}

fn library(name: &str) -> PathBuf {
    let p = profile_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: cargo builds it with the library (crate-type cdylib/staticlib); run `cargo build{}` first",
        p.display(),
        if cfg!(debug_assertions) { "" } else { " --release" }
    );
    p
}

/// `cc` with the strict flags, the header, and tests/c/abi_test.c -> `exe`; the
/// caller adds what differs (libraries, sanitizers).
fn cc_abi_test(exe: &std::path::Path) -> Command {
    let mut cmd = Command::new("cc");
    cmd.args(CFLAGS)
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("tests/c/abi_test.c"))
        .arg("-o")
        .arg(exe);
    cmd
}

/// The arguments that link the shared library found in `dir` (with an rpath).
fn shared_link_args(dir: &std::path::Path) -> [String; 3] {
    [
        format!("-L{}", dir.display()),
        format!("-Wl,-rpath,{}", dir.display()),
        "-lsharedarea".to_string(),
    ]
}

#[test]
fn c_program_against_the_shared_library() {
    if !have("cc") {
        eprintln!("SKIP c_program_against_the_shared_library: no C compiler (cc) installed");
        return;
    }
    let so = library("libsharedarea.so");
    let dir = so.parent().unwrap();
    let exe = out_dir().join("abi_test_so");
    run(
        cc_abi_test(&exe).args(shared_link_args(dir)),
        "compiling tests/c/abi_test.c (shared)",
    );
    let mut cmd = Command::new(&exe);
    cmd.env("LD_LIBRARY_PATH", dir);
    run_bounded(cmd, "abi_test (libsharedarea.so)", Duration::from_secs(150));
}

/// A program that dlopens the library, has a thread lock and unlock, dlcloses
/// it while the thread runs and then lets the thread end: the library is never
/// unloaded (`-z nodelete`), so the thread-exit release of its hold records is
/// still there (without the flag the exiting thread jumps into unmapped code).
#[test]
fn threads_that_locked_exit_cleanly_after_the_library_is_dlclosed() {
    if !have("cc") {
        eprintln!("SKIP threads_that_locked_exit_cleanly_after_the_library_is_dlclosed: no C compiler (cc)");
        return;
    }
    let so = library("libsharedarea.so");
    let exe = out_dir().join("dlclose_test");
    run(
        Command::new("cc")
            .args(["-std=c99", "-O1", "-Wall", "-Werror", "-D_GNU_SOURCE"])
            .arg(root().join("tests/c/dlclose_test.c"))
            .arg("-o")
            .arg(&exe)
            .args(["-ldl", "-pthread"]),
        "compiling tests/c/dlclose_test.c",
    );
    let mut cmd = Command::new(&exe);
    cmd.arg(&so);
    run_bounded(cmd, "dlclose_test", Duration::from_secs(60));
}

#[test]
fn c_program_against_the_static_library() {
    if !have("cc") {
        eprintln!("SKIP c_program_against_the_static_library: no C compiler (cc) installed");
        return;
    }
    let a = library("libsharedarea.a");
    let exe = out_dir().join("abi_test_static");
    run(
        cc_abi_test(&exe).arg(&a).args(native_static_libs()),
        "compiling tests/c/abi_test.c (static)",
    );
    run_bounded(
        Command::new(&exe),
        "abi_test (libsharedarea.a)",
        Duration::from_secs(150),
    );
}

#[test]
fn c_program_under_sanitizers() {
    if !have("cc") {
        eprintln!("SKIP c_program_under_sanitizers: no C compiler (cc) installed");
        return;
    }
    let so = library("libsharedarea.so");
    let dir = so.parent().unwrap();
    let exe = out_dir().join("abi_test_asan");
    let out = cc_abi_test(&exe)
        .args([
            "-g",
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all",
        ])
        .args(shared_link_args(dir))
        .output()
        .unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("libasan") || err.contains("libubsan") || err.contains("cannot find") {
            eprintln!("SKIP c_program_under_sanitizers: sanitizer runtime not installed:\n{err}");
            return;
        }
        panic!("compiling abi_test.c with sanitizers failed:\n{err}");
    }
    let mut cmd = Command::new(&exe);
    cmd.env("LD_LIBRARY_PATH", dir)
        .env("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1");
    run_bounded(cmd, "abi_test (ASan+UBSan)", Duration::from_secs(200));
}

#[test]
fn header_compiles_as_cxx() {
    if !have("c++") {
        eprintln!("SKIP header_compiles_as_cxx: no C++ compiler (c++) installed");
        return;
    }
    for std in ["-std=c++11", "-std=c++17"] {
        run(
            Command::new("c++")
                .args([
                    std,
                    "-Wall",
                    "-Wextra",
                    "-Wpedantic",
                    "-Werror",
                    "-fsyntax-only",
                ])
                .arg("-I")
                .arg(root().join("include"))
                .arg(root().join("tests/c/header_cxx.cpp")),
            &format!("c++ {std} -fsyntax-only tests/c/header_cxx.cpp"),
        );
    }
}

#[test]
fn header_compiles_alone_as_c99() {
    if !have("cc") {
        eprintln!("SKIP header_compiles_alone_as_c99: no C compiler (cc) installed");
        return;
    }
    // the header includes what it needs: nothing before it
    let src = out_dir().join("header_alone.c");
    std::fs::write(&src, "#include \"sharedarea.h\"\nint main(void) { return (int)sharedarea_abi_version() - SHAREDAREA_ABI_VERSION; }\n").unwrap();
    run(
        Command::new("cc")
            .args(CFLAGS)
            .arg("-fsyntax-only")
            .arg("-I")
            .arg(root().join("include"))
            .arg(&src),
        "cc -fsyntax-only with only the header",
    );
}
