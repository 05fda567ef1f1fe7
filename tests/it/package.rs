//! The Debian package as an operator gets it, on this machine: built around this test run's
//! binary (`scripts/build-deb.sh --profile dev`: the contents `make deb` packs, without a second,
//! release, build), installed with `dpkg -i`, started the way `binlog-server.service` starts it,
//! a task copying a real MariaDB, `migrate up` of a MySQL metadata store as the service user,
//! then `dpkg -r` and `dpkg --purge`, which must keep the data.
//!
//! There is no systemd here to run the unit, so the test reads the installed unit and starts its
//! `ExecStart` the way systemd would: as its `User`/`Group`, with its `UMask` and `LimitNOFILE`,
//! no new privileges and an empty capability bounding set, in a mount namespace where the file
//! system is read-only but for `ReadWritePaths`, `StateDirectory` and `LogsDirectory`
//! (`ProtectSystem=strict`), with empty `/tmp` and `/var/tmp` (`PrivateTmp`) and hidden homes
//! (`ProtectHome`), and `$NOTIFY_SOCKET` (`Type=notify`). The system-call filter and the other
//! kernel-level settings are not reproduced; `systemd-analyze` checks the unit's syntax and
//! rates its exposure. In a chroot (the root is no mount point) the file-system part cannot be
//! reproduced safely either, and the test says so on stderr.
//!
//! The test needs root (dpkg) and takes a machine-wide lock: two runs on one machine would
//! install over each other. It refuses to touch a binlog-server this test did not install.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::pitr::get_bytes;
use crate::common::replication::{create_task, from_first_file, source_json, start_task, wait_caught_up};
use crate::common::server::{BINARY, Server, ServerOpts};
use crate::common::{find_binary, is_root, keep_temp_dirs, output_with_deadline, poll_until, temp_dir};

