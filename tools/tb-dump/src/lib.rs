//! `tb-dump`: a verified, atomic, gzipped plain-SQL dump of one PostgreSQL
//! database, plus its cluster's roles and a manifest.
//!
//! The dump comes from a local `pg_dump`, from the container's own
//! `pg_dump` (`--container`, through `docker exec -i`, never a TTY), or from
//! a stream on stdin (`--stdin`). It is compressed on every core into a
//! temporary file, and published under its final name only when pg_dump
//! exited 0, the stream ends with pg_dump's completion trailer, and the
//! written file decompresses completely to the same bytes. Otherwise
//! nothing is published and the previous backups are untouched.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Local;
use clap::Parser;

use tb_shared::atomic::{
    TempFile, ensure_dir, occupied, parent_of, publish_all, remove_stale_temps,
};
use tb_shared::cli::{Common, ToolArgs};
use tb_shared::error::{Cause, Failure};
use tb_shared::exit::Outcome;
use tb_shared::gzip::{GzOptions, GzStats, ParGzWriter};
use tb_shared::manifest::{ChunkIndex, DatabaseInfo, FileEntry, Manifest, Verification};
use tb_shared::naming::{BackupName, Kind, Precision, manifest_path, roles_path, valid_label};
use tb_shared::pg::{Conn, Running, explain_failure};
use tb_shared::record::{Record, Reporter, now_rfc3339};
use tb_shared::sqldump::{DumpFacts, DumpKind, DumpScanner};
use tb_shared::verify::check_gz;
use tb_shared::{lock, signals};

/// Default compression level: zlib-rs level 5 keeps the output within
/// about 9 % of `gzip -6` at three times its speed per core (see the
/// README's benchmark).
pub const DEFAULT_LEVEL: u32 = 5;

const ABOUT: &str = "Dump a PostgreSQL database to a verified, gzipped plain-SQL file";
const LONG_ABOUT: &str = "\
Dump a PostgreSQL database to a verified, gzipped plain-SQL file.

By default, runs pg_dump for database `toybox` and writes
/backup/toybox/database/toybox_YYYYMMDD_HHMMSS.sql.gz (local time), a
.roles.sql.gz file with the cluster's roles (pg_dumpall --globals-only) and
a .manifest.json (sizes, sha256, versions, row count of every table).

A file with its final name is always complete: it is published only when
pg_dump exited 0, the SQL ends with pg_dump's completion trailer and the
written file decompresses fully. On any failure nothing is published,
older backups are untouched, and the exit code is 2.

Restore without tb:  gunzip -c FILE.sql.gz | psql -v ON_ERROR_STOP=1 -d NEWDB

Records (JSON lines) go to stdout, or to stderr with -o -.
Exit codes: 0 ok, 1 done with warnings, 2 failed or bad usage, 75 busy.";

/// Command-line arguments of `tb-dump`.
#[derive(Debug, Clone, Parser)]
#[command(name = "tb-dump", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Args {
    /// Database to dump (also the file-name label unless --name is given)
    #[arg(
        short = 'd',
        long,
        env = "PGDATABASE",
        default_value = "toybox",
        value_name = "NAME"
    )]
    pub dbname: String,

    /// Server host or unix-socket directory (else PGHOST or the libpq default)
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,

    /// Server port (else PGPORT or 5432)
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<String>,

    /// User name (else PGUSER or the login name). The password comes only
    /// from PGPASSWORD or ~/.pgpass, never from the command line
    #[arg(short = 'U', long, value_name = "USER")]
    pub username: Option<String>,

    /// Run the container's own pg_dump with `docker exec -i CONTAINER`, so the
    /// client matches the server (PGPASSWORD is passed by name only)
    #[arg(long, value_name = "NAME", conflicts_with = "stdin")]
    pub container: Option<String>,

    /// Read a pg_dump plain-SQL stream from stdin instead of running pg_dump;
    /// it is published only if it ends with pg_dump's completion trailer
    #[arg(long)]
    pub stdin: bool,

    /// Directory for the dump (created 0700 if missing)
    #[arg(long, value_name = "DIR", default_value = "/backup/toybox/database")]
    pub dir: PathBuf,

    /// Label for file names [default: the database name]
    #[arg(long, value_name = "LABEL")]
    pub name: Option<String>,

    /// Write to FILE instead of DIR/LABEL_YYYYMMDD_HHMMSS.sql.gz; `-` streams
    /// the gzip to stdout (records then go to stderr; no roles, no manifest)
    #[arg(short = 'o', long, value_name = "FILE", conflicts_with = "dir")]
    pub output: Option<PathBuf>,

    /// Compression level, 0 (store) to 9 (smallest, slowest)
    #[arg(long, default_value_t = DEFAULT_LEVEL, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub level: u32,

    /// Compression threads [default: number of CPUs, at most 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=32))]
    pub threads: Option<u32>,

    /// Do not dump the cluster's roles (pg_dumpall --globals-only)
    #[arg(long)]
    pub no_roles: bool,

    /// Seconds to wait for another run writing to the same directory
    /// (then exit 75)
    #[arg(long, value_name = "SECONDS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub wait: u64,

    /// Seconds pg_dump waits for a table that another session keeps locked
    /// before it gives up (exit 2, cause lock_timeout); 0 waits forever
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub lock_wait_timeout: u64,

    /// The pg_dump program
    #[arg(
        long,
        value_name = "PROGRAM",
        env = "TB_PG_DUMP",
        default_value = "pg_dump"
    )]
    pub pg_dump: String,

    /// The pg_dumpall program
    #[arg(
        long,
        value_name = "PROGRAM",
        env = "TB_PG_DUMPALL",
        default_value = "pg_dumpall"
    )]
    pub pg_dumpall: String,

    /// The docker CLI
    #[arg(
        long,
        value_name = "PROGRAM",
        env = "TB_DOCKER",
        default_value = "docker"
    )]
    pub docker: String,

    #[command(flatten)]
    pub common: Common,
}

