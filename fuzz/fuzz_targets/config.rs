//! `config::load` on an arbitrary YAML file (no environment), for both purposes (serve, tool).
//!
//! Checks: no panic; a configuration that loads also validates and has a usable listen address.
//! The file is written to one temporary path per process. A YAML file can name secret files
//! (`meta_dsn_file`, ...) that `load` reads: the fuzzer runs in a scratch directory (see
//! README.md), and paths under /dev or /proc are skipped so the run cannot block on a device.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use binlog_server::config::{self, Purpose};
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory")).path()
}

fuzz_target!(|data: &[u8]| {
    if data.windows(5).any(|w| w == b"/dev/" || w == b"/proc") || data.windows(4).any(|w| w == b"/sys") {
        return;
    }
    let path = scratch().join("config.yaml");
    {
        let mut f = std::fs::File::create(&path).expect("create the config file");
        f.write_all(data).expect("write the config file");
    }
    for purpose in [Purpose::Tool, Purpose::Serve] {
        if let Ok(s) = config::load(Some(&path), &[], purpose) {
            s.validate().unwrap_or_else(|e| panic!("load accepted a configuration that does not validate: {}", e.message));
            s.listen_socket_addr().expect("validated listen address");
            let _ = format!("{s:?}");
        }
    }
});
