//! The `sharedarea` command, run as a user runs it, against named areas this test
//! creates (and real child processes that attach to them).

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sharedarea"))
}

/// Runs the command, bounded by timeout(1) (exit 124 when it overruns), and
/// returns its output. The output is read while the command runs: `ls` on a
/// busy machine can print more than a pipe holds.
fn run(args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_sharedarea"))
        .args(args)
        .output()
        .expect("run sharedarea under timeout(1)");
    assert_ne!(
        out.status.code(),
        Some(124),
        "sharedarea {args:?} ran for more than 20 s"
    );
    out
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "sharedarea {args:?}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn fails(args: &[&str], code: i32) -> String {
    let o = run(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "sharedarea {args:?}: stdout {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stderr).unwrap()
}

fn json(args: &[&str]) -> Value {
    let out = ok(args);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("sharedarea {args:?}: not JSON ({e}): {out}"))
}

/// A named area made by this process; the name without its '/'.
struct Named {
    shm: ShmName,
    id: i32,
}

impl Named {
    fn new(tag: &str, size: u64) -> Named {
        let shm = ShmName::new(tag);
        let id = must_init(&format!("name={},size={size}", shm.0));
        Named { shm, id }
    }
    fn name(&self) -> &str {
        self.shm.0.trim_start_matches('/')
    }
}

/// Another process attached to `name`: the command's own `watch`, started and
/// seen to be waiting.
fn attached_watcher(name: &str) -> std::process::Child {
    let mut child = bin()
        .args(["watch", name, "--timeout", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("watching "), "{line}");
    child
}

#[test]
fn ls_lists_every_named_area_with_its_counters() {
    let _g = serial();
    let a = Named::new("cli-ls-a", 4096);
    let b = Named::new("cli-ls-b", 8192);
    assert_eq!(inc64(b.id, 0, 1).unwrap(), 1);
    assert_eq!(inc64(b.id, 0, 1).unwrap(), 2);

    let text = ok(&["ls"]);
    assert!(text.starts_with("NAME"), "{text}");
    let line_b = text
        .lines()
        .find(|l| l.starts_with(b.name()))
        .unwrap_or_else(|| panic!("{} not listed: {text}", b.name()));
    let cells: Vec<&str> = line_b.split_whitespace().collect();
    assert_eq!(cells[1], "8192", "{line_b}");
    assert_eq!(cells[3], "0600", "{line_b}");
    assert_eq!(cells[5], "2", "updates: {line_b}");
    assert!(text.contains(a.name()), "{text}");

    let all = json(&["ls", "--json"]);
    let arr = all.as_array().expect("an array");
    let jb = arr
        .iter()
        .find(|v| v["name"] == b.name())
        .expect("b listed");
    assert_eq!(jb["size"], 8192);
    assert_eq!(jb["updates"], 2);
    assert_eq!(jb["recoveries"], 0);
    assert_eq!(jb["lock"]["state"], "free");
    let me = pid() as u64;
    assert!(
        jb["attached"]
            .as_array()
            .unwrap()
            .contains(&Value::from(me)),
        "this process has it mapped: {jb}"
    );
    // Other programs' shared memory is not listed.
    let foreign = ShmName::new("cli-foreign");
    std::fs::write(format!("/dev/shm{}", foreign.0), vec![0u8; 65536]).unwrap();
    let all = json(&["ls", "--json"]);
    assert!(
        !all.as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == foreign.0.trim_start_matches('/')),
        "{all}"
    );
}

