//! Verification of backup files, shared by `tb-check verify` and by every
//! tool before it publishes (so "published" and "verifies" mean the same).
//!
//! A gzipped dump is good when it decompresses completely (CRC-32 and
//! length of every member), nothing follows the gzip stream, the SQL ends
//! with pg_dump's completion trailer, and, when a manifest lists it, its
//! size, uncompressed size and sha256 match the manifest.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::gzip::{Chunk, GzProblem, Inflated, inflate_file, inflate_file_indexed};
use crate::manifest::Manifest;
use crate::naming::manifest_path;
use crate::record::Record;
use crate::sqldump::{DumpFacts, DumpKind, DumpScanner};

/// The verdict on one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Complete and matching its manifest.
    Good,
    /// Readable, but not a complete, matching backup.
    Damaged,
    /// Could not be read at all (missing, permissions, I/O error).
    Unreadable,
}

impl Verdict {
    /// `good`, `damaged`, `unreadable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Good => "good",
            Verdict::Damaged => "damaged",
            Verdict::Unreadable => "unreadable",
        }
    }
}

/// Whether a manifest was compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestCheck {
    /// The manifest lists the file and everything matched (or the mismatch is the reason).
    Checked,
    /// There is no manifest beside the file (e.g. written with `-o -`).
    Missing,
    /// A manifest exists but does not list this file.
    NotListed,
}

impl ManifestCheck {
    /// `checked`, `missing`, `not_listed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ManifestCheck::Checked => "checked",
            ManifestCheck::Missing => "missing",
            ManifestCheck::NotListed => "not_listed",
        }
    }
}

/// The result of checking one file.
#[derive(Debug, Clone)]
pub struct FileCheck {
    /// The file.
    pub path: PathBuf,
    /// `dump`, `roles`, `manifest` or `gzip` (a gzip file of unknown content).
    pub kind: &'static str,
    /// Size on disk, when it could be read.
    pub bytes: Option<u64>,
    /// Entries of a volume archive, when it was read.
    pub entries: Option<u64>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why it is not good.
    pub reason: Option<String>,
    /// What decompression found.
    pub gz: Option<Inflated>,
    /// What the dump scanner found.
    pub facts: Option<DumpFacts>,
    /// Whether a manifest was compared.
    pub manifest: ManifestCheck,
}

impl FileCheck {
    /// The `verified` record for this check.
    pub fn record(&self) -> Record {
        let mut r = Record::new("verified")
            .path(&self.path)
            .with("kind", self.kind)
            .with("verdict", self.verdict.as_str())
            .with("reason", &self.reason)
            .with("manifest", self.manifest.as_str());
        if let Some(gz) = &self.gz {
            r = r
                .with("bytes", gz.gz_bytes)
                .with("raw_bytes", gz.raw_bytes)
                .with("sha256", &gz.sha256);
        } else if let Some(b) = self.bytes {
            r = r.with("bytes", b);
        }
        if let Some(n) = self.entries {
            r = r.with("entries", n);
        }
        if let Some(f) = &self.facts
            && self.kind == "dump"
        {
            r = r.with("tables", f.tables.len()).with("rows", f.rows());
        }
        r
    }
}

/// Decompress a gzipped dump and check its completion trailer. With the
/// chunk index of the file (from its manifest) the chunks are inflated on
/// every core; if the index does not fit, the file is read sequentially so
/// the reason is exact.
pub fn check_dump_content(
    path: &Path,
    kind: DumpKind,
    index: Option<&[Chunk]>,
) -> Result<(Inflated, DumpFacts), (Verdict, String)> {
    let problem = |p| match p {
        GzProblem::Unreadable(e) => (Verdict::Unreadable, format!("cannot read the file: {e}")),
        other => (Verdict::Damaged, other.to_string()),
    };
    let mut scanner = DumpScanner::new(kind);
    let fast = index.map(|sizes| {
        inflate_file_indexed(path, sizes, threads(), &mut |b| {
            scanner.feed(b);
            interrupted()
        })
    });
    let gz = match fast {
        Some(Ok(gz)) => gz,
        Some(Err(GzProblem::Unreadable(e))) => return Err(problem(GzProblem::Unreadable(e))),
        _ => {
            scanner = DumpScanner::new(kind);
            inflate_file(path, &mut |b| {
                scanner.feed(b);
                interrupted()
            })
            .map_err(problem)?
        }
    };
    let (facts, complete) = scanner.finish();
    match complete {
        Ok(()) => Ok((gz, facts)),
        Err(why) => Err((Verdict::Damaged, why.to_string())),
    }
}

