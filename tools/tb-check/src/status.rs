//! `tb-check status`: is everything backed up, recently, verified, and
//! will it stay so? One `finding` record per fact, the overall verdict in
//! the monitoring-plugin exit codes (0 OK, 1 WARNING, 2 CRITICAL, 3
//! UNKNOWN), and the same facts as a Prometheus textfile with `--prom`.
//!
//! The most reported failure of backup systems is silence: backups stop
//! and nothing notices. So every kind and label is checked for freshness
//! against its schedule, the newest backup must be verified good, sizes
//! and row counts must not collapse, retention must really delete (and
//! the safety rules' exceptions are explained), the disk must have room
//! (with a forecast), the monthly drill must be recent and passing, no
//! container may be left stopped, and the log's last failure of each tool
//! is reported.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{Duration, Local, NaiveDateTime};

use tb_shared::catalog::{self, Backup, Status};
use tb_shared::exit::{Health, Outcome};
use tb_shared::naming::Kind;
use tb_shared::record::{Record, Reporter};
use tb_shared::retention::{Policy, default_keep_days};

/// Options of `tb-check status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The backup root
    #[arg(default_value = "/backup/toybox")]
    pub root: PathBuf,

    /// The newest dump of each database must be younger than this
    #[arg(long, value_name = "HOURS", default_value_t = 26)]
    pub dump_max_age_hours: u32,

    /// The newest full volume archive of each volume must be younger than this
    #[arg(long, value_name = "DAYS", default_value_t = 8)]
    pub volume_max_age_days: u32,

    /// The newest point of each incremental chain must be younger than this
    #[arg(long, value_name = "HOURS", default_value_t = 26)]
    pub incr_max_age_hours: u32,

    /// A newest backup smaller than this share of the median of the ones
    /// before it is a WARNING (also for a dump's total row count)
    #[arg(long, value_name = "RATIO", default_value_t = 0.5)]
    pub shrink_ratio: f64,

    /// Days past the retention (7 for dumps, 14 for volumes and chains)
    /// after which a backup that should be gone is a WARNING
    #[arg(long, value_name = "DAYS", default_value_t = 2)]
    pub retention_margin_days: u32,

    /// Disk usage of the backup filesystem that is a WARNING
    #[arg(long, value_name = "PERCENT", default_value_t = 80)]
    pub disk_warning: u32,

    /// … and CRITICAL
    #[arg(long, value_name = "PERCENT", default_value_t = 90)]
    pub disk_critical: u32,

    /// Days of forecast growth left below which it is a WARNING
    #[arg(long, value_name = "DAYS", default_value_t = 14)]
    pub forecast_warning_days: u32,

    /// The log of the tools' records, read for the last failure of each tool
    /// and the last drill [default: /var/log/toybox_backup.log when it exists]
    #[arg(long, value_name = "FILE")]
    pub read_log: Option<PathBuf>,

    /// The last drill must be younger than this
    #[arg(long, value_name = "DAYS", default_value_t = 35)]
    pub drill_max_age_days: u32,

    /// Also write the facts as a Prometheus textfile (node_exporter's
    /// textfile collector), atomically
    #[arg(long, value_name = "FILE")]
    pub prom: Option<PathBuf>,

    /// Judge as if it were this local time (YYYY-MM-DDTHH:MM:SS) [default: now]
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,

    /// The docker CLI (to see whether a container left stopped runs again)
    #[arg(
        long,
        value_name = "PROGRAM",
        env = "TB_DOCKER",
        default_value = "docker"
    )]
    pub docker: String,
}

/// One finding.
struct Finding {
    check: &'static str,
    health: Health,
    message: String,
    rec: Record,
}

/// A Prometheus sample.
struct Metric {
    name: &'static str,
    help: &'static str,
    labels: Vec<(&'static str, String)>,
    value: f64,
}

struct Out {
    findings: Vec<Finding>,
    metrics: Vec<Metric>,
}

impl Out {
    fn add(&mut self, check: &'static str, health: Health, message: String, rec: Record) {
        self.findings.push(Finding {
            check,
            health,
            message,
            rec,
        });
    }
    fn metric(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        value: f64,
    ) {
        self.metrics.push(Metric {
            name,
            help,
            labels,
            value,
        });
    }
}

fn word(kind: Kind) -> &'static str {
    match kind {
        Kind::Dump => "dump",
        Kind::Volume => "volume",
        _ => "chain",
    }
}

