//! `binlog-server replay`: asks a running server for a replay plan and prints it, or downloads
//! the plan's files into a directory and prints the command to run over them. Talks HTTP only
//! (the API), never to the metadata database or the data directory. What the server answers is
//! input like any other: a file name must be a bare binlog file name before it becomes a path.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use crate::pitr::files;
use crate::pitr::plan::{self, Plan};
use crate::secret::Secret;

/// What the command line gave.
#[derive(Debug, Clone, Default)]
pub struct ReplayArgs {
    /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    pub task: i64,
    pub token: Option<Secret>,
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
        req = req.header("Authorization", format!("Bearer {}", t.expose()));
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

/// Refuses a plan unless every file it names is a bare binlog file name, by the rule the server
/// applies to names it serves (`pitr::files::validate_name`): a server, or anyone in the middle
/// of plain http, must not be able to make `--fetch` write outside its directory, nor put a
/// line of its own into the output.
fn check_names(plan: &Plan) -> Result<(), String> {
    for f in &plan.files {
        if let Err(e) = files::validate_name(&f.name) {
            let shown: String = f.name.chars().take(64).collect();
            return Err(format!(
                "the plan names {shown:?}, which is not a file name ({e}): refusing the whole plan, nothing was \
                 downloaded"
            ));
        }
    }
    Ok(())
}

/// Runs the command; returns what to print on stdout.
pub fn run(args: &ReplayArgs) -> Result<String, String> {
    let mut resp = get(args, &format!("/api/tasks/{}/replay", args.task), &args.params)?;
    let plan: Plan = resp.body_mut().read_json().map_err(|e| format!("reading the plan: {e}"))?;
    check_names(&plan)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Flavor;
    use crate::pitr::Location;
    use crate::pitr::plan::PlanFile;

    fn plan(names: &[&str]) -> Plan {
        Plan {
            flavor: Flavor::Mariadb,
            files: names
                .iter()
                .map(|n| PlanFile {
                    name: n.to_string(),
                    source_identity: "s".into(),
                    size: 1,
                    location: Location::Object { key: "k".into() },
                })
                .collect(),
            start_position: None,
            stop_position: None,
            start_datetime: None,
            stop_datetime: None,
            command: String::new(),
        }
    }

    #[test]
    fn a_plan_is_refused_when_any_name_is_not_a_file_name() {
        assert!(check_names(&plan(&["mariadb-bin.000001", "mariadb-bin.000002"])).is_ok());
        for bad in ["/../../tmp/x", "../x", "a/b.000001", "..", "", "x.000001\nrm -rf ~", ".hidden.000001"] {
            let err = check_names(&plan(&["mariadb-bin.000001", bad])).unwrap_err();
            assert!(err.contains("not a file name"), "{bad:?}: {err}");
        }
    }
}
