//! Interruption: SIGINT, SIGTERM and SIGHUP end a run cleanly.
//!
//! A signal sets a flag that long loops poll with [`check`], and sends
//! SIGTERM to the child processes registered with [`Child`] (pg_dump, docker
//! exec), so a blocked read returns at once. The run then fails with
//! [`Cause::Interrupted`]; the temporary files are removed as the error
//! unwinds, and nothing is published. A run that does not notice within a
//! few seconds (blocked reading a stdin that stays silent) is ended by the
//! signal thread itself, after removing the temporary files it registered.
//! SIGKILL cannot be caught: the next run removes what it left (see
//! `atomic::remove_stale_temps`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::{Cause, Failure};

static SIGNAL: AtomicI32 = AtomicI32::new(0);
static CHILDREN: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static TEMPS: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());
static CONTAINERS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Remember a container this run stopped, to start it again if the run
/// must be ended from the signal thread.
pub fn track_container(cli: &str, name: &str) {
    if let Ok(mut c) = CONTAINERS.lock() {
        c.push((cli.to_string(), name.to_string()));
    }
}

/// Forget a container (started again).
pub fn untrack_container(name: &str) {
    if let Ok(mut c) = CONTAINERS.lock() {
        c.retain(|(_, n)| n != name);
    }
}

/// How long the run gets to clean up by itself after a signal.
const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Remember a temporary file (or a restore's temporary directory) to
/// remove if the run must be ended.
pub fn track_temp(path: &std::path::Path) {
    if let Ok(mut t) = TEMPS.lock() {
        t.push(path.to_path_buf());
    }
}

/// Forget a temporary file (published or removed).
pub fn untrack_temp(path: &std::path::Path) {
    if let Ok(mut t) = TEMPS.lock() {
        t.retain(|p| p != path);
    }
}

static CRITICAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Run `f` (publishing renames, their rollback) without the signal thread
/// ending the process in the middle of it.
pub fn critical<T>(f: impl FnOnce() -> T) -> T {
    CRITICAL.fetch_add(1, Ordering::SeqCst);
    let out = f();
    CRITICAL.fetch_sub(1, Ordering::SeqCst);
    out
}

/// Install the handlers (once per process; later calls do nothing). When a
/// run does not end within the grace period after a signal, the signal
/// thread removes the registered temporary files, writes the error and
/// summary records through [`crate::record::emergency_exit`] and ends the
/// process with the tool's failure code.
pub fn install(tool: &'static str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                SIGNAL.store(sig, Ordering::SeqCst);
                let pids = CHILDREN.lock().map(|c| c.clone()).unwrap_or_default();
                for pid in pids {
                    let pid = nix::unistd::Pid::from_raw(pid);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                    // A stopped child would keep SIGTERM pending forever.
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
                }
                std::thread::sleep(GRACE);
                // Never in the middle of publishing: wait for it (bounded).
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while CRITICAL.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                let temps = TEMPS.lock().map(|t| t.clone()).unwrap_or_default();
                for t in temps {
                    // A restore's temporary directory, or a temporary file.
                    if std::fs::symlink_metadata(&t).is_ok_and(|m| m.is_dir()) {
                        crate::extract::make_writable(&t);
                        let _ = std::fs::remove_dir_all(&t);
                    } else {
                        let _ = std::fs::remove_file(&t);
                    }
                }
                // Containers stopped for the backup run again, whatever happens.
                let containers = CONTAINERS.lock().map(|c| c.clone()).unwrap_or_default();
                for (cli, name) in containers.iter().rev() {
                    let _ = std::process::Command::new(cli)
                        .args(["start", name])
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .status();
                }
                let message = format!(
                    "interrupted by {} and did not stop within {} s; nothing was published",
                    signal_name(sig),
                    GRACE.as_secs()
                );
                crate::record::emergency_exit(tool, &message);
            }
        });
    });
}

/// The signal received, if any.
pub fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Fail with [`Cause::Interrupted`] if a signal arrived.
pub fn check() -> anyhow::Result<()> {
    match received() {
        None => Ok(()),
        Some(sig) => Err(Failure::new(
            Cause::Interrupted,
            format!("interrupted by {}", signal_name(sig)),
        )
        .into()),
    }
}

/// The name of a signal number (`SIGTERM`), or `signal N`.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// Read from `fd` (a pipe or terminal, usually stdin) without blocking
/// past a signal: waits in slices of 200 ms and fails with
/// [`Cause::Interrupted`] once a signal has arrived.
pub fn read_interruptible(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
) -> anyhow::Result<usize> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        check()?;
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(std::io::Error::from(e).into()),
        }
        match nix::unistd::read(fd, buf) {
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(std::io::Error::from(e).into()),
        }
    }
}

/// A registered child: gets SIGTERM when we are interrupted. Unregisters
/// on drop.
#[derive(Debug)]
pub struct Child(i32);

impl Child {
    /// Register `pid`.
    pub fn register(pid: u32) -> Child {
        let pid = pid as i32;
        if let Ok(mut c) = CHILDREN.lock() {
            c.push(pid);
        }
        Child(pid)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(mut c) = CHILDREN.lock() {
            c.retain(|p| *p != self.0);
        }
    }
}
