//! Restoring a dump (tb-dump's `.sql.gz`, or any gzipped plain pg_dump)
//! into a database, all or nothing.
//!
//! # Why a new database, renamed into place
//!
//! `psql --single-transaction` does not make a plain dump all-or-nothing:
//! pg_dump writes its own `BEGIN`/`COMMIT` around large objects, which ends
//! psql's transaction early, and a failure after that leaves a half-restored
//! database. So the dump is restored into a new database (created from
//! `template0` with the dump's encoding) under a temporary name, with
//! `ON_ERROR_STOP`; only when psql succeeded and every table's row count
//! matches the manifest is it renamed to the target (with `--clean`, the
//! old target is renamed away first and dropped after). A failure drops the
//! temporary database: the target is as it was.
//!
//! # Session settings
//!
//! The psql session that loads the dump runs with [`LOAD_SETTINGS`]:
//! `synchronous_commit = off`, no WAL flush after each of the dump's
//! statements. Nothing is lost by it: the rename into place commits in
//! another session, synchronously, and WAL is flushed in order, so
//! everything loaded is on disk before the target exists. A session
//! setting: the server's configuration is not touched. (A larger
//! `maintenance_work_mem` was tried: no faster on the benchmark dump; nor
//! were other `maintenance_work_mem` / `max_parallel_maintenance_workers`
//! settings for its index builds.)
//!
//! From a file, the tables' data loads in two such sessions side by side
//! (`--jobs 2`, the default): see [`crate::split`]. On the 1.17 GB
//! benchmark dump, the data took 7 to 8.5 s in two sessions where it took
//! 12.8 to 14.5 s in one (plain SQL from the page cache, 2 cores).
//!
//! # Row counts
//!
//! After psql is done, every table's rows are counted in the new database
//! (`SELECT count(*) FROM ONLY t` for a plain table, whose inheritance
//! children the dump loads on their own; a partitioned table with its
//! partitions, as `--load-via-partition-root` loads it) and compared with
//! the manifest. psql's own `COPY n` reports were tried instead (they save
//! the ~0.4 s of scanning a gigabyte again) and dropped: they count the rows
//! loaded, not the rows left when the dump is done, so a later `DELETE`,
//! `TRUNCATE`, `DROP` or rolled-back transaction in a dump went unnoticed.
//!
//! # Preflight
//!
//! Before anything is created: the file verifies completely (gzip CRC,
//! trailer, manifest sha256: one pass that also collects the roles and
//! extensions the dump needs); the dump's pg_dump is not newer than the
//! target server; the target does not exist, or holds no tables (else
//! `--clean`); every role the dump names exists (or `--with-roles` restores
//! the roles file first); every extension it creates is available.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use tb_shared::error::{Cause, Failure};
use tb_shared::exit::Outcome;
use tb_shared::gzip::{GzProblem, Inflated, inflate_reader};
use tb_shared::manifest::Manifest;
use tb_shared::naming::{manifest_path, roles_path};
use tb_shared::pg::{Conn, explain_failure};
use tb_shared::record::{Record, Reporter, path_value};
use tb_shared::signals;
use tb_shared::sqldump::{DumpFacts, DumpKind, DumpScanner};
use tb_shared::verify::{Verdict, check_file};

use crate::Args;
use crate::helper::{Helper, Out, Outcome as HelperOutcome, Session};
use crate::split::{Side, Sink, Split};

/// `"name"` for SQL.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'` for SQL.
pub(crate) fn quote_lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The connection of the restore's arguments.
pub(crate) fn conn(args: &Args) -> Conn {
    Conn {
        host: args.host.clone(),
        port: args.port.clone(),
        username: args.username.clone(),
        container: args.container.clone(),
        docker: args.docker.clone(),
    }
}

/// `name` as psql's and pg_dump's `-d`/`--dbname` take it: those read a
/// value with `=` or a `postgres://` prefix as connection settings (a
/// target named `dbname=other` was checked, and replaced, as `other`), so
/// such a name goes as `dbname='…'`.
pub fn db_arg(name: &str) -> String {
    if name.contains('=') || name.starts_with("postgres://") || name.starts_with("postgresql://") {
        format!(
            "dbname='{}'",
            name.replace('\\', "\\\\").replace('\'', "\\'")
        )
    } else {
        name.to_string()
    }
}

/// Whether the psql that loads the dump has `\restrict` (13.22, 14.19,
/// 15.14, 16.10, 17.6 and later): `psql --version`.
fn psql_restricts(conn: &Conn) -> bool {
    let args: Vec<OsString> = vec!["--version".into()];
    let Ok(out) = conn.command("psql", &args).stdin(Stdio::null()).output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(v) = text.split_whitespace().nth(2) else {
        return false;
    };
    let mut parts = v.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .unwrap_or(0)
    });
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    restricts(major, minor)
}

fn restricts(major: u32, minor: u32) -> bool {
    match major {
        0..=12 => false,
        13 => minor >= 22,
        14 => minor >= 19,
        15 => minor >= 14,
        16 => minor >= 10,
        17 => minor >= 6,
        _ => true,
    }
}

