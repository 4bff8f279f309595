//! Retention rules: which backups to keep, as a pure function of a listing
//! and `now`. No clock, no filesystem: [`decide`] is tested with fixed
//! times, and tb-prune only carries its answer out.
//!
//! The unit of retention is a backup (a dump with its roles file and
//! manifest, a volume archive with its index and manifest) or a whole
//! incremental chain (its base and every point after it), whose time is
//! its newest point's: a chain is kept while any of its points is, and
//! deleted only as a whole.
//!
//! Times come from the names, never from mtimes.
//!
//! Safety rules, always on, whatever the policy:
//! - the newest verified unit of each kind and label is kept;
//! - at least `min_keep` verified units are kept;
//! - an unverified or damaged unit never counts toward what is kept (the
//!   count rules skip it; the age rule keeps it while it is young);
//! - when a label has no verified unit, or when the plan would delete every
//!   unit of a label, nothing of that label is deleted.

use std::collections::BTreeSet;

use chrono::{Datelike, Duration, NaiveDateTime};

use crate::naming::Kind;

/// One unit of a kind and label, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Time from the name (a chain: its newest point).
    pub time: NaiveDateTime,
    /// Whether it is verified good (for a chain: its newest point is
    /// restorable).
    pub verified: bool,
}

/// What to keep.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Keep everything younger than this many days.
    pub keep_days: Option<u32>,
    /// Keep the newest N verified units.
    pub keep_last: u32,
    /// Keep the newest verified unit of each of the last N days that have one.
    pub keep_daily: u32,
    /// … of each of the last N ISO weeks that have one.
    pub keep_weekly: u32,
    /// … of each of the last N months that have one.
    pub keep_monthly: u32,
    /// At least this many verified units always stay (default 1).
    pub min_keep: u32,
}

impl Policy {
    /// The plan's policy for `kind`: dumps 7 days, full volume archives and
    /// incremental chains 14 days; at least one verified backup kept.
    pub fn default_for(kind: Kind) -> Policy {
        Policy {
            keep_days: Some(default_keep_days(kind)),
            min_keep: 1,
            ..Policy::default()
        }
    }

    /// Whether any count rule is set.
    pub fn has_counts(&self) -> bool {
        self.keep_last + self.keep_daily + self.keep_weekly + self.keep_monthly > 0
    }
}

/// The plan's retention in days for `kind`.
pub fn default_keep_days(kind: Kind) -> u32 {
    match kind {
        Kind::Dump | Kind::Roles => 7,
        _ => 14,
    }
}

/// The verdict on one unit: keep or delete, and the rule that decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Keep it.
    pub keep: bool,
    /// Why, in words (`newest verified backup`, `younger than 7 days`, …).
    pub rule: String,
}

