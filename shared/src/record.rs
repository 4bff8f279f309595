//! Records: the JSON-lines protocol every tool speaks (design.md, contract 1).
//!
//! # Wire format
//!
//! One JSON object per line, UTF-8, `\n`-terminated, written whole. Every
//! record has these keys first:
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `event` | string | what happened (below) |
//! | `tool` | string | `tb-dump`, `tb-check`, … |
//! | `time` | string | RFC 3339 local time with offset, milliseconds |
//!
//! then event-specific keys. Keys are snake_case and carry their unit
//! (`bytes`, `raw_bytes`, `duration_ms`). Keys are added over time, never
//! renamed or removed, so consumers must ignore keys they do not know.
//!
//! | event | written when | main keys |
//! |---|---|---|
//! | `written` | a file (or a chain point directory) was published | `kind`, `path`, `bytes`, `sha256`, and per kind: `raw_bytes`, `tables`, `rows`, `entries`, `stored`, `added`, `changed`, `deleted`, `parent`, `duration_ms` |
//! | `removed` | a stale temporary file of ours was deleted | `path`, `reason` |
//! | `verified` | a file was checked | `path`, `kind`, `verdict` (`good`/`damaged`/`unreadable`), `reason`, `bytes`, `raw_bytes`, `sha256`, `manifest` |
//! | `chain` | a chain was verified (tb-check) | `path`, `points`, `restorable_points`, `unrestorable_points`, `restorable_from`, `restorable_to` |
//! | `point` | a chain point and whether it can be restored (tb-restore) | `kind`, `path`, `point`, `point_time`, `restorable`, `parent`, `chain`, `reason` |
//! | `applied` | a chain point was applied to a restore (tb-restore) | `kind`, `path`, `point`, `entries`, `deleted`, `bytes` |
//! | `restored` | a restore is in place (tb-restore) | `kind` (`volume`, `chain`), `path`, `target`, counts |
//! | `warning` | something deserves a look; the run goes on | `message`, often `path` |
//! | `error` | the run failed | `cause` (see [`crate::error::Cause`]), `message` |
//! | `summary` | always last | `status`, `exit_code`, `duration_ms`, `warnings`, `errors`, `max_rss_bytes`, tool-specific counts |
//!
//! Records go to stdout, or to stderr when stdout carries the backup bytes
//! (`-o -`). `--log FILE` appends the same lines to FILE (created 0600);
//! each line is written with one `write` under an exclusive `flock`, so
//! lines of tools writing at once never interleave.
//!
//! Human-readable warnings and errors go to stderr as one line each:
//! `tb-dump: error: …`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::cause_of;
use crate::exit::Outcome;

/// One record under construction: an event name and its fields, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    event: String,
    fields: Map<String, Value>,
}

impl Record {
    /// A record of `event` with no fields yet.
    pub fn new(event: &str) -> Record {
        Record {
            event: event.to_string(),
            fields: Map::new(),
        }
    }

    /// Add (or replace) a field.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Record {
        self.set(key, value);
        self
    }

    /// Add (or replace) a field in place.
    pub fn set(&mut self, key: &str, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or(Value::Null);
        self.fields.insert(key.to_string(), v);
    }

    /// Add a `path` field (see [`path_value`]).
    pub fn path(self, path: &Path) -> Record {
        self.with("path", path_value(path))
    }

    /// The event name.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// A field, if set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }
}

/// A path as a JSON string. Paths that are not UTF-8 are shown with each
/// invalid byte as `\xNN` (the same escape as `ls --quoting-style=escape`
/// shows, readable by people; tools that need raw names read the manifest).
pub fn path_value(path: &Path) -> Value {
    Value::String(display_bytes(path.as_os_str().as_encoded_bytes()))
}

/// Bytes as text: valid UTF-8 as is, every other byte as `\xNN`.
pub fn display_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Where records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Standard output (the default).
    Stdout,
    /// Standard error (when stdout carries bytes).
    Stderr,
    /// Nowhere: for in-process use by other tools and tests. Records are
    /// still kept in memory (see [`Reporter::records`]).
    Memory,
}