/// Stop reading once a signal arrived (the caller reports the interruption).
fn interrupted() -> std::io::Result<()> {
    match crate::signals::received() {
        None => Ok(()),
        Some(_) => Err(std::io::Error::other("interrupted")),
    }
}

fn threads() -> usize {
    crate::gzip::default_threads()
}

fn sniff(path: &Path) -> Option<DumpKind> {
    let name = path.file_name()?.to_string_lossy().to_string();
    if name.ends_with(".roles.sql.gz") {
        return Some(DumpKind::Cluster);
    }
    if name.ends_with(".sql.gz") {
        return Some(DumpKind::Database);
    }
    let file = std::fs::File::open(path).ok()?;
    let mut head = Vec::new();
    let _ = flate2::read::GzDecoder::new(file)
        .take(256)
        .read_to_end(&mut head);
    let head = String::from_utf8_lossy(&head);
    if head.contains("-- PostgreSQL database cluster dump") {
        Some(DumpKind::Cluster)
    } else if head.contains("-- PostgreSQL database dump") {
        Some(DumpKind::Database)
    } else {
        None
    }
}

/// The kind a file's name promises.
fn kind_by_name(path: &Path) -> &'static str {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with(".manifest.json") {
        "manifest"
    } else if name.ends_with(".roles.sql.gz") {
        "roles"
    } else if name.ends_with(".sql.gz") {
        "dump"
    } else if name.ends_with(".index.jsonl.gz") {
        "index"
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        "volume"
    } else {
        "gzip"
    }
}

/// Check one backup file completely, including its manifest.
pub fn check_file(path: &Path) -> FileCheck {
    let mut check = FileCheck {
        path: path.to_path_buf(),
        kind: kind_by_name(path),
        bytes: None,
        entries: None,
        verdict: Verdict::Good,
        reason: None,
        gz: None,
        facts: None,
        manifest: ManifestCheck::Missing,
    };
    // Never open what is not a regular file: a FIFO would block forever,
    // a device could be endless.
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => check.bytes = Some(m.len()),
        Ok(_) => {
            check.verdict = Verdict::Unreadable;
            check.reason = Some("not a regular file".into());
            return check;
        }
        Err(e) => {
            check.verdict = Verdict::Unreadable;
            check.reason = Some(format!("cannot read the file: {e}"));
            return check;
        }
    }
    if let Err(e) = std::fs::File::open(path) {
        check.verdict = Verdict::Unreadable;
        check.reason = Some(format!("cannot read the file: {e}"));
        return check;
    }
    if check.kind == "manifest" {
        check_manifest_file(&mut check);
        return check;
    }
    if manifest_path(path).exists() {
        check.manifest = ManifestCheck::Checked;
    }
    let index = index_of(path);
    if check.kind == "volume" {
        check_volume(&mut check, index);
        return check;
    }
    let content = match sniff(path) {
        Some(kind) => {
            check.kind = if kind == DumpKind::Cluster {
                "roles"
            } else {
                "dump"
            };
            check_dump_content(path, kind, index.as_deref())
        }
        None => inflate_file(path, &mut |_| Ok(()))
            .map(|gz| (gz, DumpFacts::default()))
            .map_err(|p| match p {
                GzProblem::Unreadable(e) => {
                    (Verdict::Unreadable, format!("cannot read the file: {e}"))
                }
                other => (Verdict::Damaged, other.to_string()),
            }),
    };
    match content {
        Ok((gz, facts)) => {
            check.gz = Some(gz);
            if !facts.meta_commands.is_empty() {
                // Complete, but psql would run what pg_dump never writes.
                check.verdict = Verdict::Damaged;
                check.reason = Some(format!(
                    "it holds psql meta-commands that pg_dump never writes ({}): psql would run them (\\! runs a shell command); do not restore it",
                    facts.meta_commands.join(", ")
                ));
                check.facts = Some(facts);
                return check;
            }
            if check.kind != "gzip" {
                check.facts = Some(facts);
            }
        }
        Err((verdict, reason)) => {
            check.verdict = verdict;
            check.reason = Some(reason);
            return check;
        }
    }
    compare_manifest(&mut check);
    check
}

/// A volume archive: the whole tar stream, every entry against the index
/// the manifest names (when there is one), then the manifest's sizes.
fn check_volume(check: &mut FileCheck, chunks: Option<Vec<Chunk>>) {
    let mpath = manifest_path(&check.path);
    let index = Manifest::load(&mpath).ok().and_then(|m| {
        m.files
            .iter()
            .find(|f| f.role == "index")
            .map(|f| crate::atomic::parent_of(&check.path).join(&f.name))
    });
    match crate::archive::verify_archive(&check.path, chunks, index.as_deref()) {
        Ok(a) => {
            check.entries = Some(a.entries);
            check.gz = Some(a.gz);
            compare_manifest(check);
        }
        Err((verdict, reason)) => {
            check.verdict = verdict;
            check.reason = Some(reason);
        }
    }
}

