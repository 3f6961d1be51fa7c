//! uWSGI `--sharedarea` spec strings -> a typed description. No I/O happens here.
//!
//! Forms: `N` (N pages), or `key=value,key=value` with the keys `pages`, `size`,
//! `file`, `fd`, `offset`, `name` (ours) and `ptr` (refused: C callers use
//! `sharedarea_init_ptr`). A comma inside a value is written `\,` (as uWSGI allows).
//! Every mistake is an error naming the spec and the problem.

use crate::status::{Error, Result, Status};

/// How big the area is, as the spec said it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Not given: a file/fd area takes the file's length minus the offset; a named
    /// area attaches to an existing object of whatever size it has.
    Unspecified,
    Pages(u64),
    Bytes(u64),
}

/// Where the bytes live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Anonymous,
    File(String),
    Fd(i32),
    Named(String),
}

/// A parsed spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub source: Source,
    pub size: Size,
    pub offset: u64,
}

fn invalid(spec: &str, problem: impl std::fmt::Display) -> Error {
    Error::new(
        Status::InvalidSpec,
        format!("invalid spec \"{spec}\": {problem}"),
    )
}

/// Parses a number: decimal, `0x` hex, optionally followed by `K`, `M` or `G`
/// (powers of 1024). Returns `None` for anything else or on overflow.
pub fn parse_number(text: &str) -> Option<u64> {
    let (digits, multiplier) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&text[..text.len() - 1], 1u64 << 20),
        b'g' | b'G' => (&text[..text.len() - 1], 1u64 << 30),
        _ => (text, 1),
    };
    let value = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()?
    } else {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<u64>().ok()?
    };
    value.checked_mul(multiplier)
}

/// The keys uWSGI 2.0 knows (`name` is ours; uWSGI would ignore it).
const UWSGI_KEYS: [&str; 6] = ["pages", "size", "file", "fd", "offset", "ptr"];

/// How uWSGI 2.0 would read a keyval spec that it accepts and we refuse:
/// unknown keys ignored, the last of a repeated key wins, `pages=` wins over
/// `size=`, `offset=` without `file=`/`fd=` ignored. Returns that reading
/// written as a spec without those four leniencies (commas in values
/// escaped), or `None` when nothing would be left.
fn uwsgi_reading(items: &[(String, String)]) -> Option<String> {
    let mut last: Vec<(&str, &str)> = Vec::new();
    for (k, v) in items {
        if !UWSGI_KEYS.contains(&k.as_str()) && k != "name" {
            continue;
        }
        last.retain(|(lk, _)| lk != k);
        last.push((k, v));
    }
    let has = |key: &str| last.iter().any(|(k, _)| *k == key);
    let pages_win = last
        .iter()
        .any(|(k, v)| *k == "pages" && parse_number(v) != Some(0));
    let mapped = has("file") || has("fd");
    let kept: Vec<String> = last
        .iter()
        .filter(|(k, _)| match *k {
            "size" => !pages_win,
            "offset" => mapped,
            _ => true,
        })
        .map(|(k, v)| format!("{k}={}", v.replace(',', "\\,")))
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join(","))
    }
}

/// The end of the message for a spec uWSGI would have started with: what it
/// would have used, and how to write that here.
fn as_uwsgi_would(items: &[(String, String)], what_uwsgi_does: &str) -> String {
    match uwsgi_reading(items) {
        Some(reading) => format!(
            "{what_uwsgi_does}, and would read this spec as \"{reading}\": write that (or fix the spec if that is not what you meant)"
        ),
        None => format!("{what_uwsgi_does}, leaving nothing: write the size (pages= or size=)"),
    }
}

/// Splits `a=1,b=2\,3` into `[("a","1"), ("b","2,3")]`.
fn split_pairs(spec: &str) -> Result<Vec<(String, String)>> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(',') => current.push(','),
                Some(other) => {
                    current.push('\\');
                    current.push(other);
                }
                None => current.push('\\'),
            },
            ',' => items.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    items.push(current);
    items
        .into_iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ if item.is_empty() => Err(invalid(spec, "an empty item (stray comma?)")),
            _ => Err(invalid(spec, format!("\"{item}\" is not key=value"))),
        })
        .collect()
}

impl Spec {
    /// Parses a spec string: a page count, or key=value pairs.
    pub fn parse(spec: &str) -> Result<Spec> {
        if spec.is_empty() {
            return Err(invalid(spec, "it is empty"));
        }
        if spec.bytes().all(|b| b.is_ascii_digit()) {
            return Self::page_count(spec);
        }
        if !spec.contains('=') {
            return Err(invalid(
                spec,
                "expected a page count (digits only) or key=value pairs",
            ));
        }
        let items = split_pairs(spec)?;
        Keys::collect(spec, &items)?.into_spec(spec, &items)
    }

