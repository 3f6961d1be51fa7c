//! `sharedarea`: see, inspect, change and remove the named areas on this host.
//!
//! Read-only verbs (`ls`, `info`, `dump`, `get`) look at areas without changing
//! them; `ls` and `info` do not even attach (they read the control block through
//! `sharedarea::inspect`). `set`, `inc` and `watch` attach like any program.
//! Exit status: 0 success, 1 the operation failed, 2 a usage error.

mod output;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sharedarea::inspect::{self, NamedArea};
use sharedarea::{Area, Error, Status};

use output::{hex, hexdump, human_size, user_name, utc, Json};

const VERBS: &[(&str, &str, &str)] = &[
    (
        "ls",
        "ls [--json]",
        "List every named area in /dev/shm this user can open: name, size, owner, mode,\n\
         processes attached, updates, recoveries and who holds the lock. Objects that\n\
         are not areas are left out.",
    ),
    (
        "info",
        "info NAME [--json]",
        "Show one named area in detail: where it lives, its size, owner and mode, the\n\
         processes attached (with their pids), the update and recovery counters, `used`,\n\
         and who holds the lock now. Does not attach to the area.",
    ),
    (
        "dump",
        "dump NAME [POS [LEN]] [--json]",
        "Print the area's bytes from POS (default 0), LEN bytes (default: to the end,\n\
         or to `used` when the area honours it), as hex and text like xxd. With --json:\n\
         {\"name\", \"pos\", \"len\", \"hex\"}.",
    ),
    (
        "get",
        "get NAME POS TYPE [--json]",
        "Print the signed integer of TYPE (int8, int16, int32, int64) at byte POS.",
    ),
    (
        "set",
        "set NAME POS TYPE VALUE",
        "Write VALUE as a signed integer of TYPE (int8, int16, int32, int64) at byte\n\
         POS; counts one update (waiters wake).",
    ),
    (
        "inc",
        "inc NAME POS TYPE [AMOUNT]",
        "Add AMOUNT (default 1; negative subtracts) to the integer of TYPE at byte POS,\n\
         atomically with respect to every other process, and print the new value.",
    ),
    (
        "watch",
        "watch NAME [--count N] [--timeout SECONDS] [--int64 POS]",
        "Print a line each time the area is updated, as it happens (it sleeps in the\n\
         area's wait, woken by the update itself): the time, the update counter and how\n\
         many updates it saw; with --int64 POS also that integer. Stops after N lines\n\
         (--count) or SECONDS (--timeout); otherwise runs until interrupted.",
    ),
    (
        "rm",
        "rm NAME [--force]",
        "Remove a named area. Refused while processes have it attached (their pids are\n\
         listed) unless --force: they keep using their memory until they exit, and the\n\
         next name=NAME with a size creates a new, empty area.",
    ),
];

fn usage_all() -> String {
    let mut s = String::from(
        "sharedarea: see, inspect, change and remove named shared-memory areas (/dev/shm)\n\nUsage:\n",
    );
    for (_, u, _) in VERBS {
        s.push_str(&format!("  sharedarea {u}\n"));
    }
    s.push_str(
        "  sharedarea help [VERB] | sharedarea VERB --help\n\n\
         NAME is the area's name as in name=NAME. POS and LEN are bytes (decimal or 0x hex).\n\
         Exit status: 0 success, 1 the operation failed, 2 usage error.\n",
    );
    s
}

fn usage_of(verb: &str) -> Option<String> {
    VERBS
        .iter()
        .find(|(v, _, _)| *v == verb)
        .map(|(_, u, d)| format!("Usage: sharedarea {u}\n\n{d}\n"))
}

/// How a verb failed.
enum Fail {
    /// Bad command line: the message and the verb, for its usage.
    Usage(String, &'static str),
    /// The operation failed.
    Op(String),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Op(e.detail)
    }
}

type Res = Result<(), Fail>;

/// The command line of one verb: positional words and flags.
struct Args {
    verb: &'static str,
    words: Vec<String>,
    json: bool,
    force: bool,
    count: Option<u64>,
    timeout: Option<f64>,
    int64: Option<u64>,
}