fn fmt_age(d: Duration) -> String {
    if d.num_hours() >= 48 {
        format!("{} days", d.num_days())
    } else if d.num_minutes() >= 120 {
        format!("{} hours", d.num_hours())
    } else {
        format!("{} minutes", d.num_minutes().max(0))
    }
}

fn median(mut v: Vec<u64>) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[v.len() / 2])
}

/// Rows of a dump from its manifest.
fn dump_rows(b: &Backup) -> Option<u64> {
    let m = tb_shared::manifest::Manifest::load(&tb_shared::naming::manifest_path(&b.path)).ok()?;
    m.database.map(|d| d.rows)
}

fn per_label(
    a: &StatusArgs,
    kind_word: &'static str,
    label: &str,
    list: &[&Backup],
    now: NaiveDateTime,
    out: &mut Out,
) {
    let labels = || {
        vec![
            ("kind", kind_word.to_string()),
            ("label", label.to_string()),
        ]
    };
    let newest = list.iter().max_by_key(|b| b.time).copied();
    let Some(newest) = newest else { return };
    let limit = match kind_word {
        "dump" => Duration::hours(i64::from(a.dump_max_age_hours)),
        "volume" => Duration::days(i64::from(a.volume_max_age_days)),
        _ => Duration::hours(i64::from(a.incr_max_age_hours)),
    };
    let age = now.signed_duration_since(newest.time);
    let fresh = age <= limit;
    out.add(
        "freshness",
        if fresh { Health::Ok } else { Health::Critical },
        if fresh {
            format!("the newest {kind_word} of {label} is {} old", fmt_age(age))
        } else {
            format!(
                "the newest {kind_word} of {label} is {} old (more than {}): backups have stopped; check the cron job and the log",
                fmt_age(age),
                fmt_age(limit)
            )
        },
        Record::new("finding")
            .with("kind", kind_word)
            .with("label", label)
            .path(&newest.path)
            .with("age_s", age.num_seconds())
            .with("max_age_s", limit.num_seconds()),
    );
    out.metric(
        "tb_backup_newest_age_seconds",
        "Age of the newest backup of each kind and label, from its name",
        labels(),
        age.num_seconds() as f64,
    );
    out.metric(
        "tb_backup_newest_timestamp_seconds",
        "Local time of the newest backup, from its name, as seconds since the epoch",
        labels(),
        newest.time.and_utc().timestamp() as f64,
    );
    // Verified.
    let ok = newest.status == Status::Good;
    let mut r = Record::new("finding")
        .with("kind", kind_word)
        .with("label", label)
        .path(&newest.path)
        .with("verdict", newest.status.as_str());
    if let Some(why) = newest.status.reason() {
        r.set("reason", why);
    }
    let good_newest = list
        .iter()
        .filter(|b| b.status == Status::Good)
        .max_by_key(|b| b.time);
    out.add(
        "verified",
        if ok { Health::Ok } else { Health::Critical },
        if ok {
            format!("the newest {kind_word} of {label} is verified good")
        } else {
            format!(
                "the newest {kind_word} of {label} is {}: {}; the newest good one is {}",
                newest.status.as_str(),
                newest.status.reason().unwrap_or(""),
                good_newest
                    .map(|b| b.path.display().to_string())
                    .unwrap_or_else(|| "none".into())
            )
        },
        r,
    );
    out.metric(
        "tb_backup_newest_verified",
        "1 when the newest backup of the kind and label is verified good",
        labels(),
        if ok { 1.0 } else { 0.0 },
    );
    // Restore points.
    let good = list.iter().filter(|b| b.status == Status::Good).count();
    out.add(
        "restore_points",
        if good == 0 {
            Health::Critical
        } else {
            Health::Ok
        },
        format!(
            "{good} good restore points of {kind_word} {label} ({} in all)",
            list.len()
        ),
        Record::new("finding")
            .with("kind", kind_word)
            .with("label", label)
            .with("good", good)
            .with("total", list.len()),
    );
    out.metric(
        "tb_backup_restore_points",
        "Good restore points of each kind and label",
        labels(),
        good as f64,
    );
    // Size: the newest against the median of the (up to 7) before it.
    let mut sorted: Vec<&Backup> = list.to_vec();
    sorted.sort_by_key(|b| b.time);
    if kind_word != "chain" && sorted.len() >= 3 {
        let before: Vec<u64> = sorted[..sorted.len() - 1]
            .iter()
            .rev()
            .take(7)
            .map(|b| b.bytes)
            .collect();
        if let Some(m) = median(before) {
            let shrunk = (newest.bytes as f64) < a.shrink_ratio * m as f64;
            out.add(
                "size",
                if shrunk { Health::Warning } else { Health::Ok },
                if shrunk {
                    format!(
                        "the newest {kind_word} of {label} is {} bytes, less than {:.0} % of the usual {} bytes: was something lost before the backup?",
                        newest.bytes,
                        a.shrink_ratio * 100.0,
                        m
                    )
                } else {
                    format!("the newest {kind_word} of {label} is {} bytes (usually {m})", newest.bytes)
                },
                Record::new("finding")
                    .with("kind", kind_word)
                    .with("label", label)
                    .path(&newest.path)
                    .with("bytes", newest.bytes)
                    .with("median_bytes", m),
            );
        }
        if kind_word == "dump"
            && let Some(rows) = dump_rows(newest)
        {
            let before: Vec<u64> = sorted[..sorted.len() - 1]
                .iter()
                .rev()
                .take(7)
                .filter_map(|b| dump_rows(b))
                .collect();
            if let Some(m) = median(before) {
                let fell = (rows as f64) < a.shrink_ratio * m as f64;
                out.add(
                    "rows",
                    if fell { Health::Warning } else { Health::Ok },
                    if fell {
                        format!("the newest dump of {label} has {rows} rows, less than {:.0} % of the usual {m}: were rows deleted?", a.shrink_ratio * 100.0)
                    } else {
                        format!("the newest dump of {label} has {rows} rows (usually {m})")
                    },
                    Record::new("finding")
                        .with("kind", kind_word)
                        .with("label", label)
                        .path(&newest.path)
                        .with("rows", rows)
                        .with("median_rows", m),
                );
                out.metric(
                    "tb_dump_rows",
                    "Rows in the newest dump of each database",
                    labels(),
                    rows as f64,
                );
            }
        }
    }
    out.metric(
        "tb_backup_newest_bytes",
        "Bytes of the newest backup of each kind and label",
        labels(),
        newest.bytes as f64,
    );
}