const PACKAGE: &str = "binlog-server";
const UNIT: &str = "/usr/lib/systemd/system/binlog-server.service";
const CONFIG: &str = "/etc/binlog-server/config.yaml";
const DATA_DIR: &str = "/var/lib/binlog-server";
/// Left in the data dir, so a later run knows a leftover is this test's and may remove it.
const MARKER: &str = ".binlog-server-package-test";
const LOCK: &str = "/tmp/binlog-server-package-test.lock";
/// Building the .deb strips and compresses a debug binary of ~100 MiB: slow on a busy machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
const DPKG_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn the_deb_installs_runs_a_task_as_its_unit_does_and_removing_it_keeps_the_data() {
    if !is_root() || find_binary("dpkg").is_none() {
        eprintln!("SKIPPED: the package test installs a .deb: it needs root and dpkg");
        return;
    }
    let _lock = MachineLock::acquire();
    remove_leftover_of_an_earlier_run();

    let work = temp_dir("binlog-it-package-");
    let deb = build_deb(work.path());
    let installed = Installed::install(&deb);
    installed.assert_layout();
    assert_unit_is_valid();

    let unit = Unit::read(Path::new(UNIT));
    let notify = NotifySocket::bind();
    let db = MariaDb::start(MariaDbOpts::default());
    let mut srv = Server::start(
        ServerOpts::default().command(unit.sandboxed_command(work.path())).env(notify.env_name(), notify.env_value()),
    );
    let ready = notify.receive("READY=1");
    assert!(ready.contains(&format!("STATUS=listening on 127.0.0.1:{}", srv.port())), "{ready}");
    assert_sandboxed(&srv, &unit);

    // A task copies the source; a sealed file fetched over the API is the source's file.
    let (status, _, health) = get_bytes(&srv, "/healthz");
    assert_eq!((status, health.as_slice()), (200, b"ok".as_slice()), "GET /healthz");
    let id = create_task(&srv, "packaged", source_json(&db), from_first_file(&db));
    start_task(&srv, id);
    db.sql("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(64)); INSERT INTO t VALUES (1, 'packaged'), (2, 'run')");
    db.flush_binary_logs();
    wait_caught_up(&srv, &db, id);
    let sealed = srv
        .files(id)
        .into_iter()
        .find(|f| f.state == binlog_server::meta::FileState::Sealed)
        .unwrap_or_else(|| panic!("no sealed file after a rotation: {:?}", srv.files(id)));
    let name = sealed.name;
    let (status, _, fetched) = get_bytes(&srv, &format!("/api/tasks/{id}/files/{name}"));
    assert_eq!(status, 200, "GET /api/tasks/{id}/files/{name}");
    let source = fs::read(db.binlog_dir().join(&name)).expect("the source's binlog file");
    assert!(
        fetched == source,
        "{name}: the fetched file differs from the source's ({} vs {} bytes)",
        fetched.len(),
        source.len()
    );
    let meta_db = Path::new(DATA_DIR).join("meta.db");
    assert_eq!(owner(&meta_db), installed.uid, "{}: written by the service user", meta_db.display());

    let status = srv.stop();
    assert!(status.success(), "SIGTERM: an ordered shutdown exits 0, got {status}");
    notify.receive("STOPPING=1");

    // A MySQL metadata store is created by the packaged binary, as the service user, with the
    // installed config (docs/guide/package.md).
    db.sql("CREATE DATABASE binlog_meta");
    let dsn = format!("mysql://root@127.0.0.1:{}/binlog_meta", db.port());
    let mut migrate = Command::new("runuser");
    migrate.args(["-u", "binlog-server", "--", "/usr/bin/binlog-server", "migrate", "up", "--config", CONFIG]);
    migrate.args(["--meta-dsn", &dsn]);
    let out = output_with_deadline(&mut migrate, Duration::from_secs(120), "binlog-server migrate up");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("applied"),
        "migrate up as binlog-server: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Upgrading (here: reinstalling) keeps the operator's configuration.
    let edited = format!("{}\n# edited by the operator\n", fs::read_to_string(CONFIG).unwrap());
    fs::write(CONFIG, &edited).unwrap();
    dpkg(&["-i", deb.to_str().unwrap()]);
    assert_eq!(
        fs::read_to_string(CONFIG).unwrap(),
        edited,
        "dpkg -i over an installed package keeps the edited conffile"
    );

    let local_copy = find_file(Path::new(DATA_DIR), &name).expect("the task's local copy");
    dpkg(&["-r", PACKAGE]);
    assert!(!Path::new("/usr/bin/binlog-server").exists(), "dpkg -r removes the binary");
    assert!(local_copy.is_file() && meta_db.is_file(), "dpkg -r keeps the data dir's files");
    assert!(Path::new(CONFIG).is_file(), "dpkg -r keeps the conffile (purge removes it)");

    let purge = dpkg(&["--purge", PACKAGE]);
    assert!(!Path::new(CONFIG).exists(), "dpkg --purge removes the conffile");
    assert!(local_copy.is_file() && meta_db.is_file(), "dpkg --purge keeps the data dir's files");
    assert!(purge.contains(&format!("purge keeps {DATA_DIR}")), "and says so: {purge}");
    fs::remove_dir_all(DATA_DIR).unwrap();
}

/// Serialises package tests across every checkout on this machine (they share dpkg's state);
/// held while the file is open.
struct MachineLock {
    _file: fs::File,
}

impl MachineLock {
    fn acquire() -> MachineLock {
        let file =
            fs::OpenOptions::new().create(true).truncate(false).write(true).open(LOCK).expect("open the lock file");
        poll_until(Duration::from_secs(900), &format!("the package-test lock {LOCK}"), || {
            // SAFETY: flock on a descriptor this function owns; no memory is shared.
            (unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0).then_some(())
        });
        MachineLock { _file: file }
    }
}

/// Purges what an earlier, interrupted run left; refuses to touch an installation of someone else.
fn remove_leftover_of_an_earlier_run() {
    let ours = Path::new(DATA_DIR).join(MARKER).exists();
    let installed = package_installed();
    if (installed || Path::new(DATA_DIR).exists()) && !ours {
        panic!(
            "this machine has a binlog-server installation the package test did not make (package installed: \
             {installed}, {DATA_DIR} exists: {}); the test would overwrite it, so it stops",
            Path::new(DATA_DIR).exists()
        );
    }
    if installed {
        dpkg(&["--purge", PACKAGE]);
    }
    if ours {
        fs::remove_dir_all(DATA_DIR).expect("removing the earlier run's data dir");
    }
}

