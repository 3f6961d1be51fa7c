//! Status codes and their texts: the one place where error wording lives.
//!
//! A status crosses the C boundary as an `i32`: `0` is success, every failure is a
//! distinct negative number. Numbers are never reused; a retired one stays here as a
//! comment. A code coming *from* C is taken as an integer and mapped with
//! [`Status::from_code`], so a bad value never becomes an invalid enum.

use std::fmt;

/// The outcome of an operation, as the C ABI reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    /// The lock was taken after clearing a holder that had died (success).
    Recovered = 1,
    NoSuchArea = -1,
    OutOfRange = -2,
    InvalidSpec = -3,
    Io = -4,
    TimedOut = -5,
    LockMisuse = -6,
    Interrupted = -7,
    NullPointer = -8,
    InvalidArgument = -9,
    Panic = -10,
    Limit = -11,
    PeerClosed = -12,
    NotAnArea = -13,
    /// A WebSocket connection is unusable: a frame was cut off part-way (a send or
    /// pong failed in the middle), so no further frame can be framed on it.
    ConnectionFailed = -14,
}

impl Status {
    /// Every status, for tables and tests.
    pub const ALL: [Status; 16] = [
        Status::Ok,
        Status::Recovered,
        Status::NoSuchArea,
        Status::OutOfRange,
        Status::InvalidSpec,
        Status::Io,
        Status::TimedOut,
        Status::LockMisuse,
        Status::Interrupted,
        Status::NullPointer,
        Status::InvalidArgument,
        Status::Panic,
        Status::Limit,
        Status::PeerClosed,
        Status::NotAnArea,
        Status::ConnectionFailed,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| s.code() == code)
    }

    /// Static, NUL-terminated text for C (`sharedarea_strerror`).
    pub fn text_c(self) -> &'static [u8] {
        match self {
            Status::Ok => b"success\0",
            Status::Recovered => b"success, after recovering the lock from a holder that died\0",
            Status::NoSuchArea => b"no such area\0",
            Status::OutOfRange => b"position or length out of the area's range\0",
            Status::InvalidSpec => b"invalid area spec\0",
            Status::Io => b"operating system error\0",
            Status::TimedOut => b"timed out\0",
            Status::LockMisuse => b"lock misuse\0",
            Status::Interrupted => b"interrupted by a signal\0",
            Status::NullPointer => b"NULL pointer where one is required\0",
            Status::InvalidArgument => b"invalid argument\0",
            Status::Panic => b"internal error (a bug in sharedarea; please report it)\0",
            Status::Limit => b"limit reached (too many areas, or too many processes on one area)\0",
            Status::PeerClosed => b"the peer closed the connection\0",
            Status::NotAnArea => b"the object is not a usable area\0",
            Status::ConnectionFailed => b"the connection failed (a frame was cut off part-way)\0",
        }
    }

    pub fn text(self) -> &'static str {
        let t = self.text_c();
        std::str::from_utf8(&t[..t.len() - 1]).unwrap_or("?")
    }
}

/// A failure: a status plus the detail a person needs ("area 0: 16 bytes at 4090 run
/// past the end (4096 bytes)"). The C boundary prefixes the function's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub detail: String,
}

impl Error {
    pub fn new(status: Status, detail: impl Into<String>) -> Error {
        Error {
            status,
            detail: detail.into(),
        }
    }

    /// An error about one area: the detail starts with "area N: ".
    pub fn area(status: Status, id: i32, cause: impl fmt::Display) -> Error {
        Error::new(status, format!("area {id}: {cause}"))
    }

    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Error {
        Error::new(Status::Io, format!("{context}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
