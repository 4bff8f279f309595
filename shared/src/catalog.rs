//! What backups a directory holds: `tb-check list` prints it, `tb-prune`
//! plans from it.
//!
//! Only names that parse are ours ([`crate::naming`]); everything else is
//! listed as not ours (with `--all`) and is never deleted. Sidecars (a
//! dump's roles file and manifest, an archive's index and manifest) belong
//! to their backup and go with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDateTime};

use crate::chain::{self, Depth};
use crate::manifest::Manifest;
use crate::naming::{BackupName, Kind, index_path, manifest_path, roles_path};
use crate::retention::{Policy, Unit, Verdict, decide};

/// Whether a backup is known good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Verified good (by its manifest's verification and sizes, or by a
    /// full check).
    Good,
    /// Damaged, with the reason.
    Damaged(String),
    /// Never verified (no manifest, or one without a verdict).
    Unverified(String),
}

impl Status {
    /// `good`, `damaged` or `unverified`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Good => "good",
            Status::Damaged(_) => "damaged",
            Status::Unverified(_) => "unverified",
        }
    }
    /// The reason, when not good.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Status::Good => None,
            Status::Damaged(r) | Status::Unverified(r) => Some(r),
        }
    }
}

/// Where a chain point stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRef {
    /// The chain directory (`…/volumes-incremental/media_volume`).
    pub dir: PathBuf,
    /// The chain id (its base's name), when the manifest could be read.
    pub chain: Option<String>,
    /// The parent point.
    pub parent: Option<String>,
    /// This point's name.
    pub point: String,
}

/// One backup of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// What it is.
    pub kind: Kind,
    /// Its label.
    pub label: String,
    /// Its time, from the name.
    pub time: NaiveDateTime,
    /// The main file, or the point directory.
    pub path: PathBuf,
    /// Bytes of the main file (of all the point's files for a chain point).
    pub bytes: u64,
    /// Sidecars that exist (deleted with it; the manifest last).
    pub sidecars: Vec<PathBuf>,
    /// Whether it is known good.
    pub status: Status,
    /// For chain points.
    pub chain: Option<ChainRef>,
}

impl Backup {
    /// A record `event` about this backup: `kind`, `label`, `backup_time`
    /// (from the name), `path`.
    pub fn record(&self, event: &str) -> crate::record::Record {
        crate::record::Record::new(event)
            .with("kind", self.kind.as_str())
            .with("label", &self.label)
            .with(
                "backup_time",
                self.time.format("%Y-%m-%d %H:%M:%S").to_string(),
            )
            .path(&self.path)
    }
}

/// Something in a backup directory that is not ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// Its path.
    pub path: PathBuf,
    /// Why it is not a backup of ours.
    pub reason: String,
}

/// What a scan found.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Our backups, oldest first within each directory.
    pub backups: Vec<Backup>,
    /// Everything else (never deleted).
    pub foreign: Vec<Foreign>,
}

/// The status of a dump or archive from its manifest: good when the
/// manifest says it was verified good and every file it lists is there with
/// its size (a full check of contents is `tb-check verify`).
fn status_from_manifest(main: &Path) -> Status {
    let mpath = manifest_path(main);
    if !mpath.exists() {
        return Status::Unverified(format!("no manifest ('{}')", mpath.display()));
    }
    let m = match Manifest::load(&mpath) {
        Ok(m) => m,
        Err(e) => return Status::Damaged(format!("its manifest: {e:#}")),
    };
    let name = main.file_name().map(|n| n.to_string_lossy().into_owned());
    if name.as_deref().and_then(|n| m.file(n)).is_none() {
        return Status::Damaged("its manifest does not list it".into());
    }
    let dir = main.parent().unwrap_or(Path::new("."));
    for f in &m.files {
        match std::fs::symlink_metadata(dir.join(&f.name)) {
            Ok(md) if md.is_file() && md.len() == f.bytes => {}
            Ok(md) if md.is_file() => {
                return Status::Damaged(format!(
                    "'{}' has {} bytes; its manifest says {}",
                    f.name,
                    md.len(),
                    f.bytes
                ));
            }
            _ => return Status::Damaged(format!("'{}' is missing", f.name)),
        }
    }
    match m.verified.as_ref().map(|v| v.verdict.as_str()) {
        Some("good") => Status::Good,
        Some(other) => Status::Damaged(format!("its manifest records the verdict '{other}'")),
        None => Status::Unverified("its manifest records no verification".into()),
    }
}

