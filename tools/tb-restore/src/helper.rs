//! The psql sessions of a whole-dump restore ([`Session`]), and the second
//! one that loads data ([`Helper`]): its own reader of the same file, its
//! own psql, the COPY blocks [`crate::split`] gives it.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use anyhow::{Context, Result};

use tb_shared::pg::Conn;
use tb_shared::signals;
use tb_shared::sqldump::{DumpKind, DumpScanner};

use crate::split::{Side, Sink, Split};

/// One psql that reads SQL on stdin: its stderr collected (the first 64
/// KiB), its stdout read and dropped, but for the line that says it is
/// connected (`ready`), or, for the first session of a split load, the
/// line its gate query prints ([`Session::gate_query`]).
pub(crate) struct Session {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    errs: Option<JoinHandle<String>>,
    ready: Option<mpsc::Receiver<bool>>,
    gate: Option<(String, JoinHandle<Option<Vec<u8>>>)>,
    _registered: signals::Child,
}

/// A key nobody else can print.
fn marker(what: &str) -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("tb-{what}-{hex}")
}

/// What a [`Session`]'s stdout is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Out {
    /// Nothing.
    Dropped,
    /// The marker it prints first, once connected.
    Ready,
    /// The line its gate query prints (up to 1 MiB of it).
    Gate,
}

/// The most bytes of the gate query's line kept.
const GATE_LINE: usize = 1 << 20;

impl Session {
    /// Start psql with `args` (which end with `-f -`); with [`Out::Ready`],
    /// it first prints a marker, so that [`Session::wait_ready`] can tell it
    /// is connected.
    pub(crate) fn start(conn: &Conn, args: &[OsString], out: Out) -> io::Result<Session> {
        let key = marker(if out == Out::Gate { "gate" } else { "ready" });
        let mut all: Vec<OsString> = Vec::new();
        if out != Out::Dropped {
            all.extend(["-A".into(), "-t".into()]);
        }
        if out == Out::Ready {
            all.push("-c".into());
            all.push(format!("SELECT '{key}'").into());
        }
        all.extend(args.iter().cloned());
        let mut cmd = conn.command("psql", &all);
        cmd.stdin(Stdio::piped())
            .stdout(if out == Out::Dropped {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let registered = signals::Child::register(child.id());
        let errs = child.stderr.take().map(tb_shared::pg::collect_stderr);
        let (mut ready, mut gate) = (None, None);
        if let Some(stdout) = child.stdout.take() {
            if out == Out::Ready {
                ready = Some(read_ready(stdout, key));
            } else {
                let k = key.clone();
                gate = Some((key, std::thread::spawn(move || read_gate(stdout, &k))));
            }
        }
        let stdin = child.stdin.take();
        if let Some(s) = &stdin {
            // A pipe of 64 KiB (the default) holds about a millisecond of
            // psql's work; 1 MiB always has the next piece. Only speed.
            let _ = nix::fcntl::fcntl(s, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
        }
        Ok(Session {
            child,
            stdin,
            errs,
            ready,
            gate,
            _registered: registered,
        })
    }

    /// The query that ends the first session of a split load, once
    /// everything before the data was written: it prints the key, then (as
    /// JSON) the settings the session made (its session user and role,
    /// which `pg_settings` does not show, first: a session authorization
    /// resets the role; then `pg_settings` of source `session`, as the
    /// server has them, whatever the dump's text looked like), its
    /// temporary objects, and whether a transaction is open. A
    /// dump whose text psql read otherwise than the scanner (a string or
    /// comment left open) swallows it: no line.
    pub(crate) fn gate_query(&self) -> Option<String> {
        let (key, _) = self.gate.as_ref()?;
        Some(format!(
            "\nSELECT '{key}' || pg_catalog.json_build_object(\
             'settings', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_array(x.n, x.v) ORDER BY x.o, x.n), '[]') FROM (\
             SELECT 0 AS o, 'session_authorization' AS n, session_user::text AS v \
             UNION ALL SELECT 1, 'role', CASE WHEN current_user = session_user THEN 'none' ELSE current_user::text END \
             UNION ALL SELECT 2, s.name, s.setting FROM pg_catalog.pg_settings s \
             WHERE s.source = 'session' AND s.name NOT IN ('role', 'session_authorization')) x), \
             'temp', (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c WHERE c.relnamespace = pg_catalog.pg_my_temp_schema()), \
             'xact', pg_catalog.txid_current_if_assigned() IS NOT NULL)::text;\n"
        ))
    }

    /// After [`Session::finish`]: what the gate query printed after its
    /// key, if it did.
    pub(crate) fn gate_line(&mut self) -> Option<Vec<u8>> {
        let (_, reader) = self.gate.take()?;
        reader.join().ok().flatten()
    }

    /// Whether psql connected (it printed the marker) rather than ended.
    pub(crate) fn wait_ready(&mut self) -> bool {
        self.ready
            .take()
            .and_then(|r| r.recv().ok())
            .unwrap_or(false)
    }

    /// Close stdin (killing psql first when `kill`) and wait: its exit and
    /// stderr.
    pub(crate) fn finish(&mut self, kill: bool) -> Result<(ExitStatus, String)> {
        if kill {
            let _ = self.child.kill();
        }
        drop(self.stdin.take());
        let status = self.child.wait().context("cannot wait for psql")?;
        let said = self
            .errs
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        Ok((status, said))
    }
}

/// Call `line` with each line psql prints (its first `cap` bytes, and its
/// length), to the end of its stdout: what is not kept is dropped as it
/// comes.
fn each_line(mut out: impl Read, cap: usize, mut line: impl FnMut(&[u8], usize)) {
    let (mut head, mut len) = (Vec::new(), 0usize);
    let mut chunk = [0u8; 8192];
    while let Ok(n) = out.read(&mut chunk) {
        if n == 0 {
            break;
        }
        for &b in &chunk[..n] {
            if b == b'\n' {
                line(&head, len);
                head.clear();
                len = 0;
            } else {
                if head.len() < cap {
                    head.push(b);
                }
                len += 1;
            }
        }
    }
}

/// Read psql's stdout until the line that is `key`: `true` sent then, or
/// `false` when it ends without one.
fn read_ready(out: impl Read + Send + 'static, key: String) -> mpsc::Receiver<bool> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut told = false;
        each_line(out, 64, |line, len| {
            if !told && len == key.len() && line == key.as_bytes() {
                told = true;
                let _ = tx.send(true);
            }
        });
        if !told {
            let _ = tx.send(false);
        }
    });
    rx
}

/// Read psql's stdout to its end: what follows `key` on the last line that
/// begins with it (up to [`GATE_LINE`] bytes), if one does.
fn read_gate(out: impl Read, key: &str) -> Option<Vec<u8>> {
    let mut found = None;
    each_line(out, GATE_LINE + key.len(), |line, len| {
        if let Some(rest) = line.strip_prefix(key.as_bytes())
            && len == line.len()
        {
            found = Some(rest.to_vec());
        }
    });
    found
}

/// What the main side and the helper share.
#[derive(Debug, Default)]
struct Shared {
    /// The main side wants the helper to stop (its psql is killed).
    abort: AtomicBool,
    /// The helper's psql, once running (0 before).
    pid: AtomicU32,
    /// The helper stopped for a reason of its own (its psql failed, it
    /// could not read): the main side stops too.
    failed: AtomicBool,
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
    shared: Arc<Shared>,
}

impl Helper {
    /// Start psql (`args`) and, once it is connected, read `file` (a second
    /// handle on the file the main side reads: the same bytes, even if the
    /// path is replaced meanwhile) into it. `Err`: it could not connect
    /// (what psql said), and it is gone.
    pub(crate) fn start(
        conn: &Conn,
        file: File,
        plain: bool,
        args: Vec<OsString>,
    ) -> std::result::Result<Helper, String> {
        let shared = Arc::new(Shared::default());
        let conn = conn.clone();
        let sh = shared.clone();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || run(&conn, file, plain, &args, &sh, &tx));
        let helper = Helper {
            thread: Some(thread),
            shared,
        };
        match rx.recv() {
            Ok(Ok(())) => Ok(helper),
            Ok(Err(why)) => {
                let _ = helper.join();
                Err(why)
            }
            Err(_) => {
                let out = helper.join();
                Err(out
                    .and_then(|o| o.reason)
                    .unwrap_or_else(|| "it ended".into()))
            }
        }
    }