impl Args {
    fn parse(verb: &'static str, raw: &[String]) -> Result<Args, Fail> {
        let mut a = Args {
            verb,
            words: Vec::new(),
            json: false,
            force: false,
            count: None,
            timeout: None,
            int64: None,
        };
        let mut it = raw.iter();
        while let Some(w) = it.next() {
            let mut value = |flag: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| Fail::Usage(format!("{flag} needs a value"), verb))
            };
            match w.as_str() {
                "--json" if matches!(verb, "ls" | "info" | "dump" | "get") => a.json = true,
                "--force" if verb == "rm" => a.force = true,
                "--count" if verb == "watch" => {
                    let v = value("--count")?;
                    a.count = Some(number(&v, "--count", verb)?);
                }
                "--timeout" if verb == "watch" => {
                    let v = value("--timeout")?;
                    a.timeout = Some(
                        v.parse::<f64>()
                            .ok()
                            .filter(|t| t.is_finite() && *t >= 0.0)
                            .ok_or_else(|| {
                                Fail::Usage(
                                    format!("--timeout {v:?} is not a number of seconds"),
                                    verb,
                                )
                            })?,
                    );
                }
                "--int64" if verb == "watch" => {
                    let v = value("--int64")?;
                    a.int64 = Some(number(&v, "--int64", verb)?);
                }
                "--" => a.words.extend(it.by_ref().cloned()),
                f if f.starts_with("--") => {
                    return Err(Fail::Usage(format!("unknown option {f}"), verb))
                }
                _ => a.words.push(w.clone()),
            }
        }
        Ok(a)
    }

    /// Exactly `min..=max` positional words.
    fn want(&self, min: usize, max: usize) -> Result<(), Fail> {
        let n = self.words.len();
        if n < min || n > max {
            let expected = match (min, max) {
                (0, 0) => "no arguments".to_string(),
                (a, b) if a == b => format!("{a} argument{}", if a == 1 { "" } else { "s" }),
                (a, b) => format!("{a} to {b} arguments"),
            };
            return Err(Fail::Usage(
                format!("{} takes {expected}, got {n}", self.verb),
                self.verb,
            ));
        }
        Ok(())
    }
}

fn number(text: &str, what: &str, verb: &'static str) -> Result<u64, Fail> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => text.parse::<u64>().ok(),
    };
    parsed.ok_or_else(|| {
        Fail::Usage(
            format!("{what} {text:?} is not a non-negative integer"),
            verb,
        )
    })
}

fn signed(text: &str, what: &str, verb: &'static str) -> Result<i64, Fail> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let mag = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(h) => i128::from_str_radix(h, 16).ok(),
        None => body.parse::<i128>().ok(),
    };
    mag.map(|m| if neg { -m } else { m })
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| Fail::Usage(format!("{what} {text:?} is not a 64-bit integer"), verb))
}

/// An integer type named on the command line.
#[derive(Clone, Copy)]
enum IntType {
    I8,
    I16,
    I32,
    I64,
}

impl IntType {
    fn parse(text: &str, verb: &'static str) -> Result<IntType, Fail> {
        match text {
            "int8" | "i8" => Ok(IntType::I8),
            "int16" | "i16" => Ok(IntType::I16),
            "int32" | "i32" => Ok(IntType::I32),
            "int64" | "i64" => Ok(IntType::I64),
            _ => Err(Fail::Usage(
                format!("type {text:?}: give int8, int16, int32 or int64"),
                verb,
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            IntType::I8 => "int8",
            IntType::I16 => "int16",
            IntType::I32 => "int32",
            IntType::I64 => "int64",
        }
    }

    /// VALUE must fit the type (the command refuses rather than wraps).
    fn check(self, v: i64, what: &str, verb: &'static str) -> Result<(), Fail> {
        let fits = match self {
            IntType::I8 => i8::try_from(v).is_ok(),
            IntType::I16 => i16::try_from(v).is_ok(),
            IntType::I32 => i32::try_from(v).is_ok(),
            IntType::I64 => true,
        };
        if fits {
            Ok(())
        } else {
            Err(Fail::Usage(
                format!("{what} {v} does not fit {}", self.name()),
                verb,
            ))
        }
    }

    fn get(self, a: &Area, pos: u64) -> Result<i64, Error> {
        Ok(match self {
            IntType::I8 => a.read_int::<i8>(pos)? as i64,
            IntType::I16 => a.read_int::<i16>(pos)? as i64,
            IntType::I32 => a.read_int::<i32>(pos)? as i64,
            IntType::I64 => a.read_int::<i64>(pos)?,
        })
    }

    fn set(self, a: &Area, pos: u64, v: i64) -> Result<(), Error> {
        match self {
            IntType::I8 => a.write_int(pos, v as i8),
            IntType::I16 => a.write_int(pos, v as i16),
            IntType::I32 => a.write_int(pos, v as i32),
            IntType::I64 => a.write_int(pos, v),
        }
    }

    fn add(self, a: &Area, pos: u64, v: i64) -> Result<i64, Error> {
        Ok(match self {
            IntType::I8 => a.add_int(pos, v as i8)? as i64,
            IntType::I16 => a.add_int(pos, v as i16)? as i64,
            IntType::I32 => a.add_int(pos, v as i32)? as i64,
            IntType::I64 => a.add_int(pos, v)?,
        })
    }
}

/// Attaches to the named area like any program would (`name=NAME`).
fn attach(name: &str) -> Result<&'static Area, Error> {
    let bare = inspect::bare_name(name)?;
    // Asked first, so the answer is a status, not a reading of the spec error's text.
    let path = format!("{}/{bare}", inspect::shm_dir());
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(Error::new(
            Status::NoSuchArea,
            format!("no area named \"{bare}\" (no {path})"),
        ));
    }
    Area::init(&format!("name={bare}"))
}