/// Decide for every unit of one kind and label (any order; the answer is
/// in the same order).
pub fn decide(units: &[Unit], policy: &Policy, now: NaiveDateTime) -> Vec<Verdict> {
    let n = units.len();
    let mut why: Vec<Vec<String>> = vec![Vec::new(); n];
    // Newest first; ties broken by position so the answer is deterministic.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| units[b].time.cmp(&units[a].time).then(b.cmp(&a)));
    let verified: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| units[i].verified)
        .collect();

    if verified.is_empty() {
        return units
            .iter()
            .map(|_| Verdict {
                keep: true,
                rule: "no verified backup of this kind and label: nothing is deleted".into(),
            })
            .collect();
    }
    why[verified[0]].push("the newest verified backup".into());
    for &i in verified.iter().take(policy.min_keep as usize).skip(1) {
        why[i].push(format!("--min-keep {}", policy.min_keep));
    }
    if let Some(days) = policy.keep_days {
        let limit = now - Duration::days(i64::from(days));
        for &i in &order {
            if units[i].time > limit {
                why[i].push(format!("younger than {days} days"));
            }
        }
    }
    for &i in verified.iter().take(policy.keep_last as usize) {
        why[i].push(format!("--keep-last {}", policy.keep_last));
    }
    let mut buckets = |count: u32, name: &str, key: &dyn Fn(NaiveDateTime) -> (i32, u32)| {
        let mut seen = BTreeSet::new();
        for &i in &verified {
            if seen.len() >= count as usize {
                break;
            }
            if seen.insert(key(units[i].time)) {
                why[i].push(format!("--keep-{name} {count}"));
            }
        }
    };
    buckets(policy.keep_daily, "daily", &|t| (t.year(), t.ordinal()));
    buckets(policy.keep_weekly, "weekly", &|t| {
        let w = t.iso_week();
        (w.year(), w.week())
    });
    buckets(policy.keep_monthly, "monthly", &|t| (t.year(), t.month()));

    if why.iter().all(Vec::is_empty) {
        // Unreachable while the newest verified is kept; kept as a guard.
        return units
            .iter()
            .map(|_| Verdict {
                keep: true,
                rule: "every backup of this label would go: nothing is deleted".into(),
            })
            .collect();
    }
    let expired = |u: &Unit| -> String {
        let age = now.signed_duration_since(u.time);
        let mut s = match policy.keep_days {
            Some(d) => format!("older than {d} days ({} days old)", age.num_days()),
            None => "not selected by any --keep rule".to_string(),
        };
        if !u.verified {
            s.push_str("; not verified, so it never counts toward what is kept");
        }
        s
    };
    units
        .iter()
        .zip(why)
        .map(|(u, w)| {
            if w.is_empty() {
                Verdict {
                    keep: false,
                    rule: expired(u),
                }
            } else {
                Verdict {
                    keep: true,
                    rule: w.join(", "),
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, Timelike};

    fn t(day: u32, h: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 1, day)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
    }

    fn daily(days: std::ops::RangeInclusive<u32>, verified: bool) -> Vec<Unit> {
        days.map(|d| Unit {
            time: t(d, 3),
            verified,
        })
        .collect()
    }

    fn kept(units: &[Unit], v: &[Verdict]) -> Vec<u32> {
        units
            .iter()
            .zip(v)
            .filter(|(_, v)| v.keep)
            .map(|(u, _)| u.time.day())
            .collect()
    }

    #[test]
    fn the_plan_keeps_seven_days_of_dumps() {
        let units = daily(1..=20, true);
        let v = decide(&units, &Policy::default_for(Kind::Dump), t(20, 3));
        assert_eq!(kept(&units, &v), (14..=20).collect::<Vec<_>>());
        assert!(v[0].rule.starts_with("older than 7 days"), "{:?}", v[0]);
        assert_eq!(
            v[19].rule,
            "the newest verified backup, younger than 7 days"
        );
    }

    #[test]
    fn backups_stopped_for_10_20_40_days_keep_the_newest() {
        let units = daily(1..=5, true);
        for stopped in [10, 20, 40] {
            let now = t(5, 3) + Duration::days(stopped);
            let v = decide(&units, &Policy::default_for(Kind::Dump), now);
            assert_eq!(kept(&units, &v), vec![5], "stopped {stopped} days");
            assert_eq!(v[4].rule, "the newest verified backup");
        }
    }

    #[test]
    fn a_damaged_newest_never_pushes_out_the_last_good_one() {
        let mut units = daily(1..=5, true);
        units.push(Unit {
            time: t(6, 3),
            verified: false,
        });
        // 40 days later: the damaged newest goes, the newest good stays.
        let v = decide(
            &units,
            &Policy::default_for(Kind::Dump),
            t(6, 3) + Duration::days(40),
        );
        assert_eq!(kept(&units, &v), vec![5]);
        assert!(v[5].rule.contains("not verified"));
        // With --keep-last 2 the damaged one does not count.
        let p = Policy {
            keep_days: None,
            keep_last: 2,
            min_keep: 1,
            ..Policy::default()
        };
        let v = decide(&units, &p, t(6, 4));
        assert_eq!(kept(&units, &v), vec![4, 5]);
    }

    #[test]
    fn nothing_goes_when_nothing_is_verified() {
        let units = daily(1..=3, false);
        let v = decide(&units, &Policy::default_for(Kind::Dump), t(28, 0));
        assert!(v.iter().all(|v| v.keep));
    }

    #[test]
    fn min_keep_keeps_that_many_verified() {
        let units = daily(1..=10, true);
        let p = Policy {
            min_keep: 3,
            ..Policy::default_for(Kind::Volume)
        };
        let v = decide(&units, &p, t(28, 0) + Duration::days(30));
        assert_eq!(kept(&units, &v), vec![8, 9, 10]);
    }

    #[test]
    fn calendar_buckets_keep_the_newest_of_each_day_week_month() {
        // Two backups a day for 31 days.
        let mut units = Vec::new();
        for d in 1..=31 {
            for h in [3, 15] {
                units.push(Unit {
                    time: t(d, h),
                    verified: true,
                });
            }
        }
        let p = Policy {
            keep_days: None,
            keep_daily: 3,
            keep_weekly: 2,
            keep_monthly: 1,
            min_keep: 1,
            ..Policy::default()
        };
        let v = decide(&units, &p, t(31, 16));
        let kept: Vec<(u32, u32)> = units
            .iter()
            .zip(&v)
            .filter(|(_, v)| v.keep)
            .map(|(u, _)| (u.time.day(), u.time.hour()))
            .collect();
        // Daily: 29, 30, 31 (15:00 each); weekly: ISO week of the 31st
        // (Saturday; its newest is 31 15:00) and the week before (ends
        // Sunday the 25th); monthly: January's newest.
        assert_eq!(kept, vec![(25, 15), (29, 15), (30, 15), (31, 15)]);
    }

    #[test]
    fn file_mtimes_play_no_part() {
        // The rules see only name times: month-old names go even if their
        // files were touched today; today's names stay.
        let units = vec![
            Unit {
                time: t(1, 3),
                verified: true,
            },
            Unit {
                time: t(31, 3),
                verified: true,
            },
        ];
        let v = decide(&units, &Policy::default_for(Kind::Dump), t(31, 4));
        assert_eq!(kept(&units, &v), vec![31]);
    }

    #[test]
    fn same_day_duplicates_and_names_near_midnight() {
        let units = vec![
            Unit {
                time: t(10, 0),
                verified: true,
            },
            Unit {
                time: t(10, 23) + Duration::minutes(59),
                verified: true,
            },
            Unit {
                time: t(11, 0) + Duration::seconds(1),
                verified: true,
            },
        ];
        // Exactly 7 days after the second one: it is 7 days old, not younger.
        let now = t(17, 23) + Duration::minutes(59);
        let v = decide(&units, &Policy::default_for(Kind::Dump), now);
        assert_eq!(
            v.iter().map(|v| v.keep).collect::<Vec<_>>(),
            vec![false, false, true]
        );
        // --keep-daily 2: the newest of the 10th and of the 11th.
        let p = Policy {
            keep_days: None,
            keep_daily: 2,
            min_keep: 1,
            ..Policy::default()
        };
        let v = decide(&units, &p, now);
        assert_eq!(
            v.iter().map(|v| v.keep).collect::<Vec<_>>(),
            vec![false, true, true]
        );
    }

    /// splitmix64: a tiny deterministic generator for the randomised test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    #[test]
    fn safety_rules_hold_for_thousands_of_random_listings() {
        let mut rng = Rng(20260123);
        let start = t(1, 0);
        for case in 0..5000 {
            let n = rng.below(30) as usize;
            let units: Vec<Unit> = (0..n)
                .map(|_| Unit {
                    time: start + Duration::minutes(rng.below(60 * 24 * 90) as i64),
                    verified: rng.below(4) != 0,
                })
                .collect();
            let now = start + Duration::minutes(rng.below(60 * 24 * 200) as i64);
            let policy = Policy {
                keep_days: (rng.below(3) != 0).then(|| rng.below(30) as u32),
                keep_last: rng.below(4) as u32,
                keep_daily: rng.below(4) as u32,
                keep_weekly: rng.below(3) as u32,
                keep_monthly: rng.below(3) as u32,
                min_keep: 1 + rng.below(3) as u32,
            };
            let v = decide(&units, &policy, now);
            assert_eq!(v.len(), n);
            if n == 0 {
                continue;
            }
            assert!(v.iter().any(|v| v.keep), "case {case}: everything deleted");
            let newest_verified = (0..n)
                .filter(|&i| units[i].verified)
                .max_by(|&a, &b| units[a].time.cmp(&units[b].time).then(a.cmp(&b)));
            match newest_verified {
                Some(i) => assert!(v[i].keep, "case {case}: newest verified deleted"),
                None => assert!(v.iter().all(|v| v.keep), "case {case}"),
            }
            let verified_total = units.iter().filter(|u| u.verified).count();
            let verified_kept = units
                .iter()
                .zip(&v)
                .filter(|(u, v)| u.verified && v.keep)
                .count();
            assert!(
                verified_kept >= verified_total.min(policy.min_keep as usize),
                "case {case}: fewer than --min-keep verified kept"
            );
            if let Some(d) = policy.keep_days {
                for (u, verdict) in units.iter().zip(&v) {
                    if now.signed_duration_since(u.time) < Duration::days(i64::from(d)) {
                        assert!(verdict.keep, "case {case}: a young backup was deleted");
                    }
                }
            }
        }
    }
}
