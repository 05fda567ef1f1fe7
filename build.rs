//! Records the git commit the binary is built from (`binlog_server_build_info{commit}`), or
//! `unknown` outside a git checkout (a source tarball); `BUILD_GIT_COMMIT` in the build
//! environment wins (packaging from an exported tree). The name stays outside the
//! `BINLOG_SERVER_*` prefix on purpose: cargo also sets it when it runs the binary (`cargo run`,
//! tests), and the server refuses unknown `BINLOG_SERVER_*` variables.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=BUILD_GIT_COMMIT");
    let commit = std::env::var("BUILD_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves: the HEAD file (a branch switch) and the ref it names (a commit).
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["rev-parse", "--symbolic-full-name", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])),
    ]
    .into_iter()
    .flatten()
    // A missing file (a packed ref) would make cargo rerun this script on every build.
    .filter(|p| std::path::Path::new(p).exists())
    {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-env=BUILD_GIT_COMMIT={commit}");
}