/// A key the dump cannot guess: 128 random bits, as hex.
fn restrict_key() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The psql arguments that make it refuse every meta-command: `-c
/// '\restrict KEY'` with a key the dump cannot know (none when psql is
/// too old to have it). What psql then gets must not hold the dump's own
/// `\restrict` lines ([`DumpScanner::feed_kept`] leaves them out).
pub(crate) fn restrict_args(conn: &Conn) -> Vec<OsString> {
    restrict_args_if(psql_restricts(conn))
}

/// [`restrict_args`] when psql has `\restrict`, a new key each call.
fn restrict_args_if(restricts: bool) -> Vec<OsString> {
    if restricts {
        vec!["-c".into(), format!("\\restrict {}", restrict_key()).into()]
    } else {
        Vec::new()
    }
}

/// Whether psql stopped because it refused a meta-command (it ran
/// restricted), and at which line.
pub(crate) fn refused_meta_command(stderr: &str) -> Option<Option<u64>> {
    stderr
        .lines()
        .find(|l| l.contains("backslash commands are restricted"))
        .map(psql_line)
}

/// The line of a psql message: `psql:<stdin>:123: ERROR:  …`.
fn psql_line(l: &str) -> Option<u64> {
    l.split(':')
        .nth(2)
        .and_then(|n| n.trim().parse::<u64>().ok())
}

/// A database other than the target to run administrative statements in.
const MAINTENANCE_DB: &str = "postgres";

/// Run SQL with psql in `db`; the unaligned, tuples-only output.
pub fn psql(conn: &Conn, db: &str, sql: &str) -> Result<String> {
    let db = &db_arg(db);
    let args: Vec<OsString> = [
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        db,
        "-f",
        "-",
    ]
    .iter()
    .map(Into::into)
    .collect();
    let mut cmd = conn.command("psql", &args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| spawn_error(e, conn))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(sql.as_bytes());
    }
    let out = child.wait_with_output().context("cannot wait for psql")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(explain_failure(
            &conn.describe("psql"),
            Some(out.status),
            &stderr,
            conn.container.is_some(),
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn spawn_error(e: io::Error, conn: &Conn) -> anyhow::Error {
    if e.kind() == io::ErrorKind::NotFound {
        let hint = if conn.container.is_some() {
            "is the Docker CLI installed?"
        } else {
            "install the PostgreSQL client (apt-get install postgresql-client), or restore with --container NAME"
        };
        Failure::new(
            Cause::NotFound,
            format!("cannot run psql: not found; {hint}"),
        )
        .into()
    } else {
        anyhow::Error::new(e).context("cannot run psql")
    }
}

/// The major version of a version string (`15.18 (Debian …)` -> 15; `9.6.2` -> 9).
pub(crate) fn major(v: &str) -> Option<u32> {
    v.trim()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// What is known about the dump before restoring it.
pub(crate) struct DumpInput {
    pub path: Option<PathBuf>,
    pub manifest: Option<Manifest>,
    pub facts: Option<DumpFacts>,
    /// Plain SQL (tables extracted from a dump), not a gzipped dump: read
    /// as it is, with no completion trailer to check.
    pub plain: bool,
    /// Verified while it streams into the new database (its manifest says
    /// what it needs), instead of in a pass of its own before.
    pub verify_streaming: bool,
}

impl DumpInput {
    fn shown(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into())
    }

    /// Expected row counts: the manifest's, else what the scan counted.
    fn expected_rows(&self) -> Option<BTreeMap<String, u64>> {
        if let Some(t) = self
            .manifest
            .as_ref()
            .and_then(|m| m.database.as_ref())
            .map(|d| d.tables.clone())
        {
            return Some(t);
        }
        self.facts.as_ref().map(|f| f.tables.clone())
    }

    /// The encoding the new database gets: the source database's (from
    /// the manifest), else the dump's client encoding, but UTF8 for one no
    /// database can have (`pg_dump -E SJIS`: psql converts it).
    fn encoding(&self) -> Option<String> {
        self.manifest
            .as_ref()
            .and_then(|m| m.database.as_ref())
            .and_then(|d| d.encoding.clone())
            .filter(|e| !e.is_empty())
            .or_else(|| self.facts.as_ref().and_then(|f| f.encoding.clone()))
            .map(|e| {
                if tb_shared::sqldump::CLIENT_ONLY_ENCODINGS
                    .contains(&e.to_ascii_lowercase().as_str())
                {
                    "UTF8".to_string()
                } else {
                    e
                }
            })
    }

    fn pg_dump_version(&self) -> Option<String> {
        self.facts
            .as_ref()
            .and_then(|f| f.pg_dump_version.clone())
            .or_else(|| {
                self.manifest
                    .as_ref()
                    .and_then(|m| m.database.as_ref())
                    .and_then(|d| d.pg_dump_version.clone())
            })
    }
}

fn check_record(check: &str, ok: bool) -> Record {
    Record::new("check").with("check", check).with("ok", ok)
}

/// The dump to restore. When its manifest records what the dump needs
/// (roles, extensions; tb-dump writes them) and the file has the manifest's
/// size, it is verified completely while it streams into the new database
/// (gzip CRC, trailer, sha256 against the manifest, no meta-command, row
/// counts), before anything takes the target's name: one pass instead of
/// two, and the target is as untouched as after a pass of its own. Else it
/// is verified first, in a pass of its own.
pub(crate) fn open_for_restore(path: &Path, rep: &mut Reporter) -> Result<DumpInput> {
    let mpath = manifest_path(path);
    let manifest = Manifest::load(&mpath).ok();
    let usable = manifest.as_ref().and_then(|m| {
        let db = m.database.as_ref()?;
        let (roles, extensions) = (db.roles.clone()?, db.extensions.clone()?);
        let name = path.file_name()?.to_string_lossy().into_owned();
        let entry = m.file(&name)?;
        let size = std::fs::symlink_metadata(path)
            .ok()
            .filter(|md| md.is_file())?
            .len();
        (size == entry.bytes && m.kind == "dump").then(|| DumpFacts {
            pg_dump_version: db.pg_dump_version.clone(),
            server_version: db.server_version.clone(),
            encoding: db.encoding.clone(),
            tables: db.tables.clone(),
            large_objects: db.large_objects,
            roles: roles.into_iter().collect(),
            extensions: extensions.into_iter().collect(),
            ..DumpFacts::default()
        })
    });
    match usable {
        Some(facts) => Ok(DumpInput {
            path: Some(path.to_path_buf()),
            manifest,
            facts: Some(facts),
            plain: false,
            verify_streaming: true,
        }),
        None => verify_dump(path, rep),
    }
}

/// Verify the dump file completely: the `verify` check.
pub(crate) fn verify_dump(path: &Path, rep: &mut Reporter) -> Result<DumpInput> {
    let c = check_file(path);
    signals::check()?;
    // Refused as unsafe before anything else is said of the file.
    if let Some(f) = &c.facts
        && !f.meta_commands.is_empty()
    {
        rep.emit(
            check_record("meta_commands", false)
                .path(path)
                .with("found", &f.meta_commands),
        );
        bail!(Failure::new(
            Cause::UnsafeArchive,
            format!(
                "'{}' holds psql meta-commands that pg_dump never writes ({}): psql would run them (\\! runs a shell command); nothing was touched. Inspect the file: gunzip -c FILE | grep -n '^\\\\'",
                path.display(),
                f.meta_commands.join(", ")
            )
        ));
    }
    if c.verdict != Verdict::Good || c.kind != "dump" {
        let why = c
            .reason
            .clone()
            .unwrap_or_else(|| format!("it is a {} file, not a database dump", c.kind));
        rep.emit(
            check_record("verify", false)
                .path(path)
                .with("reason", &why),
        );
        let cause = if c.verdict == Verdict::Unreadable {
            Cause::NotFound
        } else {
            Cause::Damaged
        };
        bail!(Failure::new(
            cause,
            format!(
                "'{}' does not verify: {why}; nothing was touched",
                path.display()
            )
        ));
    }
    let mpath = manifest_path(path);
    let manifest = if mpath.exists() {
        Some(Manifest::load(&mpath).map_err(|e| Failure::new(Cause::Damaged, format!("{e:#}")))?)
    } else {
        rep.warn(
            &format!(
                "no manifest beside '{}': row counts are checked against what the dump itself holds",
                path.display()
            ),
            Record::new("warning").path(path),
        );
        None
    };
    let mut r = check_record("verify", true).path(path);
    if let Some(gz) = &c.gz {
        r.set("bytes", gz.gz_bytes);
        r.set("sha256", &gz.sha256);
    }
    if let Some(f) = &c.facts {
        r.set("tables", f.tables.len());
        r.set("rows", f.rows());
    }
    rep.emit(r);
    Ok(DumpInput {
        path: Some(path.to_path_buf()),
        manifest,
        facts: c.facts,
        plain: false,
        verify_streaming: false,
    })
}

/// What the preflight learns from the server, in one psql call (each
/// call starts psql and a server session: about 0.1 s on Debian, where
/// `psql` is a Perl wrapper, and more through `docker exec`).
struct ServerFacts {
    major: u32,
    /// The target exists; `Some(true)` when it is a template or the
    /// maintenance database.
    target: Option<bool>,
    roles: std::collections::BTreeSet<String>,
    /// Only asked for when the dump creates extensions.
    extensions: std::collections::BTreeSet<String>,
    /// Databases named like temporary ones of restores, with their
    /// comments (a restore marks its own: [`mark_for`]).
    stale: Vec<(String, String)>,
}

/// A name as hex in SQL (any byte in a name survives the line-based
/// output), and back.
const HEX_NAME: &str = "encode(convert_to({}, 'UTF8'), 'hex')";

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect();
    bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn server_facts(conn: &Conn, target: &str, extensions: bool) -> Result<ServerFacts> {
    let hex = |col: &str| HEX_NAME.replace("{}", col);
    let mut sql = format!(
        "SELECT 'v|' || current_setting('server_version_num')\n\
         UNION ALL SELECT 'd|' || (datistemplate OR datname IN ('postgres', 'template0', 'template1'))::text \
         FROM pg_catalog.pg_database WHERE datname = {}\n\
         UNION ALL SELECT 'r|' || {} FROM pg_catalog.pg_roles\n\
         UNION ALL SELECT 's|' || {} || '|' || {} FROM pg_catalog.pg_database \
         WHERE datname LIKE 'tb\\_restore\\_%' OR datname LIKE 'tb\\_old\\_%'\n",
        quote_lit(target),
        hex("rolname"),
        hex("datname"),
        hex("coalesce(pg_catalog.shobj_description(oid, 'pg_database'), '')"),
    );
    if extensions {
        sql += &format!(
            "UNION ALL SELECT 'e|' || {} FROM pg_catalog.pg_available_extensions\n",
            hex("name")
        );
    }
    sql += ";\n";
    let out = psql(conn, MAINTENANCE_DB, &sql)?;
    let mut f = ServerFacts {
        major: 0,
        target: None,
        roles: Default::default(),
        extensions: Default::default(),
        stale: Vec::new(),
    };
    for line in out.lines() {
        let Some((tag, v)) = line.split_once('|') else {
            continue;
        };
        match tag {
            "v" => {
                let n: u32 = v
                    .trim()
                    .parse()
                    .with_context(|| format!("unexpected server_version_num '{}'", v.trim()))?;
                f.major = if n >= 100_000 { n / 10_000 } else { n / 100 };
            }
            "d" => f.target = Some(v == "true"),
            "r" => f.roles.extend(unhex(v)),
            "e" => f.extensions.extend(unhex(v)),
            "s" => {
                if let Some((name, comment)) = v.split_once('|')
                    && let (Some(name), Some(comment)) = (unhex(name), unhex(comment))
                {
                    f.stale.push((name, comment));
                }
            }
            _ => {}
        }
    }
    if f.major == 0 {
        bail!(
            "the server did not say its version (psql printed: {})",
            out.trim()
        );
    }
    Ok(f)
}

/// How many tables, sequences, views, functions, ... database `name` (which
/// exists) holds.
fn objects_in(conn: &Conn, name: &str) -> Result<u64> {
    // Anything in it counts: relations, large objects, functions, types,
    // schemas other than public, settings, a comment.
    let n = psql(
        conn,
        name,
        "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r','p','v','m','S','f') AND n.nspname NOT IN ('pg_catalog','information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%') \
         + (SELECT count(*) FROM pg_largeobject_metadata) \
         + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
            WHERE n.nspname NOT IN ('pg_catalog','information_schema')) \
         + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
            WHERE n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND t.typrelid = 0) \
         + (SELECT count(*) FROM pg_namespace WHERE nspname NOT IN ('public','pg_catalog','information_schema') \
            AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%') \
         + (SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()) \
         + (SELECT count(*) FROM pg_database d WHERE d.datname = current_database() AND shobj_description(d.oid, 'pg_database') IS NOT NULL);",
    )?;
    Ok(n.trim().parse().unwrap_or(u64::MAX))
}

/// Names the dump needs that `have` lacks.
fn missing(
    need: &std::collections::BTreeSet<String>,
    have: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    need.difference(have).cloned().collect()
}

/// Restore the roles file beside the dump (errors for roles that already
/// exist are expected and ignored; what matters is checked after).
fn restore_roles(conn: &Conn, dump: &Path, rep: &mut Reporter) -> Result<()> {
    let roles = roles_path(dump);
    let c = check_file(&roles);
    if c.verdict != Verdict::Good {
        bail!(Failure::new(
            Cause::Damaged,
            format!(
                "--with-roles: the roles file '{}' does not verify: {}",
                roles.display(),
                c.reason.unwrap_or_default()
            )
        ));
    }
    let args: Vec<OsString> = ["-X", "-q", "-d", MAINTENANCE_DB, "-f", "-"]
        .iter()
        .map(Into::into)
        .collect();
    let mut cmd = conn.command("psql", &args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| spawn_error(e, conn))?;
    let mut stdin = child.stdin.take().context("psql has no stdin")?;
    let mut gz = flate2::read::MultiGzDecoder::new(
        std::fs::File::open(&roles)
            .with_context(|| format!("cannot open '{}'", roles.display()))?,
    );
    let copied = io::copy(&mut gz, &mut stdin);
    drop(stdin);
    let out = child.wait_with_output().context("cannot wait for psql")?;
    copied.with_context(|| format!("cannot send '{}' to psql", roles.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors = stderr.lines().filter(|l| l.contains("ERROR:")).count();
    rep.emit(
        Record::new("restored")
            .with("kind", "roles")
            .path(&roles)
            .with("errors_ignored", errors),
    );
    Ok(())
}

/// What the preflight found: the target's state (`None`: it does not
/// exist; else how many objects it holds) and the temporary databases of
/// earlier restores.
pub(crate) struct Ready {
    state: Option<u64>,
    stale: Vec<(String, String)>,
    /// The server's major version.
    server_major: u32,
}

/// Every preflight check; errors name what is missing and the way forward.
pub(crate) fn preflight(
    args: &Args,
    conn: &Conn,
    input: &DumpInput,
    target: &str,
    rep: &mut Reporter,
) -> Result<Ready> {
    let no_names = std::collections::BTreeSet::new();
    let (need_roles, need_extensions) = match &input.facts {
        Some(f) => (&f.roles, &f.extensions),
        None => (&no_names, &no_names),
    };
    let mut server = server_facts(conn, target, !need_extensions.is_empty())?;
    // The server and its version.
    let dump_v = input.pg_dump_version();
    let dump_major = dump_v.as_deref().and_then(major);
    let ok = dump_major.is_none_or(|d| d <= server.major);
    let mut r = check_record("version", ok).with("server_major", server.major);
    if let Some(v) = &dump_v {
        r.set("pg_dump_version", v);
    }
    rep.emit(r);
    if !ok {
        bail!(Failure::new(
            Cause::VersionMismatch,
            format!(
                "the dump was made by pg_dump {} and the target server is PostgreSQL {}: a dump from a newer pg_dump may use syntax the older server does not know; restore onto PostgreSQL {} or newer",
                dump_v.unwrap_or_default(),
                server.major,
                dump_major.unwrap_or_default()
            )
        ));
    }
    // The target.
    let state = match server.target {
        None => None,
        Some(true) => bail!(Failure::new(
            Cause::BadInput,
            format!(
                "'{target}' is a template or the maintenance database: tb-restore never replaces it; restore into a database of its own (--dbname NEW)"
            )
        )),
        Some(false) => Some(objects_in(conn, target)?),
    };
    let ok = match state {
        None | Some(0) => true,
        Some(_) => args.clean,
    };
    let mut r = check_record("target", ok)
        .with("dbname", target)
        .with("exists", state.is_some());
    if let Some(n) = state {
        r.set("objects", n);
    }
    rep.emit(r);
    if !ok {
        bail!(Failure::new(
            Cause::NotEmpty,
            format!(
                "the database '{target}' already holds {} objects (tables, sequences, functions, types, schemas, large objects, settings): restore into a new database (--dbname NEW), or give --clean to replace it (it is dropped only after the restore succeeded)",
                state.unwrap_or_default()
            )
        ));
    }
    // Roles.
    let mut missing_roles = missing(need_roles, &server.roles);
    if !missing_roles.is_empty() && args.with_roles {
        match &input.path {
            Some(p) => {
                restore_roles(conn, p, rep)?;
                server = server_facts(conn, target, !need_extensions.is_empty())?;
                missing_roles = missing(need_roles, &server.roles);
            }
            None => bail!(usage_err(
                "--with-roles needs the dump as a file (its roles file lies beside it), not stdin"
            )),
        }
    }
    rep.emit(check_record("roles", missing_roles.is_empty()).with("missing", &missing_roles));
    if !missing_roles.is_empty() {
        let with = input
            .path
            .as_ref()
            .map(|p| {
                format!(
                    "give --with-roles to restore '{}' first, or ",
                    roles_path(p).display()
                )
            })
            .unwrap_or_default();
        bail!(Failure::new(
            Cause::NoRole,
            format!(
                "the dump needs roles that the server does not have: {}; {with}create them (CREATE ROLE …)",
                missing_roles.join(", ")
            )
        ));
    }
    // Extensions.
    let missing_ext = missing(need_extensions, &server.extensions);
    rep.emit(check_record("extensions", missing_ext.is_empty()).with("missing", &missing_ext));
    if !missing_ext.is_empty() {
        bail!(Failure::new(
            Cause::NotFound,
            format!(
                "the dump creates extensions that the target server does not have: {}; install them on the server (often the package postgresql-contrib or postgresql-NN-EXTENSION)",
                missing_ext.join(", ")
            )
        ));
    }
    Ok(Ready {
        state,
        stale: server.stale,
        server_major: server.major,
    })
}

fn usage_err(msg: &str) -> anyhow::Error {
    Failure::new(Cause::BadInput, msg.to_string()).into()
}

/// The first error psql printed, with its line: `(line, message)`.
fn first_error(stderr: &str) -> Option<(Option<u64>, String)> {
    let l = stderr
        .lines()
        .find(|l| l.contains("ERROR:") || l.contains("FATAL:"))?;
    let line = psql_line(l);
    let msg = l
        .find("ERROR:")
        .or_else(|| l.find("FATAL:"))
        .map(|i| l[i..].trim().to_string())
        .unwrap_or_else(|| l.to_string());
    Some((line, msg))
}

/// The dump's plain SQL, read again from its file (to name a line).
fn reread(input: &DumpInput) -> Option<io::BufReader<Box<dyn Read>>> {
    let f = std::fs::File::open(input.path.as_ref()?).ok()?;
    let f: Box<dyn Read> = if input.plain {
        Box::new(f)
    } else {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    };
    Some(io::BufReader::new(f))
}

/// Line `n` (1-based) of the dump, shortened: the statement psql stopped at.
fn dump_line(input: &DumpInput, n: u64) -> Option<String> {
    let line = reread(input)?
        .split(b'\n')
        .nth(n.checked_sub(1)? as usize)?
        .ok()?;
    let s = String::from_utf8_lossy(&line).into_owned();
    Some(if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s
    })
}

/// The dump's line of the row a COPY failed at: `end` is the line of the
/// block's `\.` (where psql stopped), `said` psql's stderr with the
/// server's `CONTEXT:  COPY t, line K`.
fn copy_row(input: &DumpInput, end: u64, said: &str) -> Option<u64> {
    let k: u64 = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("CONTEXT:  COPY "))
        .and_then(|rest| rest.split_once(", line ").map(|(_, r)| r))
        .map(|r| {
            r.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })?
        .parse()
        .ok()?;
    let f = reread(input)?;
    let (mut copy_at, mut in_data) = (None, false);
    for (i, l) in f.split(b'\n').enumerate() {
        let n = i as u64 + 1;
        let l = l.ok()?;
        let l = l.strip_suffix(b"\r").unwrap_or(&l);
        if n == end {
            return copy_at
                .map(|c: u64| c + k)
                .filter(|r| in_data && l == b"\\." && *r < end);
        }
        if in_data {
            in_data = l != b"\\.";
        } else if l.starts_with(b"COPY ") && l.ends_with(b" FROM stdin;") {
            (copy_at, in_data) = (Some(n), true);
        }
    }
    None
}

/// The pipe into psql.
const PIPE_BYTES: i32 = 1 << 20;

/// What the session that loads a dump sets first (see the module's docs).
pub(crate) const LOAD_SETTINGS: &str = "SET synchronous_commit = off;";

/// The main side of a restore: its psql session (the first, then the one
/// that loads the data), and the helper session when there is one (see
/// [`crate::split`]).
struct MainSink<'a> {
    conn: &'a Conn,
    db: String,
    restricts: bool,
    settings: String,
    /// The file again, for the helper; plain SQL or gzip.
    file: Option<std::fs::File>,
    plain: bool,
    session: Session,
    /// How the first session ended, once the data sessions took over.
    first: Option<(std::process::ExitStatus, String)>,
    /// psql stopped reading (its stderr says why), or the helper failed:
    /// nothing more is written.
    gone: bool,
    helper: Option<Helper>,
    helper_done: Option<HelperOutcome>,
    /// Why the data loaded in one session after all.
    one_session: Option<String>,
    /// Why the restore cannot go on (the first session did not end as the
    /// scanner expected).
    refused: Option<anyhow::Error>,
}

impl MainSink<'_> {
    /// psql's arguments for a session of this restore (a restrict key of
    /// its own).
    fn args(&self) -> Vec<OsString> {
        session_args(&self.db, self.restricts, &self.settings)
    }

    /// Wait for the helper to end (stop it first when `stop`); when it did
    /// not do its part, nothing more goes to psql.
    fn join_helper(&mut self, stop: bool) {
        if let Some(h) = self.helper.take() {
            if stop {
                h.abort();
            }
            self.helper_done = h.join();
            if !self.helper_done.as_ref().is_some_and(HelperOutcome::ok) {
                self.gone = true;
            }
        }
    }
}