/// Retention: what the default policy would delete and is older than the
/// retention plus the margin means pruning is not running.
fn retention(a: &StatusArgs, cat: &catalog::Catalog, now: NaiveDateTime, out: &mut Out) {
    let units = catalog::plan(&cat.backups, &Policy::default_for, now);
    let mut overdue: BTreeMap<(&str, String), Vec<String>> = BTreeMap::new();
    let mut kept_old: Vec<(String, String)> = Vec::new();
    for u in &units {
        let kind = match u.kind {
            "dump" => Kind::Dump,
            "volume" => Kind::Volume,
            _ => Kind::ChainBase,
        };
        let limit = Duration::days(i64::from(default_keep_days(kind) + a.retention_margin_days));
        let old = now.signed_duration_since(u.time) > limit;
        if !old {
            continue;
        }
        let paths: Vec<String> = u
            .members
            .iter()
            .map(|&m| cat.backups[m].path.display().to_string())
            .collect();
        if u.verdict.keep {
            for p in paths {
                kept_old.push((p, u.verdict.rule.clone()));
            }
        } else {
            overdue
                .entry((u.kind, u.label.clone()))
                .or_default()
                .extend(paths);
        }
    }
    for ((kind, label), paths) in &overdue {
        out.add(
            "retention",
            Health::Warning,
            format!(
                "{} {kind} backups of {label} are past their retention and still here: is tb-prune running after each backup? ({})",
                paths.len(),
                paths.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ),
            Record::new("finding")
                .with("kind", *kind)
                .with("label", label)
                .with("overdue", paths.len())
                .with("paths", paths),
        );
    }
    if overdue.is_empty() {
        out.add(
            "retention",
            Health::Ok,
            "nothing is past its retention".into(),
            Record::new("finding"),
        );
    }
    for (p, rule) in kept_old {
        out.add(
            "retention",
            Health::Ok,
            format!("'{p}' is past its retention but kept: {rule}"),
            Record::new("finding")
                .with("path", &p)
                .with("rule", &rule)
                .with("kept", true),
        );
    }
    let n: usize = overdue.values().map(Vec::len).sum();
    out.metric(
        "tb_backup_overdue",
        "Backups past their retention plus the margin that are still there",
        vec![],
        n as f64,
    );
}