/// Writes records and human lines, counts warnings and errors, and writes
/// the summary. One per run.
pub struct Reporter {
    tool: &'static str,
    sink: Sink,
    log: Option<(PathBuf, File)>,
    started: Instant,
    warnings: u64,
    errors: u64,
    sink_broken: bool,
    log_failed: bool,
    summary: Map<String, Value>,
    kept: Vec<Value>,
    /// The records that are not OK (errors, warnings, damaged verdicts,
    /// failed checks), the first 1000: what `--alert-cmd` hears.
    alerts: Vec<Value>,
}

impl Reporter {
    /// A reporter for `tool` writing to `sink`.
    pub fn new(tool: &'static str, sink: Sink) -> Reporter {
        Reporter {
            tool,
            sink,
            log: None,
            started: Instant::now(),
            warnings: 0,
            errors: 0,
            sink_broken: false,
            log_failed: false,
            summary: Map::new(),
            kept: Vec::new(),
            alerts: Vec::new(),
        }
    }

    /// A reporter that prints nothing and keeps the records in memory.
    pub fn quiet(tool: &'static str) -> Reporter {
        Reporter::new(tool, Sink::Memory)
    }

    /// Also append every record to `path` (created 0600 if missing). A log
    /// that cannot be opened is a warning, not a failure: the backup matters
    /// more than its log line.
    pub fn open_log(&mut self, path: &Path) {
        // O_NONBLOCK so that a FIFO without a reader fails at once instead
        // of hanging the run; cleared again for the writes.
        let opened = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)
            .and_then(|f| {
                use nix::fcntl::{FcntlArg, OFlag, fcntl};
                fcntl(&f, FcntlArg::F_SETFL(OFlag::O_APPEND)).map_err(io::Error::from)?;
                Ok(f)
            });
        match opened {
            Ok(f) => self.log = Some((path.to_path_buf(), f)),
            Err(e) => {
                let msg = format!(
                    "cannot open log '{}': {e}; records go to stdout only",
                    path.display()
                );
                self.warn(&msg, Record::new("warning"));
            }
        }
    }

    /// The tool name.
    pub fn tool(&self) -> &'static str {
        self.tool
    }

    /// Warnings so far (including log failures).
    pub fn warnings(&self) -> u64 {
        self.warnings
    }

    /// Records emitted so far, when the sink is [`Sink::Memory`].
    pub fn records(&self) -> &[Value] {
        &self.kept
    }

    /// 0 or 1: `Outcome::WARNINGS` when any warning was emitted.
    pub fn outcome(&self) -> Outcome {
        if self.warnings > 0 {
            Outcome::WARNINGS
        } else {
            Outcome::OK
        }
    }

    /// The records that are not OK, in order (see [`is_alert`]).
    pub fn alerts(&self) -> &[Value] {
        &self.alerts
    }

    /// Emit one record.
    pub fn emit(&mut self, rec: Record) {
        let mut obj = Map::new();
        obj.insert("event".into(), Value::String(rec.event));
        obj.insert("tool".into(), Value::String(self.tool.into()));
        obj.insert("time".into(), Value::String(now_rfc3339()));
        for (k, v) in rec.fields {
            obj.insert(k, v);
        }
        let value = Value::Object(obj);
        let mut line = value.to_string();
        line.push('\n');
        self.write_sink(line.as_bytes());
        self.write_log(line.as_bytes());
        if is_alert(&value) && self.alerts.len() < 1000 {
            self.alerts.push(value.clone());
        }
        if self.sink == Sink::Memory {
            self.kept.push(value);
        }
    }

    /// A warning: a `warning` record (with `extra`'s fields) and one human
    /// line on stderr. Makes the run end with exit 1 unless it fails.
    pub fn warn(&mut self, message: &str, extra: Record) {
        self.warnings += 1;
        self.human("warning", message);
        let mut rec = extra;
        rec.event = "warning".into();
        rec.set("message", message);
        self.emit(rec);
    }

    /// The error that ends the run: an `error` record with its cause and one
    /// human line on stderr.
    pub fn error(&mut self, err: &anyhow::Error) {
        self.errors += 1;
        let message = one_line(&format!("{err:#}"));
        self.human("error", &message);
        self.emit(
            Record::new("error")
                .with("cause", cause_of(err).as_str())
                .with("message", &message),
        );
    }

    /// An `error` record with `cause` and `message`, counted, without the
    /// human line (for when the message was already printed).
    pub fn error_record(&mut self, cause: crate::error::Cause, message: &str) {
        self.errors += 1;
        self.emit(
            Record::new("error")
                .with("cause", cause.as_str())
                .with("message", message),
        );
    }

    /// Let the signal thread close this run if it cannot close itself
    /// (see [`emergency_exit`]); `failure` is the run's failure outcome.
    pub fn arm_emergency(&self, failure: Outcome) {
        if let Ok(mut e) = EMERGENCY.lock() {
            *e = Some(Emergency {
                sink: self.sink,
                log: self.log.as_ref().map(|(p, _)| p.clone()),
                started: self.started,
                failure,
            });
        }
    }

    /// Add a field to the summary record.
    pub fn summary_field(&mut self, key: &str, value: impl Serialize) {
        self.summary.insert(
            key.into(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
    }

    /// The last record of every run.
    pub fn summary(&mut self, outcome: Outcome) {
        let mut rec = Record::new("summary")
            .with("status", outcome.status)
            .with("exit_code", outcome.code)
            .with("duration_ms", self.started.elapsed().as_millis() as u64)
            .with("warnings", self.warnings)
            .with("errors", self.errors)
            .with("max_rss_bytes", max_rss_bytes());
        for (k, v) in std::mem::take(&mut self.summary) {
            rec.fields.insert(k, v);
        }
        self.emit(rec);
    }

    fn human(&mut self, level: &str, message: &str) {
        if self.sink == Sink::Memory {
            return;
        }
        let _ = writeln!(
            io::stderr().lock(),
            "{}: {level}: {}",
            self.tool,
            one_line(message)
        );
    }

    fn write_sink(&mut self, line: &[u8]) {
        if self.sink_broken {
            return;
        }
        let res = match self.sink {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(line).and_then(|_| out.flush())
            }
            Sink::Stderr => io::stderr().lock().write_all(line),
            Sink::Memory => Ok(()),
        };
        if let Err(e) = res {
            // A reader that went away (`| head`) is not our failure; the
            // backup itself is unaffected. Other errors are said once.
            self.sink_broken = true;
            if e.kind() != io::ErrorKind::BrokenPipe {
                self.warnings += 1;
                let _ = writeln!(
                    io::stderr(),
                    "{}: warning: cannot write records: {e}",
                    self.tool
                );
            }
        }
    }

    fn write_log(&mut self, line: &[u8]) {
        let Some((path, file)) = &mut self.log else {
            return;
        };
        let res = (|| {
            file.lock()?;
            let r = file.write_all(line);
            file.unlock()?;
            r
        })();
        if let Err(e) = res
            && !self.log_failed
        {
            self.log_failed = true;
            self.warnings += 1;
            let _ = writeln!(
                io::stderr(),
                "{}: warning: cannot append to log '{}': {e}",
                self.tool,
                path.display()
            );
        }
    }
}