fn package_installed() -> bool {
    let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", PACKAGE]).output().expect("dpkg-query");
    String::from_utf8_lossy(&out.stdout).contains("install ok installed")
}

/// `scripts/build-deb.sh --profile dev --fast` around this run's binary; the .deb's path.
fn build_deb(out: &Path) -> PathBuf {
    // .../target/debug/binlog-server -> .../target
    let target_dir = Path::new(BINARY).parent().and_then(Path::parent).expect("the binary sits in <target>/debug");
    let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-deb.sh"));
    cmd.args(["--profile", "dev", "--fast", "--output"])
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target_dir);
    let result = output_with_deadline(&mut cmd, BUILD_TIMEOUT, "scripts/build-deb.sh --profile dev");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "building the .deb failed ({}): {stderr}", result.status);
    let deb = fs::read_dir(out)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| panic!("no .deb in {}: {stderr}", out.display()));
    eprintln!("package test: built {} ({} bytes)", deb.display(), fs::metadata(&deb).unwrap().len());
    deb
}

/// Runs dpkg non-interactively; panics unless it succeeds; returns its stdout + stderr.
fn dpkg(args: &[&str]) -> String {
    let mut cmd = Command::new("dpkg");
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    let out = output_with_deadline(&mut cmd, DPKG_TIMEOUT, &format!("dpkg {}", args.join(" ")));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "dpkg {} failed ({}): {text}", args.join(" "), out.status);
    text
}

/// The package once `dpkg -i` has run: the service user's ids. A failing test purges it and
/// its data dir again, unless `BINLOG_TEST_KEEP` asks to keep them for a look.
struct Installed {
    uid: u32,
    gid: u32,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !std::thread::panicking() || keep_temp_dirs() {
            return;
        }
        let _ = Command::new("dpkg").args(["--purge", PACKAGE]).env("DEBIAN_FRONTEND", "noninteractive").status();
        if Path::new(DATA_DIR).join(MARKER).exists() {
            let _ = fs::remove_dir_all(DATA_DIR);
        }
    }
}

impl Installed {
    fn install(deb: &Path) -> Installed {
        dpkg(&["-i", deb.to_str().expect("UTF-8 temp path")]);
        // 0600: the service tightens (and, as another user, fails on) anything wider in its data dir.
        let marker = Path::new(DATA_DIR).join(MARKER);
        fs::write(&marker, "").expect("marking the data dir as this test's");
        fs::set_permissions(&marker, fs::Permissions::from_mode(0o600)).expect("chmod the marker");
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, "binlog-server"]).output().expect("id");
            assert!(out.status.success(), "the postinst must create the binlog-server user and group");
            String::from_utf8_lossy(&out.stdout).trim().parse().expect("a numeric id")
        };
        Installed { uid: id("-u"), gid: id("-g") }
    }

    fn assert_layout(&self) {
        let data = fs::metadata(DATA_DIR).expect("the postinst creates the data dir");
        assert_eq!((data.uid(), data.gid()), (self.uid, self.gid), "{DATA_DIR}: owned by binlog-server");
        assert_eq!(data.permissions().mode() & 0o7777, 0o700, "{DATA_DIR}: mode");
        let config = fs::metadata(CONFIG).expect("the config is installed");
        assert_eq!((config.uid(), config.gid(), config.permissions().mode() & 0o777), (0, self.gid, 0o640), "{CONFIG}");
        let conffiles = Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]).output().unwrap();
        assert!(String::from_utf8_lossy(&conffiles.stdout).contains(CONFIG), "{CONFIG} must be a conffile");
        for path in [
            "/usr/bin/binlog-server",
            UNIT,
            "/usr/share/man/man1/binlog-server.1.gz",
            "/usr/share/man/man1/binlog-server-migrate.1.gz",
            "/usr/share/bash-completion/completions/binlog-server",
            "/usr/share/zsh/vendor-completions/_binlog-server",
            "/usr/share/fish/vendor_completions.d/binlog-server.fish",
            "/usr/share/doc/binlog-server/guide/configuration.md",
        ] {
            assert!(Path::new(path).is_file(), "the package installs {path}");
        }
        let readelf = Command::new("readelf").args(["-S", "-W", "/usr/bin/binlog-server"]).output().expect("readelf");
        let sections = String::from_utf8_lossy(&readelf.stdout);
        // (.debug_gdb_scripts is loaded code, not debug info: it stays.)
        for debug_info in [".debug_info", ".debug_line", ".symtab"] {
            assert!(!sections.contains(debug_info), "/usr/bin/binlog-server must be stripped: it has {debug_info}");
        }
    }
}

