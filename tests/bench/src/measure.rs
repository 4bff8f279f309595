//! Measuring one command: wall time, CPU time (user + system) and peak RSS
//! of its whole process tree.
//!
//! The harness has no `wait4`, and `getrusage(RUSAGE_CHILDREN)` in the
//! harness itself would mix in everything it ran before (its `ru_maxrss` is
//! a maximum over all children ever waited for, cargo included). So each
//! measured command runs under a helper, this same binary started as
//! `tb-bench rusage-exec REPORT -- PROGRAM ARGS...`: a fresh process whose
//! only child is PROGRAM. After waiting for it, the helper's
//! `RUSAGE_CHILDREN` covers PROGRAM and every descendant that was waited
//! for (a shell waits for each stage of its pipeline, tb-dump for its
//! pg_dump), and the helper writes wall time, CPU times, peak RSS and the
//! exit status to REPORT as one JSON object.

use std::ffi::OsString;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeValLike;
use serde_json::{Value, json};

/// The hidden subcommand that runs the helper.
pub const HELPER_SUBCOMMAND: &str = "rusage-exec";

/// What one run of a command cost, for its whole process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Elapsed time from start to exit.
    pub wall: Duration,
    /// User CPU time of the tree.
    pub user: Duration,
    /// System CPU time of the tree.
    pub sys: Duration,
    /// Largest peak RSS of any one process of the tree, in bytes (peaks of
    /// different processes are not added up).
    pub max_rss_bytes: u64,
}

impl Usage {
    /// User + system CPU time.
    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }
}

/// A finished measured command.
#[derive(Debug, Clone)]
pub struct Run {
    /// What it cost.
    pub usage: Usage,
    /// Its exit code, `None` when a signal killed it.
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Everything it wrote on stdout.
    pub stdout: String,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

impl Run {
    /// Fail unless the command exited with one of `ok_codes`; the error
    /// names the command and carries its stderr.
    pub fn expect_codes(&self, what: &str, ok_codes: &[i32]) -> Result<()> {
        match self.code {
            Some(c) if ok_codes.contains(&c) => Ok(()),
            Some(c) => bail!("{what} exited {c}: {}", self.stderr.trim()),
            None => bail!(
                "{what} was killed by signal {}: {}",
                self.signal.unwrap_or(0),
                self.stderr.trim()
            ),
        }
    }
}

/// A command line as one readable string, for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `cmd` (program, arguments, environment and directory as set on it)
/// under the helper; stdin is /dev/null, stdout and stderr are captured.
pub fn measure(cmd: &Command) -> Result<Run> {
    let what = describe(cmd);
    let report = tempfile::NamedTempFile::new().context("cannot create a temporary report file")?;
    let mut helper = Command::new(helper_exe()?);
    helper
        .arg(HELPER_SUBCOMMAND)
        .arg(report.path())
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => helper.env(key, v),
            None => helper.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        helper.current_dir(dir);
    }
    let out = helper
        .output()
        .with_context(|| format!("cannot start the measuring helper for: {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = fs::read_to_string(report.path())
        .with_context(|| format!("cannot read the report of: {what}"))?;
    if text.trim().is_empty() {
        bail!("could not run {what}: {}", stderr.trim());
    }
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("bad report from the measuring helper: {text}"))?;
    let micros = |k: &str| Duration::from_micros(v[k].as_u64().unwrap_or(0));
    Ok(Run {
        usage: Usage {
            wall: micros("wall_us"),
            user: micros("user_us"),
            sys: micros("sys_us"),
            max_rss_bytes: v["max_rss_kb"].as_u64().unwrap_or(0) * 1024,
        },
        code: v["code"].as_i64().map(|c| c as i32),
        signal: v["signal"].as_i64().map(|s| s as i32),
        stdout,
        stderr,
    })
}

/// This executable, for starting the helper. `/proc/self/exe` still names
/// the running binary when cargo has rebuilt `target/release/tb-bench`
/// meanwhile (say, another build in the same workspace), whereas the path
/// from `current_exe` would then be gone or be another version.
fn helper_exe() -> Result<PathBuf> {
    let proc_exe = Path::new("/proc/self/exe");
    if proc_exe.exists() {
        return Ok(proc_exe.to_path_buf());
    }
    std::env::current_exe().context("cannot find the tb-bench executable")
}

/// The helper: `rusage-exec REPORT -- PROGRAM ARGS...`. Runs PROGRAM with
/// the inherited stdio, then writes its report (see the module doc).
pub fn helper_main(args: &[OsString]) -> Result<ExitCode> {
    let [report, sep, program, rest @ ..] = args else {
        bail!("usage: tb-bench {HELPER_SUBCOMMAND} REPORT -- PROGRAM [ARGS...]");
    };
    if sep != "--" {
        bail!("usage: tb-bench {HELPER_SUBCOMMAND} REPORT -- PROGRAM [ARGS...]");
    }
    let start = Instant::now();
    let status = Command::new(program)
        .args(rest)
        .status()
        .with_context(|| format!("cannot run '{}'", program.to_string_lossy()))?;
    let wall = start.elapsed();
    let ru = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage(RUSAGE_CHILDREN)")?;
    let report_json = json!({
        "wall_us": wall.as_micros() as u64,
        "user_us": ru.user_time().num_microseconds().max(0),
        "sys_us": ru.system_time().num_microseconds().max(0),
        // Linux reports ru_maxrss in KiB.
        "max_rss_kb": ru.max_rss().max(0),
        "code": status.code(),
        "signal": status.signal(),
    });
    fs::write(report, report_json.to_string())
        .with_context(|| format!("cannot write the report '{}'", report.to_string_lossy()))?;
    Ok(ExitCode::SUCCESS)
}

/// The median of `values` (the lower middle one for an even count).
pub fn median<T: Copy + PartialOrd>(values: &[T]) -> Option<T> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// Field-by-field median of several runs of the same command.
pub fn median_usage(runs: &[Usage]) -> Usage {
    let pick = |f: fn(&Usage) -> Duration| {
        median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or_default()
    };
    Usage {
        wall: pick(|u| u.wall),
        user: pick(|u| u.user),
        sys: pick(|u| u.sys),
        max_rss_bytes: median(&runs.iter().map(|u| u.max_rss_bytes).collect::<Vec<_>>())
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_value() {
        assert_eq!(median(&[3, 1, 2]), Some(2));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
        assert_eq!(median::<u64>(&[]), None);
    }

    #[test]
    fn median_usage_is_per_field() {
        let u = |w, r| Usage {
            wall: Duration::from_secs(w),
            user: Duration::from_secs(w),
            sys: Duration::ZERO,
            max_rss_bytes: r,
        };
        let m = median_usage(&[u(5, 10), u(1, 30), u(3, 20)]);
        assert_eq!(m.wall, Duration::from_secs(3));
        assert_eq!(m.max_rss_bytes, 20);
    }
}
