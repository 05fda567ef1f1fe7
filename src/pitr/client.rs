//! `binlog-server replay`: asks a running server for a replay plan and prints it, or downloads
//! the plan's files into a directory and prints the command to run over them. Talks HTTP only
//! (the API), never to the metadata database or the data directory.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use crate::pitr::plan::{self, Plan};

/// What the command line gave.
#[derive(Debug, Clone, Default)]
pub struct ReplayArgs {
    /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    pub task: i64,
    pub token: Option<String>,
    /// `(name, value)` query parameters of `/replay` (start_*, stop_*, source_identity).
    pub params: Vec<(&'static str, String)>,
    /// Download the files here and print the command over the downloaded copies.
    pub fetch: Option<PathBuf>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn get(args: &ReplayArgs, path: &str, query: &[(&str, String)]) -> Result<ureq::http::Response<ureq::Body>, String> {
    let url = format!("{}{path}", args.server.trim_end_matches('/'));
    let mut req = agent().get(&url);
    for (k, v) in query {
        req = req.query(*k, v);
    }
    if let Some(t) = &args.token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut resp = req.call().map_err(|e| format!("GET {url}: {e}"))?;
    if resp.status() != 200 {
        let status = resp.status();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| Some(format!("{} ({})", v["error"].as_str()?, v["code"].as_str()?)))
            .unwrap_or(body);
        return Err(format!("GET {path}: {status}: {msg}"));
    }
    Ok(resp)
}

/// Runs the command; returns what to print on stdout.
pub fn run(args: &ReplayArgs) -> Result<String, String> {
    let mut resp = get(args, &format!("/api/tasks/{}/replay", args.task), &args.params)?;
    let plan: Plan = resp.body_mut().read_json().map_err(|e| format!("reading the plan: {e}"))?;
    let mut out = String::new();
    let Some(dir) = &args.fetch else {
        for f in &plan.files {
            out.push_str(&format!("# {} ({} bytes, source {})\n", f.name, f.size, f.source_identity));
        }
        out.push_str(&plan.command);
        out.push('\n');
        return Ok(out);
    };
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths = Vec::new();
    for f in &plan.files {
        let path = dir.join(&f.name);
        let query = [("source_identity", f.source_identity.clone())];
        let mut resp = get(args, &format!("/api/tasks/{}/files/{}", args.task, f.name), &query)?;
        let tmp = dir.join(format!(".{}.part", f.name));
        let mut file = fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let n = io::copy(&mut resp.body_mut().as_reader(), &mut file).map_err(|e| format!("{}: {e}", f.name))?;
        if n != f.size {
            return Err(format!("{}: received {n} bytes, the plan says {}", f.name, f.size));
        }
        file.flush().and_then(|_| file.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push_str(&format!("# fetched {} ({n} bytes)\n", path.display()));
        paths.push(path.display().to_string());
    }
    out.push_str(&plan::command(&plan, &paths));
    out.push('\n');
    Ok(out)
}
