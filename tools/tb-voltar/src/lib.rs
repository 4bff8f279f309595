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

use tb_shared::archive::{Archiver, verify_archive};
use tb_shared::atomic::{TempFile, ensure_dir, occupied, parent_of, publish_all};
use tb_shared::cli::{Common, ToolArgs};
use tb_shared::docker::Docker;
use tb_shared::error::{Cause, Failure};
use tb_shared::exit::Outcome;
use tb_shared::gzip::sha256_file;
use tb_shared::manifest::{Manifest, Verification, VolumeInfo};
use tb_shared::naming::{BackupName, Kind, Precision, index_path, manifest_path};
use tb_shared::record::{Record, Reporter, now_rfc3339, path_value};
use tb_shared::source::{
    SourceArgs, check_live, collector, emit_warnings, file_entry, housekeeping, live_postgres,
    resolve_source, restart, small_gz_entry, stop_containers, volume_record, write_error,
};
use tb_shared::{lock, signals};

/// Default compression level for what compresses (text, JSON, HTML).
pub const DEFAULT_LEVEL: u32 = tb_shared::source::DEFAULT_LEVEL;

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
    #[command(flatten)]
    pub src: SourceArgs,

    /// Directory for the archive (created 0700 if missing)
    #[arg(long, value_name = "DIR", default_value = "/backup/toybox/volumes")]
    pub dir: PathBuf,

    /// Write to FILE instead; `-` streams the tar.gz to stdout (records then
    /// go to stderr; no index, no manifest)
    #[arg(short = 'o', long, value_name = "FILE", conflicts_with = "dir")]
    pub output: Option<PathBuf>,

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

fn usage(msg: String) -> anyhow::Error {
    Failure::new(Cause::BadInput, msg).into()
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
    let docker = Docker::new(&args.src.docker);
    let src = resolve_source(&args.src, &docker)?;

    if args.stdout_carries_bytes() {
        let live = live_postgres(&src.path);
        check_live(&args.src, &src, live.as_deref(), rep)?;
        let stopped = stop_containers(&args.src, &docker, None, rep)?;
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let arch = Archiver::new(
            &src.path,
            StdoutWriter(io::stdout()),
            io::sink(),
            args.src.gz(),
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
    let _lock = lock::acquire(&dir, args.src.lock_wait())
        .with_context(|| format!("cannot lock backup directory '{}'", dir.display()))?;
    housekeeping(&dir, &docker, rep)?;

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
    let consistent = check_live(&args.src, &src, live.as_deref(), rep)?;
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

    let stopped = stop_containers(&args.src, &docker, Some(&dir), rep)?;
    let stopped_names: Vec<String> = stopped
        .as_ref()
        .map(|s| s.names().to_vec())
        .unwrap_or_default();
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let arch = Archiver::new(
        &src.path,
        tb_shared::progress::CountingWriter::new(
            afile,
            tb_shared::progress::Progress::new("archiving", None),
        ),
        io::BufWriter::new(ifile),
        args.src.gz(),
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
