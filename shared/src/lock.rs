//! One run at a time per backup directory (design.md, contract 4).
//!
//! The lock is an `flock` on `DIR/.tb.lock`. The kernel drops it when the
//! process dies, however it dies, so it can never go stale, and the file is
//! never deleted (deleting a lock file others wait on breaks mutual
//! exclusion). The holder writes its pid into the file only so that a
//! second run can say who holds it. The descriptor is close-on-exec, so a
//! child such as pg_dump never keeps it alive.
//!
//! The lock is per directory a tool writes into, not per whole backup
//! root: the weekly volume archive and the daily dump write to different
//! directories and must not block each other; two runs writing the same
//! directory (or `tb-prune` deleting in it) are serialised.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::error::{Cause, Failure};
use crate::naming::LOCK_NAME;

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Take the lock of `dir`, waiting up to `wait` for another run to finish.
/// A busy lock is a [`Failure`] with [`Cause::Busy`] (exit 75).
pub fn acquire(dir: &Path, wait: Duration) -> Result<DirLock> {
    let path = dir.join(LOCK_NAME);
    // O_NOFOLLOW: a symlink planted as the lock file must not make us
    // write our pid into its target.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                Failure::new(
                    Cause::NotWritable,
                    format!("the lock file '{}' is a symlink; remove it", path.display()),
                )
                .into()
            } else {
                crate::error::create_error(e, dir, "the lock file")
            }
        })?;
    if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Err(Failure::new(
            Cause::NotWritable,
            format!(
                "the lock file '{}' is not a regular file; remove it",
                path.display()
            ),
        )
        .into());
    }
    let deadline = Instant::now().checked_add(wait);
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                crate::signals::check()?;
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    let mut holder = String::new();
                    let _ = (&mut file).take(64).read_to_string(&mut holder);
                    let holder = holder.trim();
                    let who = if holder.is_empty() || !holder.bytes().all(|b| b.is_ascii_digit()) {
                        "another run".to_string()
                    } else {
                        format!("pid {holder}")
                    };
                    return Err(Failure::new(
                        Cause::Busy,
                        format!(
                            "'{}' is locked by {who}; wait for that run to finish, or retry with --wait SECONDS",
                            dir.display()
                        ),
                    )
                    .into());
                }
                let left = deadline.map(|d| d - now).unwrap_or(Duration::MAX);
                thread::sleep(Duration::from_millis(100).min(left));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock '{}'", path.display()));
            }
        }
    }
    // Only informative, so failures to record the pid are ignored.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(DirLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_busy_and_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let held = acquire(d.path(), Duration::ZERO).unwrap();
        let err = acquire(d.path(), Duration::from_millis(150)).unwrap_err();
        assert_eq!(crate::error::cause_of(&err), Cause::Busy);
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        acquire(d.path(), Duration::ZERO).unwrap();
    }

    #[test]
    fn waiting_run_gets_the_lock_when_it_is_released() {
        let d = tempfile::tempdir().unwrap();
        let held = acquire(d.path(), Duration::ZERO).unwrap();
        let dir = d.path().to_path_buf();
        let waiter = thread::spawn(move || acquire(&dir, Duration::from_secs(10)).map(|_| ()));
        thread::sleep(Duration::from_millis(300));
        drop(held);
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn a_symlinked_lock_file_is_refused_and_its_target_untouched() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"IMPORTANT DATA").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join(LOCK_NAME)).unwrap();
        let err = acquire(d.path(), Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"IMPORTANT DATA");
    }

    #[test]
    fn a_fifo_lock_file_is_refused_without_hanging() {
        let d = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(
            &d.path().join(LOCK_NAME),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let err = acquire(d.path(), Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn an_endless_wait_does_not_overflow() {
        let d = tempfile::tempdir().unwrap();
        acquire(d.path(), Duration::MAX).unwrap();
    }

    #[test]
    fn lock_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let l = acquire(d.path(), Duration::ZERO).unwrap();
        assert_eq!(
            std::fs::metadata(l.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