impl Sink for MainSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.gone {
            return Ok(());
        }
        if let Some(stdin) = &mut self.session.stdin
            && stdin.write_all(bytes).is_err()
        {
            self.gone = true;
        }
        Ok(())
    }

    fn gate(&mut self) -> io::Result<bool> {
        // Everything before the data has run when the first session ended
        // well; then the data sessions, the main one first (a server that
        // takes one more connection only gives it to the main one).
        if let (Some(q), Some(stdin), false) = (
            self.session.gate_query(),
            self.session.stdin.as_mut(),
            self.gone,
        ) && stdin.write_all(q.as_bytes()).is_err()
        {
            self.gone = true;
        }
        let (status, said) = self.session.finish(self.gone).map_err(io::Error::other)?;
        let ok = status.success() && !self.gone;
        self.first = Some((status, said));
        if !ok {
            self.gone = true;
            return Ok(false);
        }
        // The data sessions begin as the first one ended: its settings, as
        // the server had them.
        let alone = match first_session_state(self.session.gate_line()) {
            Ok((settings, alone)) => {
                self.settings.push_str(&settings);
                alone
            }
            Err(why) => {
                self.gone = true;
                self.refused = Some(why);
                return Ok(false);
            }
        };
        // Asked before the data sessions connect (a server that takes one
        // more connection gives it to the main one).
        let alone = alone.or_else(|| match load_sees_other_tables(self.conn, &self.db) {
            Ok(None) => None,
            Ok(Some(what)) => Some(format!(
                "the database holds, before the data, {what}: one table's rows could see another's as they load"
            )),
            Err(e) => Some(format!("the catalog could not be asked ({e:#})")),
        });
        self.session = Session::start(self.conn, &self.args(), Out::Ready)
            .map_err(|e| io::Error::other(spawn_error(e, self.conn)))?;
        if !self.session.wait_ready() {
            self.gone = true;
            return Ok(false);
        }
        if alone.is_some() {
            self.one_session = alone;
            return Ok(false);
        }
        let Some(file) = self.file.as_ref().and_then(|f| f.try_clone().ok()) else {
            self.one_session = Some("the file could not be opened a second time".into());
            return Ok(false);
        };
        match Helper::start(self.conn, file, self.plain, self.args()) {
            Ok(h) => {
                self.helper = Some(h);
                Ok(true)
            }
            Err(why) => {
                self.one_session = Some(format!("a second session could not connect ({why})"));
                Ok(false)
            }
        }
    }

    fn barrier(&mut self) -> io::Result<()> {
        let stop = self.gone;
        self.join_helper(stop);
        Ok(())
    }
}

