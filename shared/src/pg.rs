//! Running PostgreSQL client programs (pg_dump, pg_dumpall, later psql),
//! locally or inside a container with `docker exec -i`, and turning their
//! failures into plain words.
//!
//! Passwords never travel in argv: locally the client reads `PGPASSWORD`
//! or `~/.pgpass` itself; for a container, `docker exec -e PGPASSWORD`
//! (the name only) makes the docker CLI copy the value from its own
//! environment, so it appears in no process list. `--no-password` is always
//! passed, so a missing password fails at once instead of waiting for a
//! prompt at 3 a.m.

use std::ffi::OsString;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use crate::error::{Cause, Failure};
use crate::signals;

/// Where a client program runs and how it connects.
#[derive(Debug, Clone, Default)]
pub struct Conn {
    /// `--host` (a directory for a unix socket, or a host name).
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<String>,
    /// `--username`.
    pub username: Option<String>,
    /// Run inside this container with `docker exec -i`.
    pub container: Option<String>,
    /// The docker CLI to use.
    pub docker: String,
}

impl Conn {
    /// The command line for client `program` (`pg_dump`) with `args`,
    /// connection options added, wrapped in `docker exec` when needed.
    pub fn command(&self, program: &str, args: &[OsString]) -> Command {
        let mut conn: Vec<OsString> = vec!["--no-password".into()];
        if let Some(h) = &self.host {
            conn.push("--host".into());
            conn.push(h.into());
        }
        if let Some(p) = &self.port {
            conn.push("--port".into());
            conn.push(p.into());
        }
        if let Some(u) = &self.username {
            conn.push("--username".into());
            conn.push(u.into());
        }
        match &self.container {
            None => {
                let mut c = Command::new(program);
                c.args(&conn).args(args);
                c
            }
            Some(name) => {
                let mut c = Command::new(&self.docker);
                c.args(["exec", "-i"]);
                for var in ["PGPASSWORD", "PGUSER", "PGOPTIONS", "PGCONNECT_TIMEOUT"] {
                    if std::env::var_os(var).is_some() {
                        c.args(["-e", var]);
                    }
                }
                c.arg(name).arg(program).args(&conn).args(args);
                c
            }
        }
    }

    /// What to call the client in messages (`pg_dump` or `pg_dump in container db`).
    pub fn describe(&self, program: &str) -> String {
        match &self.container {
            None => program.to_string(),
            Some(c) => format!("{program} in container '{c}'"),
        }
    }
}

/// A running client whose stderr is being collected. Killed and reaped if
/// dropped before [`Running::wait`].
pub struct Running {
    child: Child,
    stderr: Option<JoinHandle<String>>,
    _registered: signals::Child,
    waited: bool,
}

impl Running {
    /// Spawn `cmd` with stdout piped, stderr collected, stdin `stdin`.
    pub fn spawn(
        mut cmd: Command,
        stdin: Stdio,
        what: &str,
        docker: bool,
    ) -> anyhow::Result<Running> {
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            let prog = cmd.get_program().to_string_lossy().to_string();
            if e.kind() == std::io::ErrorKind::NotFound {
                let hint = if docker {
                    "is the Docker CLI installed?".to_string()
                } else {
                    format!("install the PostgreSQL client (apt-get install postgresql-client) or give its path; {what} runs '{prog}'")
                };
                anyhow::Error::new(Failure::new(Cause::NotFound, format!("cannot run '{prog}': not found; {hint}")))
            } else {
                anyhow::Error::new(e).context(format!("cannot run '{prog}'"))
            }
        })?;
        let registered = signals::Child::register(child.id());
        let stderr = child.stderr.take().map(collect_stderr);
        Ok(Running {
            child,
            stderr,
            _registered: registered,
            waited: false,
        })
    }

    /// The child's stdout.
    pub fn stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Wait for the exit status and the collected stderr.
    pub fn wait(mut self) -> std::io::Result<(ExitStatus, String)> {
        let status = self.child.wait()?;
        self.waited = true;
        let err = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Ok((status, err))
    }

    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.waited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Turn a client's failure into a [`Failure`] with plain words and the way
