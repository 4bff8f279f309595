//! Wiring a tool to the process: parse arguments, run, report, exit.
//!
//! Every `main.rs` is one call to [`run_tool`], so the tools' logic lives
//! in their libraries, callable in-process by tests and other tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::error::{Cause, cause_of, is_broken_pipe};
use crate::exit::Outcome;
use crate::record::{Reporter, Sink};

/// Options every tool has.
#[derive(Debug, Clone, Default, Args)]
pub struct Common {
    /// Also append every record (JSON line) to FILE; created 0600 if missing.
    /// Lines from tools writing at once never interleave.
    #[arg(long, value_name = "FILE", env = "TB_LOG", global = true)]
    pub log: Option<PathBuf>,

    /// When the result is not OK, run this command (with `sh -c`) and give
    /// it the records that are not OK, then the summary, as JSON lines on
    /// its stdin (e.g. `mail -s 'tb failed' ops@example.com`). Data never
    /// goes into the command line
    #[arg(long, value_name = "CMD", env = "TB_ALERT_CMD", global = true)]
    pub alert_cmd: Option<String>,
}

/// What `run_tool` needs to know about a tool's arguments.
pub trait ToolArgs: clap::Parser {
    /// The shared options.
    fn common(&self) -> &Common;
    /// True when stdout carries backup bytes, so records go to stderr.
    fn stdout_carries_bytes(&self) -> bool {
        false
    }
    /// True when a broken stdout means an incomplete artifact (a stream),
    /// false when it only means the reader of a listing went away.
    fn broken_pipe_is_failure(&self) -> bool {
        self.stdout_carries_bytes()
    }
    /// The outcome of a run that fails: exit 2 for the backup tools; a
    /// checker that could not finish answers UNKNOWN (3) instead.
    fn failure_outcome(&self) -> Outcome {
        Outcome::FAILED
    }
}

/// Parse `A`, call `run`, print any error once, write the summary record,
/// and map the result to an exit code (see `exit`). A busy lock exits 75.
pub fn run_tool<A: ToolArgs>(
    tool: &'static str,
    run: fn(A, &mut Reporter) -> anyhow::Result<Outcome>,
) -> ExitCode {
    let args = match A::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version: exit 0
        Err(e) => {
            // Bad usage: clap's message on stderr, and the records a script
            // reading stdout expects.
            let _ = e.print();
            let mut rep = Reporter::new(tool, Sink::Stdout);
            let msg = crate::record::one_line(&e.kind().to_string());
            rep.error_record(
                Cause::BadInput,
                &format!("bad usage: {msg}; see {tool} --help"),
            );
            rep.summary(Outcome::FAILED);
            return ExitCode::from(Outcome::FAILED.code);
        }
    };
    let sink = if args.stdout_carries_bytes() {
        // The records go to stderr: no progress bar between them.
        crate::progress::disable();
        Sink::Stderr
    } else {
        Sink::Stdout
    };
    let broken_pipe_fails = args.broken_pipe_is_failure();
    let mut rep = Reporter::new(tool, sink);
    if let Some(log) = &args.common().log {
        rep.open_log(log);
    }
    let failure = args.failure_outcome();
    let alert_cmd = args.common().alert_cmd.clone();
    rep.arm_emergency(failure);
    crate::signals::install(tool);
    let outcome = match run(args, &mut rep) {
        Ok(outcome) => outcome,
        Err(err) if !broken_pipe_fails && is_broken_pipe(&err) => Outcome::OK,
        Err(err) => {
            rep.error(&err);
            if cause_of(&err) == Cause::Busy {
                Outcome::BUSY
            } else {
                failure
            }
        }
    };
    rep.summary(outcome);
    if outcome.code != 0
        && let Some(cmd) = &alert_cmd
    {
        run_alert(tool, cmd, rep.alerts());
    }
    ExitCode::from(outcome.code)
}

/// Run the alert command with `records` on its stdin; a failure to alert
/// is said on stderr (there is nowhere else to say it).
fn run_alert(tool: &str, cmd: &str, records: &[serde_json::Value]) {
    use std::io::Write;
    let mut input = Vec::new();
    for r in records {
        let _ = serde_json::to_writer(&mut input, r);
        input.push(b'\n');
    }
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("TB_ALERT_TOOL", tool)
        .stdin(std::process::Stdio::piped())
        .spawn();
    match child {
        Ok(mut c) => {
            if let Some(mut stdin) = c.stdin.take() {
                let _ = stdin.write_all(&input);
            }
            match c.wait() {
                Ok(st) if st.success() => {}
                Ok(st) => eprintln!("{tool}: the alert command failed ({st}): {cmd}"),
                Err(e) => eprintln!("{tool}: the alert command failed: {e}"),
            }
        }
        Err(e) => eprintln!("{tool}: cannot run the alert command ({e}): {cmd}"),
    }
}
