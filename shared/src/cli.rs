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
    ExitCode::from(outcome.code)
}
