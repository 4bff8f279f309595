//! tb-restore --volume against the real Docker engine: the incident case (a
//! volume backed up with its container stopped, then lost, restored and used
//! by a new container) and a volume in use refused. The image is built
//! locally (see tb-testkit::docker). SKIPs without an engine, except under
//! TB_REQUIRE_DOCKER=1 (CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::Parser;
use serde_json::Value;
use tb_shared::record::Reporter;
use tb_testkit::docker::{Container, Volume, docker, docker_ok, docker_or_skip};
use tb_testkit::{Sandbox, events, list_dir, noise, records, summary};

/// The container's main process: exits at once on SIGTERM (`docker stop`).
const SLEEPER: [&str; 3] = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000000 & wait"];

/// `tb-voltar ARGS`, in-process; returns (exit code, records).
fn voltar(args: &[&str]) -> (u8, Vec<Value>) {
    let mut argv = vec!["tb-voltar", "--docker", "docker"];
    argv.extend_from_slice(args);
    let mut rep = Reporter::quiet("tb-voltar");
    let outcome = tb_voltar::run(tb_voltar::Args::parse_from(argv), &mut rep)
        .unwrap_or_else(|e| panic!("tb-voltar {args:?} failed: {e:#}"));
    (outcome.code, rep.records().to_vec())
}

fn tb_restore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tb-restore"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("TB_") {
            c.env_remove(&k);
        }
    }
    c.stdin(Stdio::null());
    c
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one `written` record of `kind`.
fn written<'a>(recs: &'a [Value], kind: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["event"] == "written" && r["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} record: {recs:#?}"))
}

/// Position of the first record matching `f`.
fn position(recs: &[Value], f: impl Fn(&Value) -> bool) -> usize {
    recs.iter()
        .position(f)
        .unwrap_or_else(|| panic!("record not found: {recs:#?}"))
}

/// The bytes of `path` inside container `c` (`docker exec cat`).
fn cat(c: &Container, path: &str) -> Vec<u8> {
    let out = docker(&["exec", &c.name, "cat", path]);
    assert!(out.status.success(), "cat {path}: {}", stderr(&out));
    out.stdout
}

/// `uid gid mode type` of `path` inside `c` (the entry itself, not what a
/// symlink points to).
fn stat(c: &Container, path: &str) -> String {
    docker_ok(&["exec", &c.name, "stat", "-c", "%u %g %a %F", path])
}

/// Every entry under /data inside `c`: name, type, owner, mode, size and
/// nanosecond mtime, sorted by name.
fn listing(c: &Container) -> Vec<String> {
    let out = docker_ok(&[
        "exec",
        &c.name,
        "find",
        "/data",
        "-exec",
        "stat",
        "-c",
        "%n|%F|%u:%g|%a|%s|%.9Y",
        "{}",
        "+",
    ]);
    let mut v: Vec<String> = out.lines().map(|l| l.to_string()).collect();
    v.sort_by(|a, b| a.split('|').next().cmp(&b.split('|').next()));
    v
}

/// The listing's name, type, owner and mode (what the literal
/// expectations fix; sizes and mtimes are compared whole).
fn shape(listing: &[String]) -> Vec<String> {
    listing
        .iter()
        .map(|l| l.split('|').take(4).collect::<Vec<_>>().join("|"))
        .collect()
}

fn running(name: &str) -> bool {
    docker_ok(&["inspect", "--format", "{{.State.Running}}", name]) == "true"
}

fn started_at(name: &str) -> String {
    docker_ok(&["inspect", "--format", "{{.State.StartedAt}}", name])
}

fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).status.success()
}

fn mountpoint(name: &str) -> PathBuf {
    PathBuf::from(docker_ok(&[
        "volume",
        "inspect",
        "--format",
        "{{.Mountpoint}}",
        name,
    ]))
}

const APP_ENV: &[u8] = b"SECRET_KEY=not-really\nDEBUG=0\n";
const CAFE: &[u8] = "résumé ☕\n".as_bytes();
const ROOT_TXT: &[u8] = b"owned by root\n";
const PHOTO: &str = "/data/uploads/2026/01/photo.bin";