/// What in database `db`, once everything before the dump's data has run
/// there, could let one table's rows see another table's as they load: a
/// trigger, a rule on a table, an event trigger, a foreign key; a CHECK,
/// DEFAULT, generated column, partition key or index that calls a
/// function or operator that is not the server's own nor of an extension
/// in
/// [`tb_shared::sqldump::PLAIN_EXTENSIONS`], or a built-in that runs a
/// query (the server records no dependency on its own functions: those
/// are found by name); a CHECK, generated column, partition key or index
/// that calls a volatile function (an advisory lock, `nextval`,
/// `set_config`: what it does, the other session would see in another
/// order); a base type whose input function is such, a range type with a
/// canonical function or an operator class of the dump's. Asked of the catalog, whatever the scanner made of
/// the dump's text: the second session starts only when there is none.
/// `Some(what)`: the first found.
pub fn load_sees_other_tables(conn: &Conn, db: &str) -> Result<Option<String>> {
    let plain: Vec<String> = tb_shared::sqldump::PLAIN_EXTENSIONS
        .iter()
        .map(|e| quote_lit(e))
        .collect();
    let sql = format!(
        "WITH plain AS (
    SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
    WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'
      AND e.extname IN ({plain})
), ours AS (
    SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass AS classid, p.oid FROM pg_catalog.pg_proc p
    WHERE p.oid >= 16384
      AND NOT EXISTS (SELECT FROM plain x WHERE x.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND x.objid = p.oid)
    UNION ALL
    SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, o.oid FROM pg_catalog.pg_operator o
    WHERE o.oid >= 16384
      AND NOT EXISTS (SELECT FROM plain x WHERE x.classid = 'pg_catalog.pg_operator'::pg_catalog.regclass AND x.objid = o.oid)
    UNION ALL
    SELECT 'pg_catalog.pg_opclass'::pg_catalog.regclass, c.oid FROM pg_catalog.pg_opclass c
    WHERE c.oid >= 16384
      AND NOT EXISTS (SELECT FROM plain x WHERE x.classid = 'pg_catalog.pg_opclass'::pg_catalog.regclass AND x.objid = c.oid)
)
SELECT what FROM (
    SELECT 'a trigger (' || t.tgname || ')' AS what FROM pg_catalog.pg_trigger t WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'a rule (' || r.rulename || ')' FROM pg_catalog.pg_rewrite r
    JOIN pg_catalog.pg_class c ON c.oid = r.ev_class WHERE c.relkind IN ('r', 'p', 'f')
    UNION ALL
    SELECT 'an event trigger (' || e.evtname || ')' FROM pg_catalog.pg_event_trigger e
    UNION ALL
    SELECT 'a foreign key (' || c.conname || ')' FROM pg_catalog.pg_constraint c WHERE c.contype = 'f'
    UNION ALL
    SELECT 'an expression, key or index that uses ' || pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0)
    FROM pg_catalog.pg_depend d JOIN ours o ON o.classid = d.refclassid AND o.oid = d.refobjid
    WHERE d.classid IN ('pg_catalog.pg_constraint'::pg_catalog.regclass, 'pg_catalog.pg_attrdef'::pg_catalog.regclass,
                        'pg_catalog.pg_class'::pg_catalog.regclass)
    UNION ALL
    SELECT 'an expression that runs a query (' || e.def || ')' FROM (
        SELECT pg_catalog.pg_get_constraintdef(c.oid) FROM pg_catalog.pg_constraint c
        UNION ALL
        SELECT pg_catalog.pg_get_expr(a.adbin, a.adrelid) FROM pg_catalog.pg_attrdef a
        UNION ALL
        SELECT pg_catalog.pg_get_partkeydef(p.partrelid) FROM pg_catalog.pg_partitioned_table p
        UNION ALL
        SELECT pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
    ) e(def)
    WHERE e.def ~ '(_to_xml|_to_xmlschema|_to_xml_and_xmlschema|ts_stat|ts_rewrite)\\('
    UNION ALL
    SELECT 'a CHECK, generated column, partition key or index that calls ' || p.oid::pg_catalog.regprocedure::text
        || ', which has side effects (volatile)'
    FROM (
        SELECT c.conbin::text FROM pg_catalog.pg_constraint c WHERE c.conbin IS NOT NULL
        UNION ALL
        SELECT a.adbin::text FROM pg_catalog.pg_attrdef a
        JOIN pg_catalog.pg_attribute t ON t.attrelid = a.adrelid AND t.attnum = a.adnum WHERE t.attgenerated <> ''
        UNION ALL
        SELECT p.partexprs::text FROM pg_catalog.pg_partitioned_table p WHERE p.partexprs IS NOT NULL
        UNION ALL
        SELECT i.indexprs::text FROM pg_catalog.pg_index i WHERE i.indexprs IS NOT NULL
        UNION ALL
        SELECT i.indpred::text FROM pg_catalog.pg_index i WHERE i.indpred IS NOT NULL
    ) e(tree)
    CROSS JOIN LATERAL pg_catalog.regexp_matches(e.tree, ':(?:op)?funcid ([0-9]+)', 'g') m
    JOIN pg_catalog.pg_proc p ON p.oid = m[1]::pg_catalog.oid
    WHERE p.provolatile = 'v'
    UNION ALL
    SELECT 'a range type with functions of its own (' || r.rngtypid::pg_catalog.regtype::text || ')'
    FROM pg_catalog.pg_range r
    WHERE r.rngcanonical::pg_catalog.oid >= 16384
       OR EXISTS (SELECT FROM ours o WHERE o.classid = 'pg_catalog.pg_opclass'::pg_catalog.regclass AND o.oid = r.rngsubopc)
    UNION ALL
    SELECT 'a base type with an input function of its own (' || t.oid::pg_catalog.regtype::text || ')'
    FROM pg_catalog.pg_type t
    WHERE t.typtype = 'b' AND t.oid >= 16384 AND t.typinput::pg_catalog.oid >= 16384
      AND NOT EXISTS (SELECT FROM plain x WHERE x.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND x.objid = t.oid)
) found LIMIT 1;
",
        plain = plain.join(", ")
    );
    let out = psql(conn, db, &sql)?;
    Ok(out.lines().next().map(str::to_string))
}