#[test]
fn info_shows_attached_processes_and_the_lock_holder() {
    let _g = serial();
    let a = Named::new("cli-info", 4096);
    let mut watcher = attached_watcher(a.name());
    let v = json(&["info", a.name(), "--json"]);
    let attached = v["attached"].as_array().unwrap().clone();
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(attached.contains(&Value::from(watcher.id())), "{v}");
    assert!(attached.contains(&Value::from(pid())), "{v}");

    must_write(a.id, 0, b"x");
    assert_eq!(wlock(a.id), 0);
    let v = json(&["info", a.name(), "--json"]);
    assert_eq!(unlock(a.id), 0);
    assert_eq!(v["lock"]["state"], "write");
    assert_eq!(v["lock"]["holders"], serde_json::json!([pid()]));
    assert_eq!(v["size"], 4096);
    assert_eq!(v["updates"], 1);
    assert_eq!(v["path"], format!("/dev/shm/{}", a.name()));

    let text = ok(&["info", a.name()]);
    assert!(text.contains("lock        free"), "{text}");
    assert!(
        text.contains(&format!("attached: {}", pid())),
        "this process: {text}"
    );

    let err = fails(&["info", "sa-no-such-area-xyz"], 1);
    assert!(
        err.starts_with("sharedarea info: no area named \"sa-no-such-area-xyz\""),
        "{err}"
    );
}

#[test]
fn dump_prints_hex_and_text_like_xxd() {
    let _g = serial();
    let a = Named::new("cli-dump", 4096);
    must_write(a.id, 16, b"Hello, world!\n");
    let out = ok(&["dump", a.name(), "16", "14"]);
    assert_eq!(
        out,
        "00000010: 4865 6c6c 6f2c 2077 6f72 6c64 210a       Hello, world!.\n"
    );
    let whole = ok(&["dump", a.name()]);
    assert_eq!(whole.lines().count(), 4096 / 16);
    let v = json(&["dump", a.name(), "0x10", "5", "--json"]);
    assert_eq!(v["hex"], "48656c6c6f");
    assert_eq!(v["pos"], 16);
    // set_used with honour_used: the default length stops there.
    assert_eq!(set_used(a.id, 32), 0);
    assert_eq!(ok(&["dump", a.name()]).lines().count(), 2);
    let err = fails(&["dump", a.name(), "4090", "7"], 1);
    assert!(err.contains("past the end"), "{err}");
    fails(&["dump", a.name(), "abc"], 2);
}

#[test]
fn get_set_inc_work_on_integers_across_processes() {
    let _g = serial();
    let a = Named::new("cli-int", 4096);
    ok(&["set", a.name(), "8", "int64", "-5"]);
    assert_eq!(
        read64(a.id, 8).unwrap(),
        -5,
        "this process sees the command's write"
    );
    assert_eq!(ok(&["inc", a.name(), "8", "int64", "10"]), "5\n");
    assert_eq!(ok(&["inc", a.name(), "8", "int64"]), "6\n");
    assert_eq!(ok(&["inc", a.name(), "8", "int64", "-7"]), "-1\n");
    assert_eq!(ok(&["get", a.name(), "8", "int64"]), "-1\n");
    assert_eq!(
        json(&["get", a.name(), "8", "int64", "--json"])["value"],
        -1
    );
    assert_eq!(inc64(a.id, 8, 100).unwrap(), 99);
    assert_eq!(ok(&["get", a.name(), "8", "int64"]), "99\n");
    ok(&["set", a.name(), "0", "int8", "-128"]);
    assert_eq!(ok(&["get", a.name(), "0", "int8"]), "-128\n");
    assert_eq!(ok(&["inc", a.name(), "0", "int8", "-1"]), "127\n", "wraps");

    // Exact under concurrency: 4 commands x 25 increments with this process's 100.
    let name = a.name().to_string();
    let kids: Vec<_> = (0..4)
        .map(|_| {
            let n = name.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    ok(&["inc", &n, "16", "int64"]);
                }
            })
        })
        .collect();
    for _ in 0..100 {
        inc64(a.id, 16, 1).unwrap();
    }
    for k in kids {
        k.join().unwrap();
    }
    assert_eq!(read64(a.id, 16).unwrap(), 200);

    fails(&["set", a.name(), "0", "int8", "300"], 2);
    fails(&["get", a.name(), "0", "float"], 2);
    fails(&["get", a.name(), "0"], 2);
    let err = fails(&["get", a.name(), "4092", "int64"], 1);
    assert!(err.contains("past the end"), "{err}");
    let err = fails(&["get", "sa-no-such-area-xyz", "0", "int64"], 1);
    assert!(err.contains("no area named"), "{err}");
}

