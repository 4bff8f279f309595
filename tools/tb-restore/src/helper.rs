//! The second psql session of a whole-dump restore: its own reader of the
//! same file, its own psql, the COPY blocks [`crate::split`] gives it.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tb_shared::pg::Conn;
use tb_shared::signals;
use tb_shared::sqldump::{DumpKind, DumpScanner};

use crate::split::{Side, Sink, Split};

/// The gate (see [`crate::split`]): closed until the main session printed
/// the marker; shut for good when it cannot any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Waiting,
    Open,
    Shut,
}

/// What the main side and the helper share.
#[derive(Debug)]
pub(crate) struct Shared {
    gate: Mutex<Gate>,
    cv: Condvar,
    /// The main side wants the helper to stop (its psql is killed).
    abort: AtomicBool,
    /// The helper's psql, once running (0 before).
    pid: AtomicU32,
    /// The helper stopped for a reason of its own (its psql failed, it
    /// could not read): the main side stops too.
    failed: AtomicBool,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            gate: Mutex::new(Gate::Waiting),
            cv: Condvar::new(),
            abort: AtomicBool::new(false),
            pid: AtomicU32::new(0),
            failed: AtomicBool::new(false),
        }
    }

    fn set_gate(&self, to: Gate) {
        if let Ok(mut g) = self.gate.lock() {
            if *g == Gate::Waiting || to == Gate::Shut && *g != Gate::Open {
                *g = to;
            }
            self.cv.notify_all();
        }
    }

    /// The main session printed the marker.
    pub(crate) fn open_gate(&self) {
        self.set_gate(Gate::Open);
    }

    /// The main session ended (its output did) without printing it.
    pub(crate) fn shut_gate(&self) {
        self.set_gate(Gate::Shut);
    }
}

/// How the helper ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Its psql's exit, and what it printed on stderr.
    pub status: Option<ExitStatus>,
    pub stderr: String,
    /// Its state machine (where its psql's lines came from; the CRC of
    /// what it sent).
    pub split: Split,
    /// It did its whole part (and its psql then ended by itself).
    pub clean: bool,
    /// It was stopped (by the main side, a signal, or because it could not
    /// go on): its psql was killed, its exit says nothing.
    pub stopped: bool,
    /// Why it stopped early, when not by the main side.
    pub reason: Option<String>,
}

impl Outcome {
    /// Its part is loaded.
    pub(crate) fn ok(&self) -> bool {
        self.clean && self.status.is_some_and(|s| s.success())
    }

    /// Its psql failed by itself (an SQL error, the server gone).
    pub(crate) fn psql_failed(&self) -> bool {
        !self.stopped && self.status.is_some_and(|s| !s.success())
    }
}

/// A running helper. Dropped before it was joined, it is stopped.
#[derive(Debug)]
pub(crate) struct Helper {
    thread: Option<JoinHandle<Outcome>>,
    pub shared: Arc<Shared>,
}

impl Helper {
    /// Start reading `file` (a second handle on the file the main side
    /// reads: the same bytes, even if the path is replaced meanwhile) and
    /// feeding a psql of its own; `args`: psql's arguments.
    pub(crate) fn start(conn: &Conn, file: File, plain: bool, args: Vec<OsString>) -> Helper {
        let shared = Arc::new(Shared::new());
        let conn = conn.clone();
        let sh = shared.clone();
        let thread = std::thread::spawn(move || run(&conn, file, plain, args, &sh));
        Helper {
            thread: Some(thread),
            shared,
        }
    }

    /// Whether the helper failed by itself (cheap).
    pub(crate) fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Stop it: its psql is killed.
    pub(crate) fn abort(&self) {
        self.shared.abort.store(true, Ordering::SeqCst);
        self.shared.shut_gate();
        let pid = self.shared.pid.load(Ordering::SeqCst);
        if pid != 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Wait until it ended.
    pub(crate) fn join(mut self) -> Option<Outcome> {
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.abort();
            let _ = t.join();
        }
    }
}

/// Reads a file at its own offset (`pread`): a second reader of the same
/// open file.
struct At {
    file: File,
    pos: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

struct HelperSink<'a> {
    stdin: &'a mut std::process::ChildStdin,
    shared: &'a Shared,
}