/// forward. `status` is the exit status (a signal means it was killed),
/// `stderr` what it printed, `what` how to name it (`pg_dump`).
pub fn explain_failure(
    what: &str,
    status: Option<ExitStatus>,
    stderr: &str,
    in_container: bool,
) -> Failure {
    use std::os::unix::process::ExitStatusExt;
    let said = crate::record::one_line(stderr);
    let said_suffix = if said.is_empty() {
        String::new()
    } else {
        format!(" ({what} said: {said})")
    };
    if let Some(sig) = status.and_then(|s| s.signal()) {
        return Failure::new(
            Cause::Killed,
            format!(
                "{what} was killed by {}{said_suffix}",
                signals::signal_name(sig)
            ),
        );
    }
    let (cause, plain) = classify(stderr, in_container);
    let plain = match (cause, status.and_then(|s| s.code())) {
        (Cause::Other, Some(code)) if in_container && (code == 137 || code == 143) => {
            return Failure::new(
                Cause::Killed,
                format!("{what} was killed (exit {code}){said_suffix}"),
            );
        }
        (Cause::Other, Some(code)) => format!("{what} failed with exit code {code}"),
        (Cause::Other, None) => format!("{what} failed"),
        _ => plain,
    };
    Failure::new(cause, format!("{plain}{said_suffix}"))
}