/// What the signal thread needs to close a run that cannot close itself.
struct Emergency {
    sink: Sink,
    log: Option<PathBuf>,
    started: Instant,
    failure: Outcome,
}

static EMERGENCY: std::sync::Mutex<Option<Emergency>> = std::sync::Mutex::new(None);

/// Write the `error` (cause `interrupted`) and `summary` records of a run
/// that is being ended from outside its main thread, then exit with the
/// run's failure code. Used only by the signal thread.
pub fn emergency_exit(tool: &'static str, message: &str) -> ! {
    let em = EMERGENCY.lock().ok().and_then(|mut e| e.take());
    let failure = em.as_ref().map(|e| e.failure).unwrap_or(Outcome::FAILED);
    let _ = writeln!(io::stderr(), "{tool}: error: {message}");
    if let Some(em) = em {
        let mut rep = Reporter::new(tool, em.sink);
        rep.started = em.started;
        rep.errors = 1;
        if let Some(log) = &em.log
            && let Ok(f) = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(log)
        {
            rep.log = Some((log.clone(), f));
        }
        rep.emit(
            Record::new("error")
                .with("cause", "interrupted")
                .with("message", message),
        );
        rep.summary(failure);
    }
    std::process::exit(i32::from(failure.code));
}

/// Collapse a multi-line message to one line (`; ` between lines).
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether a record tells of something not OK: an error or warning, a
/// damaged or unreadable verdict, a check or finding that is not ok, a
/// failed summary.
pub fn is_alert(v: &Value) -> bool {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    matches!(s("event"), Some("error" | "warning"))
        || matches!(s("verdict"), Some("damaged" | "unreadable"))
        || v.get("ok") == Some(&Value::Bool(false))
        || v.get("restorable") == Some(&Value::Bool(false))
        || (s("event") == Some("finding") && s("status").is_some_and(|st| st != "ok"))
        || (s("event") == Some("summary")
            && v.get("exit_code").and_then(Value::as_u64).unwrap_or(0) != 0)
}

