//! `scripts/setup-deps.sh`, the set-up step of `make run`, `make demo` and `make test`: what it
//! installs on a machine that lacks everything, that a second run installs nothing and prints
//! nothing, and what it says when it cannot install.
//!
//! "A machine that lacks everything" is dpkg's own state pointed elsewhere (`DPKG_ADMINDIR`, an
//! empty status file): the real `dpkg-query` then finds no package. `apt-get` is a stand-in first
//! on PATH that records its arguments and marks what it was asked to install as installed in that
//! status file, so nothing on this machine changes. The real install on a fresh Debian 12 is
//! shown by hand in docs/guide/package.md (a debootstrap chroot), not here: it needs the network.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{find_binary, is_root, output_with_deadline, temp_dir};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// What each level installs on an empty machine that has a C compiler, in the script's order.
const BUILD: &[&str] = &["libmariadb-dev-compat", "pkg-config"];
const DEMO: &[&str] = &["mariadb-server", "mariadb-client", "curl", "python3"];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-deps.sh")
}

fn bash() -> PathBuf {
    find_binary("bash").expect("bash")
}

/// An empty dpkg database, a bin dir with the `apt-get` stand-in, and its call log.
struct FreshMachine {
    dir: tempfile::TempDir,
}

const FAKE_APT: &str = r#"#!/bin/sh
# Records the call; "installs" by adding status entries to the fake dpkg database.
echo "$*" >>"$FAKE_APT_LOG"
if [ "$1" = install ]; then
  for arg in "$@"; do
    case "$arg" in
      install | -*) ;;
      *) printf 'Package: %s\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\nMaintainer: t\nDescription: t\n\n' \
           "$arg" >>"$DPKG_ADMINDIR/status" ;;
    esac
  done
fi
"#;

impl FreshMachine {
    fn new() -> FreshMachine {
        let dir = temp_dir("binlog-it-setup-");
        fs::create_dir_all(dir.path().join("dpkg")).unwrap();
        fs::write(dir.path().join("dpkg/status"), "").unwrap();
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        write_executable(&dir.path().join("bin/apt-get"), FAKE_APT);
        FreshMachine { dir }
    }

    fn admin_dir(&self) -> PathBuf {
        self.dir.path().join("dpkg")
    }

    fn apt_log(&self) -> PathBuf {
        self.dir.path().join("apt.log")
    }