impl ToolArgs for Args {
    fn common(&self) -> &Common {
        &self.common
    }
    fn stdout_carries_bytes(&self) -> bool {
        self.output.as_deref() == Some(Path::new("-"))
    }
}

impl Args {
    fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.dbname)
    }

    fn conn(&self) -> Conn {
        Conn {
            host: self.host.clone(),
            port: self.port.clone(),
            username: self.username.clone(),
            container: self.container.clone(),
            docker: self.docker.clone(),
        }
    }

    /// pg_dump's arguments besides the connection options.
    fn pg_dump_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["--dbname".into(), self.dbname.clone().into()];
        if self.lock_wait_timeout > 0 {
            a.push(format!("--lock-wait-timeout={}s", self.lock_wait_timeout).into());
        }
        a
    }

    fn gz(&self) -> GzOptions {
        let mut o = GzOptions::new(self.level);
        if let Some(t) = self.threads {
            o.threads = t as usize;
        }
        o
    }

    fn validate(&self) -> Result<()> {
        let usage = |m: String| -> Result<()> { Err(Failure::new(Cause::BadInput, m).into()) };
        if !valid_label(self.label()) {
            return usage(format!(
                "'{}' cannot be used in a file name (letters, digits, '_' and '-' only): give a label with --name",
                self.label()
            ));
        }
        if has_password(&self.dbname) {
            return usage(
                "the connection string holds a password, which would show in every process list: put it in PGPASSWORD or ~/.pgpass".into(),
            );
        }
        if let Some(out) = &self.output {
            let name = out.file_name().unwrap_or_default().as_encoded_bytes();
            if out != Path::new("-")
                && (name.ends_with(b".roles.sql.gz")
                    || name.ends_with(b".manifest.json")
                    || name.is_empty())
            {
                return usage(format!(
                    "-o '{}': that name is kept for the roles file or the manifest beside a dump; name the dump FILE.sql.gz",
                    out.display()
                ));
            }
        }
        if self.stdin && (self.host.is_some() || self.port.is_some() || self.username.is_some()) {
            return usage(
                "--stdin reads a dump from stdin: --host, --port and --username do not apply"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Does a `--dbname` connection string carry a password? (`password=` in
/// a conninfo or URI query, or `user:secret@` in a URI.)
fn has_password(dbname: &str) -> bool {
    let lower = dbname.to_ascii_lowercase();
    if lower.contains("password") && (lower.contains('=') || lower.contains("://")) {
        return true;
    }
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = lower.strip_prefix(scheme) {
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                return userinfo.contains(':');
            }
        }
    }
    false
}

/// Is `--dbname` a connection string (conninfo or URI) rather than a name?
fn is_connstr(dbname: &str) -> bool {
    dbname.contains('=') || dbname.starts_with("postgresql://") || dbname.starts_with("postgres://")
}

/// What was dumped into one temporary file.
struct Dumped {
    temp: TempFile,
    stats: GzStats,
    facts: DumpFacts,
}

/// Run `tb-dump`.
pub fn run(args: Args, rep: &mut Reporter) -> Result<Outcome> {
    args.validate()?;
    let started = now_rfc3339();
    let clock = Instant::now();
    if args.stdout_carries_bytes() {
        return dump_to_stdout(&args, rep, clock);
    }

    let dir = match &args.output {
        Some(p) => parent_of(p).to_path_buf(),
        None => args.dir.clone(),
    };
    if let Some(p) = &args.output
        && occupied(p)
    {
        // Before taking any lock there (`-o /dev/null` must not create
        // /dev/.tb.lock).
        return Err(exists(p));
    }
    ensure_dir(&dir)?;
    let _lock = lock::acquire(&dir, Duration::from_secs(args.wait))
        .with_context(|| format!("cannot lock backup directory '{}'", dir.display()))?;
    for (p, err) in remove_stale_temps(&dir)? {
        match err {
            None => rep.emit(
                Record::new("removed")
                    .path(&p)
                    .with("reason", "stale temporary file of an interrupted run"),
            ),
            Some(e) => rep.warn(
                &format!(
                    "cannot remove the stale temporary file '{}' ({e}); remove it by hand",
                    p.display()
                ),
                Record::new("warning").path(&p),
            ),
        }
    }
    let dest = match &args.output {
        Some(p) => p.clone(),
        None => fresh_name(&dir, args.label()),
    };
    let roles_dest = roles_path(&dest);
    let manifest_dest = manifest_path(&dest);
    let want_roles = !args.stdin && !args.no_roles;
    for p in [
        Some(&dest),
        want_roles.then_some(&roles_dest),
        Some(&manifest_dest),
    ]
    .into_iter()
    .flatten()
    {
        if occupied(p) {
            return Err(exists(p));
        }
    }

    let gz = args.gz();
    let conn = args.conn();
    let pg_args = args.pg_dump_args();
    let src = if args.stdin {
        Source::Stdin
    } else {
        Source::Program {
            conn: &conn,
            program: &args.pg_dump,
            args: &pg_args,
        }
    };
    let dumped = dump_to_temp(src, &dest, gz, DumpKind::Database)?;
    check_written(&dumped)?;
    let dump_ms = clock.elapsed().as_millis() as u64;

    let roles = if want_roles {
        dump_roles(&args, &roles_dest, gz, rep)?
    } else {
        None
    };

    let finished = now_rfc3339();
    let mut manifest = Manifest::new(
        "dump",
        args.label(),
        &format!("tb-dump {}", env!("CARGO_PKG_VERSION")),
        &started,
    );
    manifest.finished_at = finished.clone();
    manifest.duration_ms = clock.elapsed().as_millis() as u64;
    manifest
        .files
        .push(file_entry("dump", &dest, &dumped.stats));
    if let Some(r) = &roles {
        manifest
            .files
            .push(file_entry("roles", &roles_dest, &r.stats));
    }
    manifest.database = Some(DatabaseInfo {
        name: if args.stdin && args.name.is_some() {
            args.label().to_string()
        } else {
            args.dbname.clone()
        },
        container: args.container.clone(),
        server_version: dumped.facts.server_version.clone(),
        pg_dump_version: dumped.facts.pg_dump_version.clone(),
        encoding: dumped.facts.encoding.clone(),
        tables: dumped.facts.tables.clone(),
        rows: dumped.facts.rows(),
        large_objects: dumped.facts.large_objects,
        roles: Some(dumped.facts.roles.iter().cloned().collect()),
        extensions: Some(dumped.facts.extensions.iter().cloned().collect()),
    });
    manifest.verified = Some(Verification {
        at: finished,
        verdict: "good".into(),
        by: format!("tb-dump {}", env!("CARGO_PKG_VERSION")),
    });
    let mut manifest_temp = manifest.write_temp(&manifest_dest)?;
    let manifest_sha256 = tb_shared::gzip::sha256_file(manifest_temp.path())
        .with_context(|| format!("cannot read back '{}'", manifest_temp.path().display()))?;
    let manifest_bytes = manifest_temp
        .file()
        .metadata()
        .map(|m| m.len())
        .unwrap_or(0);

    // Publish data files first and the manifest last, as one: each rename
    // is atomic and never replaces anything, and if one fails the others
    // are taken back.
    signals::check()?;
    let mut temps = Vec::new();
    let roles_stats = roles.map(|r| {
        temps.push(r.temp);
        r.stats
    });
    temps.push(dumped.temp);
    temps.push(manifest_temp);
    let mut published = publish_all(temps)?.into_iter();
    let roles_published = roles_stats.and_then(|s| published.next().map(|p| (p, s)));
    let dump_path = published.next().context("dump not published")?;
    let manifest_path = published.next().context("manifest not published")?;

    rep.emit(
        Record::new("written")
            .with("kind", "dump")
            .path(&dump_path)
            .with("bytes", dumped.stats.gz_bytes)
            .with("raw_bytes", dumped.stats.raw_bytes)
            .with("sha256", &dumped.stats.sha256)
            .with("tables", dumped.facts.tables.len())
            .with("rows", dumped.facts.rows())
            .with("large_objects", dumped.facts.large_objects)
            .with("server_version", &dumped.facts.server_version)
            .with("duration_ms", dump_ms),
    );
    if let Some((path, stats)) = &roles_published {
        rep.emit(
            Record::new("written")
                .with("kind", "roles")
                .path(path)
                .with("bytes", stats.gz_bytes)
                .with("raw_bytes", stats.raw_bytes)
                .with("sha256", &stats.sha256),
        );
    }
    rep.emit(
        Record::new("written")
            .with("kind", "manifest")
            .path(&manifest_path)
            .with("bytes", manifest_bytes)
            .with("sha256", &manifest_sha256),
    );
    rep.summary_field("written", 2 + roles_published.is_some() as u64);
    rep.summary_field("path", tb_shared::record::path_value(&dump_path));
    Ok(rep.outcome())
}

/// `DIR/LABEL_YYYYMMDD_HHMMSS.sql.gz` for now. Names carry the second, so
/// a run that starts in the same second as the previous one (a quick
/// manual rerun) waits for the next second rather than collide.
fn fresh_name(dir: &Path, label: &str) -> PathBuf {
    let mut tries = 0;
    loop {
        let name = BackupName::new(
            Kind::Dump,
            label,
            Local::now().naive_local(),
            Precision::Second,
        );
        let path = dir.join(name.file_name());
        let taken = [Kind::Dump, Kind::Roles, Kind::Manifest]
            .iter()
            .any(|k| dir.join(name.sibling(*k).file_name()).exists());
        if !taken || tries >= 5 {
            return path;
        }
        tries += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn file_entry(role: &str, path: &Path, stats: &GzStats) -> FileEntry {
    FileEntry {
        role: role.into(),
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: stats.gz_bytes,
        raw_bytes: stats.raw_bytes,
        sha256: stats.sha256.clone(),
        crc32: stats.crc32,
        chunks: Some(ChunkIndex::new(&stats.chunks)),
    }
}

fn exists(p: &Path) -> anyhow::Error {
    Failure::new(
        Cause::Exists,
        format!(
            "'{}' already exists; tb-dump never overwrites a backup: choose another -o FILE",
            p.display()
        ),
    )
    .into()
}

/// Plain words for a write error on the temp file of `dest`.
fn write_error(e: io::Error, dest: &Path) -> anyhow::Error {
    tb_shared::error::write_error(e, dest)
}

/// Where the SQL comes from.
enum Source<'a> {
    /// A pg_dump stream on our stdin.
    Stdin,
    /// A client program we run (pg_dump or pg_dumpall), perhaps in a container.
    Program {
        conn: &'a Conn,
        program: &'a str,
        args: &'a [OsString],
    },
}

/// Stream the SQL of `src` through the scanner into `w`. Publishable only
/// if the program exited 0 and the SQL ends with the completion trailer;
/// otherwise `w` is aborted (no gzip trailer) and the error says why.
fn stream<W: Write + Send + 'static>(
    src: Source<'_>,
    mut w: ParGzWriter<W>,
    kind: DumpKind,
    write_err: &dyn Fn(io::Error) -> anyhow::Error,
) -> Result<(W, GzStats, DumpFacts)> {
    let mut scanner = DumpScanner::new(kind);
    let mut buf = vec![0u8; 256 << 10];
    let progress = tb_shared::progress::Progress::new(
        match kind {
            DumpKind::Database => "dumping",
            DumpKind::Cluster => "dumping roles",
        },
        None,
    );
    let mut feed = |data: &[u8], w: &mut ParGzWriter<W>| -> Result<()> {
        scanner.feed(data);
        progress.inc(data.len() as u64);
        w.write_all(data).map_err(write_err)
    };
    let what = match src {
        Source::Stdin => {
            let stdin = io::stdin();
            loop {
                // Polls, so a signal ends the run even if the producer is silent.
                let n = signals::read_interruptible(stdin.as_fd(), &mut buf)
                    .context("cannot read the dump stream on stdin")?;
                if n == 0 {
                    break;
                }
                feed(&buf[..n], &mut w)?;
            }
            None
        }
        Source::Program {
            conn,
            program,
            args,
        } => {
            let what = conn.describe(program);
            let in_container = conn.container.is_some();
            let mut running = Running::spawn(
                conn.command(program, args),
                Stdio::null(),
                &what,
                in_container,
            )?;
            let mut out = running
                .stdout()
                .context("no stdout from the dump program")?;
            // On an error here `running` is dropped: the child is killed and reaped.
            loop {
                signals::check()?;
                let n = match out.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("cannot read the output of {what}")));
                    }
                };
                feed(&buf[..n], &mut w)?;
            }
            drop(out);
            let (status, stderr) = running
                .wait()
                .with_context(|| format!("cannot wait for {what}"))?;
            signals::check()?;
            if !status.success() {
                w.abort();
                return Err(explain_failure(&what, Some(status), &stderr, in_container).into());
            }
            Some(what)
        }
    };
    let (facts, complete) = scanner.finish();
    if kind == DumpKind::Database && !facts.meta_commands.is_empty() && complete.is_ok() {
        // pg_dump never writes them, and tb-restore refuses a dump that has
        // them: published, it would look like a backup and restore nothing.
        w.abort();
        return Err(Failure::new(
            Cause::UnsafeArchive,
            format!(
                "the dump holds psql meta-commands that pg_dump never writes ({}): not published (tb-restore would refuse it)",
                facts.meta_commands.join(", ")
            ),
        )
        .into());
    }
    if let Err(why) = complete {
        w.abort();
        return Err(match what {
            None => incomplete_stdin(why),
            Some(what) => Failure::new(
                Cause::Incomplete,
                format!("{what} exited 0 but its output is not complete: {why}"),
            )
            .into(),
        });
    }
    let (inner, stats) = w.finish().map_err(write_err)?;
    Ok((inner, stats, facts))
}