/// Disk usage of the filesystem holding the root, and days until full at
/// the growth of the last 7 days' backups.
fn disk(a: &StatusArgs, cat: &catalog::Catalog, now: NaiveDateTime, out: &mut Out) {
    let Ok(st) = nix::sys::statvfs::statvfs(&a.root) else {
        out.add(
            "disk",
            Health::Unknown,
            format!("cannot read the filesystem of '{}'", a.root.display()),
            Record::new("finding"),
        );
        return;
    };
    let frag = st.fragment_size();
    let total = st.blocks() * frag;
    let avail = st.blocks_available() * frag;
    let free = st.blocks_free() * frag;
    let used = total.saturating_sub(free);
    // As df: used / (used + available to unprivileged users).
    let pct = if used + avail == 0 {
        0.0
    } else {
        used as f64 * 100.0 / (used + avail) as f64
    };
    let health = if pct >= f64::from(a.disk_critical) {
        Health::Critical
    } else if pct >= f64::from(a.disk_warning) {
        Health::Warning
    } else {
        Health::Ok
    };
    out.add(
        "disk",
        health,
        format!(
            "the backup filesystem is {pct:.1} % full ({} of {} bytes free){}",
            avail,
            total,
            if health == Health::Ok {
                ""
            } else {
                ": free space or move old backups away"
            }
        ),
        Record::new("finding")
            .path(&a.root)
            .with("used_percent", (pct * 10.0).round() / 10.0)
            .with("avail_bytes", avail)
            .with("total_bytes", total),
    );
    out.metric(
        "tb_disk_used_ratio",
        "Used share of the backup filesystem",
        vec![],
        pct / 100.0,
    );
    out.metric(
        "tb_disk_avail_bytes",
        "Bytes available on the backup filesystem",
        vec![],
        avail as f64,
    );
    let recent: Vec<&Backup> = cat
        .backups
        .iter()
        .filter(|b| now.signed_duration_since(b.time) <= Duration::days(7))
        .collect();
    // Over the days the backups really cover (a new install has one day).
    let oldest = recent.iter().map(|b| b.time).min().unwrap_or(now);
    let span_days =
        (now.signed_duration_since(oldest).num_seconds() as f64 / 86_400.0).clamp(1.0, 7.0);
    let week: u64 = recent
        .iter()
        .map(|b| {
            b.bytes
                + b.sidecars
                    .iter()
                    .filter_map(|s| std::fs::metadata(s).ok())
                    .map(|m| m.len())
                    .sum::<u64>()
        })
        .sum();
    let per_day = week as f64 / span_days;
    if per_day > 0.0 {
        let days = avail as f64 / per_day;
        let h = if days < f64::from(a.forecast_warning_days) {
            Health::Warning
        } else {
            Health::Ok
        };
        out.add(
            "forecast",
            h,
            format!("at {:.0} bytes of new backups a day (the last 7 days), the disk is full in {:.0} days", per_day, days),
            Record::new("finding")
                .with("bytes_per_day", per_day.round() as u64)
                .with("days_left", (days * 10.0).round() / 10.0),
        );
        out.metric(
            "tb_disk_days_left",
            "Days until the backup filesystem is full at the last 7 days' growth",
            vec![],
            days,
        );
    }
}