/// Describe one file path, if it is one of our backups (not a sidecar).
pub fn describe_file(path: &Path, verify: bool) -> Option<Backup> {
    let name = BackupName::parse(path.file_name()?)?;
    let sidecars: Vec<PathBuf> = match name.kind {
        Kind::Dump => vec![roles_path(path), manifest_path(path)],
        Kind::Volume => vec![index_path(path), manifest_path(path)],
        _ => return None,
    };
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let status = if verify {
        let c = crate::verify::check_file(path);
        match c.verdict {
            crate::verify::Verdict::Good if c.reason.is_none() => status_from_manifest(path),
            crate::verify::Verdict::Good => Status::Unverified(c.reason.unwrap_or_default()),
            _ => Status::Damaged(c.reason.unwrap_or_else(|| "damaged".into())),
        }
    } else {
        status_from_manifest(path)
    };
    Some(Backup {
        kind: name.kind,
        label: name.label,
        time: name.time,
        path: path.to_path_buf(),
        bytes: meta.len(),
        sidecars: sidecars
            .into_iter()
            .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
            .collect(),
        status,
        chain: None,
    })
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Describe every point of a chain directory.
pub fn describe_chain(dir: &Path, verify: bool) -> Vec<Backup> {
    let depth = if verify { Depth::Full } else { Depth::Sizes };
    let Ok(checks) = chain::check_chain(dir, depth) else {
        return Vec::new();
    };
    checks
        .into_iter()
        .map(|c| {
            let status = match (&c.problem, &c.unrestorable) {
                (Some(p), _) => Status::Damaged(p.clone()),
                (None, Some(why)) => Status::Damaged(format!("not restorable: {why}")),
                (None, None) => Status::Good,
            };
            Backup {
                kind: c.point.name.kind,
                label: c.point.name.label.clone(),
                time: c.point.name.time,
                bytes: dir_bytes(&c.point.dir),
                sidecars: Vec::new(),
                status,
                chain: Some(ChainRef {
                    dir: dir.to_path_buf(),
                    chain: c.chain().map(str::to_string),
                    parent: c.parent().map(str::to_string),
                    point: c.point.id(),
                }),
                path: c.point.dir,
            }
        })
        .collect()
}

/// Scan `root` (the backup root, or any directory of it) for backups:
/// files of ours in it and in its subdirectories, and chain directories
/// (two levels down at most: `ROOT/volumes-incremental/LABEL/`).
pub fn scan(root: &Path, verify: bool) -> std::io::Result<Catalog> {
    let mut cat = Catalog::default();
    scan_dir(root, verify, 0, &mut cat)?;
    Ok(cat)
}

fn scan_dir(dir: &Path, verify: bool, depth: u32, cat: &mut Catalog) -> std::io::Result<()> {
    if chain::looks_like_chain(dir) {
        cat.backups.extend(describe_chain(dir, verify));
        for e in std::fs::read_dir(dir)?.flatten() {
            let n = e.file_name();
            let label = dir.file_name().map(|l| l.to_string_lossy().into_owned());
            let ours = label
                .as_deref()
                .and_then(|l| BackupName::parse_in_chain(&n, l))
                .is_some();
            if !ours
                && !crate::naming::is_temp(&n)
                && n != crate::naming::LOCK_NAME
                && n != ".tb-verified.json"
            {
                cat.foreign.push(Foreign {
                    path: e.path(),
                    reason: "not a chain point (its name does not parse)".into(),
                });
            }
        }
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let n = e.file_name();
        let path = e.path();
        if crate::naming::is_temp(&n) || n == crate::naming::LOCK_NAME {
            continue;
        }
        let ft = match e.file_type() {
            Ok(t) => t,
            Err(_) => continue,
        };
        // A layout directory may be a symlink (`database -> /mnt/disk2/db`).
        let is_dir =
            ft.is_dir() || ft.is_symlink() && std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
        if is_dir {
            if depth < 2 {
                scan_dir(&path, verify, depth + 1, cat)?;
            } else {
                cat.foreign.push(Foreign {
                    path,
                    reason: "a directory deeper than the layout".into(),
                });
            }
            continue;
        }
        match BackupName::parse(&n) {
            Some(b) if matches!(b.kind, Kind::Dump | Kind::Volume) => {
                if let Some(backup) = describe_file(&path, verify) {
                    cat.backups.push(backup);
                }
            }
            Some(b) if b.kind == Kind::Roles => {
                let dump = path.with_file_name(format!("{}.sql.gz", b.stem()));
                if !dump.exists() {
                    cat.foreign.push(Foreign {
                        path,
                        reason: "a roles file whose dump is gone".into(),
                    });
                }
            }
            Some(b) => {
                // A manifest or index: a sidecar; listed only when orphaned.
                let stem = b.stem();
                let has_main = [".sql.gz", ".tar.gz"]
                    .iter()
                    .any(|ext| path.with_file_name(format!("{stem}{ext}")).exists());
                if !has_main {
                    cat.foreign.push(Foreign {
                        path,
                        reason: format!("a {} whose backup is gone", b.kind.as_str()),
                    });
                }
            }
            None => cat.foreign.push(Foreign {
                path,
                reason: "not a backup name of ours".into(),
            }),
        }
    }
    Ok(())
}

/// A unit of retention: one backup, or a whole chain.
#[derive(Debug, Clone)]
pub struct PlanUnit {
    /// `dump`, `volume` or `chain`.
    pub kind: &'static str,
    /// The label.
    pub label: String,
    /// Indices into the listing of the backups in it (for a chain, newest
    /// point first: the order of deletion, so an interrupted deletion
    /// leaves a shorter chain that still restores).
    pub members: Vec<usize>,
    /// Its time (a chain: its newest point).
    pub time: NaiveDateTime,
    /// Whether it counts as verified (a chain: its newest point is).
    pub verified: bool,
    /// The decision.
    pub verdict: Verdict,
}

/// Plan retention for a listing: group into units (chains as wholes),
/// decide per kind and label with `policy_for`, and return every unit with
/// its verdict. Pure: `now` and the listing are all it sees.
pub fn plan(
    backups: &[Backup],
    policy_for: &dyn Fn(Kind) -> Policy,
    now: NaiveDateTime,
) -> Vec<PlanUnit> {
    // Group: (kind word, label, chain key) -> members.
    let mut groups: BTreeMap<(&'static str, String, String), Vec<usize>> = BTreeMap::new();
    for (i, b) in backups.iter().enumerate() {
        let (kind, key) = match (&b.kind, &b.chain) {
            (Kind::Dump, _) => ("dump", b.path.display().to_string()),
            (Kind::Volume, _) => ("volume", b.path.display().to_string()),
            (Kind::ChainBase | Kind::ChainIncr, Some(c)) => (
                "chain",
                format!(
                    "{}\u{0}{}",
                    c.dir.display(),
                    if b.kind == Kind::ChainBase {
                        // A base is its chain, whatever its manifest says.
                        c.point.clone()
                    } else {
                        // A point whose manifest cannot be read is a unit of its own.
                        c.chain.clone().unwrap_or_else(|| format!("?{}", c.point))
                    }
                ),
            ),
            _ => continue,
        };
        groups
            .entry((kind, b.label.clone(), key))
            .or_default()
            .push(i);
    }
    // Units, per (kind, directory, label): the safety rules hold in every
    // directory (a copy of the layout elsewhere never pushes out the last
    // backup of this one).
    let mut by_label: BTreeMap<(&'static str, PathBuf, String), Vec<PlanUnit>> = BTreeMap::new();
    for ((kind, label, _), mut members) in groups {
        members.sort_by(|&a, &b| backups[b].time.cmp(&backups[a].time));
        let newest = &backups[members[0]];
        // A name in the future (a clock that was wrong) never counts.
        let verified = newest.status == Status::Good && newest.time <= now + Duration::days(1);
        let dir = match &newest.chain {
            Some(c) => c.dir.parent().map(Path::to_path_buf).unwrap_or_default(),
            None => newest
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        };
        by_label
            .entry((kind, dir, label.clone()))
            .or_default()
            .push(PlanUnit {
                kind,
                label,
                time: newest.time,
                verified,
                members,
                verdict: Verdict {
                    keep: true,
                    rule: String::new(),
                },
            });
    }
    let mut out = Vec::new();
    for ((kind, _, _), mut units) in by_label {
        let k = match kind {
            "dump" => Kind::Dump,
            "volume" => Kind::Volume,
            _ => Kind::ChainBase,
        };
        let list: Vec<Unit> = units
            .iter()
            .map(|u| Unit {
                time: u.time,
                verified: u.verified,
            })
            .collect();
        let verdicts = decide(&list, &policy_for(k), now);
        for (u, v) in units.iter_mut().zip(verdicts) {
            u.verdict = v;
        }
        out.extend(units);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use std::collections::{HashMap, HashSet};

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n.max(1)
        }
    }

    fn start() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_opt(3, 45, 0)
            .unwrap()
    }

    fn status(rng: &mut Rng) -> Status {
        if rng.below(5) == 0 {
            Status::Damaged("x".into())
        } else {
            Status::Good
        }
    }

    /// A listing of dumps, archives and chains of a few labels, with gaps,
    /// damage and broken links, as tb-check list would give it.
    fn listing(rng: &mut Rng) -> Vec<Backup> {
        let mut out = Vec::new();
        for label in ["media_volume", "postgres_data"] {
            let mut day = 0i64;
            let chains = rng.below(5);
            for c in 0..chains {
                let base_t = start() + Duration::days(day);
                let base = format!("base_{c}");
                let dir = PathBuf::from(format!("/b/volumes-incremental/{label}"));
                let mut prev = base.clone();
                let mut broken = false;
                let st = status(rng);
                broken |= st != Status::Good;
                out.push(Backup {
                    kind: Kind::ChainBase,
                    label: label.into(),
                    time: base_t,
                    path: dir.join(&base),
                    bytes: 1,
                    sidecars: vec![],
                    status: st,
                    chain: Some(ChainRef {
                        dir: dir.clone(),
                        chain: Some(base.clone()),
                        parent: None,
                        point: base.clone(),
                    }),
                });
                for k in 0..rng.below(9) {
                    day += 1 + rng.below(2) as i64;
                    let point = format!("incr_{c}_{k}");
                    let own = status(rng);
                    broken |= own != Status::Good;
                    out.push(Backup {
                        kind: Kind::ChainIncr,
                        label: label.into(),
                        time: start() + Duration::days(day),
                        path: dir.join(&point),
                        bytes: 1,
                        sidecars: vec![],
                        status: if broken {
                            Status::Damaged("not restorable".into())
                        } else {
                            own
                        },
                        chain: Some(ChainRef {
                            dir: dir.clone(),
                            chain: Some(base.clone()),
                            parent: Some(prev.clone()),
                            point: point.clone(),
                        }),
                    });
                    prev = point;
                }
                day += 1 + rng.below(10) as i64;
            }
            for d in 0..rng.below(20) {
                let kind = if rng.below(2) == 0 {
                    Kind::Dump
                } else {
                    Kind::Volume
                };
                out.push(Backup {
                    kind,
                    label: label.into(),
                    time: start() + Duration::hours(rng.below(24 * 60) as i64),
                    path: PathBuf::from(format!("/b/x/{label}_{d}")),
                    bytes: 1,
                    sidecars: vec![],
                    status: status(rng),
                    chain: None,
                });
            }
        }
        out
    }

    #[test]
    fn safety_rules_hold_for_thousands_of_random_listings_with_chains() {
        let mut rng = Rng(7);
        for case in 0..3000 {
            let backups = listing(&mut rng);
            let now = start() + Duration::days(rng.below(120) as i64);
            let keep_days = rng.below(20) as u32;
            let policy = |_k: Kind| Policy {
                keep_days: Some(keep_days),
                min_keep: 1,
                ..Policy::default()
            };
            let units = plan(&backups, &policy, now);
            let mut kept: HashSet<usize> = HashSet::new();
            let mut seen = vec![0u32; backups.len()];
            for u in &units {
                for &m in &u.members {
                    seen[m] += 1;
                    if u.verdict.keep {
                        kept.insert(m);
                    }
                }
            }
            assert!(
                seen.iter().all(|&n| n == 1),
                "case {case}: every backup in one unit"
            );
            // The newest verified unit of each kind and label is kept (of
            // two with the same time, one).
            let mut newest: HashMap<(&str, &str), NaiveDateTime> = HashMap::new();
            for u in units.iter().filter(|u| u.verified) {
                let e = newest.entry((u.kind, u.label.as_str())).or_insert(u.time);
                *e = (*e).max(u.time);
            }
            for ((kind, label), t) in &newest {
                assert!(
                    units.iter().any(|u| u.kind == *kind
                        && u.label == *label
                        && u.verified
                        && u.time == *t
                        && u.verdict.keep),
                    "case {case}: newest verified {kind} {label} deleted"
                );
            }
            // No kept point lacks any point of its ancestry.
            let by_point: HashMap<(PathBuf, String), usize> = backups
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    b.chain
                        .as_ref()
                        .map(|c| ((c.dir.clone(), c.point.clone()), i))
                })
                .collect();
            for &i in &kept {
                let mut at = i;
                while let Some(p) = backups[at].chain.as_ref().and_then(|c| c.parent.clone()) {
                    let dir = backups[at]
                        .chain
                        .as_ref()
                        .map(|c| c.dir.clone())
                        .unwrap_or_default();
                    let Some(&pi) = by_point.get(&(dir, p)) else {
                        break;
                    };
                    assert!(
                        kept.contains(&pi),
                        "case {case}: a kept point's parent is deleted"
                    );
                    at = pi;
                }
            }
        }
    }
}