impl Sink for HelperSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stdin.write_all(bytes)
    }

    fn gate(&mut self) -> io::Result<()> {
        let mut g = self
            .shared
            .gate
            .lock()
            .map_err(|_| io::Error::other("gate poisoned"))?;
        loop {
            match *g {
                Gate::Open => return Ok(()),
                Gate::Shut => return Err(io::Error::other("the main session ended first")),
                Gate::Waiting => {}
            }
            if self.shared.abort.load(Ordering::SeqCst) || signals::check().is_err() {
                return Err(io::Error::other("stopped"));
            }
            g = self
                .shared
                .cv
                .wait_timeout(g, Duration::from_millis(100))
                .map_err(|_| io::Error::other("gate poisoned"))?
                .0;
        }
    }

    fn barrier(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn run(conn: &Conn, file: File, plain: bool, args: Vec<OsString>, shared: &Shared) -> Outcome {
    let mut split = Split::new(Side::Helper, true);
    let ended = |split: Split,
                 status: Option<ExitStatus>,
                 stderr: String,
                 clean: bool,
                 stopped: bool,
                 reason: Option<String>| {
        let failed = !stopped && (!clean || status.is_some_and(|s| !s.success()));
        if failed {
            shared.failed.store(true, Ordering::SeqCst);
        }
        Outcome {
            status,
            stderr,
            split,
            clean,
            stopped,
            reason,
        }
    };
    let mut cmd = conn.command("psql", &args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let why = format!("cannot run {}: {e}", conn.describe("psql"));
            return ended(split, None, String::new(), false, false, Some(why));
        }
    };
    let _registered = signals::Child::register(child.id());
    shared.pid.store(child.id(), Ordering::SeqCst);
    let errs = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            while let Ok(n) = e.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if buf.len() < 64 << 10 {
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    });
    let Some(mut stdin) = child.stdin.take() else {
        let _ = child.kill();
        let status = child.wait().ok();
        return ended(
            split,
            status,
            String::new(),
            false,
            false,
            Some("psql has no stdin".into()),
        );
    };
    let _ = nix::fcntl::fcntl(&stdin, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
    let at = At { file, pos: 0 };
    let mut source: Box<dyn Read> = if plain {
        Box::new(at)
    } else {
        Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(256 << 10, at),
        ))
    };
    let mut scanner = DumpScanner::new(DumpKind::Database);
    let mut events = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut clean = false;
    let mut stopped = false;
    let mut reason = None;
    {
        let mut sink = HelperSink {
            stdin: &mut stdin,
            shared,
        };
        loop {
            if shared.abort.load(Ordering::SeqCst) || signals::check().is_err() {
                stopped = true;
                break;
            }
            let n = match source.read(&mut buf) {
                Ok(0) => {
                    clean = !scanner.in_copy_data();
                    if !clean {
                        reason = Some("the file ends inside COPY data".into());
                    }
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    reason = Some(format!("cannot read the file: {e}"));
                    break;
                }
            };
            let piece = &buf[..n];
            scanner.feed_lines(piece, &mut events);
            if scanner.has_meta_commands() {
                // The main side refuses the dump.
                stopped = true;
                break;
            }
            match split.feed(piece, &events, scanner.in_dropped_line(), &mut sink) {
                Ok(true) => {}
                Ok(false) => {
                    clean = true;
                    break;
                }
                Err(e) => {
                    if shared.abort.load(Ordering::SeqCst) || signals::check().is_err() {
                        stopped = true;
                    } else if e.kind() != io::ErrorKind::BrokenPipe {
                        // The gate shut: the main session ended first.
                        stopped = true;
                    }
                    // A broken pipe: its psql stopped; its stderr says why.
                    break;
                }
            }
        }
    }
    if !clean {
        // Never let psql reach the end of a cut stream: it would end the
        // COPY with what it has.
        let _ = child.kill();
    }
    drop(stdin);
    let status = child.wait().ok();
    shared.pid.store(0, Ordering::SeqCst);
    let stderr = errs.and_then(|t| t.join().ok()).unwrap_or_default();
    let stopped = stopped || shared.abort.load(Ordering::SeqCst);
    ended(split, status, stderr, clean, stopped, reason)
}