/// Now, as RFC 3339 local time with milliseconds and offset.
pub fn now_rfc3339() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

/// Peak resident memory of this process so far, in bytes.
pub fn max_rss_bytes() -> u64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map(|u| u.max_rss().max(0) as u64 * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_start_with_event_tool_time_then_fields_in_order() {
        let mut r = Reporter::quiet("tb-test");
        r.emit(Record::new("written").with("path", "/x").with("bytes", 3));
        let line = r.records()[0].to_string();
        assert!(
            line.starts_with(r#"{"event":"written","tool":"tb-test","time":""#),
            "{line}"
        );
        assert!(line.ends_with(r#","path":"/x","bytes":3}"#), "{line}");
    }

    #[test]
    fn warnings_make_outcome_one_and_summary_counts_them() {
        let mut r = Reporter::quiet("tb-test");
        assert_eq!(r.outcome(), Outcome::OK);
        r.warn("disk nearly full", Record::new("x").with("path", "/b"));
        assert_eq!(r.outcome(), Outcome::WARNINGS);
        r.summary_field("written", 2);
        r.summary(r.outcome());
        let recs = r.records();
        assert_eq!(recs[0]["event"], "warning");
        assert_eq!(recs[0]["message"], "disk nearly full");
        assert_eq!(recs[0]["path"], "/b");
        let s = &recs[1];
        assert_eq!(
            (
                s["event"].as_str(),
                s["status"].as_str(),
                s["exit_code"].as_u64()
            ),
            (Some("summary"), Some("warning"), Some(1))
        );
        assert_eq!(
            (s["warnings"].as_u64(), s["written"].as_u64()),
            (Some(1), Some(2))
        );
        assert!(s["max_rss_bytes"].as_u64().unwrap() > 0);
    }

    #[test]
    fn error_record_carries_cause_and_one_line_message() {
        let mut r = Reporter::quiet("tb-test");
        let err = anyhow::Error::new(crate::error::Failure::new(
            crate::error::Cause::WrongPassword,
            "wrong password\nfor app",
        ))
        .context("pg_dump failed");
        r.error(&err);
        let e = &r.records()[0];
        assert_eq!(e["cause"], "wrong_password");
        assert_eq!(e["message"], "pg_dump failed: wrong password; for app");
    }

    #[test]
    fn log_gets_the_same_lines_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("tb.log");
        std::fs::write(&log, "earlier line\n").unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut r = Reporter::quiet("tb-test");
        r.open_log(&log);
        r.emit(Record::new("written").with("bytes", 1));
        r.summary(Outcome::OK);
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "earlier line");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1], r.records()[0].to_string());
        let fresh = dir.path().join("new.log");
        let mut r2 = Reporter::quiet("tb-test");
        r2.open_log(&fresh);
        r2.emit(Record::new("x"));
        assert_eq!(
            std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn unopenable_log_is_a_warning() {
        let mut r = Reporter::quiet("tb-test");
        r.open_log(Path::new("/nonexistent-dir/x.log"));
        assert_eq!(r.warnings(), 1);
        assert!(
            r.records()[0]["message"]
                .as_str()
                .unwrap()
                .contains("/nonexistent-dir/x.log")
        );
    }

    #[test]
    fn non_utf8_paths_are_escaped() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/b/caf\xe9.txt"));
        assert_eq!(path_value(p), Value::String("/b/caf\\xe9.txt".into()));
        assert_eq!(display_bytes("日本".as_bytes()), "日本");
    }
}