/// Containers a tb run stopped and did not start again.
fn containers(a: &StatusArgs, out: &mut Out) {
    let mut dirs = vec![a.root.clone()];
    for d in ["database", "volumes", "volumes-incremental"] {
        dirs.push(a.root.join(d));
    }
    if let Ok(rd) = std::fs::read_dir(a.root.join("volumes-incremental")) {
        dirs.extend(rd.flatten().map(|e| e.path()));
    }
    let mut left = 0;
    for d in dirs {
        let Some(m) = tb_shared::docker::read_marker(&d) else {
            continue;
        };
        let pid = m.by.rsplit(' ').next().and_then(|p| p.parse::<i32>().ok());
        let running = pid
            .is_some_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok());
        // Started again by hand (or by another run) since: nothing is down.
        let up_now = !m.containers.is_empty()
            && m.containers.iter().all(|c| {
                std::process::Command::new(&a.docker)
                    .args(["inspect", "--format", "{{.State.Running}}", c])
                    .stdin(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .output()
                    .is_ok_and(|o| {
                        o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "true"
                    })
            });
        if up_now && !running {
            out.add(
                "containers",
                Health::Ok,
                format!(
                    "{} were left stopped by a backup ({}, {}) and are running again; the next run in '{}' forgets it",
                    m.containers.join(", "),
                    m.by,
                    m.time,
                    d.display()
                ),
                Record::new("finding").with("containers", &m.containers).path(&d),
            );
            continue;
        }
        if running {
            out.add(
                "containers",
                Health::Ok,
                format!(
                    "{} stopped by a backup that is running now ({})",
                    m.containers.join(", "),
                    m.by
                ),
                Record::new("finding")
                    .with("containers", &m.containers)
                    .path(&d),
            );
        } else {
            left += m.containers.len();
            out.add(
                "containers",
                Health::Critical,
                format!(
                    "{} stopped by a backup ({}, {}) and not started again: start them (docker start {}); the next backup run in '{}' also tries",
                    m.containers.join(", "),
                    m.by,
                    m.time,
                    m.containers.join(" "),
                    d.display()
                ),
                Record::new("finding").with("containers", &m.containers).path(&d),
            );
        }
    }
    out.metric(
        "tb_containers_left_stopped",
        "Containers a backup stopped and did not start again",
        vec![],
        left as f64,
    );
}

