//! The throwaway PostgreSQL cluster the benchmark runs against.
//!
//! The cluster comes from `tests/pg-throwaway start DIR`. Its data
//! directory is kept between runs, so that the generated databases (minutes
//! to make) are reused: `pg-throwaway start` on a directory that already
//! holds a cluster starts that one again on a free port.
//! The server is stopped (`pg-throwaway stop DIR`) when the [`Cluster`] is
//! dropped, on success and on error alike, and before every start, in case
//! a killed run left one behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// A running throwaway PostgreSQL server.
pub struct Cluster {
    /// The cluster directory (`data/`, `sock/`, logs).
    dir: PathBuf,
    /// `tests/pg-throwaway`.
    script: PathBuf,
    /// Connection settings for clients: PGHOST, PGPORT, PGUSER.
    env: Vec<(String, String)>,
    /// Whether the server still has to be stopped.
    running: bool,
}

impl Cluster {
    /// Start a server for the cluster in `dir`: the kept one when `dir`
    /// holds one and `fresh` is false, else a new one (`dir` is emptied).
    pub fn start(dir: &Path, fresh: bool) -> Result<Cluster> {
        let script = script_path();
        if !script.is_file() {
            bail!("'{}' is missing", script.display());
        }
        stop_server(&script, dir);
        if fresh || !dir.join("data/PG_VERSION").is_file() {
            if dir.exists() {
                fs::remove_dir_all(dir).with_context(|| {
                    format!("cannot remove the old cluster '{}'", dir.display())
                })?;
            }
            fs::create_dir_all(dir)
                .with_context(|| format!("cannot create '{}'", dir.display()))?;
        }
        let out = Command::new(&script)
            .arg("start")
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run '{}'", script.display()))?;
        if !out.status.success() {
            bail!(
                "'{} start {}' failed: {}",
                script.display(),
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let vars = parse_env_lines(&text);
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            script,
            env: Vec::new(),
            running: true,
        };
        for key in ["PGHOST", "PGPORT", "PGUSER"] {
            let value = lookup(&vars, key).with_context(|| {
                format!("pg-throwaway printed no {key}= line (it printed: {text})")
            })?;
            cluster.env.push((key.to_string(), value.to_string()));
        }
        Ok(cluster)
    }

    /// A command for a PostgreSQL client (`psql`, `pg_dump`, tb-dump, ...)
    /// connecting to this server: PG* variables set, PGDATABASE and other
    /// variables that would redirect the connection removed.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for var in ["PGDATABASE", "PGSERVICE", "PGHOSTADDR", "PGOPTIONS"] {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// `psql` on database `db`: no psqlrc, quiet, stop at the first error.
    pub fn psql(&self, db: &str) -> Command {
        let mut cmd = self.command("psql");
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db]);
        cmd
    }

    /// Run one SQL command on `db`; its result, unaligned, tuples only.
    pub fn query(&self, db: &str, sql: &str) -> Result<String> {
        let out = self
            .psql(db)
            .args(["-A", "-t", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .context("cannot run psql")?;
        if !out.status.success() {
            bail!(
                "psql -d {db} -c \"{sql}\" failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Stop the server (once). A checkpoint first, so that the next start
    /// of the kept cluster has no WAL to replay after the immediate stop.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        if let Err(e) = self.query("postgres", "CHECKPOINT") {
            eprintln!("tb-bench: warning: checkpoint before stopping: {e:#}");
        }
        stop_server(&self.script, &self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `tests/pg-throwaway`, next to this package.
fn script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pg-throwaway")
}

/// `pg-throwaway stop DIR`; harmless when nothing runs there. Failures are
/// only reported: this also runs while cleaning up after an error.
fn stop_server(script: &Path, dir: &Path) {
    match Command::new(script)
        .arg("stop")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "tb-bench: warning: '{} stop {}' failed: {}",
            script.display(),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("tb-bench: warning: cannot run '{}': {e}", script.display()),
    }
}

/// `export KEY=value` lines, as `pg-throwaway start` prints them.
fn parse_env_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| l.strip_prefix("export ").unwrap_or(l))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The value of `key` in parsed `KEY=value` lines.
fn lookup<'a>(vars: &'a [(String, String)], key: &str) -> Option<&'a str> {
    vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_are_parsed() {
        let v = parse_env_lines(
            "export PGHOST=/x/sock\nexport PGPORT=5\nnoise\nPGBINDIR=/usr/lib/pg/bin\n",
        );
        assert_eq!(lookup(&v, "PGHOST"), Some("/x/sock"));
        assert_eq!(lookup(&v, "PGPORT"), Some("5"));
        assert_eq!(lookup(&v, "PGBINDIR"), Some("/usr/lib/pg/bin"));
        assert_eq!(lookup(&v, "PGUSER"), None);
    }
}