    /// The `N` form: N pages of anonymous memory.
    fn page_count(spec: &str) -> Result<Spec> {
        let pages = spec
            .parse::<u64>()
            .map_err(|_| invalid(spec, "the page count does not fit 64 bits"))?;
        if pages == 0 {
            return Err(invalid(spec, "an area needs at least 1 page"));
        }
        Ok(Spec {
            source: Source::Anonymous,
            size: Size::Pages(pages),
            offset: 0,
        })
    }
}

/// The keys of a key=value spec, each given at most once, each value checked
/// on its own; how they combine is [`Keys::into_spec`]'s to judge.
#[derive(Default)]
struct Keys {
    pages: Option<u64>,
    size: Option<u64>,
    offset: Option<u64>,
    file: Option<String>,
    fd: Option<i32>,
    name: Option<String>,
}

impl Keys {
    /// Takes the pairs in order; the first bad value, unknown key or repeated
    /// key is the error.
    fn collect(spec: &str, items: &[(String, String)]) -> Result<Keys> {
        let mut keys = Keys::default();
        for (key, value) in items {
            if keys.take(spec, items, key, value)? {
                return Err(invalid(
                    spec,
                    format!(
                        "the key \"{key}\" is given twice; {}",
                        as_uwsgi_would(items, "uWSGI takes the last one")
                    ),
                ));
            }
        }
        Ok(keys)
    }

    /// Records one pair; returns whether the key was already given.
    fn take(
        &mut self,
        spec: &str,
        items: &[(String, String)],
        key: &str,
        value: &str,
    ) -> Result<bool> {
        let number = |what: &str| -> Result<u64> {
            parse_number(value).ok_or_else(|| {
                invalid(
                    spec,
                    format!("{what}=\"{value}\" is not a number (decimal, 0x hex, K/M/G suffix)"),
                )
            })
        };
        Ok(match key {
            "pages" => self.pages.replace(number("pages")?).is_some(),
            "size" => self.size.replace(number("size")?).is_some(),
            "offset" => self.offset.replace(number("offset")?).is_some(),
            "fd" => {
                let n = number("fd")?;
                let n = i32::try_from(n)
                    .map_err(|_| invalid(spec, format!("fd={value} is not a descriptor")))?;
                self.fd.replace(n).is_some()
            }
            "file" => {
                if value.is_empty() {
                    return Err(invalid(spec, "file= needs a path"));
                }
                self.file.replace(value.to_string()).is_some()
            }
            "name" => {
                check_name(spec, value)?;
                self.name.replace(value.to_string()).is_some()
            }
            "ptr" => {
                return Err(invalid(
                    spec,
                    "ptr= cannot be given in a spec string (uWSGI ignores it and creates an \
                     anonymous area); C callers use sharedarea_init_ptr()",
                ))
            }
            other => {
                return Err(invalid(
                    spec,
                    format!(
                        "unknown key \"{other}\" (known: pages, size, file, fd, offset, name); {}",
                        as_uwsgi_would(items, "uWSGI ignores unknown keys")
                    ),
                ))
            }
        })
    }

    /// How the keys combine: one size (pages= or size=, not empty), one
    /// source, offset= only for file= and fd=, a size for anonymous memory.
    fn into_spec(self, spec: &str, items: &[(String, String)]) -> Result<Spec> {
        let size = match (self.pages, self.size) {
            (Some(0), _) => return Err(invalid(spec, "pages=0: an area cannot be empty")),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    spec,
                    format!(
                        "give pages= or size=, not both; {}",
                        as_uwsgi_would(items, "uWSGI takes pages= and ignores size=")
                    ),
                ))
            }
            (None, Some(0)) => return Err(invalid(spec, "size=0: an area cannot be empty")),
            (Some(p), None) => Size::Pages(p),
            (None, Some(b)) => Size::Bytes(b),
            (None, None) => Size::Unspecified,
        };
        let source = match (self.file, self.fd, self.name) {
            (None, None, None) => Source::Anonymous,
            (Some(f), None, None) => Source::File(f),
            (None, Some(d), None) => Source::Fd(d),
            (None, None, Some(n)) => Source::Named(n),
            _ => return Err(invalid(spec, "give only one of file=, fd= and name=")),
        };
        if self.offset.is_some() && !matches!(source, Source::File(_) | Source::Fd(_)) {
            return Err(invalid(
                spec,
                format!(
                    "offset= applies only to file= and fd= areas; {}",
                    as_uwsgi_would(items, "uWSGI ignores it here")
                ),
            ));
        }
        if matches!(source, Source::Anonymous) && size == Size::Unspecified {
            return Err(invalid(spec, "an anonymous area needs pages= or size="));
        }
        Ok(Spec {
            source,
            size,
            offset: self.offset.unwrap_or(0),
        })
    }
}