    fn apt_calls(&self) -> Vec<String> {
        fs::read_to_string(self.apt_log()).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// Runs `setup-deps.sh <level>` with the fake apt-get first on PATH; (exit code, stdout, stderr).
    fn run(&self, level: &str) -> (i32, String, String) {
        let path = format!("{}:{}", self.dir.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = Command::new(bash());
        cmd.arg(script())
            .arg(level)
            .env("PATH", path)
            .env("DPKG_ADMINDIR", self.admin_dir())
            .env("FAKE_APT_LOG", self.apt_log())
            .env_remove("SKIP_SETUP_DEPS");
        run(&mut cmd, level)
    }
}

fn write_executable(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn run(cmd: &mut Command, what: &str) -> (i32, String, String) {
    let out = output_with_deadline(cmd, SCRIPT_TIMEOUT, &format!("setup-deps.sh {what}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The packages a level asks apt for on a machine with nothing, in order.
fn expected(lists: &[&[&str]]) -> String {
    let mut pkgs: Vec<&str> = Vec::new();
    pkgs.extend(lists[0]);
    // The script adds a C compiler only where `cc` is missing.
    if find_binary("cc").is_none() {
        pkgs.extend(["gcc", "libc6-dev"]);
    }
    for list in &lists[1..] {
        pkgs.extend(*list);
    }
    pkgs.join(" ")
}

#[test]
fn the_build_level_installs_the_client_library_once_and_is_silent_the_second_time() {
    let machine = FreshMachine::new();
    let want = expected(&[BUILD]);

    let (code, stdout, stderr) = machine.run("build");
    assert_eq!(code, 0, "first run: stdout {stdout:?} stderr {stderr:?}");
    assert_eq!(
        machine.apt_calls(),
        ["update -qq".to_string(), format!("install -y -qq --no-install-recommends {want}")],
        "first run asks apt for exactly the build packages"
    );
    assert!(stdout.contains(&format!("installing with apt: {want}")), "says what it installs: {stdout:?}");

    let (code, stdout, stderr) = machine.run("build");
    assert_eq!(code, 0, "second run: stdout {stdout:?} stderr {stderr:?}");
    assert_eq!(machine.apt_calls().len(), 2, "the second run must not call apt-get: {:?}", machine.apt_calls());
    assert_eq!((stdout.as_str(), stderr.as_str()), ("", ""), "the second run prints nothing");
}

#[test]
fn the_demo_level_adds_the_mariadb_server_and_client_and_nothing_else() {
    let machine = FreshMachine::new();
    let (code, stdout, stderr) = machine.run("demo");
    assert_eq!(code, 0, "stdout {stdout:?} stderr {stderr:?}");
    let want = expected(&[BUILD, DEMO]);
    assert_eq!(machine.apt_calls().last(), Some(&format!("install -y -qq --no-install-recommends {want}")));

    let (code, stdout, stderr) = machine.run("demo");
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "", ""), "second run");
    assert_eq!(machine.apt_calls().len(), 2, "{:?}", machine.apt_calls());
}

/// On this machine, which `make test` has set up: the build and demo levels find everything in
/// the real dpkg database and call no apt-get at all.
#[test]
fn on_a_machine_that_has_everything_it_installs_nothing_and_prints_nothing() {
    let machine = FreshMachine::new();
    for level in ["build", "demo"] {
        let path =
            format!("{}:{}", machine.dir.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = Command::new(bash());
        cmd.arg(script())
            .arg(level)
            .env("PATH", path)
            .env("FAKE_APT_LOG", machine.apt_log())
            .env_remove("DPKG_ADMINDIR");
        let (code, stdout, stderr) = run(&mut cmd, level);
        assert_eq!(
            (code, stdout.as_str(), stderr.as_str()),
            (0, "", ""),
            "{level}: a set-up machine needs nothing (run `scripts/setup-deps.sh test` first)"
        );
    }
    assert_eq!(machine.apt_calls(), Vec::<String>::new(), "apt-get must not be called");
}

/// A bin dir holding only links to the tools the script needs before it installs anything.
fn minimal_path(dir: &Path, with: &[&str]) -> String {
    let bin = dir.join("minimal-bin");
    fs::create_dir_all(&bin).unwrap();
    for tool in ["bash", "dpkg-query", "grep", "id", "env"].iter().chain(with) {
        let real = find_binary(tool).unwrap_or_else(|| panic!("{tool} not found"));
        std::os::unix::fs::symlink(&real, bin.join(tool)).unwrap();
    }
    bin.display().to_string()
}

#[test]
fn without_apt_get_it_names_what_is_missing_and_stops() {
    let machine = FreshMachine::new();
    let path = minimal_path(machine.dir.path(), &[]);
    let mut cmd = Command::new(bash());
    cmd.arg(script()).arg("build").env("PATH", path).env("DPKG_ADMINDIR", machine.admin_dir());
    let (code, stdout, stderr) = run(&mut cmd, "build without apt-get");
    assert_eq!(code, 1, "stdout {stdout:?} stderr {stderr:?}");
    assert!(stderr.contains("missing Debian packages: libmariadb-dev-compat pkg-config"), "{stderr}");
    assert!(stderr.contains("apt-get not found"), "says why it cannot install: {stderr}");
}

#[test]
fn not_root_and_without_sudo_it_prints_the_command_to_run_as_root() {
    let machine = FreshMachine::new();
    // apt-get is there (never run: the script stops first); sudo is not.
    let path = minimal_path(machine.dir.path(), &["apt-get"]);
    let mut cmd = if is_root() {
        // The unprivileged user must be able to read the fake dpkg database.
        for dir in [machine.dir.path().to_path_buf(), machine.admin_dir()] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let setpriv = find_binary("setpriv").expect("setpriv (util-linux)");
        let mut cmd = Command::new(setpriv);
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(bash());
        cmd
    } else {
        Command::new(bash())
    };
    cmd.arg(script()).arg("build").env("PATH", path).env("DPKG_ADMINDIR", machine.admin_dir());
    let (code, stdout, stderr) = run(&mut cmd, "build as nobody without sudo");
    assert_eq!(code, 1, "stdout {stdout:?} stderr {stderr:?}");
    assert!(stderr.contains("not root, and sudo is not available"), "{stderr}");
    assert!(
        stderr.contains("apt-get install --no-install-recommends libmariadb-dev-compat pkg-config"),
        "gives the command to run: {stderr}"
    );
}

#[test]
fn an_unknown_level_is_a_usage_error() {
    let mut cmd = Command::new(bash());
    cmd.arg(script()).arg("everything");
    let (code, _, stderr) = run(&mut cmd, "everything");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("usage:"), "{stderr}");
}
