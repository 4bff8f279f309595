//! `tb-voltar`: one volume -> one verified, atomic, full `tar.gz`.
//!
//! The source is a Docker volume found through the engine (`--volume`) or
//! any directory (`--source`). The archive keeps everything a volume holds
//! (see `tb_shared::archive`), stores already-compressed files instead of
//! compressing them again, is written beside its index and manifest under
//! temporary names, read back and checked entry by entry against the index,
//! and only then published. A live PostgreSQL data directory is never
//! archived as if it were consistent: its containers are stopped for the
//! archive (`--stop`) and always started again, or the run refuses.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Local;
use clap::Parser;

use tb_shared::archive::{ArchiveStats, ArchiveWarning, Archiver, verify_archive};
use tb_shared::atomic::{
    TempFile, ensure_dir, occupied, parent_of, publish_all, remove_stale_temps,
};
use tb_shared::cli::{Common, ToolArgs};
use tb_shared::docker::{Docker, Stopped, restart_leftovers};
use tb_shared::error::{Cause, Failure};
use tb_shared::exit::Outcome;
use tb_shared::gzip::{GzOptions, GzStats, sha256_file};
use tb_shared::manifest::{ChunkIndex, FileEntry, Manifest, Verification, VolumeInfo};
use tb_shared::naming::{BackupName, Kind, Precision, index_path, manifest_path, valid_label};
use tb_shared::record::{Record, Reporter, now_rfc3339, path_value};
use tb_shared::{lock, signals};

/// Default compression level for what compresses (text, JSON, HTML).
pub const DEFAULT_LEVEL: u32 = 5;

const ABOUT: &str = "Archive one volume (a Docker volume or a directory) to a verified tar.gz";
const LONG_ABOUT: &str = "\
Archive one volume (a Docker volume or a directory) to a verified tar.gz.

By default writes /backup/toybox/volumes/LABEL_YYYYMMDD.tar.gz (a second
archive the same day gets _HHMMSS), beside LABEL_YYYYMMDD.index.jsonl.gz
(every entry with its size and sha256) and LABEL_YYYYMMDD.manifest.json.
LABEL is the volume name without its Compose project prefix
(backend_media_volume -> media_volume), or --name.

The archive is a standard tar.gz: owners (numeric), modes, nanosecond
mtimes, symlinks, hard links, empty directories, raw byte names, sparse
files, FIFOs and devices, xattrs and ACLs. Already-compressed files are
stored, not compressed again. It is published only after it was read back
and every entry matched the index; on failure nothing is published.

A live PostgreSQL data directory (postmaster.pid) is refused unless its
containers are stopped for the archive (--stop CONTAINER, started again
in every case) or --allow-live is given (recorded as inconsistent).

Restore without tb:
  mkdir TARGET && tar -xzpf ARCHIVE --numeric-owner --xattrs --xattrs-include='*' -C TARGET

Exit codes: 0 ok, 1 done with warnings (files changed while read, sockets
skipped, a container that did not start again), 2 failed, 75 busy.";

/// Command-line arguments of `tb-voltar`.
#[derive(Debug, Clone, Parser)]
#[command(name = "tb-voltar", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Args {
    /// The Docker volume to archive (its data directory on this host)
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "source",
        conflicts_with = "source"
    )]
    pub volume: Option<String>,

    /// The directory to archive
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,

    /// Label for file names [default: the volume name without its Compose
    /// project prefix, or the directory's name]
    #[arg(long, value_name = "LABEL")]
    pub name: Option<String>,

    /// Directory for the archive (created 0700 if missing)
    #[arg(long, value_name = "DIR", default_value = "/backup/toybox/volumes")]
    pub dir: PathBuf,

    /// Write to FILE instead; `-` streams the tar.gz to stdout (records then
    /// go to stderr; no index, no manifest)
    #[arg(short = 'o', long, value_name = "FILE", conflicts_with = "dir")]
    pub output: Option<PathBuf>,

    /// Stop this container for the archive and start it again afterwards,
    /// also on failure or interruption (repeatable)
    #[arg(long, value_name = "CONTAINER")]
    pub stop: Vec<String>,

    /// Archive a live PostgreSQL data directory anyway (the manifest records
    /// it as inconsistent)
    #[arg(long)]
    pub allow_live: bool,

    /// Compression level for what compresses, 0 to 9
    #[arg(long, default_value_t = DEFAULT_LEVEL, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub level: u32,

    /// Compression threads [default: number of CPUs, at most 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=32))]
    pub threads: Option<u32>,

    /// Seconds to wait for another run writing to the same directory (then exit 75)
    #[arg(long, value_name = "SECONDS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub wait: u64,

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
    fn gz(&self) -> GzOptions {
        let mut o = GzOptions::new(self.level);
        if let Some(t) = self.threads {
            o.threads = t as usize;
        }
        o
    }
}