/// What the first session of a split load printed for its gate query
/// (after the key: JSON), as the settings the data sessions begin with
/// (`set_config` calls). The first session must have ended outside a
/// string, comment, statement or transaction, with no temporary objects:
/// else psql read the dump's text otherwise than the scanner, or the dump
/// made what a second session cannot have, and a split load would not be
/// the one-session restore.
fn first_session_state(line: Option<Vec<u8>>) -> Result<(String, Option<String>)> {
    let refuse = |why: &str| {
        anyhow::Error::new(Failure::new(
            Cause::UnsafeArchive,
            format!(
                "the dump's text before its data {why}: it is not as pg_dump writes it; restore it with --jobs 1, in one session, if it is to be restored as psql reads it"
            ),
        ))
    };
    let Some(line) = line else {
        return Err(refuse(
            "ends inside a string, comment or statement as psql reads it (tb-restore read it otherwise)",
        ));
    };
    let state: serde_json::Value = serde_json::from_slice(&line)
        .map_err(|_| refuse("made psql print what tb-restore could not read"))?;
    if state["xact"].as_bool() != Some(false) {
        return Err(refuse("leaves a transaction open"));
    }
    if state["temp"].as_u64() != Some(0) {
        return Err(refuse("makes temporary objects"));
    }
    let mut sql = String::new();
    // What the scanner cannot follow among the data: backslashes that
    // escape in every string, an encoding psql lexes by characters.
    let mut alone = None;
    for pair in state["settings"].as_array().into_iter().flatten() {
        let (Some(name), Some(value)) = (pair[0].as_str(), pair[1].as_str()) else {
            return Err(refuse("made psql print what tb-restore could not read"));
        };
        let lower = value.to_ascii_lowercase();
        if (name == "standard_conforming_strings" && lower != "on")
            || (name == "client_encoding"
                && tb_shared::sqldump::CLIENT_ONLY_ENCODINGS.contains(&lower.as_str()))
        {
            alone = Some(format!(
                "the dump sets {name} to {value} before its data: tb-restore cannot follow psql's reading of it among the data"
            ));
        }
        sql.push_str(&format!(
            " SELECT pg_catalog.set_config({}, {}, false);",
            quote_lit(name),
            quote_lit(value)
        ));
    }
    Ok((sql, alone))
}

/// psql's arguments for a session that loads (part of) a dump into `db`:
/// stop at the first error, restricted when it can be, our settings, SQL
/// on stdin.
fn session_args(db: &str, restricts: bool, settings: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db]
        .iter()
        .map(Into::into)
        .collect();
    args.extend(restrict_args_if(restricts));
    args.extend(["-c".into(), settings.into(), "-f".into(), "-".into()]);
    args
}

/// How the dump streamed in: what the scanner learned, the psql sessions
/// that loaded the data, and why one when two were asked for.
struct Streamed {
    facts: DumpFacts,
    sessions: u32,
    one_session: Option<String>,
}

