//! Single tables out of a full plain dump: `--list`, `--table T --sql`
//! (the SQL on stdout) and `--table T --dbname NAME` (restored into a new
//! database, all or nothing, as a whole dump is).
//!
//! pg_dump heads every object of a plain dump with a comment naming it:
//! `-- Name: users; Type: TABLE; Schema: public; Owner: app` (and
//! `-- Data for Name: …` before its rows). A table's parts are the entries
//! that name it: its TABLE and TABLE DATA, its DEFAULTs, CONSTRAINTs,
//! TRIGGERs, COMMENTs (`TABLE t`, `COLUMN t.c`) and ACLs (`TABLE t`); its
//! INDEXes (`CREATE INDEX … ON schema.t`); the SEQUENCEs it owns (an
//! identity column's `ALTER TABLE schema.t ALTER COLUMN … ADD GENERATED`,
//! or `ALTER SEQUENCE … OWNED BY schema.t.c`) with their SEQUENCE SET
//! (the dumped value); its FK CONSTRAINTs when the table they reference is
//! restored too (the others are reported, not restored); and what it
//! stands on: its schema, the types and domains of that schema, the
//! extensions. Everything before the first entry (the `SET`s, `\restrict`)
//! is kept, and the closing `\unrestrict`.
//!
//! One pass over the dump: the entries are written to a private temporary
//! file while the whole dump is checked (gzip CRC, completion trailer,
//! sha256 against the manifest); the SQL is used only when all of it is
//! good.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use tb_shared::error::{Cause, Failure};
use tb_shared::exit::Outcome;
use tb_shared::gzip::InflateReader;
use tb_shared::manifest::Manifest;
use tb_shared::naming::manifest_path;
use tb_shared::record::{Record, Reporter, path_value};
use tb_shared::signals;
use tb_shared::sqldump::{DumpKind, DumpScanner};

use crate::Args;
use crate::dump_restore::{self, DumpInput};

/// A table: schema and name, unquoted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Table {
    pub schema: String,
    pub name: String,
}

/// `name` as pg_dump writes it: bare when it is a plain lowercase word.
fn q(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_string()
    } else {
        dump_restore::quote_ident(name)
    }
}

impl Table {
    /// `schema.name` as pg_dump writes it.
    pub fn qualified(&self) -> String {
        format!("{}.{}", q(&self.schema), q(&self.name))
    }
}