/// A manifest given on its own: it must parse and every file it lists must
/// be there (the files themselves are checked when they are given).
fn check_manifest_file(check: &mut FileCheck) {
    check.manifest = ManifestCheck::Checked;
    match Manifest::load(&check.path) {
        Err(e) => {
            check.verdict = Verdict::Damaged;
            check.reason = Some(format!("{e:#}"));
        }
        Ok(m) => {
            let dir = crate::atomic::parent_of(&check.path);
            let missing: Vec<&str> = m
                .files
                .iter()
                .map(|f| f.name.as_str())
                .filter(|n| !dir.join(n).is_file())
                .collect();
            if !missing.is_empty() {
                check.verdict = Verdict::Damaged;
                check.reason = Some(format!(
                    "lists files that are missing: {}",
                    missing.join(", ")
                ));
            }
        }
    }
}

/// The chunk index the manifest beside `path` records for it, if any.
fn index_of(path: &Path) -> Option<Vec<Chunk>> {
    let m = Manifest::load(&manifest_path(path)).ok()?;
    let name = path.file_name()?.to_string_lossy().to_string();
    m.file(&name)?.chunks.as_ref()?.chunks()
}

fn compare_manifest(check: &mut FileCheck) {
    let mpath = manifest_path(&check.path);
    if !mpath.exists() {
        return;
    }
    let manifest = match Manifest::load(&mpath) {
        Ok(m) => m,
        Err(e) => {
            check.manifest = ManifestCheck::Checked;
            check.verdict = Verdict::Damaged;
            check.reason = Some(format!("{e:#}"));
            return;
        }
    };
    let name = check
        .path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let Some(entry) = manifest.file(&name) else {
        check.manifest = ManifestCheck::NotListed;
        return;
    };
    check.manifest = ManifestCheck::Checked;
    let Some(gz) = &check.gz else { return };
    let mut problems = Vec::new();
    if entry.bytes != gz.gz_bytes {
        problems.push(format!(
            "size is {} bytes, the manifest says {}",
            gz.gz_bytes, entry.bytes
        ));
    }
    if entry.raw_bytes != gz.raw_bytes {
        problems.push(format!(
            "uncompressed size is {} bytes, the manifest says {}",
            gz.raw_bytes, entry.raw_bytes
        ));
    }
    if entry.sha256 != gz.sha256 {
        problems.push(
            "sha256 differs from the manifest (the file changed after it was written)".to_string(),
        );
    }
    if let (Some(db), Some(facts), "dump") = (&manifest.database, &check.facts, check.kind)
        && db.tables != facts.tables
    {
        let mut diffs: Vec<String> = Vec::new();
        for name in db.tables.keys().chain(facts.tables.keys()) {
            let (want, got) = (db.tables.get(name), facts.tables.get(name));
            if want != got && !diffs.iter().any(|d| d.starts_with(&format!("{name}:"))) {
                let show =
                    |n: Option<&u64>| n.map(|n| n.to_string()).unwrap_or_else(|| "none".into());
                diffs.push(format!(
                    "{name}: {} rows, the manifest says {}",
                    show(got),
                    show(want)
                ));
            }
        }
        diffs.truncate(5);
        problems.push(format!(
            "table row counts differ from the manifest ({})",
            diffs.join("; ")
        ));
    }
    if !problems.is_empty() {
        check.verdict = Verdict::Damaged;
        check.reason = Some(format!(
            "does not match '{}': {}",
            mpath.display(),
            problems.join("; ")
        ));
    }
}

/// Decompress a gzip file completely (in parallel with its chunk index),
/// without looking at its content: for files whose content was checked as
/// it was written, where the CRC-32 then proves it is the same content.
pub fn check_gz(path: &Path, index: Option<&[Chunk]>) -> Result<Inflated, (Verdict, String)> {
    let problem = |p| match p {
        GzProblem::Unreadable(e) => (Verdict::Unreadable, format!("cannot read the file: {e}")),
        other => (Verdict::Damaged, other.to_string()),
    };
    match index.map(|c| inflate_file_indexed(path, c, threads(), &mut |_| interrupted())) {
        Some(Ok(gz)) => Ok(gz),
        Some(Err(GzProblem::Unreadable(e))) => Err(problem(GzProblem::Unreadable(e))),
        _ => inflate_file(path, &mut |_| interrupted()).map_err(problem),
    }
}