/// What the application in `c` writes into its volume at /data: files of
/// uid 999 and of root, nested directories, a setgid directory, a symlink,
/// a 0640 and a 0600 file, a non-ASCII name, binary bytes (`photo`), and
/// fixed nanosecond mtimes.
fn write_app_files(c: &Container, photo: &Path) {
    let script = "set -e; umask 022; cd /data
        mkdir -p config uploads/2026/01
        printf 'SECRET_KEY=not-really\\nDEBUG=0\\n' > config/app.env
        chmod 0640 config/app.env
        printf 'r\\303\\251sum\\303\\251 \\342\\230\\225\\n' > 'uploads/2026/01/caf\u{e9} \u{2615}.txt'
        ln -s 2026/01/photo.bin uploads/latest
        printf 'owned by root\\n' > root-owned.txt
        chown -R 999:999 config uploads
        chown -h 999:999 uploads/latest
        chmod 2775 uploads
        chown 999:999 /data
        chmod 0750 /data";
    c.exec_ok(&[], &["sh", "-c", script]);
    let out = c.exec_with_input(
        &[],
        &[
            "sh",
            "-c",
            "cat > /data/uploads/2026/01/photo.bin && chown 999:999 /data/uploads/2026/01/photo.bin && chmod 0600 /data/uploads/2026/01/photo.bin",
        ],
        photo,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    c.exec_ok(
        &[],
        &[
            "sh",
            "-c",
            "find /data -depth -exec touch -h -d @1768793400.123456789 {} +",
        ],
    );
}

/// Every byte value, then incompressible noise (a JPEG stands for it).
fn photo_bytes() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend(noise(300_000, 7));
    v
}

/// The tree [`write_app_files`] makes: name, type, owner, mode.
const EXPECTED_SHAPE: [&str; 10] = [
    "/data|directory|999:999|750",
    "/data/config|directory|999:999|755",
    "/data/config/app.env|regular file|999:999|640",
    "/data/root-owned.txt|regular file|0:0|644",
    "/data/uploads|directory|999:999|2775",
    "/data/uploads/2026|directory|999:999|755",
    "/data/uploads/2026/01|directory|999:999|755",
    "/data/uploads/2026/01/caf\u{e9} \u{2615}.txt|regular file|999:999|644",
    "/data/uploads/2026/01/photo.bin|regular file|999:999|600",
    "/data/uploads/latest|symbolic link|999:999|777",
];

