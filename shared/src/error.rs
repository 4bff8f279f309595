//! Error causes: a small, stable vocabulary for the `cause` field of error
//! records, so scripts and alerts can branch on why a run failed.
//!
//! Rules (after rustic_core's "error handling rules"): the outer context
//! says what we were doing and to which file; the innermost error says why
//! and, when we know it, what to do next. Messages start in lowercase and
//! have no trailing period. A failure with a known cause is a [`Failure`]
//! somewhere in the `anyhow` chain; `cli::run_tool` finds it.

use std::fmt;
use std::io;

/// Why a run failed, as a snake_case word in the `cause` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The server rejected the password.
    WrongPassword,
    /// The server wants a password and none was given.
    NoPassword,
    /// The database does not exist.
    NoDatabase,
    /// The role (user) does not exist.
    NoRole,
    /// Nothing answers at the server address.
    ServerDown,
    /// pg_dump is older than the server.
    VersionMismatch,
    /// The database refused access (privileges).
    PermissionDenied,
    /// No space left on the destination filesystem.
    DiskFull,
    /// The destination cannot be written.
    NotWritable,
    /// The producer was killed by a signal.
    Killed,
    /// This tool was interrupted (SIGINT, SIGTERM, SIGHUP).
    Interrupted,
    /// The dump stream ended without its completion trailer.
    Incomplete,
    /// Input that is not what was promised (not gzip, not a dump, bad record).
    BadInput,
    /// A file, container or program does not exist.
    NotFound,
    /// The destination already exists; we never overwrite.
    Exists,
    /// Another run holds the lock.
    Busy,
    /// A table stayed locked by another session past `--lock-wait-timeout`.
    LockTimeout,
    /// A running database's files would be archived as if consistent.
    LiveDatabase,
    /// The Docker engine failed or is unreachable.
    Docker,
    /// A backup is damaged (gzip CRC, truncation, a tar error, contents
    /// that differ from the index or the manifest).
    Damaged,
    /// The restore target holds files (and `--force` was not given).
    NotEmpty,
    /// The archive holds entries that would reach outside the target.
    UnsafeArchive,
    /// A running container uses the volume to restore into.
    InUse,
    /// Anything else.
    Other,
}

impl Cause {
    /// The snake_case word.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::WrongPassword => "wrong_password",
            Cause::NoPassword => "no_password",
            Cause::NoDatabase => "no_database",
            Cause::NoRole => "no_role",
            Cause::ServerDown => "server_down",
            Cause::VersionMismatch => "version_mismatch",
            Cause::PermissionDenied => "permission_denied",
            Cause::DiskFull => "disk_full",
            Cause::NotWritable => "not_writable",
            Cause::Killed => "killed",
            Cause::Interrupted => "interrupted",
            Cause::Incomplete => "incomplete",
            Cause::BadInput => "bad_input",
            Cause::NotFound => "not_found",
            Cause::Exists => "exists",
            Cause::Busy => "busy",
            Cause::LockTimeout => "lock_timeout",
            Cause::LiveDatabase => "live_database",
            Cause::Docker => "docker",
            Cause::Damaged => "damaged",
            Cause::NotEmpty => "not_empty",
            Cause::UnsafeArchive => "unsafe_archive",
            Cause::InUse => "in_use",
            Cause::Other => "other",
        }
    }
}

/// An error with a known cause. Its message is the plain-words reason,
/// ideally with the way forward.
#[derive(Debug)]
pub struct Failure {
    /// Why.
    pub cause: Cause,
    /// What happened, in plain words.
    pub message: String,
}