fn lock_text(a: &NamedArea) -> String {
    let c = &a.control;
    match &c.writer {
        Some(w) => format!(
            "write lock held by pid {}{}",
            w.pid,
            if w.alive {
                ""
            } else {
                " (dead: the next locker recovers it)"
            }
        ),
        None => {
            let readers = c.lock_holders();
            if readers.is_empty() {
                "free".to_string()
            } else {
                format!(
                    "read lock held by pid {}",
                    readers
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
    }
}

fn area_json(a: &NamedArea) -> Json {
    let c = &a.control;
    let pids = |v: Vec<u32>| Json::Arr(v.into_iter().map(|p| Json::Int(p as i128)).collect());
    Json::Obj(vec![
        ("name", Json::Str(a.name.clone())),
        ("path", Json::Str(a.path.clone())),
        ("size", Json::Int(a.size as i128)),
        ("object_bytes", Json::Int(a.object_bytes as i128)),
        ("owner_uid", Json::Int(a.owner_uid as i128)),
        ("owner", Json::Str(user_name(a.owner_uid))),
        ("mode", Json::Str(format!("{:04o}", a.mode))),
        ("modified", Json::Int(a.modified as i128)),
        ("attached", pids(a.attached())),
        ("mapped_by", pids(a.mapped_by.clone())),
        (
            "slots",
            Json::Arr(
                c.processes
                    .iter()
                    .map(|p| {
                        Json::Obj(vec![
                            ("pid", Json::Int(p.pid as i128)),
                            ("alive", Json::Bool(p.alive)),
                            ("read_locks", Json::Int(p.read_locks as i128)),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("updates", Json::Int(c.updates as i128)),
        ("recoveries", Json::Int(c.recoveries as i128)),
        ("used", Json::Int(c.used as i128)),
        ("honour_used", Json::Bool(c.honour_used)),
        (
            "lock",
            Json::Obj(vec![
                (
                    "state",
                    Json::Str(
                        if c.writer.is_some() {
                            "write"
                        } else if c.lock_holders().is_empty() {
                            "free"
                        } else {
                            "read"
                        }
                        .into(),
                    ),
                ),
                ("holders", pids(c.lock_holders())),
            ]),
        ),
        ("same_pid_namespace", Json::Bool(a.same_pid_namespace)),
    ])
}

fn cmd_ls(a: Args) -> Res {
    a.want(0, 0)?;
    let areas = inspect::named_areas();
    if a.json {
        println!(
            "{}",
            Json::Arr(areas.iter().map(area_json).collect()).render()
        );
        return Ok(());
    }
    if areas.is_empty() {
        eprintln!("sharedarea ls: no named areas in /dev/shm");
        return Ok(());
    }
    let rows: Vec<[String; 8]> = areas
        .iter()
        .map(|x| {
            [
                x.name.clone(),
                x.size.to_string(),
                user_name(x.owner_uid),
                format!("{:04o}", x.mode),
                x.attached().len().to_string(),
                x.control.updates.to_string(),
                x.control.recoveries.to_string(),
                lock_text(x),
            ]
        })
        .collect();
    let head = [
        "NAME",
        "SIZE",
        "OWNER",
        "MODE",
        "PROCS",
        "UPDATES",
        "RECOVERIES",
        "LOCK",
    ];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else if matches!(i, 1 | 4 | 5 | 6) {
                s.push_str(&format!("{c:>w$}  ", w = width[i]));
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        s
    };
    println!("{}", line(head.to_vec()));
    for r in &rows {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
    Ok(())
}

fn cmd_info(a: Args) -> Res {
    a.want(1, 1)?;
    let x = inspect::named_area(&a.words[0])?;
    if a.json {
        println!("{}", area_json(&x).render());
        return Ok(());
    }
    let c = &x.control;
    let attached = x.attached();
    println!("name        {}", x.name);
    println!("path        {}", x.path);
    println!("size        {} bytes ({})", x.size, human_size(x.size));
    println!(
        "object      {} bytes (control block {} + data {})",
        x.object_bytes,
        x.object_bytes - x.size,
        x.size
    );
    println!(
        "owner       {} (uid {})",
        user_name(x.owner_uid),
        x.owner_uid
    );
    println!("mode        {:04o}", x.mode);
    println!("modified    {}", utc(x.modified));
    println!(
        "processes   {}{}",
        attached.len(),
        if attached.is_empty() {
            String::new()
        } else {
            format!(
                " attached: {}",
                attached
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    println!("updates     {}", c.updates);
    println!("recoveries  {}", c.recoveries);
    println!(
        "used        {} ({})",
        c.used,
        if c.honour_used {
            "honoured: reads with no length stop there"
        } else {
            "not honoured"
        }
    );
    println!("lock        {}", lock_text(&x));
    if !x.same_pid_namespace {
        println!("note        created in another pid namespace: its pids mean nothing here");
    }
    Ok(())
}

fn cmd_dump(a: Args) -> Res {
    a.want(1, 3)?;
    let pos = match a.words.get(1) {
        Some(p) => number(p, "POS", a.verb)?,
        None => 0,
    };
    let len = match a.words.get(2) {
        Some(l) => number(l, "LEN", a.verb)?,
        None => 0,
    };
    let area = attach(&a.words[0])?;
    let len = area.extent(pos, len)?;
    let len_usize =
        usize::try_from(len).map_err(|_| Fail::Op(format!("{len} bytes do not fit in memory")))?;
    let mut buf = vec![0u8; len_usize];
    area.read(pos, &mut buf)?;
    if a.json {
        let j = Json::Obj(vec![
            (
                "name",
                Json::Str(inspect::bare_name(&a.words[0])?.to_string()),
            ),
            ("pos", Json::Int(pos as i128)),
            ("len", Json::Int(len as i128)),
            ("hex", Json::Str(hex(&buf))),
        ]);
        println!("{}", j.render());
    } else {
        print!("{}", hexdump(pos, &buf));
    }
    Ok(())
}

fn cmd_get(a: Args) -> Res {
    a.want(3, 3)?;
    let pos = number(&a.words[1], "POS", a.verb)?;
    let ty = IntType::parse(&a.words[2], a.verb)?;
    let area = attach(&a.words[0])?;
    let v = ty.get(area, pos)?;
    if a.json {
        let j = Json::Obj(vec![
            (
                "name",
                Json::Str(inspect::bare_name(&a.words[0])?.to_string()),
            ),
            ("pos", Json::Int(pos as i128)),
            ("type", Json::Str(ty.name().into())),
            ("value", Json::Int(v as i128)),
        ]);
        println!("{}", j.render());
    } else {
        println!("{v}");
    }
    Ok(())
}

fn cmd_set(a: Args) -> Res {
    a.want(4, 4)?;
    let pos = number(&a.words[1], "POS", a.verb)?;
    let ty = IntType::parse(&a.words[2], a.verb)?;
    let v = signed(&a.words[3], "VALUE", a.verb)?;
    ty.check(v, "VALUE", a.verb)?;
    let area = attach(&a.words[0])?;
    ty.set(area, pos, v)?;
    Ok(())
}

fn cmd_inc(a: Args) -> Res {
    a.want(3, 4)?;
    let pos = number(&a.words[1], "POS", a.verb)?;
    let ty = IntType::parse(&a.words[2], a.verb)?;
    let amount = match a.words.get(3) {
        Some(t) => signed(t, "AMOUNT", a.verb)?,
        None => 1,
    };
    ty.check(amount, "AMOUNT", a.verb)?;
    let area = attach(&a.words[0])?;
    println!("{}", ty.add(area, pos, amount)?);
    Ok(())
}

fn cmd_watch(a: Args) -> Res {
    a.want(1, 1)?;
    let area = attach(&a.words[0])?;
    if let Some(pos) = a.int64 {
        area.check(pos, 8)?;
    }
    let deadline = a
        .timeout
        .map(|t| Instant::now() + Duration::from_secs_f64(t));
    let mut seen = area.updates();
    let mut lines = 0u64;
    println!(
        "watching {} (updates {seen}); {}",
        inspect::bare_name(&a.words[0])?,
        match (a.count, a.timeout) {
            (Some(n), _) => format!("stopping after {n} updates"),
            (None, Some(t)) => format!("stopping after {t} s"),
            (None, None) => "Ctrl-C stops".to_string(),
        }
    );
    while a.count.is_none_or(|n| lines < n) {
        let left = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(l) if !l.is_zero() => Some(l),
                _ => break,
            },
            None => None,
        };
        match area.wait_since(seen, left) {
            Ok(()) => {}
            Err(e) if e.status == Status::TimedOut => break,
            Err(e) if e.status == Status::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        let now = area.updates();
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = format!(
            "{}.{:03} updates {now} (+{})",
            utc(at.as_secs() as i64).trim_end_matches(" UTC"),
            at.subsec_millis(),
            now.wrapping_sub(seen)
        );
        if let Some(pos) = a.int64 {
            line.push_str(&format!(" int64@{pos} {}", area.read_int::<i64>(pos)?));
        }
        println!("{line}");
        seen = now;
        lines += 1;
    }
    Ok(())
}

fn cmd_rm(a: Args) -> Res {
    a.want(1, 1)?;
    let x = inspect::named_area(&a.words[0])?;
    let attached = x.attached();
    if !attached.is_empty() && !a.force {
        return Err(Fail::Op(format!(
            "{} is attached by {} process{} (pid {}); they would keep using it after the removal. \
             Stop them first, or use --force",
            x.name,
            attached.len(),
            if attached.len() == 1 { "" } else { "es" },
            attached
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    inspect::unlink(&x.name)?;
    Ok(())
}

fn main() -> ExitCode {
    // SAFETY: restoring the default action for SIGPIPE before anything else runs:
    // `sharedarea dump NAME | head` then ends quietly, as other commands do.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(first) = argv.first() else {
        eprint!("{}", usage_all());
        return ExitCode::from(2);
    };
    match first.as_str() {
        "-h" | "--help" => {
            print!("{}", usage_all());
            return ExitCode::SUCCESS;
        }
        "help" => {
            match argv.get(1) {
                None => print!("{}", usage_all()),
                Some(v) => match usage_of(v) {
                    Some(u) => print!("{u}"),
                    None => {
                        eprintln!("sharedarea help: no verb {v:?}");
                        return ExitCode::from(2);
                    }
                },
            }
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let Some(&(verb, _, _)) = VERBS.iter().find(|(v, _, _)| v == first) else {
        eprintln!("sharedarea: unknown verb {first:?}\n");
        eprint!("{}", usage_all());
        return ExitCode::from(2);
    };
    let rest = &argv[1..];
    if rest.iter().any(|w| w == "--help" || w == "-h") {
        print!("{}", usage_of(verb).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let run = || -> Res {
        let a = Args::parse(verb, rest)?;
        match verb {
            "ls" => cmd_ls(a),
            "info" => cmd_info(a),
            "dump" => cmd_dump(a),
            "get" => cmd_get(a),
            "set" => cmd_set(a),
            "inc" => cmd_inc(a),
            "watch" => cmd_watch(a),
            _ => cmd_rm(a),
        }
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Op(msg)) => {
            eprintln!("sharedarea {verb}: {msg}");
            ExitCode::from(1)
        }
        Err(Fail::Usage(msg, v)) => {
            eprintln!("sharedarea {v}: {msg}\n");
            eprint!("{}", usage_of(v).unwrap_or_default());
            ExitCode::from(2)
        }
    }
}
