//! Operations: `make install-files` lays out the binaries, the job scripts,
//! the settings file, the cron file or the systemd units and the logrotate
//! rule; the cron file and the units pass their syntax checks; and the
//! shipped scripts run end to end against the real PostgreSQL server and
//! Docker engine in a temporary root, leave the expected backups, log
//! lines and records, and alert on failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tb_testkit::docker::{Volume, docker_ok, docker_or_skip};
use tb_testkit::{Pg, Sandbox, records, workspace};

const TOOLS: [&str; 6] = [
    "tb-dump",
    "tb-voltar",
    "tb-incr",
    "tb-prune",
    "tb-restore",
    "tb-check",
];

/// The directory with this build's binaries (`target/debug`), when every
/// tool is built there (`cargo test --workspace`, as `make test` runs it).
fn built() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_BIN_EXE_tb-check"))
        .parent()?
        .to_path_buf();
    let all = TOOLS.iter().all(|t| dir.join(t).exists());
    if !all {
        eprintln!(
            "SKIP: not every tool is built in {} (run cargo test --workspace)",
            dir.display()
        );
    }
    all.then_some(dir)
}

fn install(extra: &[String]) -> Output {
    let bin = built().unwrap();
    let target = bin.parent().unwrap();
    Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(workspace())
        .arg("install-files")
        .arg("PROFILE=debug")
        .arg(format!("TARGET_DIR={}", target.display()))
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn make_install_lays_out_everything_and_keeps_your_settings() {
    if built().is_none() {
        return;
    }
    let sb = Sandbox::new();
    let dest = sb.join("dest");
    let out = install(&[format!("DESTDIR={}", dest.display())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in TOOLS {
        assert_eq!(mode(&dest.join("usr/local/bin").join(t)), 0o755, "{t}");
    }
    let lib = dest.join("usr/local/lib/toybox-backup");
    for s in [
        "backup-database",
        "backup-volumes",
        "backup-incremental",
        "backup-status",
        "backup-drill",
    ] {
        assert_eq!(mode(&lib.join(s)), 0o755, "{s}");
        let text = std::fs::read_to_string(lib.join(s)).unwrap();
        for ph in ["@BINDIR@", "@LIBDIR@", "@DOCDIR@", "@SYSCONFDIR@"] {
            assert!(!text.contains(ph), "{s} still has {ph}");
        }
        assert!(
            text.contains(". \"/usr/local/lib/toybox-backup/common.sh\""),
            "{s}"
        );
        // Each script is valid shell.
        assert!(
            Command::new("bash")
                .arg("-n")
                .arg(lib.join(s))
                .status()
                .unwrap()
                .success(),
            "{s}"
        );
    }
    let env = dest.join("etc/default/toybox-backup");
    assert_eq!(mode(&env), 0o600, "the settings may hold a password");
    assert_eq!(mode(&dest.join("etc/logrotate.d/toybox-backup")), 0o644);
    // The cron file: every job line has 5 time fields, the user and a
    // script that was installed.
    let cron = std::fs::read_to_string(dest.join("etc/cron.d/toybox-backup")).unwrap();
    let jobs: Vec<Vec<&str>> = cron
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(jobs.len(), 5);
    let field = |f: &str, max: u32| f == "*" || f.parse::<u32>().is_ok_and(|n| n <= max);
    let mut scripts = Vec::new();
    for j in &jobs {
        assert!(j.len() >= 7, "{j:?}");
        assert!(
            field(j[0], 59)
                && field(j[1], 23)
                && field(j[2], 31)
                && field(j[3], 12)
                && field(j[4], 7),
            "{j:?}"
        );
        assert_eq!(j[5], "root");
        let script = dest.join(j[6].trim_start_matches('/'));
        assert_eq!(mode(&script), 0o755, "{}", script.display());
        scripts.push((
            j[..5].join(" "),
            j[6].rsplit('/').next().unwrap().to_string(),
        ));
    }
    assert_eq!(
        scripts,
        vec![
            ("0 3 * * *".to_string(), "backup-database".to_string()),
            ("30 3 * * 0".to_string(), "backup-volumes".to_string()),
            ("45 3 * * *".to_string(), "backup-incremental".to_string()),
            ("0 7 * * *".to_string(), "backup-status".to_string()),
            ("0 5 1 * *".to_string(), "backup-drill".to_string()),
        ]
    );
    // Installing again keeps the settings the admin edited.
    std::fs::write(&env, "TB_ROOT=/srv/mine\n").unwrap();
    let out = install(&[format!("DESTDIR={}", dest.display())]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "TB_ROOT=/srv/mine\n"
    );
    // logrotate's own check, where it is installed.
    if Path::new("/usr/sbin/logrotate").exists() {
        let st = Command::new("/usr/sbin/logrotate")
            .args(["-d", "-s", sb.join("lr.state").to_str().unwrap()])
            .arg(dest.join("etc/logrotate.d/toybox-backup"))
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    if built().is_none() {
        return;
    }
    let sb = Sandbox::new();
    let prefix = sb.join("usr");
    let etc = sb.join("etc");
    let out = install(&[
        format!("PREFIX={}", prefix.display()),
        format!("SYSCONFDIR={}", etc.display()),
        "SCHEDULE=systemd".into(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let units: Vec<PathBuf> = std::fs::read_dir(etc.join("systemd/system"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(units.len(), 10);
    for u in &units {
        let text = std::fs::read_to_string(u).unwrap();
        if u.extension().unwrap() == "timer" {
            assert!(text.contains("Persistent=true"), "{}", u.display());
            let cal = text
                .lines()
                .find_map(|l| l.strip_prefix("OnCalendar="))
                .unwrap();
            if Path::new("/usr/bin/systemd-analyze").exists() {
                let ok = Command::new("systemd-analyze")
                    .args(["calendar", cal])
                    .output()
                    .unwrap();
                assert!(ok.status.success(), "{cal}");
            }
        }
    }
    if !Path::new("/usr/bin/systemd-analyze").exists() {
        eprintln!("SKIP systemd-analyze verify: not installed");
        return;
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run an installed script with the settings in `env`.
fn job(prefix: &Path, env: &Path, script: &str) -> Output {
    Command::new(prefix.join("lib/toybox-backup").join(script))
        .env("TB_ENV", env)
        .env_remove("TB_LOG")
        .env_remove("TB_ALERT_CMD")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_shipped_scripts_back_up_prune_check_and_alert_end_to_end() {
    if built().is_none()
        || !docker_or_skip("the_shipped_scripts_back_up_prune_check_and_alert_end_to_end")
    {
        return;
    }
    let pg = Pg::shared();
    pg.toybox("ops_db");
    let sb = Sandbox::new();
    let prefix = sb.join("usr");
    let out = install(&[
        format!("PREFIX={}", prefix.display()),
        format!("SYSCONFDIR={}", sb.join("etc").display()),
        "SCHEDULE=none".into(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A Docker volume with a few files.
    let vol = Volume::create("opsmedia");
    let mount = PathBuf::from(docker_ok(&[
        "volume",
        "inspect",
        "--format",
        "{{ .Mountpoint }}",
        &vol.name,
    ]));
    std::fs::create_dir_all(mount.join("img")).unwrap();
    std::fs::write(mount.join("img/cat.jpg"), tb_testkit::noise(40_000, 2)).unwrap();
    std::fs::write(mount.join("index.html"), "<p>hi</p>\n").unwrap();
    // A directory standing for a second volume.
    std::fs::create_dir_all(sb.join("uploads/u")).unwrap();
    std::fs::write(sb.join("uploads/u/a.txt"), "upload\n").unwrap();
    let root = sb.join("backup");
    let log = sb.join("toybox_backup.log");
    let alert = sb.join("alert.jsonl");
    let env = sb.join("settings");
    let write_env = |port: u16| {
        std::fs::write(
            &env,
            format!(
                "TB_ROOT={root}\nTB_DATABASE=ops_db\nTB_DB_CONTAINER=\nTB_PGUSER={user}\nPGHOST={host}\nPGPORT={port}\nexport PGHOST PGPORT\n\
                 TB_VOLUMES=\"{vol} {dirvol}\"\nTB_VOLUME_STOP=\nTB_LOG={log}\nTB_ALERT_CMD=\"cat >> {alert}\"\nTB_DRILL_SCRATCH={scratch}\n",
                root = root.display(),
                user = pg.user,
                host = pg.host,
                vol = vol.name,
                dirvol = sb.join("uploads").display(),
                log = log.display(),
                alert = alert.display(),
                scratch = sb.path().display(),
            ),
        )
        .unwrap();
    };
    write_env(pg.port);
    for script in ["backup-database", "backup-volumes", "backup-incremental"] {
        let out = job(&prefix, &env, script);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let label = vol
        .name
        .split_once('_')
        .map(|(_, l)| l.to_string())
        .unwrap_or(vol.name.clone());
    let names = |d: &str| -> Vec<String> {
        std::fs::read_dir(root.join(d))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        names("database")
            .iter()
            .filter(|n| n.ends_with(".sql.gz") && !n.contains("roles"))
            .count(),
        1
    );
    assert_eq!(
        names("volumes")
            .iter()
            .filter(|n| n.ends_with(".tar.gz"))
            .count(),
        2,
        "the Docker volume's and the directory's"
    );
    assert_eq!(names(&format!("volumes-incremental/{label}")).len(), 1);
    assert_eq!(
        names("volumes")
            .iter()
            .filter(|n| n.starts_with("uploads_") && n.ends_with(".tar.gz"))
            .count(),
        1
    );
    assert_eq!(names("volumes-incremental/uploads").len(), 1);
    // The log holds every tool's records, pruning included.
    let recs = records(&std::fs::read(&log).unwrap());
    let tools: std::collections::BTreeSet<&str> =
        recs.iter().filter_map(|r| r["tool"].as_str()).collect();
    for t in ["tb-dump", "tb-voltar", "tb-incr", "tb-check", "tb-prune"] {
        assert!(tools.contains(t), "no {t} records in the log: {tools:?}");
    }
    assert!(
        recs.iter()
            .any(|r| r["event"] == "written" && r["kind"] == "dump")
    );
    assert!(!alert.exists(), "nothing failed, nothing alerted");
    // The status job sees the drill missing (a warning) and alerts.
    let out = job(&prefix, &env, "backup-status");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heard = records(&std::fs::read(&alert).unwrap());
    assert!(heard.iter().any(|r| r["check"] == "drill"), "{heard:#?}");
    // The drill job restores the newest backups and passes.
    let out = job(&prefix, &env, "backup-drill");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Break the database connection: the dump job fails, prunes nothing,
    // and the alert hears the error.
    std::fs::remove_file(&alert).unwrap();
    write_env(1);
    let before = names("database");
    let out = job(&prefix, &env, "backup-database");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(names("database"), before);
    let heard = records(&std::fs::read(&alert).unwrap());
    assert_eq!(
        heard.iter().find(|r| r["event"] == "error").unwrap()["cause"],
        "server_down"
    );
    assert!(
        !heard.iter().any(|r| r["tool"] == "tb-prune"),
        "pruning ran after a failed backup"
    );
}