fn incomplete_stdin(why: impl std::fmt::Display) -> anyhow::Error {
    Failure::new(
        Cause::Incomplete,
        format!(
            "the stream on stdin is not a complete pg_dump: {why}; the producer failed or was cut short (use set -o pipefail to see its exit status)"
        ),
    )
    .into()
}

/// Dump `src` into a temporary file beside `dest`, fsynced.
fn dump_to_temp(src: Source<'_>, dest: &Path, gz: GzOptions, kind: DumpKind) -> Result<Dumped> {
    let mut temp = TempFile::create(dest)?;
    let file = temp
        .file()
        .try_clone()
        .context("cannot duplicate a file handle")?;
    let w = ParGzWriter::new(file, gz);
    let (_, stats, facts) = stream(src, w, kind, &|e| write_error(e, dest))?;
    temp.sync()?;
    Ok(Dumped { temp, stats, facts })
}

/// Re-read the written temp file completely and compare with what was
/// written: the file on disk decompresses, every chunk on its own (the
/// chunk index is proven), to the same bytes (CRC-32 and length) whose SQL
/// the scanner checked while streaming, and has the sha256 the manifest
/// will carry.
fn check_written(d: &Dumped) -> Result<()> {
    let checked = check_gz(d.temp.path(), Some(&d.stats.chunks));
    // A check cut short by a signal is an interruption, not damage.
    signals::check()?;
    let gz = checked.map_err(|(_, why)| {
        Failure::new(
            Cause::Other,
            format!(
                "the written file '{}' does not verify: {why}",
                d.temp.path().display()
            ),
        )
    })?;
    if gz.gz_bytes != d.stats.gz_bytes
        || gz.raw_bytes != d.stats.raw_bytes
        || gz.sha256 != d.stats.sha256
        || gz.crc32 != d.stats.crc32
    {
        bail!(Failure::new(
            Cause::Other,
            format!(
                "the written file '{}' reads back different from what was written ({} of {} bytes): the disk or filesystem is not keeping data",
                d.temp.path().display(),
                gz.gz_bytes,
                d.stats.gz_bytes
            )
        ));
    }
    Ok(())
}

