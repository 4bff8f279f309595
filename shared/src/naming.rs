//! Backup names: the one place that formats and parses them.
//!
//! The time of a backup is in its name, never in its mtime (copying files
//! changes mtimes), and names sort by time under `ls | sort`. The layout
//! (design.md) has these names, `LABEL` being a database or volume label
//! such as `toybox` or `media_volume`:
//!
//! | name | kind |
//! |---|---|
//! | `LABEL_YYYYMMDD_HHMMSS.sql.gz` | [`Kind::Dump`] (pg_dump, plain SQL) |
//! | `LABEL_YYYYMMDD_HHMMSS.roles.sql.gz` | [`Kind::Roles`] (pg_dumpall --globals-only) |
//! | `LABEL_YYYYMMDD[_HHMMSS].tar.gz` | [`Kind::Volume`] (full volume archive) |
//! | `LABEL_YYYYMMDD[_HHMMSS].manifest.json` | [`Kind::Manifest`] (sidecar of the above) |
//! | `base_YYYYMMDD[_HHMMSS]/` in `LABEL/` | [`Kind::ChainBase`] (incremental chain) |
//! | `incr_YYYYMMDD[_HHMMSS]/` in `LABEL/` | [`Kind::ChainIncr`] |
//!
//! The date alone is used when it is the first backup of that day; a second
//! one the same day gets `_HHMMSS`. A date-only name means "the first of that
//! day" and sorts before the timed names of the same day, both for `sort` and
//! for [`BackupName`]'s `Ord`.
//!
//! Anything that does not parse is "not ours": no tool deletes or rewrites it.
//! Names beginning with `.` never parse (temporaries and the lock are hidden).

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// What a name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A gzipped plain-SQL pg_dump of one database.
    Dump,
    /// The cluster's roles and tablespaces (pg_dumpall --globals-only), gzipped.
    Roles,
    /// A JSON manifest beside a dump or a volume archive.
    Manifest,
    /// The gzipped JSON-lines index of a volume archive.
    Index,
    /// A full tar.gz of one volume.
    Volume,
    /// The base (full) point of an incremental chain (a directory).
    ChainBase,
    /// An incremental point of a chain (a directory).
    ChainIncr,
}

impl Kind {
    /// The word used in records: `dump`, `roles`, `manifest`, `volume`,
    /// `chain_base`, `chain_incr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dump => "dump",
            Kind::Roles => "roles",
            Kind::Manifest => "manifest",
            Kind::Index => "index",
            Kind::Volume => "volume",
            Kind::ChainBase => "chain_base",
            Kind::ChainIncr => "chain_incr",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Kind::Dump => ".sql.gz",
            Kind::Roles => ".roles.sql.gz",
            Kind::Manifest => ".manifest.json",
            Kind::Index => ".index.jsonl.gz",
            Kind::Volume => ".tar.gz",
            Kind::ChainBase | Kind::ChainIncr => "",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a name carries the time of day or only the date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    /// `YYYYMMDD`: the first backup of that day; its time reads as 00:00:00.
    Day,
    /// `YYYYMMDD_HHMMSS`.
    Second,
}

/// A parsed backup name. Times are local wall-clock times, as people read
/// them in `ls`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackupName {
    /// What the name stands for.
    pub kind: Kind,
    /// Database or volume label (`toybox`, `media_volume`). For chain points,
    /// `base` or `incr` is not the label: the chain directory's name is.
    pub label: String,
    /// Local time from the name (00:00:00 for [`Precision::Day`]).
    pub time: NaiveDateTime,
    /// Whether the name has `_HHMMSS`.
    pub precision: Precision,
}

/// Does `label` make a safe, unambiguous name part? ASCII letters, digits,
/// `_` and `-`, starting with a letter or digit, at most 100 bytes.
pub fn valid_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 100
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

/// Prefix of our temporary files (hidden, never a backup name).
pub const TEMP_PREFIX: &str = ".tb-tmp.";
/// Name of the lock file in a backup directory.
pub const LOCK_NAME: &str = ".tb.lock";

/// Is `name` one of our temporary files?
pub fn is_temp(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes())
}

impl BackupName {
    /// A name of `kind` for `label` at `time` with the given precision.
    /// Chain points ignore `label` in their file name (it is the directory's).
    pub fn new(kind: Kind, label: &str, time: NaiveDateTime, precision: Precision) -> BackupName {
        let time = match precision {
            Precision::Day => time.date().and_time(NaiveTime::MIN),
            Precision::Second => time.with_nanosecond(0).unwrap_or(time),
        };
        BackupName {
            kind,
            label: label.to_string(),
            time,
            precision,
        }
    }