#[test]
fn watch_prints_each_update_as_it_happens() {
    let _g = serial();
    let a = Named::new("cli-watch", 4096);
    let mut child = bin()
        .args(["watch", a.name(), "--count", "2", "--int64", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("watching "), "{line}");
    let t0 = Instant::now();
    assert_eq!(inc64(a.id, 0, 41).unwrap(), 41);
    line.clear();
    out.read_line(&mut line).unwrap();
    let latency = t0.elapsed();
    assert!(line.contains("updates 1 (+1) int64@0 41"), "{line}");
    assert!(latency < Duration::from_secs(5), "{latency:?}");
    assert_eq!(update(a.id), 0);
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("updates 2 (+1) int64@0 41"), "{line}");
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success());
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "watch did not stop after --count 2"
        );
        sleep_ms(5);
    }
    // --timeout ends a quiet watch.
    let t = Instant::now();
    let o = ok(&["watch", a.name(), "--timeout", "0.2"]);
    assert_eq!(o.lines().count(), 1, "{o}");
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[test]
fn rm_refuses_while_attached_unless_forced() {
    let _g = serial();
    // Attached by another process: refused, names the pid, removes nothing.
    let other = Named::new("cli-rm-other", 4096);
    let name = other.name().to_string();
    let mut watcher = attached_watcher(&name);
    let err = fails(&["rm", &name], 1);
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(err.contains(&watcher.id().to_string()), "{err}");

    // Attached by this process: refused, names the pid, removes nothing.
    let a = Named::new("cli-rm", 4096);
    let err = fails(&["rm", a.name()], 1);
    assert!(err.contains(&format!("pid {}", pid())), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(std::path::Path::new(&format!("/dev/shm/{}", a.name())).exists());
    ok(&["rm", a.name(), "--force"]);
    assert!(!std::path::Path::new(&format!("/dev/shm/{}", a.name())).exists());
    assert_eq!(
        inc64(a.id, 0, 1).unwrap(),
        1,
        "this process keeps its memory"
    );

    // Made by a process that has exited: removed without --force.
    let name = unique_name("cli-rm-gone");
    let n = name.clone();
    let mut child = fork_child(move || {
        if init(&format!("name={n},size=4096")) >= 0 {
            0
        } else {
            1
        }
    });
    child.expect_success(Duration::from_secs(10), "child creates the area");
    ok(&["rm", &name]);
    assert!(!std::path::Path::new(&format!("/dev/shm{name}")).exists());
    let err = fails(&["rm", &name], 1);
    assert!(err.contains("no area named"), "{err}");

    // Not an area: left alone.
    let foreign = ShmName::new("cli-rm-foreign");
    // Larger than any control block, so its header is what gets it refused.
    std::fs::write(format!("/dev/shm{}", foreign.0), vec![1u8; 1 << 20]).unwrap();
    let err = fails(&["rm", foreign.0.trim_start_matches('/'), "--force"], 1);
    assert!(err.contains("not a sharedarea"), "{err}");
    assert!(std::path::Path::new(&format!("/dev/shm{}", foreign.0)).exists());
}

#[test]
fn every_verb_has_help_and_bad_usage_exits_2() {
    for verb in ["ls", "info", "dump", "get", "set", "inc", "watch", "rm"] {
        let h = ok(&[verb, "--help"]);
        assert!(h.starts_with(&format!("Usage: sharedarea {verb}")), "{h}");
        assert_eq!(ok(&["help", verb]), h);
    }
    let all = ok(&["--help"]);
    for verb in ["ls", "info", "dump", "get", "set", "inc", "watch", "rm"] {
        assert!(all.contains(&format!("sharedarea {verb}")), "{all}");
    }
    fails(&[], 2);
    fails(&["frobnicate"], 2);
    fails(&["ls", "extra"], 2);
    fails(&["rm", "x", "--json"], 2);
    fails(&["set", "x", "0", "int64", "1", "--json"], 2);
    let err = fails(&["info"], 2);
    assert!(err.contains("Usage: sharedarea info NAME"), "{err}");
    let err = fails(&["info", "a/b"], 1);
    assert!(err.contains("not an area name"), "{err}");
}