/// Split `a.b` / `"A b"."c"` / `name` into unquoted parts.
fn parse_name(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            ('.', false) => parts.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

/// The tables of the dump: from the manifest, else none known.
fn dump_tables(input: &DumpInput) -> Vec<(Table, u64)> {
    let Some(t) = input
        .manifest
        .as_ref()
        .and_then(|m| m.database.as_ref())
        .map(|d| d.tables.clone())
        .or_else(|| input.facts.as_ref().map(|f| f.tables.clone()))
    else {
        return Vec::new();
    };
    t.into_iter()
        .filter_map(|(k, rows)| {
            let p = parse_name(&k);
            (p.len() == 2).then(|| {
                (
                    Table {
                        schema: p[0].clone(),
                        name: p[1].clone(),
                    },
                    rows,
                )
            })
        })
        .collect()
}

/// Resolve `--table` arguments against the dump's tables.
fn resolve(wanted: &[String], known: &[(Table, u64)]) -> Result<Vec<Table>> {
    let mut out = BTreeSet::new();
    for w in wanted {
        let p = parse_name(w);
        let found: Vec<&Table> = match p.as_slice() {
            [name] => known
                .iter()
                .map(|k| &k.0)
                .filter(|t| &t.name == name)
                .collect(),
            [schema, name] => known
                .iter()
                .map(|k| &k.0)
                .filter(|t| &t.schema == schema && &t.name == name)
                .collect(),
            _ => Vec::new(),
        };
        match found.as_slice() {
            [t] => {
                out.insert((*t).clone());
            }
            [] if known.is_empty() => {
                // No list of tables: take the name as given (public by default).
                let t = match p.as_slice() {
                    [name] => Table {
                        schema: "public".into(),
                        name: name.clone(),
                    },
                    [schema, name] => Table {
                        schema: schema.clone(),
                        name: name.clone(),
                    },
                    _ => bail!(usage(format!("--table '{w}': give NAME or SCHEMA.NAME"))),
                };
                out.insert(t);
            }
            [] => bail!(usage(format!(
                "--table '{w}': the dump has no such table; its tables: {}",
                known
                    .iter()
                    .map(|k| k.0.qualified())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            many => bail!(usage(format!(
                "--table '{w}' is in more than one schema ({}): give SCHEMA.NAME",
                many.iter()
                    .map(|t| t.qualified())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
    Ok(out.into_iter().collect())
}

fn usage(msg: String) -> anyhow::Error {
    Failure::new(Cause::BadInput, msg).into()
}

/// A dump entry's header.
#[derive(Debug, Clone, Default)]
struct Head {
    name: String,
    kind: String,
    schema: String,
}

fn parse_head(line: &str) -> Option<Head> {
    let rest = line
        .strip_prefix("-- Name: ")
        .or_else(|| line.strip_prefix("-- Data for Name: "))?;
    // `NAME; Type: T; Schema: S; Owner: O` — names may hold `; ` only in
    // theory; split from the right on the fixed keys.
    let (rest, _owner) = rest.rsplit_once("; Owner: ")?;
    let (rest, schema) = rest.rsplit_once("; Schema: ")?;
    let (name, kind) = rest.rsplit_once("; Type: ")?;
    Some(Head {
        name: name.to_string(),
        kind: kind.to_string(),
        schema: schema.to_string(),
    })
}

/// What to do with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    Yes,
    No,
    /// Decide from its body (buffered): INDEX, SEQUENCE, SEQUENCE OWNED BY, FK CONSTRAINT.
    Body,
}

/// A foreign key left out: (constraint, table, referenced table).
type SkippedFk = (String, String, String);

/// What an extraction gives: the writer, the foreign keys left out, and
/// the entries written per kind.
type Extraction<W> = (W, Vec<SkippedFk>, BTreeMap<String, u64>);

/// The extraction state.
struct Extractor<W: Write> {
    out: W,
    tables: Vec<Table>,
    schemas: BTreeSet<String>,
    /// Sequences that belong to the tables.
    sequences: BTreeSet<(String, String)>,
    /// SEQUENCE entries not yet known to belong (name -> body).
    pending_seq: BTreeMap<(String, String), Vec<u8>>,
    head: Option<Head>,
    take: Take,
    body: Vec<u8>,
    /// A `--` line held back: it may open a header.
    held_dash: bool,
    /// The line after a header: its closing `--` is dropped.
    after_head: bool,
    in_copy: bool,
    /// Foreign keys not restored: (constraint, table, referenced).
    pub skipped_fks: Vec<SkippedFk>,
    /// Entries written, per kind.
    pub taken: BTreeMap<String, u64>,
    /// Keep every foreign key of the tables (restoring into the live
    /// database, where the tables they reference are).
    keep_fks: bool,
}

impl<W: Write> Extractor<W> {
    fn new(out: W, tables: Vec<Table>) -> Self {
        let schemas = tables.iter().map(|t| t.schema.clone()).collect();
        Extractor {
            out,
            tables,
            schemas,
            sequences: BTreeSet::new(),
            pending_seq: BTreeMap::new(),
            head: None,
            take: Take::Yes, // the preamble
            body: Vec::new(),
            held_dash: false,
            after_head: false,
            in_copy: false,
            skipped_fks: Vec::new(),
            taken: BTreeMap::new(),
            keep_fks: false,
        }
    }

    fn table_of_name(&self, h: &Head) -> Option<&Table> {
        self.tables.iter().find(|t| {
            t.schema == h.schema
                && (h.name == t.name || h.name.starts_with(&format!("{} ", t.name)))
        })
    }

    fn decide(&self, h: &Head) -> Take {
        let ours = |t: &Table| t.schema == h.schema && t.name == h.name;
        match h.kind.as_str() {
            "TABLE" | "TABLE DATA" => {
                if self.tables.iter().any(ours) {
                    Take::Yes
                } else {
                    Take::No
                }
            }
            "SCHEMA" => {
                if self.schemas.contains(&h.name) && h.name != "public" {
                    Take::Yes
                } else {
                    Take::No
                }
            }
            "EXTENSION" => Take::Yes,
            "TYPE" | "DOMAIN" => {
                if self.schemas.contains(&h.schema) {
                    Take::Yes
                } else {
                    Take::No
                }
            }
            "DEFAULT" | "CONSTRAINT" | "TRIGGER" | "RULE" | "POLICY" | "ROW SECURITY" => {
                if self
                    .tables
                    .iter()
                    .any(|t| t.schema == h.schema && h.name.starts_with(&format!("{} ", t.name)))
                {
                    Take::Yes
                } else {
                    Take::No
                }
            }
            "FK CONSTRAINT" => {
                if self.table_of_name(h).is_some() {
                    Take::Body
                } else {
                    Take::No
                }
            }
            "COMMENT" | "ACL" | "SECURITY LABEL" => {
                let hit = self.tables.iter().any(|t| {
                    t.schema == h.schema
                        && (h.name == format!("TABLE {}", t.name)
                            || h.name.starts_with(&format!("COLUMN {}.", t.name)))
                }) || self.sequences.contains(&(
                    h.schema.clone(),
                    h.name.trim_start_matches("SEQUENCE ").to_string(),
                )) && h.name.starts_with("SEQUENCE ");
                if hit { Take::Yes } else { Take::No }
            }
            "INDEX" | "SEQUENCE" | "SEQUENCE OWNED BY" => Take::Body,
            "SEQUENCE SET" => {
                if self.sequences.contains(&(h.schema.clone(), h.name.clone())) {
                    Take::Yes
                } else {
                    Take::No
                }
            }
            _ => Take::No,
        }
    }

    fn count(&mut self, kind: &str) {
        *self.taken.entry(kind.to_string()).or_default() += 1;
    }

    /// Close the current entry (decide a buffered one).
    fn close(&mut self) -> io::Result<()> {
        let Some(h) = self.head.take() else {
            return Ok(());
        };
        if self.take == Take::Yes {
            self.count(&h.kind.clone());
        }
        if self.take != Take::Body {
            return Ok(());
        }
        let body = std::mem::take(&mut self.body);
        let text = String::from_utf8_lossy(&body).into_owned();
        let key = (h.schema.clone(), h.name.clone());
        let hits = |needle: &dyn Fn(&Table) -> String| {
            self.tables.iter().any(|t| text.contains(&needle(t)))
        };
        let on_table = hits(&|t| format!(" ON {} ", t.qualified()))
            || hits(&|t| format!(" ON ONLY {} ", t.qualified()));
        let identity = hits(&|t| format!("ALTER TABLE {} ALTER COLUMN", t.qualified()));
        let owned = hits(&|t| format!(" OWNED BY {}.", t.qualified()));
        match h.kind.as_str() {
            "INDEX" if on_table => {
                self.out.write_all(&body)?;
                self.count("INDEX");
            }
            "SEQUENCE" if identity => {
                self.sequences.insert(key);
                self.out.write_all(&body)?;
                self.count("SEQUENCE");
            }
            "SEQUENCE" => {
                self.pending_seq.insert(key, body);
            }
            "SEQUENCE OWNED BY" if owned => {
                if let Some(seq) = self.pending_seq.remove(&key) {
                    self.out.write_all(&seq)?;
                    self.count("SEQUENCE");
                }
                self.sequences.insert(key);
                self.out.write_all(&body)?;
                self.count("SEQUENCE OWNED BY");
            }
            "FK CONSTRAINT" => {
                let refd = text
                    .split(" REFERENCES ")
                    .nth(1)
                    .and_then(|r| r.split('(').next())
                    .map(|r| r.trim().to_string())
                    .unwrap_or_default();
                let local = self.keep_fks || self.tables.iter().any(|t| t.qualified() == refd);
                if local {
                    self.out.write_all(&body)?;
                    self.count("FK CONSTRAINT");
                } else {
                    let table = self
                        .table_of_name(&h)
                        .map(Table::qualified)
                        .unwrap_or_default();
                    let con = h.name.rsplit(' ').next().unwrap_or(&h.name).to_string();
                    self.skipped_fks.push((con, table, refd));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// One line of the dump (with its newline). `plain`: it starts in
    /// plain SQL (not inside a string or a function body, where a line
    /// that looks like a header or a COPY is neither); `starts_copy`: the
    /// dump's scanner took it for the start of a COPY's data.
    fn line(&mut self, line: &[u8], plain: bool, starts_copy: bool) -> io::Result<()> {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if self.in_copy {
            if text == b"\\." {
                self.in_copy = false;
            }
            return self.emit(line);
        }
        if !plain {
            self.flush_dash()?;
            return self.emit(line);
        }
        if std::mem::take(&mut self.after_head) && text == b"--" {
            return Ok(());
        }
        if self.held_dash {
            self.held_dash = false;
            if let Some(h) = std::str::from_utf8(text).ok().and_then(parse_head) {
                self.close()?;
                self.take = self.decide(&h);
                self.head = Some(h);
                self.after_head = true;
                return Ok(());
            }
            self.emit(b"--\n")?;
        }
        if text == b"--" {
            self.held_dash = true;
            return Ok(());
        }
        if text.starts_with(b"\\unrestrict ") {
            self.close()?;
            self.take = Take::No;
            return self.out.write_all(line);
        }
        if text.starts_with(b"-- PostgreSQL database dump complete") {
            self.close()?;
            self.take = Take::No;
            return Ok(());
        }
        if starts_copy {
            self.in_copy = true;
        }
        self.emit(line)
    }

    /// A `--` line held back to see whether a header follows: it did not.
    fn flush_dash(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.held_dash) {
            self.emit(b"--\n")?;
        }
        Ok(())
    }

    fn emit(&mut self, line: &[u8]) -> io::Result<()> {
        match self.take {
            Take::Yes => self.out.write_all(line),
            Take::No => Ok(()),
            Take::Body => {
                self.body.extend_from_slice(line);
                Ok(())
            }
        }
    }

    fn finish(mut self) -> io::Result<Extraction<W>> {
        self.close()?;
        self.out.flush()?;
        Ok((self.out, self.skipped_fks, self.taken))
    }
}

/// Read the dump once: extract the tables' SQL into `out`, check the whole
/// dump. Returns the foreign keys left out and the entries taken.
fn extract<W: Write>(input: &DumpInput, tables: &[Table], out: W) -> Result<Extraction<W>> {
    extract_with(input, tables, out, false)
}

fn extract_with<W: Write>(
    input: &DumpInput,
    tables: &[Table],
    out: W,
    keep_fks: bool,
) -> Result<Extraction<W>> {
    let path = input.path.as_ref().context("a dump file is needed")?;
    let file_entry = input
        .manifest
        .as_ref()
        .and_then(|m| m.files.iter().find(|f| f.role == "dump"))
        .cloned();
    let chunks = file_entry
        .as_ref()
        .and_then(|f| f.chunks.as_ref())
        .and_then(|c| c.chunks());
    let mut reader = InflateReader::open(path, chunks, tb_shared::gzip::default_threads());
    let mut scanner = DumpScanner::new(DumpKind::Database);
    let mut ex = Extractor::new(out, tables.to_vec());
    ex.keep_fks = keep_fks;
    let mut buf = vec![0u8; 1 << 20];
    let mut line: Vec<u8> = Vec::new();
    let mut read_error = None;
    loop {
        signals::check()?;
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        };
        let data = &buf[..n];
        let mut start = 0;
        while let Some(i) = memchr_nl(&data[start..]) {
            line.extend_from_slice(&data[start..start + i + 1]);
            // The scanner reads the line first: it knows where strings,
            // function bodies and COPY data are.
            let plain = scanner.at_plain_line_start();
            scanner.feed(&line);
            let starts_copy = plain && scanner.in_copy_data();
            ex.line(&line, plain, starts_copy)
                .context("cannot write the extracted SQL")?;
            line.clear();
            start += i + 1;
        }
        line.extend_from_slice(&data[start..]);
    }
    if !line.is_empty() {
        let plain = scanner.at_plain_line_start();
        scanner.feed(&line);
        ex.line(&line, plain, false)
            .context("cannot write the extracted SQL")?;
    }
    let gz = reader.finish();
    let (facts, complete) = scanner.finish();
    if !facts.meta_commands.is_empty() {
        bail!(Failure::new(
            Cause::UnsafeArchive,
            format!(
                "'{}' holds psql meta-commands that pg_dump never writes ({}): refused; nothing was touched",
                path.display(),
                facts.meta_commands.join(", ")
            )
        ));
    }
    let shown = path.display();
    let gz = gz.map_err(|p| {
        Failure::new(
            Cause::Damaged,
            format!("'{shown}' is damaged: {p}; nothing was touched"),
        )
    })?;
    if let Some(e) = read_error {
        bail!(Failure::new(
            Cause::Damaged,
            format!("cannot read '{shown}': {e}")
        ));
    }
    complete.map_err(|why| {
        Failure::new(
            Cause::Damaged,
            format!("'{shown}' is damaged: {why}; nothing was touched"),
        )
    })?;
    if let Some(f) = &file_entry
        && (f.sha256 != gz.sha256 || f.bytes != gz.gz_bytes)
    {
        bail!(Failure::new(
            Cause::Damaged,
            format!("'{shown}' does not match its manifest (sha256 or size); nothing was touched")
        ));
    }
    ex.finish().context("cannot write the extracted SQL")
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|c| *c == b'\n')
}

/// What a dump file is, from its manifest (no full read).
pub(crate) fn open_dump(path: &Path) -> Result<DumpInput> {
    if !path.is_file() {
        bail!(Failure::new(
            Cause::NotFound,
            format!("cannot read the dump '{}'", path.display())
        ));
    }
    let mpath = manifest_path(path);
    let manifest = if mpath.exists() {
        Some(Manifest::load(&mpath).map_err(|e| Failure::new(Cause::Damaged, format!("{e:#}")))?)
    } else {
        None
    };
    Ok(DumpInput {
        path: Some(path.to_path_buf()),
        manifest,
        facts: None,
        plain: false,
        verify_streaming: false,
    })
}

/// `--list`: the dump's tables and row counts.
pub(crate) fn list(args: &Args, rep: &mut Reporter) -> Result<Outcome> {
    let mut input = open_dump(&args.backup)?;
    if input.manifest.is_none() {
        // No manifest: count from the dump itself (one full read).
        input = dump_restore::verify_dump(&args.backup, rep)?;
    }
    let tables = dump_tables(&input);
    for (t, rows) in &tables {
        rep.emit(
            Record::new("table")
                .with("table", t.qualified())
                .with("schema", &t.schema)
                .with("name", &t.name)
                .with("rows", rows),
        );
    }
    rep.summary_field("tables", tables.len());
    Ok(rep.outcome())
}

fn report_fks(skipped: &[SkippedFk], rep: &mut Reporter) {
    for (con, table, refd) in skipped {
        rep.warn(
            &format!(
                "foreign key {con} of {table} references {refd}, which is not restored: left out"
            ),
            Record::new("warning")
                .with("constraint", con)
                .with("table", table)
                .with("references", refd),
        );
    }
}

/// `--table … --sql`: the extracted SQL on stdout.
pub(crate) fn sql(args: &Args, rep: &mut Reporter) -> Result<Outcome> {
    let input = open_dump(&args.backup)?;
    let tables = resolve(&args.table, &dump_tables(&input))?;
    // Into a private temporary file first: stdout gets only SQL that came
    // from a dump that checked out whole.
    let (tmp, temp) = temp_sql(&args.backup)?;
    let path = temp.0.clone();
    let (w, skipped, taken) = extract(&input, &tables, BufWriter::new(tmp))?;
    drop(w);
    let mut f = File::open(&path).context("cannot read the extracted SQL")?;
    io::copy(&mut f, &mut io::stdout().lock()).context("cannot write to stdout")?;
    report_fks(&skipped, rep);
    rep.emit(extracted_record(&tables, &taken));
    Ok(rep.outcome())
}

fn extracted_record(tables: &[Table], taken: &BTreeMap<String, u64>) -> Record {
    Record::new("extracted")
        .with(
            "tables",
            tables.iter().map(Table::qualified).collect::<Vec<_>>(),
        )
        .with("entries", taken)
}

/// A temporary file of ours, removed (and forgotten by the signal handler)
/// when dropped, on every path out.
struct TempSql(PathBuf);

impl Drop for TempSql {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        signals::untrack_temp(&self.0);
    }
}

/// A private temporary file in TMPDIR (or beside the dump when TMPDIR is
/// not writable).
fn temp_sql(dump: &Path) -> Result<(File, TempSql)> {
    let name = format!(
        "{}tables.{}.sql",
        tb_shared::naming::TEMP_PREFIX,
        std::process::id()
    );
    let mut last = None;
    for dir in [
        std::env::temp_dir(),
        dump.parent().unwrap_or(Path::new(".")).to_path_buf(),
    ] {
        let p = dir.join(&name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
        {
            Ok(f) => {
                signals::track_temp(&p);
                return Ok((f, TempSql(p)));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "cannot create a temporary file: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// `--table … --dbname LIVE --into-existing`: replace the tables in the live
/// database, in one transaction, after a safety dump of each.
fn into_existing(
    args: &Args,
    input: &DumpInput,
    tables: &[Table],
    known: &[(Table, u64)],
    target: &str,
    rep: &mut Reporter,
    clock: Instant,
) -> Result<Outcome> {
    let conn = dump_restore::conn(args);
    // The live tables must be there (else this is not a replacement).
    for t in tables {
        let n = dump_restore::psql(
            &conn,
            target,
            &format!(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {} AND c.relname = {} AND c.relkind IN ('r','p');",
                dump_restore::quote_lit(&t.schema),
                dump_restore::quote_lit(&t.name)
            ),
        )?;
        if n.trim() != "1" {
            bail!(Failure::new(
                Cause::NotFound,
                format!(
                    "--into-existing: '{target}' has no table {}; restore it into a new database instead (without --into-existing)",
                    t.qualified()
                )
            ));
        }
    }
    // Safety dumps of the live tables first.
    let dir = args
        .safety_dir
        .clone()
        .or_else(|| args.backup.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let stamp = chrono::Local::now().format("%Y%m%d_%H%M%S");
    for t in tables {
        let file = dir.join(format!(
            "before-restore.{target}.{}.{}.{stamp}.{}.sql.gz",
            t.schema,
            t.name,
            std::process::id()
        ));
        safety_dump(&conn, target, t, &file)?;
        rep.emit(
            Record::new("written")
                .with("kind", "safety_dump")
                .with("table", t.qualified())
                .path(&file)
                .with(
                    "bytes",
                    std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0),
                ),
        );
    }
    let (tmp, temp) = temp_sql(&args.backup)?;
    let path = temp.0.clone();
    let built = (|| -> Result<(Vec<SkippedFk>, BTreeMap<String, u64>)> {
        let mut w = BufWriter::new(tmp);
        // Foreign keys of other tables that point at these: dropped with
        // them, so recreated after (a row that no longer fits fails all).
        let mut refs = Vec::new();
        for t in tables {
            let out = dump_restore::psql(
                &conn,
                target,
                &format!(
                    "SET search_path = ''; SELECT format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s;', n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid)) \
                     FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE k.contype = 'f' AND k.confrelid = {}::regclass AND k.conrelid <> k.confrelid ORDER BY 1;",
                    dump_restore::quote_lit(&t.qualified())
                ),
            )?;
            refs.extend(out.lines().filter(|l| !l.is_empty()).map(str::to_string));
        }
        // (psql gets ON_ERROR_STOP on its command line: no meta-command
        // here, psql runs restricted.)
        for t in tables {
            writeln!(w, "DROP TABLE {} CASCADE;", t.qualified())?;
        }
        let (w, skipped, taken) = extract_with(input, tables, w, true)?;
        let mut w = w;
        for r in &refs {
            writeln!(w, "{r}")?;
        }
        // The row counts must be the dump's before anything commits.
        for (t, n) in known.iter().filter(|(t, _)| tables.contains(t)) {
            writeln!(
                w,
                "DO $tb$ BEGIN IF (SELECT count(*) FROM {q}) <> {n} THEN RAISE EXCEPTION 'restored {q} has % rows, the dump has {n}', (SELECT count(*) FROM {q}); END IF; END $tb$;",
                q = t.qualified()
            )?;
        }
        w.flush()?;
        Ok((skipped, taken))
    })();
    let (skipped, taken) = built?;
    report_fks(&skipped, rep);
    rep.emit(extracted_record(tables, &taken));
    let mut args_psql: Vec<std::ffi::OsString> = [
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "-d",
        &crate::dump_restore::db_arg(target),
    ]
    .iter()
    .map(Into::into)
    .collect();
    // As for whole dumps: psql runs restricted with a key of ours, and gets
    // the SQL without its backslash lines (the dump's \restrict).
    args_psql.extend(crate::dump_restore::restrict_args(&conn));
    args_psql.push("-f".into());
    args_psql.push("-".into());
    let filtered = without_backslash_lines(&path)?;
    let mut cmd = conn.command("psql", &args_psql);
    cmd.stdin(std::fs::File::open(&filtered).context("cannot read the extracted SQL")?)
        .stdout(std::process::Stdio::null());
    let out = cmd.output().context("cannot run psql");
    let _ = std::fs::remove_file(&filtered);
    let out = out?;
    if !out.status.success()
        && crate::dump_restore::refused_meta_command(&String::from_utf8_lossy(&out.stderr))
            .is_some()
    {
        bail!(Failure::new(
            Cause::UnsafeArchive,
            format!(
                "the dump holds a psql meta-command that pg_dump never writes; psql refused it, the replacement was rolled back and '{target}' is as it was"
            )
        ));
    }
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let first = said
            .lines()
            .find(|l| l.contains("ERROR:"))
            .unwrap_or(&said)
            .trim()
            .to_string();
        bail!(Failure::new(
            Cause::Other,
            format!("the replacement was rolled back, '{target}' is as it was: {first}")
        ));
    }
    let mut total = 0u64;
    for (t, n) in known.iter().filter(|(t, _)| tables.contains(t)) {
        rep.emit(
            Record::new("table")
                .with("table", t.qualified())
                .with("rows", *n)
                .with("expected", *n)
                .with("ok", true),
        );
        total += n;
    }
    rep.emit(
        Record::new("restored")
            .with("kind", "tables")
            .with("path", path_value(&args.backup))
            .with("dbname", target)
            .with("replaced", true)
            .with("into_existing", true)
            .with(
                "tables",
                tables.iter().map(Table::qualified).collect::<Vec<_>>(),
            )
            .with("rows", total)
            .with("duration_ms", clock.elapsed().as_millis() as u64),
    );
    rep.summary_field("restored", tables.len());
    rep.summary_field("dbname", target);
    Ok(rep.outcome())
}

/// A copy of the SQL file `path` (beside it, 0600) without the backslash
/// lines of plain SQL ([`DumpScanner::feed_kept`]); refused when it holds
/// a meta-command the scanner sees.
fn without_backslash_lines(path: &Path) -> Result<PathBuf> {
    let out_path = path.with_extension("psql");
    let mut input =
        std::fs::File::open(path).with_context(|| format!("cannot open '{}'", path.display()))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&out_path)
        .with_context(|| format!("cannot write '{}'", out_path.display()))?;
    let mut scanner = tb_shared::sqldump::DumpScanner::new(tb_shared::sqldump::DumpKind::Database);
    let mut buf = vec![0u8; 256 << 10];
    let mut keep = Vec::new();
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = std::fs::remove_file(&out_path);
                return Err(e).context("cannot read the extracted SQL");
            }
        };
        scanner.feed_kept(&buf[..n], &mut keep);
        if scanner.has_meta_commands() {
            let _ = std::fs::remove_file(&out_path);
            bail!(Failure::new(
                Cause::UnsafeArchive,
                "the dump holds psql meta-commands that pg_dump never writes: refused before psql saw them".to_string()
            ));
        }
        for &(a, b) in &keep {
            out.write_all(&buf[a..b])
                .context("cannot write the SQL for psql")?;
        }
    }
    Ok(out_path)
}

/// `pg_dump --table` of one live table into a gzipped file, checked complete.
fn safety_dump(conn: &tb_shared::pg::Conn, db: &str, t: &Table, file: &Path) -> Result<()> {
    let args: Vec<std::ffi::OsString> = vec![
        "--dbname".into(),
        crate::dump_restore::db_arg(db).into(),
        "--table".into(),
        t.qualified().into(),
    ];
    let out = conn
        .command("pg_dump", &args)
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run pg_dump for the safety dump")?;
    if !out.status.success() {
        return Err(tb_shared::pg::explain_failure(
            "pg_dump",
            Some(out.status),
            &String::from_utf8_lossy(&out.stderr),
            conn.container.is_some(),
        )
        .into());
    }
    let mut sc = DumpScanner::new(DumpKind::Database);
    sc.feed(&out.stdout);
    sc.finish().1.map_err(|why| {
        anyhow::anyhow!("the safety dump of {} is incomplete: {why}", t.qualified())
    })?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| {
            format!(
                "cannot create the safety dump '{}' (give --safety-dir DIR)",
                file.display()
            )
        })?;
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    gz.write_all(&out.stdout)
        .and_then(|()| gz.finish())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write the safety dump '{}'", file.display()))?;
    Ok(())
}

/// `--table … --dbname NAME`: restore just those tables into a new database.
pub(crate) fn restore(args: &Args, rep: &mut Reporter, clock: Instant) -> Result<Outcome> {
    let input = open_dump(&args.backup)?;
    let known = dump_tables(&input);
    let tables = resolve(&args.table, &known)?;
    let target = args
        .dbname
        .clone()
        .context("give --dbname NAME: the (new, scratch) database to restore the tables into")?;
    if args.into_existing {
        return into_existing(args, &input, &tables, &known, &target, rep, clock);
    }
    let (tmp, temp) = temp_sql(&args.backup)?;
    let path = temp.0.clone();
    let (w, skipped, taken) = extract(&input, &tables, BufWriter::new(tmp))?;
    drop(w);
    rep.emit(
        Record::new("check")
            .with("check", "verify")
            .with("ok", true)
            .path(&args.backup),
    );
    report_fks(&skipped, rep);
    rep.emit(extracted_record(&tables, &taken));
    let expected: BTreeMap<String, u64> = known
        .iter()
        .filter(|(t, _)| tables.contains(t))
        .map(|(t, n)| (t.qualified(), *n))
        .collect();
    // The extracted SQL, with the dump's manifest for its pg_dump version
    // and encoding.
    let sql_input = DumpInput {
        path: Some(path.clone()),
        manifest: input.manifest.clone(),
        facts: None,
        plain: true,
        verify_streaming: false,
    };
    let result = dump_restore::restore_sql_file(args, &sql_input, &target, &expected, rep);
    let (replaced, rows) = result?;
    let total: u64 = rows.iter().map(|r| r.1).sum();
    rep.emit(
        Record::new("restored")
            .with("kind", "tables")
            .with("path", path_value(&args.backup))
            .with("dbname", &target)
            .with("replaced", replaced)
            .with(
                "tables",
                tables.iter().map(Table::qualified).collect::<Vec<_>>(),
            )
            .with("rows", total)
            .with("duration_ms", clock.elapsed().as_millis() as u64),
    );
    rep.summary_field("restored", tables.len());
    rep.summary_field("dbname", &target);
    Ok(rep.outcome())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_and_without_quotes() {
        assert_eq!(parse_name("users"), vec!["users"]);
        assert_eq!(parse_name("public.users"), vec!["public", "users"]);
        assert_eq!(
            parse_name("public.\"Odd Table\""),
            vec!["public", "Odd Table"]
        );
        assert_eq!(parse_name("\"a.b\".\"c\"\"d\""), vec!["a.b", "c\"d"]);
        let t = Table {
            schema: "public".into(),
            name: "Odd Table".into(),
        };
        assert_eq!(t.qualified(), "public.\"Odd Table\"");
    }

    #[test]
    fn headers_parse() {
        let h =
            parse_head("-- Name: users users_pkey; Type: CONSTRAINT; Schema: public; Owner: app")
                .unwrap();
        assert_eq!(
            (h.name.as_str(), h.kind.as_str(), h.schema.as_str()),
            ("users users_pkey", "CONSTRAINT", "public")
        );
        let h =
            parse_head("-- Data for Name: Odd Table; Type: TABLE DATA; Schema: public; Owner: x")
                .unwrap();
        assert_eq!(
            (h.name.as_str(), h.kind.as_str()),
            ("Odd Table", "TABLE DATA")
        );
        assert!(parse_head("-- just a comment").is_none());
    }
}