/// `systemd-analyze verify` on the installed unit, and its exposure rating, where systemd is.
fn assert_unit_is_valid() {
    let Some(analyze) = find_binary("systemd-analyze") else {
        eprintln!("package test: no systemd-analyze here, the unit's syntax is not verified");
        return;
    };
    let man = if find_binary("man").is_some() { "--man=yes" } else { "--man=no" };
    let mut cmd = Command::new(&analyze);
    cmd.args(["verify", man, UNIT]);
    let out = output_with_deadline(&mut cmd, Duration::from_secs(60), "systemd-analyze verify");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify {UNIT}: {text}");

    let mut cmd = Command::new(&analyze);
    cmd.args(["security", "--offline=yes", "--no-pager", UNIT]);
    let out = output_with_deadline(&mut cmd, Duration::from_secs(60), "systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("binlog-server.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in systemd-analyze security's output: {text}"));
    assert!(exposure < 2.0, "the unit's exposure level is {exposure} (systemd's \"OK\" is below 2.0): {text}");
}

/// The installed unit's `[Service]` settings, as the test reproduces them.
struct Unit {
    settings: Vec<(String, String)>,
}

impl Unit {
    fn read(path: &Path) -> Unit {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut in_service = false;
        let mut settings = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
            } else if in_service && !line.is_empty() && !line.starts_with('#') {
                let (k, v) =
                    line.split_once('=').unwrap_or_else(|| panic!("{}: not KEY=VALUE: {line}", path.display()));
                settings.push((k.to_string(), v.to_string()));
            }
        }
        Unit { settings }
    }

    /// The one value of `key`; panics when the unit lacks it (the hardening the test relies on).
    fn get(&self, key: &str) -> &str {
        let mut values = self.settings.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let v = values.next().unwrap_or_else(|| panic!("{UNIT} must set {key}="));
        assert!(values.next().is_none(), "{UNIT}: {key}= is set more than once");
        v
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.settings.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The unit's `ExecStart`, as its user and under its file-system sandbox (module doc).
    fn sandboxed_command(&self, work: &Path) -> Vec<String> {
        for (key, want) in [
            ("Type", "notify"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("NoNewPrivileges", "yes"),
            ("CapabilityBoundingSet", ""),
            ("Restart", "on-failure"),
        ] {
            assert_eq!(self.get(key), want, "{UNIT}: {key}=");
        }
        let user = self.get("User");
        let group = self.get("Group");
        let mut writable: Vec<String> =
            self.all("ReadWritePaths").flat_map(str::split_whitespace).map(String::from).collect();
        writable.push(format!("/var/lib/{}", self.get("StateDirectory")));
        let logs = format!("/var/log/{}", self.get("LogsDirectory"));
        writable.push(logs.clone());

        let mut script = vec!["set -e".to_string(), format!("umask {}", self.get("UMask"))];
        // systemd raises the hard limit; a machine whose hard limit is lower (no CAP_SYS_RESOURCE
        // in a container) gets what it allows.
        let nofile = self.get("LimitNOFILE");
        script.push(format!(
            "ulimit -n {nofile} 2>/dev/null || {{ echo \"LimitNOFILE={nofile} is above this machine's hard limit; using $(ulimit -Hn)\" >&2; ulimit -n $(ulimit -Hn); }}"
        ));
        // LogsDirectory= is systemd's to create, owned by the user.
        script.push(format!("install -d -m 0750 -o {user} -g {group} {logs}"));
        // In a chroot the root is no mount point: a mount namespace cannot be made private
        // there, and mounts made in a shared one would reach the host. The file-system part of
        // the sandbox is then left out, and the test says so.
        let mount_sandbox = root_is_a_mount_point();
        if mount_sandbox {
            // ProtectSystem=strict: every mount read-only but the API file systems, then the
            // writable paths bound over themselves first, so they stay writable.
            for dir in &writable {
                script.push(format!("mount --bind {dir} {dir}"));
            }
            for mount_point in read_only_mount_points() {
                script.push(format!("mount -o remount,bind,ro {mount_point}"));
            }
            for dir in ["/tmp", "/var/tmp"] {
                script.push(format!("mount -t tmpfs -o mode=1777 tmpfs {dir}"));
            }
            for dir in ["/home", "/root", "/run/user"].into_iter().filter(|d| Path::new(d).is_dir()) {
                script.push(format!("mount -t tmpfs -o ro,mode=0755 tmpfs {dir}"));
            }
        } else {
            eprintln!(
                "package test: / is not a mount point (a chroot?): ProtectSystem, ProtectHome and \
                 PrivateTmp are NOT reproduced in this run"
            );
        }
        script.push(format!(
            "exec setpriv --reuid={user} --regid={group} --init-groups --no-new-privs --bounding-set=-all \
             --inh-caps=-all -- {}",
            self.get("ExecStart")
        ));
        let path = work.join("start-as-unit.sh");
        fs::write(&path, script.join("\n") + "\n").unwrap();
        eprintln!("package test: starting the unit's ExecStart with {}", path.display());
        // unshare execs in place: the server's PID is the child's, as the harness expects.
        let mut argv: Vec<String> = Vec::new();
        if mount_sandbox {
            argv.extend(["unshare", "--mount", "--propagation", "private"].map(String::from));
        }
        argv.extend(["sh".to_string(), path.display().to_string()]);
        argv
    }
}

/// Whether `/` is a mount point of this process's view (it is not inside a chroot).
fn root_is_a_mount_point() -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("/proc/self/mountinfo");
    // Fields: id parent major:minor root mount-point ...
    info.lines().any(|l| l.split_whitespace().nth(4) == Some("/"))
}