/// The log: the last failure of each tool, the last drill.
fn log(a: &StatusArgs, now: NaiveDateTime, out: &mut Out) {
    let path = a.read_log.clone().or_else(|| {
        let p = PathBuf::from("/var/log/toybox_backup.log");
        p.exists().then_some(p)
    });
    let Some(path) = path else {
        out.add(
            "drill",
            Health::Warning,
            "no log to read (--read-log FILE): the last drill and failures are unknown".into(),
            Record::new("finding"),
        );
        return;
    };
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            out.add(
                "log",
                Health::Unknown,
                format!("cannot read the log '{}': {e}", path.display()),
                Record::new("finding"),
            );
            return;
        }
    };
    let mut last_summary: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut last_failure: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut last_drill: Option<serde_json::Value> = None;
    // The newest backup written of each kind and label, by the log.
    let mut written: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    let mut drill_pending = false;
    for line in std::io::BufReader::new(f)
        .split(b'\n')
        .map_while(Result::ok)
    {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
            continue;
        };
        let tool = v["tool"].as_str().unwrap_or("").to_string();
        match v["event"].as_str() {
            Some("written")
                if matches!(
                    v["kind"].as_str(),
                    Some("dump" | "volume" | "chain_base" | "chain_incr")
                ) && v["path"].as_str().is_some_and(|p| p != "-") =>
            {
                let kind = match v["kind"].as_str() {
                    Some("chain_base" | "chain_incr") => "chain",
                    Some(k) => k,
                    None => "",
                };
                let path = v["path"].as_str().unwrap_or_default().to_string();
                let label = v["label"].as_str().map(str::to_string).unwrap_or_else(|| {
                    Path::new(&path)
                        .file_name()
                        .and_then(tb_shared::naming::BackupName::parse)
                        .map(|n| n.label)
                        .unwrap_or_default()
                });
                let time = v["time"].as_str().unwrap_or("").to_string();
                written.insert((kind.to_string(), label), (path, time));
            }
            Some("deleted") => {
                // tb-prune deleted it: not missing.
                let gone = v["path"].as_str().unwrap_or_default();
                written.retain(|_, (p, _)| p != gone);
            }
            Some("error") => {
                last_failure.insert(tool.clone(), v.clone());
            }
            Some("drill") => drill_pending = true,
            Some("summary") => {
                if tool == "tb-check" && drill_pending {
                    last_drill = Some(v.clone());
                    drill_pending = false;
                }
                last_summary.insert(tool, v);
            }
            _ => {}
        }
    }
    let root = std::fs::canonicalize(&a.root).ok();
    for ((kind, label), (path, time)) in &written {
        let p = Path::new(path);
        // Only what belongs under this root.
        let dir = p.parent().and_then(|d| std::fs::canonicalize(d).ok());
        let inside = match (&root, &dir) {
            (Some(r), Some(d)) => d.starts_with(r),
            (Some(_), None) => p.starts_with(&a.root),
            _ => false,
        };
        if inside && std::fs::symlink_metadata(p).is_err() {
            out.add(
                "missing",
                Health::Critical,
                format!(
                    "the newest {kind} of {label} written ({path}, {time}) is gone: deleted by hand, or by something other than tb-prune?"
                ),
                Record::new("finding")
                    .with("kind", kind)
                    .with("label", label)
                    .with("path", path)
                    .with("written_at", time),
            );
        }
    }
    for (tool, s) in &last_summary {
        let failed = s["exit_code"].as_u64().unwrap_or(0) >= 2 && tool != "tb-check";
        if failed {
            let why = last_failure
                .get(tool)
                .and_then(|e| e["message"].as_str())
                .unwrap_or("see the log");
            out.add(
                "last_run",
                Health::Critical,
                format!(
                    "the last run of {tool} ({}) failed: {why}",
                    s["time"].as_str().unwrap_or("?")
                ),
                Record::new("finding")
                    .with("tool", tool)
                    .with("time", s["time"].clone())
                    .with("cause", last_failure.get(tool).map(|e| e["cause"].clone())),
            );
        } else if let Some(e) = last_failure.get(tool) {
            out.add(
                "last_failure",
                Health::Ok,
                format!(
                    "the last failure of {tool} was at {}: {}",
                    e["time"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("")
                ),
                Record::new("finding")
                    .with("tool", tool)
                    .with("failure_time", e["time"].clone())
                    .with("cause", e["cause"].clone()),
            );
        }
    }
    match last_drill {
        None => out.add(
            "drill",
            Health::Warning,
            format!(
                "no restore drill in the log '{}': run tb-check drill monthly",
                path.display()
            ),
            Record::new("finding"),
        ),
        Some(d) => {
            let when = d["time"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Local).naive_local());
            let age = when.map(|w| now.signed_duration_since(w));
            let ok = d["exit_code"].as_u64() == Some(0);
            let too_old = age.is_none_or(|ag| ag > Duration::days(i64::from(a.drill_max_age_days)));
            let health = if !ok {
                Health::Critical
            } else if too_old {
                Health::Warning
            } else {
                Health::Ok
            };
            out.add(
                "drill",
                health,
                format!(
                    "the last restore drill ({}, {} ago) {}",
                    d["time"].as_str().unwrap_or("?"),
                    age.map(fmt_age).unwrap_or_else(|| "?".into()),
                    if ok {
                        "passed"
                    } else {
                        "FAILED: see its records in the log"
                    }
                ),
                Record::new("finding")
                    .with("drill_time", d["time"].clone())
                    .with("drill_status", d["status"].clone()),
            );
            if let Some(ag) = age {
                out.metric(
                    "tb_drill_age_seconds",
                    "Age of the last restore drill",
                    vec![],
                    ag.num_seconds() as f64,
                );
            }
            out.metric(
                "tb_drill_ok",
                "1 when the last restore drill passed",
                vec![],
                if ok { 1.0 } else { 0.0 },
            );
        }
    }
}