/// Stream the dump (file or stdin) into psql on database `db`; the scanner
/// checks completeness on the way (for stdin, the only check). With
/// `jobs` 2 and a file, the data of the tables loads in two sessions side
/// by side (see [`crate::split`]).
///
/// One thread decompresses, scans and writes, as `gunzip` does: psql and
/// the server set the pace, and on two cores a separate decompression
/// thread handing over its pieces made the server's COPYs about 10 %
/// slower (measured against `gunzip -c | psql`).
fn stream_into(
    conn: &Conn,
    input: &DumpInput,
    db: &str,
    jobs: usize,
    server_major: u32,
) -> Result<Streamed> {
    // psql itself refuses every meta-command of the dump: it runs
    // restricted (`\restrict`) with a key of ours that the dump cannot
    // know, and the dump's own `\restrict`/`\unrestrict` lines are left
    // out of what it gets. The scanner's refusal comes first, but it is a
    // model of psql's lexer and a model can be wrong; this cannot.
    let file = match &input.path {
        Some(p) => {
            Some(std::fs::File::open(p).with_context(|| format!("cannot open '{}'", p.display()))?)
        }
        None => None,
    };
    let parallel = jobs >= 2 && file.is_some();
    // A session that waits for the other (at the barrier, or while its
    // reader passes the other's data) must not be ended as idle.
    let settings = if server_major >= 14 {
        format!("{LOAD_SETTINGS} SET idle_session_timeout = 0;")
    } else {
        LOAD_SETTINGS.to_string()
    };
    let (db, restricts) = (db_arg(db), psql_restricts(conn));
    let first = if parallel { Out::Gate } else { Out::Dropped };
    let session = Session::start(conn, &session_args(&db, restricts, &settings), first)
        .map_err(|e| spawn_error(e, conn))?;
    let mut sink = MainSink {
        conn,
        db,
        restricts,
        settings,
        file: None,
        plain: input.plain,
        session,
        first: None,
        gone: false,
        helper: None,
        helper_done: None,
        one_session: None,
        refused: None,
    };
    let mut scanner = DumpScanner::new(DumpKind::Database);
    let mut split = Split::new(Side::Main, parallel);
    let total = input
        .manifest
        .as_ref()
        .and_then(|m| m.files.iter().find(|f| f.role == "dump"))
        .map(|f| f.raw_bytes)
        .filter(|_| !input.plain);
    let progress = tb_shared::progress::Progress::new("restoring", total);
    // Why feeding stopped early, when it did.
    let mut send_error: Option<anyhow::Error> = None;
    let mut events = Vec::new();
    let source: Box<dyn Read> = match &file {
        Some(f) => Box::new(
            f.try_clone()
                .context("cannot open the dump a second time")?,
        ),
        None => Box::new(io::stdin().lock()),
    };
    if parallel {
        sink.file = file;
    }
    let mut feed = |piece: &[u8]| -> io::Result<()> {
        let stop = || Err(io::Error::other("feeding psql stopped"));
        if let Err(e) = signals::check() {
            send_error = Some(e);
            return stop();
        }
        scanner.feed_lines(piece, &mut events);
        if scanner.has_meta_commands() {
            // Never hand psql a `\!` (or any other meta-command).
            send_error = Some(anyhow::Error::new(Failure::new(
                Cause::UnsafeArchive,
                format!(
                    "'{}' holds psql meta-commands that pg_dump never writes: refused before psql saw them",
                    input.shown()
                ),
            )));
            return stop();
        }
        // The helper failed, or psql did: the other one stops now.
        if sink.helper.as_ref().is_some_and(Helper::failed) || sink.gone && sink.helper.is_some() {
            let stop_it = sink.gone;
            sink.join_helper(stop_it);
        }
        split.feed(piece, &events, scanner.in_dropped_line(), &mut sink)?;
        if sink.gone && input.path.is_none() {
            return stop();
        }
        // A file is read to its end also when psql stopped: a damaged file
        // makes psql fail, and the damage, not psql's error, is the cause.
        progress.inc(piece.len() as u64);
        Ok(())
    };
    // The reader's verdict: Ok(None) when there is none to have (the
    // feeding stopped first, or plain SQL read to its end).
    let verdict: Result<Option<Inflated>, GzProblem> = if input.plain {
        let mut source = source;
        let mut buf = vec![0u8; PIPE_BYTES as usize / 4];
        loop {
            match source.read(&mut buf) {
                Ok(0) => break Ok(None),
                Ok(n) => {
                    if feed(&buf[..n]).is_err() {
                        break Ok(None);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(GzProblem::Unreadable(e)),
            }
        }
    } else {
        match inflate_reader(source, &mut feed) {
            Ok(gz) => Ok(Some(gz)),
            Err(GzProblem::Consumer(_)) => Ok(None),
            Err(p) => Err(p),
        }
    };
    let gz = verdict.map_err(|p| p.to_string()).and_then(|gz| {
        // Verified while streaming: the file is the one the manifest describes.
        let Some(gz) = gz.filter(|_| input.verify_streaming) else {
            return Ok(());
        };
        let entry = input
            .manifest
            .as_ref()
            .and_then(|m| m.files.iter().find(|f| f.role == "dump"));
        match entry {
            Some(f) if f.sha256 == gz.sha256 && f.bytes == gz.gz_bytes => Ok(()),
            _ => Err(format!(
                "it does not match its manifest (sha256 {}, {} bytes)",
                gz.sha256, gz.gz_bytes
            )),
        }
    });
    let dropped = scanner.in_dropped_line();
    let (facts, complete) = scanner.finish();
    let incomplete = match (&gz, &complete) {
        (Err(p), _) => Some(p.clone()),
        // psql stopped reading stdin: what was left unread is no fault of
        // the stream; psql's own error is the reason.
        (Ok(_), Err(_)) if sink.gone && input.path.is_none() => None,
        (Ok(_), Err(why)) if !input.plain => Some(why.to_string()),
        _ => None,
    };
    let cut = incomplete.is_some() || send_error.is_some();
    if cut {
        // Never let psql reach the end of a cut stream: it would commit
        // what it has. Kill it, and the helper; the temporary database is
        // dropped.
        let _ = sink.session.child.kill();
        sink.join_helper(true);
    } else {
        // The last line (when it has no line end), after the helper is
        // done; then wait for the helper (when it took no block, it may
        // still be reading).
        let _ = split.finish(dropped, &mut sink);
        let stop_it = sink.gone;
        sink.join_helper(stop_it);
    }
    // The helper failed by itself (not stopped because the main session
    // did): the main session stopped for it.
    let helper_bad = sink
        .helper_done
        .as_ref()
        .is_some_and(|h| split.helper_blocks() > 0 && !h.ok() && !h.stopped);
    // psql must not commit what it has when the rest is missing.
    let (status, said) = sink.session.finish(cut || helper_bad)?;
    if let Some(e) = send_error.or(sink.refused.take()) {
        return Err(e);
    }
    // Interrupted: psql was killed by the signal handling, not by anyone
    // else (it said "psql was killed by SIGTERM").
    signals::check()?;
    if let Some(why) = incomplete {
        bail!(match input.path {
            Some(_) => Failure::new(
                Cause::Damaged,
                format!("'{}' is damaged: {why}", input.shown())
            ),
            None => Failure::new(
                Cause::Incomplete,
                format!("'{}' is incomplete: {why}", input.shown())
            ),
        });
    }
    // The session before the data failed: the others never started.
    if let Some((st, said)) = &sink.first
        && !st.success()
    {
        let lines = split.first_lines();
        return Err(psql_failed(conn, input, Some(*st), said, |n| {
            lines.dump_line(n)
        }));
    }
    // The helper's psql failed by itself: its error is the one to report
    // (the main session was stopped for it).
    if let Some(h) = &sink.helper_done
        && split.helper_blocks() > 0
        && h.psql_failed()
    {
        return Err(psql_failed(conn, input, h.status, &h.stderr, |n| {
            h.split.lines().dump_line(n)
        }));
    }
    if !status.success() && !helper_bad {
        return Err(psql_failed(conn, input, Some(status), &said, |n| {
            split.lines().dump_line(n)
        }));
    }
    if let Some(h) = &sink.helper_done
        && split.helper_blocks() > 0
    {
        if !h.ok() {
            bail!(Failure::new(
                Cause::Other,
                format!(
                    "the second psql session stopped before it had loaded its tables ({}); the restore is not complete",
                    h.reason.as_deref().unwrap_or("stopped")
                )
            ));
        }
        if h.split.helper_crc() != split.helper_crc() {
            bail!(Failure::new(
                Cause::Damaged,
                format!(
                    "'{}' changed while it was restored (the two readers of it read different bytes)",
                    input.shown()
                )
            ));
        }
    }
    if !status.success() {
        return Err(psql_failed(conn, input, Some(status), &said, |n| {
            split.lines().dump_line(n)
        }));
    }
    if sink.gone {
        bail!(Failure::new(
            Cause::Other,
            format!(
                "psql ended without an error before it had read all of '{}'; the restore is not complete",
                input.shown()
            )
        ));
    }
    let sessions = if split.helper_blocks() > 0 { 2 } else { 1 };
    Ok(Streamed {
        facts,
        sessions,
        one_session: sink
            .one_session
            .clone()
            .or_else(|| split.serial_reason().map(str::to_string))
            .filter(|_| parallel),
    })
}

/// The error for a psql (of the restore) that failed: `said` its stderr,
/// `line` maps its line numbers to the dump's.
fn psql_failed(
    conn: &Conn,
    input: &DumpInput,
    status: Option<std::process::ExitStatus>,
    said: &str,
    line: impl Fn(u64) -> u64,
) -> anyhow::Error {
    if let Some(at) = refused_meta_command(said) {
        let at = at
            .map(|n| format!(" at line {}", line(n)))
            .unwrap_or_default();
        return Failure::new(
            Cause::UnsafeArchive,
            format!(
                "'{}' holds a psql meta-command{at} that pg_dump never writes; psql refused it (tb-restore runs psql restricted), and nothing it held was run",
                input.shown()
            ),
        )
        .into();
    }
    if let Some((n, msg)) = first_error(said) {
        // A bad row: psql names the COPY's `\.` line (it reads the whole
        // block before the server answers), the server the row.
        let n = n.map(&line).map(|n| copy_row(input, n, said).unwrap_or(n));
        let at = match n {
            Some(n) => {
                let stmt = dump_line(input, n)
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                format!(" at line {n} of the dump{stmt}")
            }
            None => String::new(),
        };
        let (cause, _) = tb_shared::pg::classify(said, conn.container.is_some());
        return Failure::new(cause, format!("the restore stopped{at}: {msg}")).into();
    }
    explain_failure(
        &conn.describe("psql"),
        status,
        said,
        conn.container.is_some(),
    )
    .into()
}

/// A table's restored row count and the count the dump has.
type TableCount = (String, u64, u64);

/// Row counts of `tables` (names as the dump writes them) in `db`; `None`
/// for a table that is not there (or is no longer a table: a view of the
/// same name with as many rows passed). One psql call: the count statements
/// are made by the server and run by psql's `\gexec`.
fn count_rows(conn: &Conn, db: &str, tables: &[String]) -> Result<Vec<Option<u64>>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    // A partitioned table is counted with its partitions (the dump loads
    // them through it with --load-via-partition-root, else it has no rows
    // of its own and its partitions are tables of the dump); any other
    // without its inheritance children, which the dump loads on their own.
    let values: Vec<String> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| format!("({i}, {})", quote_lit(t)))
        .collect();
    let sql = format!(
        "SELECT pg_catalog.format('SELECT %s, count(*) FROM %s%s;', v.i, \
         CASE WHEN c.relkind = 'p' THEN '' ELSE 'ONLY ' END, c.oid::pg_catalog.regclass) \
         FROM (VALUES {}) AS v(i, t) \
         JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(v.t) AND c.relkind IN ('r', 'p') \
         ORDER BY v.i\n\\gexec\n",
        values.join(", ")
    );
    let out = psql(conn, db, &sql)?;
    let mut counts = vec![None; tables.len()];
    for line in out.lines() {
        let parsed = line
            .split_once('|')
            .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<u64>().ok()?)));
        match parsed {
            Some((i, n)) if i < counts.len() => counts[i] = Some(n),
            _ => bail!("cannot count the rows of the restored tables (psql printed '{line}')"),
        }
    }
    Ok(counts)
}