fn usage(msg: String) -> anyhow::Error {
    Failure::new(Cause::BadInput, msg).into()
}

/// Where the data comes from.
struct SourceDir {
    path: PathBuf,
    label: String,
    docker_volume: Option<String>,
}

fn resolve_source(args: &Args, docker: &Docker) -> Result<SourceDir> {
    let (path, default_label, docker_volume) = match (&args.volume, &args.source) {
        (Some(v), _) => {
            let vol = docker.volume(v)?;
            (vol.mountpoint.clone(), vol.default_label(), Some(v.clone()))
        }
        (None, Some(s)) => {
            // The absolute path, for the manifest (relative names say little later).
            let abs = s.canonicalize().unwrap_or_else(|_| s.clone());
            let name = abs
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (abs, name, None)
        }
        (None, None) => return Err(usage("give --volume NAME or --source DIR".into())),
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(usage(format!("'{}' is not a directory", path.display()))),
        Err(e) => {
            return Err(Failure::new(
                Cause::NotFound,
                format!("cannot read the source '{}': {e}", path.display()),
            )
            .into());
        }
    }
    let label = args.name.clone().unwrap_or(default_label);
    if !valid_label(&label) {
        return Err(usage(format!(
            "'{label}' cannot be used in a file name (letters, digits, '_' and '-' only): give a label with --name"
        )));
    }
    Ok(SourceDir {
        path,
        label,
        docker_volume,
    })
}

/// A running PostgreSQL in `dir` or one level below (`postmaster.pid`
/// beside `PG_VERSION`)?
fn live_postgres(dir: &Path) -> Option<PathBuf> {
    let is_live = |d: &Path| d.join("postmaster.pid").is_file() && d.join("PG_VERSION").is_file();
    if is_live(dir) {
        return Some(dir.to_path_buf());
    }
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .find(|p| is_live(p))
}