/// The mount points ProtectSystem=strict makes read-only: all but /proc, /sys and /dev.
fn read_only_mount_points() -> Vec<String> {
    let mounts = fs::read_to_string("/proc/self/mounts").expect("/proc/self/mounts");
    let mut points: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| !["/proc", "/sys", "/dev"].iter().any(|api| p == api || p.starts_with(&format!("{api}/"))))
        // Mount points with blanks come escaped (\040); none of ours has one.
        .filter(|p| !p.contains('\\'))
        .map(String::from)
        .collect();
    points.dedup();
    points
}

/// What the sandboxed process is: the service user, no new privileges, no capabilities.
fn assert_sandboxed(srv: &Server, unit: &Unit) {
    let status = fs::read_to_string(format!("/proc/{}/status", srv.pid())).expect("the server's /proc status");
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no {name} in /proc status"))
    };
    let uid = Command::new("id").args(["-u", unit.get("User")]).output().unwrap();
    assert_eq!(field("Uid"), String::from_utf8_lossy(&uid.stdout).trim(), "runs as the unit's User");
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("CapBnd"), "0000000000000000");
}

/// A notification socket standing in for systemd's (an abstract name: no file to share).
struct NotifySocket {
    socket: UnixDatagram,
    name: String,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let name = format!("binlog-server-package-test-{}", std::process::id());
        let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).expect("bind the socket");
        socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        NotifySocket { socket, name }
    }

    fn env_name(&self) -> &'static str {
        "NOTIFY_SOCKET"
    }

    fn env_value(&self) -> String {
        format!("@{}", self.name)
    }

    /// The next notification, which must contain `line`.
    fn receive(&self, line: &str) -> String {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).unwrap_or_else(|e| panic!("no notification with {line} within 60 s: {e}"));
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(text.lines().any(|l| l == line), "expected {line} in the notification {text:?}");
        text
    }
}

fn owner(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).uid()
}

/// The first file called `name` under `dir`.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if entry.file_name() == name {
            return Some(path);
        }
    }
    None
}