    /// Whether the helper failed by itself (cheap).
    pub(crate) fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Stop it: its psql is killed.
    pub(crate) fn abort(&self) {
        self.shared.abort.store(true, Ordering::SeqCst);
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
    stdin: &'a mut ChildStdin,
}

impl Sink for HelperSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stdin.write_all(bytes)
    }

    /// The helper starts only once the first session has ended.
    fn gate(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    fn barrier(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn run(
    conn: &Conn,
    file: File,
    plain: bool,
    args: &[OsString],
    shared: &Shared,
    connected: &mpsc::Sender<std::result::Result<(), String>>,
) -> Outcome {
    let mut split = Split::new(Side::Helper, true);
    let mut session = match Session::start(conn, args, Out::Ready) {
        Ok(s) => s,
        Err(e) => {
            let why = format!("cannot run {}: {e}", conn.describe("psql"));
            let _ = connected.send(Err(why.clone()));
            return Outcome {
                status: None,
                stderr: String::new(),
                split,
                clean: false,
                stopped: true,
                reason: Some(why),
            };
        }
    };
    shared.pid.store(session.child.id(), Ordering::SeqCst);
    if !session.wait_ready() {
        let (status, said) = match session.finish(true) {
            Ok((st, said)) => (Some(st), said),
            Err(_) => (None, String::new()),
        };
        shared.pid.store(0, Ordering::SeqCst);
        let why = said
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("psql ended before it was connected")
            .trim()
            .to_string();
        let _ = connected.send(Err(why.clone()));
        return Outcome {
            status,
            stderr: said,
            split,
            clean: false,
            stopped: true,
            reason: Some(why),
        };
    }
    let _ = connected.send(Ok(()));
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
    if let Some(stdin) = session.stdin.as_mut() {
        let mut sink = HelperSink { stdin };
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
                Err(_) => {
                    // Its psql stopped reading: its stderr says why (or it
                    // was stopped).
                    stopped = shared.abort.load(Ordering::SeqCst) || signals::check().is_err();
                    break;
                }
            }
        }
    }
    // Never let psql reach the end of a cut stream: it would end the COPY
    // with what it has.
    let finished = session.finish(!clean);
    shared.pid.store(0, Ordering::SeqCst);
    let (status, stderr) = match finished {
        Ok((st, said)) => (Some(st), said),
        Err(_) => (None, String::new()),
    };
    let stopped = stopped || shared.abort.load(Ordering::SeqCst);
    if !stopped && (!clean || status.is_some_and(|s| !s.success())) {
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
}