    /// Parse a file or directory name (not a path). `None` means "not ours".
    /// Chain points parse with an empty label; use [`BackupName::parse_in_chain`]
    /// to take the label from the chain directory.
    pub fn parse(name: &OsStr) -> Option<BackupName> {
        let name = name.to_str()?;
        if name.starts_with('.') {
            return None;
        }
        for kind in [
            Kind::Roles,
            Kind::Manifest,
            Kind::Index,
            Kind::Dump,
            Kind::Volume,
        ] {
            if let Some(stem) = name.strip_suffix(kind.suffix()) {
                let (label, time, precision) = split_stem(stem)?;
                if !valid_label(label)
                    || (kind == Kind::Dump || kind == Kind::Roles) && precision == Precision::Day
                {
                    return None;
                }
                return Some(BackupName {
                    kind,
                    label: label.to_string(),
                    time,
                    precision,
                });
            }
        }
        let (prefix, time, precision) = split_stem(name)?;
        let kind = match prefix {
            "base" => Kind::ChainBase,
            "incr" => Kind::ChainIncr,
            _ => return None,
        };
        Some(BackupName {
            kind,
            label: String::new(),
            time,
            precision,
        })
    }

    /// Parse a chain point directory name inside the chain directory `label`.
    pub fn parse_in_chain(name: &OsStr, label: &str) -> Option<BackupName> {
        let mut n = BackupName::parse(name)?;
        if !matches!(n.kind, Kind::ChainBase | Kind::ChainIncr) || !valid_label(label) {
            return None;
        }
        n.label = label.to_string();
        Some(n)
    }

    /// `LABEL_YYYYMMDD[_HHMMSS]` (for chain points, `base_…` or `incr_…`).
    pub fn stem(&self) -> String {
        let prefix = match self.kind {
            Kind::ChainBase => "base",
            Kind::ChainIncr => "incr",
            _ => self.label.as_str(),
        };
        match self.precision {
            Precision::Day => format!("{prefix}_{}", self.time.format("%Y%m%d")),
            Precision::Second => format!("{prefix}_{}", self.time.format("%Y%m%d_%H%M%S")),
        }
    }

    /// The file or directory name.
    pub fn file_name(&self) -> String {
        format!("{}{}", self.stem(), self.kind.suffix())
    }

    /// The same backup's name of another kind (a dump's manifest or roles file).
    pub fn sibling(&self, kind: Kind) -> BackupName {
        BackupName {
            kind,
            ..self.clone()
        }
    }
}

impl fmt::Display for BackupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

impl PartialOrd for BackupName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Oldest first; on the same time a date-only name first; then label, kind.
impl Ord for BackupName {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.time, self.precision, &self.label, self.kind).cmp(&(
            other.time,
            other.precision,
            &other.label,
            other.kind,
        ))
    }
}

/// Split `LABEL_YYYYMMDD[_HHMMSS]` from the right, so labels may hold `_`.
fn split_stem(stem: &str) -> Option<(&str, NaiveDateTime, Precision)> {
    let (head, last) = stem.rsplit_once('_')?;
    if is_digits(last, 6) {
        let (label, date) = head.rsplit_once('_')?;
        let date = parse_date(date)?;
        let time = parse_time(last)?;
        return Some((label, date.and_time(time), Precision::Second));
    }
    let date = parse_date(last)?;
    Some((head, date.and_time(NaiveTime::MIN), Precision::Day))
}

fn is_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    if !is_digits(s, 8) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    NaiveDate::from_ymd_opt(n(0..4)? as i32, n(4..6)?, n(6..8)?)
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    NaiveTime::from_hms_opt(n(0..2)?, n(2..4)?, n(4..6)?)
}

/// The manifest path for any artifact path, including names that are not
/// ours (`-o /tmp/x.sql.gz` gets `/tmp/x.manifest.json`): the known
/// extension is replaced by `.manifest.json`.
pub fn manifest_path(artifact: &Path) -> PathBuf {
    sibling_path(artifact, ".manifest.json")
}

/// The index path beside a volume archive (`x.tar.gz` -> `x.index.jsonl.gz`).
pub fn index_path(archive: &Path) -> PathBuf {
    sibling_path(archive, ".index.jsonl.gz")
}