impl Failure {
    /// A new failure; use with `anyhow::Error::from` or `bail!(Failure::new(..))`.
    pub fn new(cause: Cause, message: impl Into<String>) -> Failure {
        Failure {
            cause,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The cause of an error chain: the first [`Failure`], else what an
/// `io::Error` in the chain says (ENOSPC is a full disk, EACCES/EROFS an
/// unwritable destination), else [`Cause::Other`].
pub fn cause_of(err: &anyhow::Error) -> Cause {
    if let Some(f) = err.downcast_ref::<Failure>() {
        return f.cause;
    }
    for e in err.chain() {
        if let Some(f) = e.downcast_ref::<Failure>() {
            return f.cause;
        }
    }
    for e in err.chain() {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(c) = io_cause(io)
        {
            return c;
        }
    }
    Cause::Other
}

/// The cause an I/O error stands for, when it is one we name.
pub fn io_cause(e: &io::Error) -> Option<Cause> {
    match e.raw_os_error() {
        Some(libc_enospc)
            if libc_enospc == nix::libc::ENOSPC || libc_enospc == nix::libc::EDQUOT =>
        {
            Some(Cause::DiskFull)
        }
        Some(code)
            if code == nix::libc::EACCES
                || code == nix::libc::EROFS
                || code == nix::libc::EPERM =>
        {
            Some(Cause::NotWritable)
        }
        _ => match e.kind() {
            io::ErrorKind::NotFound => Some(Cause::NotFound),
            io::ErrorKind::AlreadyExists => Some(Cause::Exists),
            _ => None,
        },
    }
}

/// An error creating something in directory `dir`, in plain words: an
/// unwritable destination or a full disk get their cause and the way out.
pub fn create_error(e: io::Error, dir: &std::path::Path, what: &str) -> anyhow::Error {
    let dir = dir.display();
    match io_cause(&e) {
        Some(Cause::NotWritable) => anyhow::Error::new(Failure::new(
            Cause::NotWritable,
            format!(
                "destination '{dir}' is not writable ({e}): fix its permissions or mount, or choose another directory"
            ),
        )),
        Some(Cause::DiskFull) => anyhow::Error::new(Failure::new(
            Cause::DiskFull,
            format!("disk full: cannot create {what} in '{dir}' ({e})"),
        )),
        // Anything else (a missing parent in /proc, a file where a directory
        // should be, a dangling symlink) also means: cannot write there.
        _ => anyhow::Error::new(Failure::new(
            Cause::NotWritable,
            format!(
                "cannot create {what} in '{dir}' ({e}): check the path, or choose another directory"
            ),
        )),
    }
}

/// A write error on `path`, in plain words: a full disk names the
/// directory and the file.
pub fn write_error(e: io::Error, path: &std::path::Path) -> anyhow::Error {
    let dir = crate::atomic::parent_of(path);
    match io_cause(&e) {
        Some(Cause::DiskFull) => Failure::new(
            Cause::DiskFull,
            format!(
                "disk full: no space left in '{}' while writing {}; free space there or choose another directory",
                dir.display(),
                crate::record::display_bytes(path.file_name().unwrap_or_default().as_encoded_bytes())
            ),
        )
        .into(),
        _ => anyhow::Error::new(e).context(format!("cannot write into '{}'", dir.display())),
    }
}

/// Is this error (anywhere in its chain) a broken pipe?
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn failure_cause_wins_over_io() {
        let err = anyhow::Error::new(io::Error::from_raw_os_error(nix::libc::ENOSPC))
            .context(Failure::new(Cause::Killed, "killed"));
        assert_eq!(cause_of(&err), Cause::Killed);
    }

    #[test]
    fn enospc_is_disk_full_and_eacces_not_writable() {
        let full: anyhow::Result<()> =
            Err(io::Error::from_raw_os_error(nix::libc::ENOSPC)).context("cannot write '/x'");
        assert_eq!(cause_of(&full.unwrap_err()), Cause::DiskFull);
        let denied: anyhow::Result<()> =
            Err(io::Error::from_raw_os_error(nix::libc::EACCES)).context("cannot create '/x'");
        assert_eq!(cause_of(&denied.unwrap_err()), Cause::NotWritable);
        assert_eq!(cause_of(&anyhow::anyhow!("plain")), Cause::Other);
    }

    #[test]
    fn broken_pipe_is_found_in_the_chain() {
        let e: anyhow::Result<()> =
            Err(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing records");
        assert!(is_broken_pipe(&e.unwrap_err()));
        assert!(!is_broken_pipe(&anyhow::anyhow!("x")));
    }
}
