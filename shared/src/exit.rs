//! Exit codes, the contract every tool keeps (design.md, contract 6).
//!
//! Backup tools: 0 ok; 1 done, with warnings worth a look; 2 failed
//! (nothing published) or bad usage; 75 busy (another run holds the lock,
//! `EX_TEMPFAIL` from sysexits.h, so cron wrappers can retry).
//!
//! `tb-check` health answers follow the monitoring-plugin convention
//! (Nagios, Icinga, Zabbix): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

/// Everything done, nothing worth a look.
pub const OK: u8 = 0;
/// Done, and every artifact is complete, but something deserves a look
/// (a warning record says what).
pub const WARNINGS: u8 = 1;
/// Failed: nothing was published, older backups are untouched. Also bad
/// usage (clap exits 2 on its own).
pub const FAILED: u8 = 2;
/// Another run holds the lock of the backup directory.
pub const BUSY: u8 = 75;

/// Monitoring-plugin verdicts used by `tb-check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// 0: all good.
    Ok,
    /// 1: worth a look.
    Warning,
    /// 2: a backup is damaged, missing or stale.
    Critical,
    /// 3: could not tell (unreadable input).
    Unknown,
}

impl Health {
    /// The exit code of this verdict.
    pub fn code(self) -> u8 {
        match self {
            Health::Ok => 0,
            Health::Warning => 1,
            Health::Critical => 2,
            Health::Unknown => 3,
        }
    }

    /// The word used in records (`"ok"`, `"warning"`, `"critical"`, `"unknown"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Warning => "warning",
            Health::Critical => "critical",
            Health::Unknown => "unknown",
        }
    }

    /// The worse of two verdicts: CRITICAL beats UNKNOWN beats WARNING
    /// beats OK (a known-bad backup matters more than an unreadable one).
    pub fn worst(self, other: Health) -> Health {
        fn rank(h: Health) -> u8 {
            match h {
                Health::Ok => 0,
                Health::Warning => 1,
                Health::Unknown => 2,
                Health::Critical => 3,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// How a run ended: the exit code and the word the summary record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Process exit code.
    pub code: u8,
    /// `status` field of the summary record.
    pub status: &'static str,
}

impl Outcome {
    /// Exit 0, `"ok"`.
    pub const OK: Outcome = Outcome {
        code: OK,
        status: "ok",
    };
    /// Exit 1, `"warning"`.
    pub const WARNINGS: Outcome = Outcome {
        code: WARNINGS,
        status: "warning",
    };
    /// Exit 2, `"failed"`.
    pub const FAILED: Outcome = Outcome {
        code: FAILED,
        status: "failed",
    };
    /// Exit 75, `"busy"`.
    pub const BUSY: Outcome = Outcome {
        code: BUSY,
        status: "busy",
    };

    /// A monitoring verdict as an outcome.
    pub fn health(h: Health) -> Outcome {
        Outcome {
            code: h.code(),
            status: h.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_codes_follow_the_plugin_convention() {
        assert_eq!(
            [
                Health::Ok,
                Health::Warning,
                Health::Critical,
                Health::Unknown
            ]
            .map(Health::code),
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn critical_is_worse_than_unknown() {
        assert_eq!(Health::Unknown.worst(Health::Critical), Health::Critical);
        assert_eq!(Health::Critical.worst(Health::Unknown), Health::Critical);
        assert_eq!(Health::Ok.worst(Health::Unknown), Health::Unknown);
        assert_eq!(Health::Warning.worst(Health::Ok), Health::Warning);
    }

    #[test]
    fn backup_codes_are_distinct() {
        assert_eq!((OK, WARNINGS, FAILED, BUSY), (0, 1, 2, 75));
    }
}