/// The roles-file path beside a dump path (`x.sql.gz` -> `x.roles.sql.gz`).
pub fn roles_path(dump: &Path) -> PathBuf {
    sibling_path(dump, ".roles.sql.gz")
}

fn sibling_path(artifact: &Path, suffix: &str) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    // Work on bytes: file names need not be UTF-8.
    let name = artifact.file_name().unwrap_or_default().as_bytes();
    let stem = [
        ".roles.sql.gz",
        ".manifest.json",
        ".index.jsonl.gz",
        ".sql.gz",
        ".tar.gz",
        ".gz",
        ".sql",
        ".tar",
    ]
    .iter()
    .find_map(|ext| name.strip_suffix(ext.as_bytes()))
    .unwrap_or(name);
    let mut out = stem.to_vec();
    out.extend_from_slice(suffix.as_bytes());
    artifact.with_file_name(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn parse(s: &str) -> Option<BackupName> {
        BackupName::parse(OsStr::new(s))
    }

    #[test]
    fn every_name_of_the_default_layout_round_trips() {
        let cases = [
            (
                "toybox_20260123_030000.sql.gz",
                Kind::Dump,
                "toybox",
                "2026-01-23 03:00:00",
                Precision::Second,
            ),
            (
                "toybox_20260123_030000.roles.sql.gz",
                Kind::Roles,
                "toybox",
                "2026-01-23 03:00:00",
                Precision::Second,
            ),
            (
                "toybox_20260123_030000.manifest.json",
                Kind::Manifest,
                "toybox",
                "2026-01-23 03:00:00",
                Precision::Second,
            ),
            (
                "postgres_data_20260119.tar.gz",
                Kind::Volume,
                "postgres_data",
                "2026-01-19 00:00:00",
                Precision::Day,
            ),
            (
                "media_volume_20260119.tar.gz",
                Kind::Volume,
                "media_volume",
                "2026-01-19 00:00:00",
                Precision::Day,
            ),
            (
                "media_volume_20260119_153000.tar.gz",
                Kind::Volume,
                "media_volume",
                "2026-01-19 15:30:00",
                Precision::Second,
            ),
            (
                "media_volume_20260119.manifest.json",
                Kind::Manifest,
                "media_volume",
                "2026-01-19 00:00:00",
                Precision::Day,
            ),
            (
                "media_volume_20260119.index.jsonl.gz",
                Kind::Index,
                "media_volume",
                "2026-01-19 00:00:00",
                Precision::Day,
            ),
            (
                "base_20260119",
                Kind::ChainBase,
                "",
                "2026-01-19 00:00:00",
                Precision::Day,
            ),
            (
                "incr_20260120",
                Kind::ChainIncr,
                "",
                "2026-01-20 00:00:00",
                Precision::Day,
            ),
            (
                "incr_20260120_034500",
                Kind::ChainIncr,
                "",
                "2026-01-20 03:45:00",
                Precision::Second,
            ),
        ];
        for (name, kind, label, time, precision) in cases {
            let n = parse(name).unwrap_or_else(|| panic!("{name} should parse"));
            assert_eq!(
                (n.kind, n.label.as_str(), n.time, n.precision),
                (kind, label, dt(time), precision),
                "{name}"
            );
            assert_eq!(n.file_name(), name);
            assert_eq!(
                BackupName::new(kind, label, dt(time), precision).file_name(),
                name
            );
        }
    }

    #[test]
    fn names_that_are_not_ours_do_not_parse() {
        for name in [
            "toybox.sql.gz",
            "toybox_2026012_030000.sql.gz",
            "toybox_20261340_030000.sql.gz",
            "toybox_20260230_030000.sql.gz",
            "toybox_20260123_250000.sql.gz",
            "toybox_20260123.sql.gz", // dumps always carry the time
            "_20260123_030000.sql.gz",
            "toybox_20260123_030000.sql",
            "toybox_20260123_030000.sql.gz.tmp",
            ".tb-tmp.toybox_20260123_030000.sql.gz.4242",
            ".toybox_20260123_030000.sql.gz",
            "notes.txt",
            "base_2026011",
            "full_20260119",
            "toy box_20260123_030000.sql.gz",
            "toybox_+2026123_030000.sql.gz",
            "",
        ] {
            assert_eq!(parse(name), None, "{name:?} must not parse");
        }
    }

    #[test]
    fn non_utf8_names_are_not_ours() {
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(
            BackupName::parse(OsStr::from_bytes(b"toybox\xff_20260123_030000.sql.gz")),
            None
        );
    }

    #[test]
    fn date_only_sorts_before_same_day_times_both_ways() {
        let names = [
            "media_volume_20260119_000000.tar.gz",
            "media_volume_20260119.tar.gz",
            "media_volume_20260118_235959.tar.gz",
            "media_volume_20260119_153000.tar.gz",
            "media_volume_20260120.tar.gz",
        ];
        let mut parsed: Vec<BackupName> = names.iter().map(|n| parse(n).unwrap()).collect();
        parsed.sort();
        let by_time: Vec<String> = parsed.iter().map(BackupName::file_name).collect();
        let mut by_bytes: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        by_bytes.sort();
        let expect = [
            "media_volume_20260118_235959.tar.gz",
            "media_volume_20260119.tar.gz",
            "media_volume_20260119_000000.tar.gz",
            "media_volume_20260119_153000.tar.gz",
            "media_volume_20260120.tar.gz",
        ];
        assert_eq!(by_time, expect);
        assert_eq!(by_bytes, expect, "ls | sort order must agree");
    }

    #[test]
    fn labels_with_underscores_parse_from_the_right() {
        let n = parse("backend_media_volume_20260119_20260120_030000.tar.gz").unwrap();
        assert_eq!(n.label, "backend_media_volume_20260119");
        assert_eq!(n.time, dt("2026-01-20 03:00:00"));
    }

    #[test]
    fn siblings_share_the_stem() {
        let dump = parse("toybox_20260123_030000.sql.gz").unwrap();
        assert_eq!(
            dump.sibling(Kind::Manifest).file_name(),
            "toybox_20260123_030000.manifest.json"
        );
        assert_eq!(
            dump.sibling(Kind::Roles).file_name(),
            "toybox_20260123_030000.roles.sql.gz"
        );
        assert_eq!(
            manifest_path(Path::new("/b/x.sql.gz")),
            Path::new("/b/x.manifest.json")
        );
        assert_eq!(
            manifest_path(Path::new("/b/media_20260101.tar.gz")),
            Path::new("/b/media_20260101.manifest.json")
        );
        assert_eq!(
            manifest_path(Path::new("odd.bin")),
            Path::new("odd.bin.manifest.json")
        );
        assert_eq!(
            roles_path(Path::new("/b/x.sql.gz")),
            Path::new("/b/x.roles.sql.gz")
        );
        use std::os::unix::ffi::OsStrExt;
        let odd = Path::new(OsStr::from_bytes(b"/b/a b\nc\xe9.sql.gz"));
        assert_eq!(
            manifest_path(odd).as_os_str().as_bytes(),
            b"/b/a b\nc\xe9.manifest.json"
        );
        assert_eq!(
            roles_path(odd).as_os_str().as_bytes(),
            b"/b/a b\nc\xe9.roles.sql.gz"
        );
    }

    #[test]
    fn chain_points_take_the_label_of_their_directory() {
        let p = BackupName::parse_in_chain(OsStr::new("incr_20260120"), "media_volume").unwrap();
        assert_eq!(
            (p.kind, p.label.as_str()),
            (Kind::ChainIncr, "media_volume")
        );
        assert_eq!(
            BackupName::parse_in_chain(OsStr::new("media_20260120.tar.gz"), "media"),
            None
        );
        assert_eq!(
            BackupName::parse_in_chain(OsStr::new("incr_20260120"), "../x"),
            None
        );
    }

    #[test]
    fn label_rules() {
        for ok in ["toybox", "media_volume", "db-2", "A1"] {
            assert!(valid_label(ok), "{ok}");
        }
        for bad in [
            "",
            "_x",
            "-x",
            "a b",
            "a/b",
            "a.b",
            "日本",
            &"x".repeat(101),
        ] {
            assert!(!valid_label(bad), "{bad}");
        }
    }

    #[test]
    fn new_truncates_to_the_precision() {
        let t = dt("2026-01-19 15:30:45");
        assert_eq!(
            BackupName::new(Kind::Volume, "m", t, Precision::Day).file_name(),
            "m_20260119.tar.gz"
        );
        assert_eq!(
            BackupName::new(Kind::Volume, "m", t, Precision::Day).time,
            dt("2026-01-19 00:00:00")
        );
    }

    #[test]
    fn temp_names_are_recognised() {
        assert!(is_temp(OsStr::new(
            ".tb-tmp.toybox_20260123_030000.sql.gz.77"
        )));
        assert!(!is_temp(OsStr::new("toybox_20260123_030000.sql.gz")));
    }
}