/// `DIR/LABEL_YYYYMMDD.tar.gz`, or `_HHMMSS` added when that day already
/// has an archive (names carry the second: a rerun within the same second
/// waits for the next).
fn fresh_name(dir: &Path, label: &str) -> PathBuf {
    let taken = |n: &BackupName| {
        [Kind::Volume, Kind::Index, Kind::Manifest]
            .iter()
            .any(|k| occupied(&dir.join(n.sibling(*k).file_name())))
    };
    let day = BackupName::new(
        Kind::Volume,
        label,
        Local::now().naive_local(),
        Precision::Day,
    );
    if !taken(&day) {
        return dir.join(day.file_name());
    }
    for _ in 0..5 {
        let n = BackupName::new(
            Kind::Volume,
            label,
            Local::now().naive_local(),
            Precision::Second,
        );
        if !taken(&n) {
            return dir.join(n.file_name());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    dir.join(
        BackupName::new(
            Kind::Volume,
            label,
            Local::now().naive_local(),
            Precision::Second,
        )
        .file_name(),
    )
}

/// Run `tb-voltar`.
pub fn run(args: Args, rep: &mut Reporter) -> Result<Outcome> {
    let started = now_rfc3339();
    let clock = Instant::now();
    let docker = Docker::new(&args.docker);
    let src = resolve_source(&args, &docker)?;

    if args.stdout_carries_bytes() {
        let live = live_postgres(&src.path);
        check_live(&args, &src, live.as_deref(), rep)?;
        let stopped = stop_containers(&args, &docker, None, rep)?;
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let arch = Archiver::new(
            &src.path,
            StdoutWriter(io::stdout()),
            io::sink(),
            args.gz(),
            collector(&warnings),
        );
        let result = arch.archive_all();
        let restart_failed = restart(stopped, rep);
        let (_, _, stats) = result?;
        emit_warnings(rep, &warnings);
        rep.emit(volume_record("-".into(), &stats, clock));
        rep.summary_field("written", 1);
        return Ok(outcome(rep, restart_failed));
    }

    let dir = match &args.output {
        Some(p) => parent_of(p).to_path_buf(),
        None => args.dir.clone(),
    };
    if let Some(p) = &args.output {
        if occupied(p) {
            return Err(exists(p));
        }
        let n = p.file_name().unwrap_or_default().as_encoded_bytes();
        if n.ends_with(b".manifest.json") || n.ends_with(b".index.jsonl.gz") {
            return Err(usage(format!(
                "-o '{}': that name is kept for the index or the manifest beside an archive; name the archive FILE.tar.gz",
                p.display()
            )));
        }
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
    // Containers an earlier run stopped and could not start again.
    let (started_again, still_down) = restart_leftovers(&docker, &dir);
    for n in started_again {
        rep.warn(
            &format!(
                "container '{n}' was left stopped by an earlier run; it has been started again"
            ),
            Record::new("warning").with("container", &n),
        );
    }
    for (n, why) in &still_down {
        rep.warn(
            &format!("container '{n}' was left stopped by an earlier run and still cannot be started: {why}"),
            Record::new("warning").with("container", n),
        );
    }

    let dest = match &args.output {
        Some(p) => p.clone(),
        None => fresh_name(&dir, &src.label),
    };
    let index_dest = index_path(&dest);
    let manifest_dest = manifest_path(&dest);
    for p in [&dest, &index_dest, &manifest_dest] {
        if occupied(p) {
            return Err(exists(p));
        }
    }

    let live = live_postgres(&src.path);
    let consistent = check_live(&args, &src, live.as_deref(), rep)?;
    let mut archive_temp = TempFile::create(&dest)?;
    let mut index_temp = TempFile::create(&index_dest)?;
    let afile = archive_temp
        .file()
        .try_clone()
        .context("cannot duplicate a file handle")?;
    let ifile = index_temp
        .file()
        .try_clone()
        .context("cannot duplicate a file handle")?;

    let stopped = stop_containers(&args, &docker, Some(&dir), rep)?;
    let stopped_names: Vec<String> = stopped
        .as_ref()
        .map(|s| s.names().to_vec())
        .unwrap_or_default();
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let arch = Archiver::new(
        &src.path,
        afile,
        io::BufWriter::new(ifile),
        args.gz(),
        collector(&warnings),
    );
    let result = arch.archive_all();
    // Start the containers again as soon as the data has been read.
    let restart_failed = restart(stopped, rep);
    let (_, index_w, stats) = result.map_err(|e| write_error(e, &dest))?;
    index_w
        .into_inner()
        .map_err(|e| e.into_error())
        .context("cannot write the index")?;
    archive_temp.sync()?;
    index_temp.sync()?;
    let archive_ms = clock.elapsed().as_millis() as u64;
    let warning_list = emit_warnings(rep, &warnings);

    // Read it all back: every entry against the index.
    let check = verify_archive(
        archive_temp.path(),
        Some(stats.gz.chunks.clone()),
        Some(index_temp.path()),
    );
    signals::check()?;
    let check = check.map_err(|(_, why)| {
        Failure::new(
            Cause::Other,
            format!(
                "the written archive '{}' does not verify: {why}",
                archive_temp.path().display()
            ),
        )
    })?;
    if check.gz.sha256 != stats.gz.sha256
        || check.gz.gz_bytes != stats.gz.gz_bytes
        || check.entries != stats.counts.entries
    {
        bail!(Failure::new(
            Cause::Other,
            format!(
                "the written archive '{}' reads back different from what was written: the disk or filesystem is not keeping data",
                archive_temp.path().display()
            )
        ));
    }

    let finished = now_rfc3339();
    let tool = format!("tb-voltar {}", env!("CARGO_PKG_VERSION"));
    let mut manifest = Manifest::new("volume", &src.label, &tool, &started);
    manifest.finished_at = finished.clone();
    manifest.duration_ms = clock.elapsed().as_millis() as u64;
    manifest
        .files
        .push(file_entry("archive", &dest, &stats.gz, true));
    let index_entry = small_gz_entry("index", index_temp.path(), &index_dest)?;
    manifest.files.push(index_entry.clone());
    let c = &stats.counts;
    manifest.volume = Some(VolumeInfo {
        source: src.path.display().to_string(),
        docker_volume: src.docker_volume.clone(),
        consistent,
        stopped_containers: stopped_names.clone(),
        entries: c.entries,
        files: c.files,
        dirs: c.dirs,
        symlinks: c.symlinks,
        hardlinks: c.hardlinks,
        specials: c.specials,
        sockets_skipped: c.sockets_skipped,
        file_bytes: c.file_bytes,
        tar_bytes: stats.tar_bytes,
        warnings: warning_list.iter().take(100).cloned().collect(),
        warnings_total: warning_list.len() as u64,
    });
    manifest.verified = Some(Verification {
        at: finished,
        verdict: "good".into(),
        by: tool,
    });
    let mut manifest_temp = manifest.write_temp(&manifest_dest)?;
    let manifest_sha =
        sha256_file(manifest_temp.path()).context("cannot read back the manifest")?;
    let manifest_bytes = manifest_temp
        .file()
        .metadata()
        .map(|m| m.len())
        .unwrap_or(0);

    signals::check()?;
    let published = publish_all(vec![archive_temp, index_temp, manifest_temp])?;
    let mut rec = volume_record(path_value(&published[0]), &stats, clock);
    rec.set("archive_ms", archive_ms);
    rec.set("consistent", consistent);
    if let Some(v) = &src.docker_volume {
        rec.set("docker_volume", v);
    }
    rep.emit(rec);
    rep.emit(
        Record::new("written")
            .with("kind", "index")
            .path(&published[1])
            .with("bytes", index_entry.bytes)
            .with("sha256", &index_entry.sha256)
            .with("entries", c.entries),
    );
    rep.emit(
        Record::new("written")
            .with("kind", "manifest")
            .path(&published[2])
            .with("bytes", manifest_bytes)
            .with("sha256", &manifest_sha),
    );
    rep.summary_field("written", 3);
    rep.summary_field("path", path_value(&published[0]));
    Ok(outcome(rep, restart_failed))
}

fn outcome(rep: &Reporter, restart_failed: bool) -> Outcome {
    if restart_failed {
        Outcome::WARNINGS
    } else {
        rep.outcome()
    }
}

fn exists(p: &Path) -> anyhow::Error {
    Failure::new(
        Cause::Exists,
        format!(
            "'{}' already exists; tb-voltar never overwrites a backup: choose another -o FILE",
            p.display()
        ),
    )
    .into()
}

/// Errors while archiving: a full disk names the archive being written.
fn write_error(e: anyhow::Error, dest: &Path) -> anyhow::Error {
    for c in e.chain() {
        if let Some(io) = c.downcast_ref::<io::Error>()
            && tb_shared::error::io_cause(io) == Some(Cause::DiskFull)
        {
            return Failure::new(
                Cause::DiskFull,
                format!(
                    "disk full: no space left in '{}' while writing {}; free space there or choose another --dir",
                    parent_of(dest).display(),
                    dest.display()
                ),
            )
            .into();
        }
    }
    e
}

/// Refuse a live database unless its containers are being stopped or
/// `--allow-live` was given. Returns whether the archive is consistent.
fn check_live(
    args: &Args,
    src: &SourceDir,
    live: Option<&Path>,
    rep: &mut Reporter,
) -> Result<bool> {
    let Some(pgdata) = live else { return Ok(true) };
    if !args.stop.is_empty() {
        return Ok(true);
    }
    if args.allow_live {
        rep.warn(
            &format!(
                "'{}' holds a running PostgreSQL: archived live (--allow-live), the copy is not consistent; the manifest says so",
                pgdata.display()
            ),
            Record::new("warning").path(pgdata),
        );
        return Ok(false);
    }
    let how = match &src.docker_volume {
        Some(v) => {
            format!("--stop CONTAINER (the container using volume '{v}', e.g. backend-db-1)")
        }
        None => "--stop CONTAINER".to_string(),
    };
    Err(Failure::new(
        Cause::LiveDatabase,
        format!(
            "'{}' holds a running PostgreSQL (postmaster.pid): a live copy of its files is not consistent. Stop it during the archive with {how}, or take a logical backup with tb-dump; --allow-live archives it anyway, marked inconsistent",
            pgdata.display()
        ),
    )
    .into())
}

fn stop_containers(
    args: &Args,
    docker: &Docker,
    dir: Option<&Path>,
    rep: &mut Reporter,
) -> Result<Option<Stopped>> {
    if args.stop.is_empty() {
        return Ok(None);
    }
    let marker_dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let by = format!("tb-voltar pid {}", std::process::id());
    let s = Stopped::stop(docker, &args.stop, &marker_dir, &by)?;
    for n in s.names() {
        rep.emit(Record::new("stopped").with("container", n));
    }
    Ok(Some(s))
}

/// Start stopped containers again; loud when one does not start. Returns
/// whether any failed.
fn restart(stopped: Option<Stopped>, rep: &mut Reporter) -> bool {
    let Some(s) = stopped else { return false };
    let names = s.names().to_vec();
    let failed = s.restart();
    for n in names.iter().filter(|n| !failed.iter().any(|f| &f.0 == *n)) {
        rep.emit(Record::new("started").with("container", n));
    }
    for (n, why) in &failed {
        rep.warn(
            &format!(
                "container '{n}' was stopped for the backup and could NOT be started again: {why}; start it by hand (docker start {n}); the next run will try too"
            ),
            Record::new("warning").with("container", n).with("severity", "critical"),
        );
    }
    !failed.is_empty()
}

fn collector(warnings: &Arc<Mutex<Vec<ArchiveWarning>>>) -> Box<dyn FnMut(ArchiveWarning) + Send> {
    let w = Arc::clone(warnings);
    Box::new(move |x| {
        if let Ok(mut v) = w.lock() {
            v.push(x);
        }
    })
}

/// One warning record per archive warning (the first 1000; the count after).
fn emit_warnings(rep: &mut Reporter, warnings: &Arc<Mutex<Vec<ArchiveWarning>>>) -> Vec<String> {
    let list = warnings.lock().map(|v| v.clone()).unwrap_or_default();
    let mut texts = Vec::new();
    for (i, w) in list.iter().enumerate() {
        let text = format!("'{}' {}", w.path.display(), w.message);
        if i < 1000 {
            rep.warn(&text, Record::new("warning").with("entry", &w.path));
        }
        texts.push(text);
    }
    if list.len() > 1000 {
        rep.warn(
            &format!("{} more warnings (see the manifest)", list.len() - 1000),
            Record::new("warning"),
        );
    }
    texts
}

fn volume_record(path: serde_json::Value, stats: &ArchiveStats, clock: Instant) -> Record {
    let c = &stats.counts;
    Record::new("written")
        .with("kind", "volume")
        .with("path", path)
        .with("bytes", stats.gz.gz_bytes)
        .with("raw_bytes", stats.tar_bytes)
        .with("sha256", &stats.gz.sha256)
        .with("entries", c.entries)
        .with("files", c.files)
        .with("file_bytes", c.file_bytes)
        .with("stored_chunks", stats.gz.stored_chunks)
        .with("duration_ms", clock.elapsed().as_millis() as u64)
}

fn file_entry(role: &str, path: &Path, gz: &GzStats, chunks: bool) -> FileEntry {
    FileEntry {
        role: role.into(),
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: gz.gz_bytes,
        raw_bytes: gz.raw_bytes,
        sha256: gz.sha256.clone(),
        crc32: gz.crc32,
        chunks: chunks.then(|| ChunkIndex::new(&gz.chunks)),
    }
}

/// Manifest entry of a small gzip file (the index): read back whole.
fn small_gz_entry(role: &str, temp: &Path, dest: &Path) -> Result<FileEntry> {
    let gz = tb_shared::gzip::inflate_file(temp, &mut |_| Ok(())).map_err(|p| {
        anyhow::anyhow!(
            "the written index '{}' does not verify: {p}",
            temp.display()
        )
    })?;
    Ok(FileEntry {
        role: role.into(),
        name: dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: gz.gz_bytes,
        raw_bytes: gz.raw_bytes,
        sha256: gz.sha256,
        crc32: gz.crc32,
        chunks: None,
    })
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
    fn a_live_data_directory_is_found_at_the_root_or_one_below() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(live_postgres(d.path()), None);
        std::fs::create_dir(d.path().join("pgdata")).unwrap();
        std::fs::write(d.path().join("pgdata/PG_VERSION"), "15\n").unwrap();
        assert_eq!(live_postgres(d.path()), None, "a stopped cluster is fine");
        std::fs::write(d.path().join("pgdata/postmaster.pid"), "1\n").unwrap();
        assert_eq!(live_postgres(d.path()), Some(d.path().join("pgdata")));
    }
}