fn check_name(spec: &str, name: &str) -> Result<()> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() {
        return Err(invalid(spec, "name= needs a name"));
    }
    if bare.contains('/') || bare == "." || bare == ".." {
        return Err(invalid(
            spec,
            format!("name=\"{name}\" may not contain '/'"),
        ));
    }
    if bare.len() > 250 || bare.contains('\0') {
        return Err(invalid(
            spec,
            format!("name=\"{name}\" is too long or has a NUL"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number("4096"), Some(4096));
        assert_eq!(parse_number("0x1000"), Some(4096));
        assert_eq!(parse_number("4k"), Some(4096));
        assert_eq!(parse_number("2M"), Some(2 << 20));
        assert_eq!(parse_number("1G"), Some(1 << 30));
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_number("99999999999999999999"), None);
        assert_eq!(parse_number("17179869184G"), None);
    }

    #[test]
    fn forms() {
        assert_eq!(Spec::parse("4").unwrap().size, Size::Pages(4));
        let s = Spec::parse("file=/tmp/a\\,b,size=100,offset=4096").unwrap();
        assert_eq!(s.source, Source::File("/tmp/a,b".into()));
        assert_eq!(s.size, Size::Bytes(100));
        assert_eq!(s.offset, 4096);
        assert_eq!(
            Spec::parse("name=cam").unwrap().source,
            Source::Named("cam".into())
        );
    }

    #[test]
    fn errors_name_the_spec() {
        for bad in [
            "",
            "0",
            "abc",
            "pages=0",
            "size=0",
            "size=-1",
            "size=0x",
            "foo=1",
            "pages=1,pages=2",
            "pages=1,size=4096",
            "ptr=0x1234,size=4096",
            "size=4096,offset=4096",
            "file=a,fd=3",
            "pages = 2",
            "pages=1,",
            "name=a/b",
            "99999999999999999999999",
        ] {
            let e = Spec::parse(bad).unwrap_err();
            assert_eq!(e.status, Status::InvalidSpec, "{bad}");
            assert!(
                e.detail.contains(&format!("\"{bad}\"")),
                "{bad}: {}",
                e.detail
            );
        }
    }

    /// The four specs uWSGI starts with and we refuse: each message says what
    /// uWSGI would have done and gives the spec to write.
    #[test]
    fn lenient_uwsgi_specs_say_what_uwsgi_would_do() {
        for (bad, cause, uwsgi, reading) in [
            (
                "pages=2,size=100",
                "not both",
                "uWSGI takes pages=",
                "pages=2",
            ),
            (
                "size=100,pages=2",
                "not both",
                "uWSGI takes pages=",
                "pages=2",
            ),
            (
                "foo=1,pages=1",
                "unknown key \"foo\"",
                "uWSGI ignores unknown keys",
                "pages=1",
            ),
            (
                "pages=1,pages=2",
                "given twice",
                "uWSGI takes the last one",
                "pages=2",
            ),
            (
                "size=4096,offset=4096",
                "offset= applies only",
                "uWSGI ignores it",
                "size=4096",
            ),
            (
                "name=x,size=1,offset=0",
                "offset= applies only",
                "uWSGI ignores it",
                "name=x,size=1",
            ),
            (
                "file=/a\\,b,size=9,size=10",
                "given twice",
                "the last one",
                "file=/a\\,b,size=10",
            ),
        ] {
            let e = Spec::parse(bad).unwrap_err();
            assert_eq!(e.status, Status::InvalidSpec, "{bad}");
            for part in [cause, uwsgi, &format!("\"{reading}\"")] {
                assert!(
                    e.detail.contains(part),
                    "{bad}: {part:?} not in {}",
                    e.detail
                );
            }
            // what the message says to write is a spec we accept
            assert!(Spec::parse(reading).is_ok(), "{reading}");
        }
        let e = Spec::parse("foo=1").unwrap_err();
        assert!(e.detail.contains("leaving nothing"), "{}", e.detail);
        let e = Spec::parse("pages=0,size=100").unwrap_err();
        assert!(e.detail.contains("pages=0"), "{}", e.detail);
    }

    /// Garbage in: never a panic, and every error names the spec.
    #[test]
    fn random_garbage_never_panics() {
        let pieces = [
            "pages",
            "size",
            "file",
            "fd",
            "offset",
            "name",
            "ptr",
            "=",
            ",",
            "\\",
            "\\,",
            "0",
            "1",
            "4096",
            "0x",
            "0x1000",
            "k",
            "M",
            "G",
            "-",
            " ",
            "99999999999999999999",
            "/tmp/x",
            "\u{e9}",
            "\u{263a}",
            "",
            "abc",
            "\0",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..50_000 {
            let mut text = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            for k in 0..(seed % 8) {
                let i = ((seed >> (8 * (k % 8))) as usize) % pieces.len();
                text.push_str(pieces[i]);
            }
            if let Err(e) = Spec::parse(&text) {
                assert_eq!(e.status, Status::InvalidSpec, "{text:?}");
                assert!(
                    e.detail.contains(&format!("\"{text}\"")),
                    "{text:?}: {}",
                    e.detail
                );
            }
        }
    }
}