#[test]
fn a_docker_volume_is_backed_up_with_stop_and_restored_after_it_was_removed() {
    if !docker_or_skip("a_docker_volume_is_backed_up_with_stop_and_restored_after_it_was_removed") {
        return;
    }
    let sb = Sandbox::new();
    let photo = photo_bytes();
    std::fs::write(sb.join("photo.bin"), &photo).unwrap();

    // The application's volume, written by the application's container.
    let vol = Volume::create("media");
    let mount = format!("{}:/data", vol.name);
    let app = Container::run("app", &["-v", &mount], &SLEEPER);
    write_app_files(&app, &sb.join("photo.bin"));
    let before = listing(&app);
    assert_eq!(shape(&before), EXPECTED_SHAPE);
    assert!(
        before.iter().all(|l| l.ends_with("|1768793400.123456789")),
        "{before:#?}"
    );
    assert_eq!(cat(&app, PHOTO), photo);
    let started_before = started_at(&app.name);

    // Back it up with the container stopped for the archive.
    let backups = sb.join("backups");
    let (code, recs) = voltar(&[
        "--volume",
        &vol.name,
        "--stop",
        &app.name,
        "--dir",
        backups.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{recs:#?}");
    assert!(events(&recs, "warning").is_empty(), "{recs:#?}");
    let stopped = events(&recs, "stopped");
    assert_eq!(stopped.len(), 1, "{recs:#?}");
    assert_eq!(stopped[0]["container"], app.name.as_str());
    let started = events(&recs, "started");
    assert_eq!(started.len(), 1, "{recs:#?}");
    assert_eq!(started[0]["container"], app.name.as_str());
    let i_stopped = position(&recs, |r| r["event"] == "stopped");
    let i_started = position(&recs, |r| r["event"] == "started");
    let i_written = position(&recs, |r| r["event"] == "written" && r["kind"] == "volume");
    assert!(
        i_stopped < i_started && i_started < i_written,
        "stopped, started again, then published: {recs:#?}"
    );
    let v = written(&recs, "volume");
    assert_eq!(v["docker_volume"], vol.name.as_str());
    assert_eq!(v["consistent"], true);
    // Every entry of the tree, the volume root included.
    assert_eq!(v["entries"], EXPECTED_SHAPE.len());
    assert_eq!(v["files"], 4);
    assert_eq!(
        v["file_bytes"],
        APP_ENV.len() + CAFE.len() + ROOT_TXT.len() + photo.len()
    );
    let archive = PathBuf::from(v["path"].as_str().unwrap());
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(written(&recs, "manifest")["path"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["volume"]["docker_volume"], vol.name.as_str());
    assert_eq!(
        manifest["volume"]["stopped_containers"],
        serde_json::json!([app.name])
    );
    assert_eq!(manifest["volume"]["consistent"], true);
    // Running again, really restarted, and no leftover marker.
    assert!(running(&app.name), "the container runs again");
    assert_ne!(
        started_at(&app.name),
        started_before,
        "the container was stopped and started again"
    );
    assert!(
        !list_dir(&backups).contains(&".tb-stopped-containers.json".to_string()),
        "{:?}",
        list_dir(&backups)
    );

    // The incident: the container and its volume are removed.
    docker_ok(&["rm", "-f", &app.name]);
    docker_ok(&["volume", "rm", &vol.name]);
    assert!(!volume_exists(&vol.name));

    // Restore: the volume is created again and filled.
    let out = tb_restore()
        .arg(&archive)
        .args(["--volume", &vol.name])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let recs = records(&out.stdout);
    assert!(events(&recs, "warning").is_empty(), "{recs:#?}");
    assert!(volume_exists(&vol.name), "the volume was created");
    let mp = mountpoint(&vol.name);
    let created = events(&recs, "created");
    assert_eq!(created.len(), 1, "{recs:#?}");
    assert_eq!(created[0]["kind"], "docker_volume");
    assert_eq!(created[0]["volume"], vol.name.as_str());
    assert_eq!(created[0]["path"], mp.to_str().unwrap());
    let restored = events(&recs, "restored");
    assert_eq!(restored.len(), 1, "{recs:#?}");
    let r = restored[0];
    assert_eq!(r["kind"], "volume");
    assert_eq!(r["docker_volume"], vol.name.as_str());
    assert_eq!(r["target"], mp.to_str().unwrap());
    assert_eq!(r["path"], archive.to_str().unwrap());
    assert_eq!(r["entries"], v["entries"]);
    assert_eq!(r["files"], 4);
    assert_eq!(r["dirs"], 5);
    assert_eq!(r["symlinks"], 1);
    assert_eq!(r["file_bytes"], v["file_bytes"]);
    assert_eq!(r["sha256"], v["sha256"]);
    assert_eq!(r["checked"], "index");
    assert!(
        position(&recs, |r| r["event"] == "created")
            < position(&recs, |r| r["event"] == "restored")
    );
    assert_eq!(summary(&recs)["status"], "ok");
    assert_eq!(
        list_dir(mp.parent().unwrap()),
        ["_data"],
        "no temporary directory left in the volume's directory"
    );

    // A new container on the restored volume sees what the old one wrote.
    let app2 = Container::run("app-restored", &["-v", &mount], &SLEEPER);
    assert_eq!(
        listing(&app2),
        before,
        "names, owners, modes, sizes, mtimes"
    );
    assert_eq!(cat(&app2, "/data/config/app.env"), APP_ENV);
    assert_eq!(
        cat(&app2, "/data/uploads/2026/01/caf\u{e9} \u{2615}.txt"),
        CAFE
    );
    assert_eq!(cat(&app2, "/data/root-owned.txt"), ROOT_TXT);
    assert_eq!(cat(&app2, PHOTO), photo);
    assert_eq!(
        cat(&app2, "/data/uploads/latest"),
        photo,
        "through the symlink"
    );
    assert_eq!(
        docker_ok(&["exec", &app2.name, "readlink", "/data/uploads/latest"]),
        "2026/01/photo.bin"
    );
    assert_eq!(stat(&app2, "/data"), "999 999 750 directory");
    assert_eq!(
        stat(&app2, "/data/config/app.env"),
        "999 999 640 regular file"
    );
    assert_eq!(stat(&app2, PHOTO), "999 999 600 regular file");
    assert_eq!(stat(&app2, "/data/uploads"), "999 999 2775 directory");
    assert_eq!(stat(&app2, "/data/root-owned.txt"), "0 0 644 regular file");
    assert_eq!(
        stat(&app2, "/data/uploads/latest"),
        "999 999 777 symbolic link"
    );
    // The application user (uid 999) reads its files, and writes.
    assert_eq!(
        docker_ok(&[
            "exec",
            "--user",
            "999:999",
            &app2.name,
            "sh",
            "-c",
            "cat /data/config/app.env && echo new > /data/uploads/new.txt && cat /data/uploads/new.txt",
        ]),
        "SECRET_KEY=not-really\nDEBUG=0\nnew"
    );
}

#[test]
fn restoring_into_a_volume_in_use_is_refused() {
    if !docker_or_skip("restoring_into_a_volume_in_use_is_refused") {
        return;
    }
    // An archive to restore.
    let sb = Sandbox::new();
    let src = sb.join("media");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("from-backup.txt"), "from the backup\n").unwrap();
    let (code, recs) = voltar(&[
        "--source",
        src.to_str().unwrap(),
        "--name",
        "media",
        "--dir",
        sb.join("backups").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{recs:#?}");
    let archive = PathBuf::from(written(&recs, "volume")["path"].as_str().unwrap());

    // A volume a running container uses.
    let vol = Volume::create("busy");
    let mount = format!("{}:/data", vol.name);
    let app = Container::run("busy", &["-v", &mount], &SLEEPER);
    app.exec_ok(
        &[],
        &[
            "sh",
            "-c",
            "set -e; umask 022; mkdir /data/sub; printf 'live data\\n' > /data/sub/live.txt
             chown -R 999:999 /data/sub; chown 0:0 /data; chmod 0711 /data; touch -d @1768793400 /data/sub/live.txt",
        ],
    );
    let before = listing(&app);
    let mp = mountpoint(&vol.name);
    let volume_dir_before = list_dir(mp.parent().unwrap());

    for force in [false, true] {
        let mut cmd = tb_restore();
        cmd.arg(&archive).args(["--volume", &vol.name]);
        if force {
            cmd.arg("--force");
        }
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "force={force}: {}",
            stderr(&out)
        );
        let recs = records(&out.stdout);
        let errs = events(&recs, "error");
        assert_eq!(errs.len(), 1, "{recs:#?}");
        assert_eq!(errs[0]["cause"], "in_use", "{recs:#?}");
        let msg = errs[0]["message"].as_str().unwrap();
        assert!(msg.contains(&app.name), "names the container: {msg}");
        assert!(
            msg.contains(&format!("docker stop {}", app.name)),
            "says what to do: {msg}"
        );
        assert!(events(&recs, "restored").is_empty(), "{recs:#?}");
        assert!(events(&recs, "created").is_empty(), "{recs:#?}");
        assert_eq!(summary(&recs)["status"], "failed");
        assert!(stderr(&out).contains("in use"), "{}", stderr(&out));

        // The volume's files untouched, the container still running.
        assert_eq!(listing(&app), before);
        assert_eq!(cat(&app, "/data/sub/live.txt"), b"live data\n");
        assert!(
            docker(&["exec", &app.name, "test", "-e", "/data/from-backup.txt"])
                .status
                .code()
                == Some(1),
            "nothing from the archive reached the volume"
        );
        assert!(running(&app.name));
        assert_eq!(list_dir(mp.parent().unwrap()), volume_dir_before);
    }
    assert_eq!(
        shape(&before),
        [
            "/data|directory|0:0|711",
            "/data/sub|directory|999:999|755",
            "/data/sub/live.txt|regular file|999:999|644",
        ]
    );
}