fn drop_db(conn: &Conn, db: &str) -> Result<String> {
    psql(
        conn,
        MAINTENANCE_DB,
        &format!("DROP DATABASE IF EXISTS {};", quote_ident(db)),
    )
}

/// Drop a temporary database of a restore, ending the sessions on it
/// first: a killed psql leaves its server session running the statement
/// it was in (an index build, say), and `DROP DATABASE` gave up after 5 s.
fn drop_temp(conn: &Conn, db: &str) -> Result<String> {
    psql(
        conn,
        MAINTENANCE_DB,
        &format!(
            "SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity \
             WHERE datname = {} AND pid <> pg_catalog.pg_backend_pid();\n\
             DROP DATABASE IF EXISTS {};",
            quote_lit(db),
            quote_ident(db)
        ),
    )
}

/// The comment a restore puts on its temporary database: the host, the
/// PID namespace and the PID. Only a database that carries the mark of a
/// process of this host and namespace that is gone is dropped as stale;
/// a database that merely has such a name (or a live restore of another
/// host or container on the same server) is left alone.
fn mark_for(pid: u32) -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    format!("tb-restore temporary database: host {host}, {ns}, pid {pid}")
}

/// A temporary database name for a restore into `target` (at most 63 bytes).
fn temp_name(target: &str, what: &str) -> String {
    let short: String = target
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(30)
        .collect();
    format!("tb_{what}_{short}_{}", std::process::id())
}

/// Drop the temporary databases of killed restores: `tb_restore_…_PID`
/// with this host's mark of a process that is gone ([`mark_for`]). A
/// `tb_old_…` database (a replaced target whose restore was killed in the
/// instant between the two renames) is never dropped: it is named in a
/// warning. `stale` is what the preflight found.
fn drop_stale(conn: &Conn, stale: &[(String, String)], rep: &mut Reporter) {
    for (name, comment) in stale {
        let Some(pid) = name.rsplit('_').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let alive = i32::try_from(pid).is_ok_and(|p| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None)
                .map(|_| true)
                .unwrap_or_else(|e| e != nix::errno::Errno::ESRCH)
        });
        if alive {
            continue;
        }
        if name.starts_with("tb_old_") {
            rep.warn(
                &format!("the database '{name}' is a database replaced by a restore that was killed: check it, rename it back or drop it by hand"),
                Record::new("warning").with("dbname", name),
            );
        } else if *comment == mark_for(pid) && drop_temp(conn, name).is_ok() {
            rep.emit(
                Record::new("removed")
                    .with("dbname", name)
                    .with("reason", "temporary database of an interrupted restore"),
            );
        }
    }
}

/// Restore a whole dump into `--dbname`.
pub(crate) fn restore_dump(
    args: &Args,
    input: &DumpInput,
    rep: &mut Reporter,
    clock: Instant,
) -> Result<Outcome> {
    let conn = conn(args);
    let target = args
        .dbname
        .clone()
        .ok_or_else(|| usage_err("give --dbname NAME: the database to restore into"))?;
    let ready = preflight(args, &conn, input, &target, rep)?;
    let state = ready.state;
    let (facts, rows, encoding) =
        restore_core(&conn, input, &target, &ready, None, args.jobs as usize, rep)?;
    let total: u64 = rows.iter().map(|r| r.1).sum();
    let mut rec = Record::new("restored")
        .with("kind", "dump")
        .with(
            "path",
            input
                .path
                .as_ref()
                .map(|p| path_value(p))
                .unwrap_or_else(|| "-".into()),
        )
        .with("dbname", &target)
        .with("replaced", state.is_some())
        .with("tables", rows.len())
        .with("rows", total)
        .with("large_objects", facts.large_objects)
        .with("encoding", &encoding)
        .with(
            "checked",
            if input.manifest.is_some() {
                "manifest"
            } else {
                "dump"
            },
        )
        .with("duration_ms", clock.elapsed().as_millis() as u64);
    if let Some(c) = &args.container {
        rec.set("container", c);
    }
    rep.emit(rec);
    rep.summary_field("restored", 1);
    rep.summary_field("dbname", &target);
    Ok(rep.outcome())
}

/// Restore extracted table SQL (a plain file) into `target`, checking the
/// row counts `expected`. Returns whether a database was replaced and the
/// counts.
pub(crate) fn restore_sql_file(
    args: &Args,
    input: &DumpInput,
    target: &str,
    expected: &BTreeMap<String, u64>,
    rep: &mut Reporter,
) -> Result<(bool, Vec<TableCount>)> {
    let conn = conn(args);
    let ready = preflight(args, &conn, input, target, rep)?;
    let (_, rows, _) = restore_core(&conn, input, target, &ready, Some(expected), 1, rep)?;
    Ok((ready.state.is_some(), rows))
}