/// The Prometheus textfile.
fn prom_text(out: &Out, health: Health) -> String {
    let mut s = String::new();
    let mut seen = std::collections::BTreeSet::new();
    let esc = |v: &str| {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let mut by_name: BTreeMap<&str, Vec<&Metric>> = BTreeMap::new();
    for m in &out.metrics {
        by_name.entry(m.name).or_default().push(m);
    }
    for (name, ms) in by_name {
        if seen.insert(name) {
            s.push_str(&format!(
                "# HELP {name} {}\n# TYPE {name} gauge\n",
                ms[0].help
            ));
        }
        for m in ms {
            let labels = if m.labels.is_empty() {
                String::new()
            } else {
                format!(
                    "{{{}}}",
                    m.labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            };
            s.push_str(&format!("{name}{labels} {}\n", m.value));
        }
    }
    s.push_str("# HELP tb_status Overall verdict: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN\n# TYPE tb_status gauge\n");
    s.push_str(&format!("tb_status {}\n", health.code()));
    s
}

fn write_prom(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write '{}'", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write '{}'", tmp.display()))?;
    }
    // node_exporter reads the file: world-readable like any metrics file.
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644));
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot put '{}' in place", path.display()))?;
    Ok(())
}

/// Run `tb-check status`.
pub fn status(a: &StatusArgs, rep: &mut Reporter) -> Result<Outcome> {
    let now = match &a.now {
        Some(s) => NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").map_err(|_| {
            tb_shared::error::Failure::new(
                tb_shared::error::Cause::BadInput,
                format!("--now '{s}': give YYYY-MM-DDTHH:MM:SS"),
            )
        })?,
        None => Local::now().naive_local(),
    };
    let cat = catalog::scan(&a.root, false).map_err(|e| {
        tb_shared::error::Failure::new(
            tb_shared::error::Cause::NotFound,
            format!("cannot read the backup root '{}': {e}", a.root.display()),
        )
    })?;
    let mut out = Out {
        findings: Vec::new(),
        metrics: Vec::new(),
    };
    // Per kind and label.
    let mut groups: BTreeMap<(&'static str, String), Vec<&Backup>> = BTreeMap::new();
    for b in &cat.backups {
        groups
            .entry((word(b.kind), b.label.clone()))
            .or_default()
            .push(b);
    }
    for kind in ["dump", "volume", "chain"] {
        if !groups.keys().any(|(k, _)| *k == kind) {
            out.add(
                "freshness",
                Health::Critical,
                format!(
                    "there is no {kind} backup under '{}' at all",
                    a.root.display()
                ),
                Record::new("finding").with("kind", kind),
            );
        }
    }
    for ((kind, label), list) in &groups {
        per_label(a, kind, label, list, now, &mut out);
    }
    retention(a, &cat, now, &mut out);
    disk(a, &cat, now, &mut out);
    containers(a, &mut out);
    log(a, now, &mut out);

    let mut health = Health::Ok;
    for f in &out.findings {
        health = health.worst(f.health);
        let mut r = f.rec.clone();
        r.set("check", f.check);
        r.set("message", &f.message);
        r.set("status", f.health.as_str());
        rep.emit(r);
        if f.health != Health::Ok {
            eprintln!("tb-check: {}: {}", f.health.as_str(), f.message);
        }
    }
    if let Some(p) = &a.prom {
        write_prom(p, &prom_text(&out, health))?;
    }
    rep.summary_field("findings", out.findings.len());
    rep.summary_field("root", tb_shared::record::path_value(&a.root));
    Ok(Outcome::health(health))
}