/// pg_dumpall --globals-only into `dest`'s temp. Failures are warnings: the
/// database dump is what matters, and a non-superuser cannot read role
/// passwords (then we retry with --no-role-passwords).
fn dump_roles(
    args: &Args,
    dest: &Path,
    gz: GzOptions,
    rep: &mut Reporter,
) -> Result<Option<Dumped>> {
    let conn = args.conn();
    let gz = GzOptions { threads: 1, ..gz };
    // The same connection string as the dump, so the roles come from the
    // same server.
    let base: Vec<OsString> = vec![
        "--globals-only".into(),
        // pg_dumpall takes a connection string with --dbname, a plain
        // database name with -l.
        if is_connstr(&args.dbname) {
            "--dbname"
        } else {
            "-l"
        }
        .into(),
        args.dbname.clone().into(),
    ];
    let attempt = |a: &[OsString]| {
        let src = Source::Program {
            conn: &conn,
            program: &args.pg_dumpall,
            args: a,
        };
        let d = dump_to_temp(src, dest, gz, DumpKind::Cluster)?;
        check_written(&d)?;
        Ok::<Dumped, anyhow::Error>(d)
    };
    let first = attempt(&base);
    let err = match first {
        Ok(d) => return Ok(Some(d)),
        Err(e) => e,
    };
    // These end the whole run: nothing could be published anyway.
    if matches!(
        tb_shared::error::cause_of(&err),
        Cause::Interrupted | Cause::DiskFull | Cause::NotWritable | Cause::Exists
    ) {
        return Err(err);
    }
    if tb_shared::error::cause_of(&err) == Cause::PermissionDenied {
        let mut retry = base.clone();
        retry.push("--no-role-passwords".into());
        if let Ok(d) = attempt(&retry) {
            rep.warn(
                "roles were dumped without their passwords (this user may not read them); after a restore onto a new server, set them with ALTER ROLE … PASSWORD",
                Record::new("warning").path(dest),
            );
            return Ok(Some(d));
        }
    }
    rep.warn(
        &format!("the roles file was not written: {err:#}; the database dump itself is complete (use --no-roles to skip roles)"),
        Record::new("warning").path(dest),
    );
    Ok(None)
}

