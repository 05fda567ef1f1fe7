//! `binlog-server replay`: asks a running server for a replay plan and prints it, or downloads
//! the plan's files into a directory (a folder per source when the plan crosses a switchover)
//! and prints the command to run over them. Talks HTTP only (the API), never to the metadata
//! database or the data directory. What the server answers is input like any other: a file name
//! must be a bare binlog file name, and a source identity a plain name, before either becomes a
//! path or a line of output.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use crate::pitr::command;
use crate::pitr::files;
use crate::pitr::plan::{Plan, PlanFile};
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

/// A path component a server may name (a source identity): no separator, no dot-dot.
fn safe_component(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Refuses a plan unless every file it names is a bare binlog file name, by the rule the server
/// applies to names it serves (`pitr::files::validate_name`), and every source identity a plain
/// name: a server, or anyone in the middle of plain http, must not be able to make `--fetch`
/// write outside its directory, nor put a line of its own into the output.
fn check_names(plan: &Plan) -> Result<(), String> {
    let shown = |s: &str| s.chars().take(64).collect::<String>();
    for f in &plan.files {
        if let Err(e) = files::validate_name(&f.name) {
            return Err(format!(
                "the plan names {:?}, which is not a file name ({e}): refusing the whole plan, nothing was downloaded",
                shown(&f.name)
            ));
        }
        if !safe_component(&f.source_identity) {
            return Err(format!(
                "the plan names the source {:?}, which is not a plain name: refusing the whole plan, nothing was \
                 downloaded",
                shown(&f.source_identity)
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
    let segments = command::segments(&plan);
    if segments.len() > 1 {
        for (k, s) in segments.iter().enumerate() {
            out.push_str(&format!(
                "# segment {} of {}: source {}, {} file(s){}\n",
                k + 1,
                segments.len(),
                s.source_identity,
                s.files.len(),
                s.exclude_gtids.as_deref().map(|g| format!(", leaving out {g}")).unwrap_or_default()
            ));
        }
    }
    let Some(dir) = &args.fetch else {
        for f in &plan.files {
            out.push_str(&format!("# {} ({} bytes, source {})\n", f.name, f.size, f.source_identity));
        }
        // Built here from the plan's typed fields, never the server's `command` text: a hostile
        // server (or anyone in the middle of plain http) must not choose what the operator runs.
        out.push_str(&command::whole(&plan, &command::at_server));
        out.push('\n');
        return Ok(out);
    };
    let local = |f: &PlanFile| dir.join(plan.copy_path(f));
    for f in &plan.files {
        let path = local(f);
        let parent = path.parent().unwrap_or(dir);
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let query = [("source_identity", f.source_identity.clone())];
        let mut resp = get(args, &format!("/api/tasks/{}/files/{}", args.task, f.name), &query)?;
        let tmp = parent.join(format!(".{}.part", f.name));
        let mut file = fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let n = io::copy(&mut resp.body_mut().as_reader(), &mut file).map_err(|e| format!("{}: {e}", f.name))?;
        if n != f.size {
            return Err(format!("{}: received {n} bytes, the plan says {}", f.name, f.size));
        }
        file.flush().and_then(|_| file.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push_str(&format!("# fetched {} ({n} bytes)\n", path.display()));
    }
    out.push_str(&command::whole(&plan, &|f| local(f).display().to_string()));
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Flavor;
    use crate::pitr::Location;

    fn plan(files: &[(&str, &str)]) -> Plan {
        Plan {
            flavor: Flavor::Mariadb,
            files: files
                .iter()
                .map(|(name, source)| PlanFile {
                    name: name.to_string(),
                    source_identity: source.to_string(),
                    size: 1,
                    location: Location::Object { key: "k".into() },
                    sealed: None,
                })
                .collect(),
            segments: Vec::new(),
            start_position: None,
            stop_position: None,
            start_datetime: None,
            stop_datetime: None,
            command: String::new(),
        }
    }

    #[test]
    fn a_plan_is_refused_when_any_name_is_not_a_file_name() {
        let good = ("mariadb-bin.000001", "mariadb-1-0");
        assert!(check_names(&plan(&[good, ("mariadb-bin.000002", "mariadb-2-0")])).is_ok());
        for bad in ["/../../tmp/x", "../x", "a/b.000001", "..", "", "x.000001\nrm -rf ~", ".hidden.000001"] {
            let err = check_names(&plan(&[good, (bad, "mariadb-1-0")])).unwrap_err();
            assert!(err.contains("not a file name"), "{bad:?}: {err}");
        }
        for bad in ["../x", "a/b", "s\n# rm -rf ~", ""] {
            let err = check_names(&plan(&[good, ("mariadb-bin.000002", bad)])).unwrap_err();
            assert!(err.contains("not a plain name"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn only_plain_components_become_paths() {
        for ok in ["mariadb-2-0", "3e11fa47-71ca-11e1-9e33-c80aa9429562"] {
            assert!(safe_component(ok), "{ok}");
        }
        for bad in ["", "..", ".hidden", "a/b", "a\\b", "../x", "a b"] {
            assert!(!safe_component(bad), "{bad:?}");
        }
    }
}