/// Classify client stderr into a cause and a plain sentence.
pub fn classify(stderr: &str, in_container: bool) -> (Cause, String) {
    let s = stderr;
    let quoted_after = |needle: &str| -> String {
        s.find(needle)
            .map(|i| &s[i + needle.len()..])
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    if s.contains("password authentication failed") {
        let user = quoted_after("password authentication failed for user \"");
        return (
            Cause::WrongPassword,
            format!(
                "wrong password for user \"{user}\": fix PGPASSWORD or ~/.pgpass (passwords are never taken on the command line)"
            ),
        );
    }
    if s.contains("no password supplied") {
        return (
            Cause::NoPassword,
            "the server wants a password and none was given: set PGPASSWORD or add a line to ~/.pgpass".to_string(),
        );
    }
    if s.contains("server version mismatch")
        || s.contains("server version:") && s.contains("version mismatch")
    {
        let server = between(s, "server version: ", ";").unwrap_or_default();
        let client = between(s, "pg_dump version: ", "\n")
            .or_else(|| between(s, "pg_dumpall version: ", "\n"))
            .unwrap_or_default();
        return (
            Cause::VersionMismatch,
            format!(
                "pg_dump {} is older than the server {}: use the server's own pg_dump (--container NAME runs the one in the database container) or install a newer client and pass --pg-dump PATH",
                client.trim(),
                server.trim()
            ),
        );
    }
    if s.contains("does not exist") && s.contains("database \"") {
        let db = quoted_after("database \"");
        return (
            Cause::NoDatabase,
            format!("database \"{db}\" does not exist on the server: check --dbname"),
        );
    }
    if s.contains("role \"") && s.contains("does not exist") {
        let role = quoted_after("role \"");
        return (
            Cause::NoRole,
            format!("role \"{role}\" does not exist on the server: check --username"),
        );
    }
    if s.contains("Is the server running")
        || s.contains("Connection refused")
        || s.contains("could not connect to server")
        || s.contains("No such file or directory") && s.contains("connection to server")
        || s.contains("the database system is shutting down")
        || s.contains("the database system is starting up")
    {
        return (
            Cause::ServerDown,
            "the PostgreSQL server is not running or not reachable at that address".to_string(),
        );
    }
    if s.contains("server closed the connection unexpectedly")
        || s.contains("terminating connection due to administrator command")
        || s.contains("the database system is in recovery mode")
    {
        return (
            Cause::ServerDown,
            "the PostgreSQL server went away during the dump (stopped, crashed or restarted)"
                .to_string(),
        );
    }
    if s.contains("could not obtain lock on relation")
        || s.contains("canceling statement due to lock timeout")
        || (s.contains("canceling statement due to statement timeout") && s.contains("LOCK TABLE"))
    {
        return (
            Cause::LockTimeout,
            "another session kept a table locked longer than --lock-wait-timeout: find it in pg_stat_activity and pg_locks, then run again".to_string(),
        );
    }
    if s.contains("permission denied") {
        return (Cause::PermissionDenied, "the database refused access (permission denied): dump as the database owner or a superuser".to_string());
    }
    if in_container {
        if s.contains("No such container") {
            let name = s
                .split("No such container:")
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_string();
            return (
                Cause::NotFound,
                format!("no container named '{name}': check --container (docker ps)"),
            );
        }
        if s.contains("is not running") {
            return (
                Cause::ServerDown,
                "the container is not running: start it (docker start) or check --container"
                    .to_string(),
            );
        }
        if s.contains("executable file not found") || s.contains("not found in $PATH") {
            return (
                Cause::NotFound,
                "the container has no such program on its PATH: is it the database container?"
                    .to_string(),
            );
        }
        if s.contains("Cannot connect to the Docker daemon")
            || s.contains("permission denied while trying to connect to the Docker daemon")
        {
            return (
                Cause::Docker,
                "cannot reach the Docker engine: is it running, and may this user use it?"
                    .to_string(),
            );
        }
    }
    (Cause::Other, String::new())
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let rest = &s[i..];
    Some(rest.split(end).next().unwrap_or(rest))
}

/// Read a child's stderr to its end in a thread of its own, keeping the
/// first 64 KiB: enough for any error, bounded.
pub fn collect_stderr(mut s: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n) = s.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if buf.len() < 64 << 10 {
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The texts below are what pg_dump 15 and docker 20.10 print; the live
    // failures are exercised against a real server in tb-dump's tests.
    #[test]
    fn version_mismatch_names_both_versions() {
        let err = "pg_dump: error: aborting because of server version mismatch\npg_dump: detail: server version: 16.2; pg_dump version: 15.18 (Debian 15.18-0+deb12u1)\n";
        let (cause, plain) = classify(err, false);
        assert_eq!(cause, Cause::VersionMismatch);
        assert!(
            plain.contains("pg_dump 15.18 (Debian 15.18-0+deb12u1) is older than the server 16.2"),
            "{plain}"
        );
    }

    #[test]
    fn container_commands_pass_the_password_by_name_and_never_ask_for_a_tty() {
        let conn = Conn {
            username: Some("postgres".into()),
            container: Some("backend-db-1".into()),
            docker: "docker".into(),
            ..Conn::default()
        };
        let cmd = conn.command("pg_dump", &["--dbname".into(), "toybox".into()]);
        let argv: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = argv.join(" ");
        assert!(joined.starts_with("docker exec -i "), "{joined}");
        assert!(
            !argv.iter().any(|a| a == "-t" || a == "-it" || a == "--tty"),
            "{joined}"
        );
        assert!(
            joined.ends_with(
                "backend-db-1 pg_dump --no-password --username postgres --dbname toybox"
            ),
            "{joined}"
        );
        // `-e PGPASSWORD` appears only when the variable is set, and only by
        // name: values are never put in argv.
        for (i, a) in argv.iter().enumerate() {
            if a == "-e" {
                assert!(!argv[i + 1].contains('='), "{joined}");
            }
        }
        let local = Conn::default().command("pg_dump", &[]);
        assert_eq!(local.get_program(), "pg_dump");
        assert_eq!(local.get_args().next().unwrap(), "--no-password");
    }

    #[test]
    fn a_server_that_goes_away_or_a_lock_that_stays_are_named() {
        let gone = "pg_dump: error: Dumping the contents of table \"t\" failed: PQgetResult() failed.\npg_dump: detail: Error message from server: server closed the connection unexpectedly\n";
        assert_eq!(classify(gone, false).0, Cause::ServerDown);
        let locked = "pg_dump: error: query failed: ERROR:  canceling statement due to lock timeout\npg_dump: detail: Query was: LOCK TABLE public.t IN ACCESS SHARE MODE\n";
        assert_eq!(classify(locked, false).0, Cause::LockTimeout);
        // pg_dump 15 implements --lock-wait-timeout with statement_timeout.
        let timed = "pg_dump: error: query failed: ERROR:  canceling statement due to statement timeout\npg_dump: detail: Query was: LOCK TABLE public.t IN ACCESS SHARE MODE\n";
        assert_eq!(classify(timed, false).0, Cause::LockTimeout);
    }

    #[test]
    fn docker_errors_are_named() {
        assert_eq!(
            classify("Error: No such container: backend-db-1\n", true).0,
            Cause::NotFound
        );
        assert_eq!(
            classify(
                "Error response from daemon: Container abc is not running\n",
                true
            )
            .0,
            Cause::ServerDown
        );
        let (c, p) = classify("Error: No such container: backend-db-1\n", true);
        assert_eq!(c, Cause::NotFound);
        assert!(p.contains("'backend-db-1'"), "{p}");
    }

    #[test]
    fn wrong_password_names_the_user() {
        let err = "pg_dump: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"app\"\n";
        let f = explain_failure("pg_dump", None, err, false);
        assert_eq!(f.cause, Cause::WrongPassword);
        assert!(
            f.message.starts_with("wrong password for user \"app\""),
            "{}",
            f.message
        );
        assert!(
            f.message
                .contains("pg_dump said: pg_dump: error: connection"),
            "{}",
            f.message
        );
    }
}