/// `-o -`: stream the gzip to stdout. Without a trailer when anything
/// fails, so a consumer never sees a complete-looking stream.
fn dump_to_stdout(args: &Args, rep: &mut Reporter, clock: Instant) -> Result<Outcome> {
    let w = ParGzWriter::new(StdoutWriter(io::stdout()), args.gz());
    let conn = args.conn();
    let pg_args = args.pg_dump_args();
    let src = if args.stdin {
        Source::Stdin
    } else {
        Source::Program {
            conn: &conn,
            program: &args.pg_dump,
            args: &pg_args,
        }
    };
    let (_, stats, facts) = stream(src, w, DumpKind::Database, &|e| {
        anyhow::Error::new(e).context("cannot write to stdout")
    })?;
    rep.emit(
        Record::new("written")
            .with("kind", "dump")
            .with("path", "-")
            .with("bytes", stats.gz_bytes)
            .with("raw_bytes", stats.raw_bytes)
            .with("sha256", &stats.sha256)
            .with("tables", facts.tables.len())
            .with("rows", facts.rows())
            .with("large_objects", facts.large_objects)
            .with("server_version", &facts.server_version)
            .with("duration_ms", clock.elapsed().as_millis() as u64),
    );
    rep.summary_field("written", 1);
    Ok(rep.outcome())
}

/// Stdout as an owned, `Send` writer for the gzip thread.
struct StdoutWriter(io::Stdout);

impl Write for StdoutWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Args::command().debug_assert();
    }

    #[test]
    fn labels_that_do_not_fit_a_file_name_are_refused() {
        let a = Args::parse_from(["tb-dump", "--dbname", "my db"]);
        let e = a.validate().unwrap_err();
        assert!(e.to_string().contains("--name"), "{e}");
        Args::parse_from(["tb-dump", "--dbname", "my db", "--name", "mydb"])
            .validate()
            .unwrap();
    }

    #[test]
    fn passwords_in_connection_strings_are_refused() {
        let a = Args::parse_from([
            "tb-dump",
            "--dbname",
            "host=x password=secret",
            "--name",
            "x",
        ]);
        assert!(a.validate().unwrap_err().to_string().contains("PGPASSWORD"));
    }
}