/// Into a new database under a temporary name, checked, then renamed to
/// `target` (replacing it when `state` says it exists).
fn restore_core(
    conn: &Conn,
    input: &DumpInput,
    target: &str,
    ready: &Ready,
    expected_override: Option<&BTreeMap<String, u64>>,
    jobs: usize,
    rep: &mut Reporter,
) -> Result<(DumpFacts, Vec<TableCount>, String)> {
    let conn = conn.clone();
    let target = target.to_string();
    let state = ready.state;
    drop_stale(&conn, &ready.stale, rep);
    let temp = temp_name(&target, "restore");
    let encoding = input.encoding().unwrap_or_else(|| "UTF8".into());
    psql(
        &conn,
        MAINTENANCE_DB,
        &format!(
            "CREATE DATABASE {} WITH TEMPLATE template0 ENCODING {};\nCOMMENT ON DATABASE {} IS {};",
            quote_ident(&temp),
            quote_lit(&encoding),
            quote_ident(&temp),
            quote_lit(&mark_for(std::process::id()))
        ),
    )
    .map_err(|e| {
        let _ = drop_temp(&conn, &temp);
        anyhow::Error::new(Failure::new(
            tb_shared::error::cause_of(&e),
            format!("cannot create the database for the restore (encoding {encoding}): {e:#}"),
        ))
    })?;
    let result = (|| -> Result<(DumpFacts, Vec<TableCount>)> {
        let started = Instant::now();
        let streamed = stream_into(&conn, input, &temp, jobs, ready.server_major)?;
        let facts = streamed.facts;
        let restore_ms = started.elapsed().as_millis() as u64;
        if input.verify_streaming {
            rep.emit(
                check_record("verify", true)
                    .with("path", input.path.as_ref().map(|p| path_value(p)))
                    .with("while_restoring", true)
                    .with("tables", facts.tables.len())
                    .with("rows", facts.rows()),
            );
        }
        let expected = match expected_override {
            Some(e) => e.clone(),
            None => input
                .expected_rows()
                .unwrap_or_else(|| facts.tables.clone()),
        };
        if expected_override.is_none() && facts.inserts > 0 {
            // The rows come as INSERT statements (pg_dump --inserts): there
            // is no count to check them against, and the records say so.
            rep.warn(
                &format!(
                    "'{}' holds its rows as {} INSERT statements, not COPY data: the row counts of {} are not checked",
                    input.shown(),
                    facts.inserts,
                    if expected.is_empty() {
                        "any table".to_string()
                    } else {
                        "tables loaded by INSERT".to_string()
                    }
                ),
                Record::new("warning").with("inserts", facts.inserts),
            );
        }
        let names: Vec<String> = expected.keys().cloned().collect();
        let got = count_rows(&conn, &temp, &names)?;
        let mut rows = Vec::new();
        let mut bad = Vec::new();
        let absent: Vec<bool> = got.iter().map(Option::is_none).collect();
        for (name, n) in names.iter().zip(got) {
            let want = expected[name];
            match n {
                Some(n) if n == want => {}
                Some(n) => bad.push(format!("{name}: {n} rows, the dump has {want}")),
                None => bad.push(format!(
                    "{name}: not a table in the restored database, the dump has {want} rows"
                )),
            }
            rows.push((name.clone(), n.unwrap_or(0), want));
        }
        let mut step = Record::new("step")
            .with("step", "psql")
            .with("duration_ms", restore_ms)
            .with("sessions", streamed.sessions);
        if let Some(why) = &streamed.one_session {
            step.set("one_session", why);
        }
        rep.emit(step);
        for ((name, n, want), absent) in rows.iter().zip(absent) {
            let mut r = Record::new("table")
                .with("table", name)
                .with("rows", *n)
                .with("expected", *want)
                .with("ok", n == want && !absent);
            if absent {
                r.set("missing", true);
            }
            rep.emit(r);
        }
        if !bad.is_empty() {
            bail!(Failure::new(
                Cause::Damaged,
                format!(
                    "the restored row counts do not match the dump: {}",
                    bad.join("; ")
                )
            ));
        }
        Ok((facts, rows))
    })();
    let (facts, rows) = match result {
        Ok(r) => r,
        Err(e) => {
            let note = match drop_temp(&conn, &temp) {
                Ok(_) => format!("the database '{target}' is as it was"),
                Err(d) => format!(
                    "the database '{target}' is as it was; the temporary database '{temp}' could not be dropped ({d:#}): drop it by hand"
                ),
            };
            return Err(
                Failure::new(tb_shared::error::cause_of(&e), format!("{e:#}; {note}")).into(),
            );
        }
    };
    // Into place, keeping the replaced database's owner.
    let owner = if state.is_some() {
        psql(
            &conn,
            MAINTENANCE_DB,
            &format!(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {};",
                quote_lit(&target)
            ),
        )
        .ok()
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty())
    } else {
        None
    };
    let old = temp_name(&target, "old");
    let moved = (|| -> Result<()> {
        if state.is_some() {
            psql(
                &conn,
                MAINTENANCE_DB,
                &format!(
                    "ALTER DATABASE {} RENAME TO {};",
                    quote_ident(&target),
                    quote_ident(&old)
                ),
            )?;
        }
        if let Err(e) = psql(
            &conn,
            MAINTENANCE_DB,
            &format!(
                "COMMENT ON DATABASE {} IS NULL;\nALTER DATABASE {} RENAME TO {};",
                quote_ident(&temp),
                quote_ident(&temp),
                quote_ident(&target)
            ),
        ) {
            if state.is_some() {
                let _ = psql(
                    &conn,
                    MAINTENANCE_DB,
                    &format!(
                        "ALTER DATABASE {} RENAME TO {};",
                        quote_ident(&old),
                        quote_ident(&target)
                    ),
                );
            }
            return Err(e);
        }
        Ok(())
    })();
    if let Err(e) = moved {
        let _ = drop_temp(&conn, &temp);
        let busy = format!("{e:#}").contains("being accessed by other users");
        let hint = if busy {
            ": other sessions are connected to it; stop the application (e.g. docker compose stop backend), then restore again"
        } else {
            ""
        };
        bail!(Failure::new(
            if busy {
                Cause::InUse
            } else {
                tb_shared::error::cause_of(&e)
            },
            format!(
                "cannot put the restored database in place as '{target}'{hint} ({e:#}); '{target}' is as it was"
            )
        ));
    }
    if let Some(o) = &owner
        && let Err(e) = psql(
            &conn,
            MAINTENANCE_DB,
            &format!(
                "ALTER DATABASE {} OWNER TO {};",
                quote_ident(&target),
                quote_ident(o)
            ),
        )
    {
        rep.warn(
            &format!("the restored '{target}' could not be given back to its owner {o} ({e:#}): ALTER DATABASE it by hand"),
            Record::new("warning").with("dbname", &target),
        );
    }
    if state.is_some()
        && let Err(e) = drop_db(&conn, &old)
    {
        rep.warn(
            &format!("the replaced database, now named '{old}', could not be dropped ({e:#}): drop it by hand"),
            Record::new("warning").with("dbname", &old),
        );
    }
    Ok((facts, rows, encoding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_quoting() {
        assert_eq!(major("15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(major("9.6.24"), Some(9));
        assert_eq!(major("17devel"), Some(17));
        assert_eq!(major(""), None);
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_lit("it's"), "'it''s'");
    }

    #[test]
    fn names_that_look_like_connection_settings_are_quoted() {
        assert_eq!(db_arg("toybox"), "toybox");
        assert_eq!(db_arg("dbname=empty"), "dbname='dbname=empty'");
        assert_eq!(db_arg("a=b'c\\d"), "dbname='a=b\\'c\\\\d'");
        assert_eq!(db_arg("postgresql://h/db"), "dbname='postgresql://h/db'");
    }

    #[test]
    fn psql_versions_with_restrict() {
        assert!(restricts(15, 14) && restricts(15, 18) && restricts(18, 0));
        assert!(!restricts(15, 13) && !restricts(16, 2) && !restricts(12, 99));
        assert!(restricts(13, 22) && restricts(14, 19) && restricts(16, 10) && restricts(17, 6));
        assert_eq!(restrict_key().len(), 32);
        assert_ne!(restrict_key(), restrict_key());
    }

    #[test]
    fn names_come_back_from_hex() {
        assert_eq!(unhex("7462"), Some("tb".into()));
        assert_eq!(unhex("617c0a62"), Some("a|\nb".into()));
        assert_eq!(unhex(""), Some(String::new()));
        assert_eq!(unhex("746"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn psql_errors_give_their_line() {
        let e = "psql:<stdin>:1234: ERROR:  relation \"x\" does not exist\n";
        assert_eq!(
            first_error(e),
            Some((Some(1234), "ERROR:  relation \"x\" does not exist".into()))
        );
        assert_eq!(first_error("nothing"), None);
    }
}
