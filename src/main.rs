//! The `binlog-server` command line: parse, then hand over to `app`. Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use binlog_server::cli_docs;
use binlog_server::config::{self, ENV_CONFIG_FILE, Settings};
use binlog_server::meta::{self, MetaDsn};
use binlog_server::secret::Secret;

#[derive(Parser)]
#[command(
    name = "binlog-server",
    version,
    about = "Pulls MySQL/MariaDB binlogs into durable, byte-identical local files"
)]
struct Cli {
    /// YAML configuration file (environment variables BINLOG_SERVER_* override it).
    #[arg(long, global = true, env = ENV_CONFIG_FILE)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Manage the metadata schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
        /// Metadata database (default: meta_dsn from the configuration).
        #[arg(long, global = true)]
        meta_dsn: Option<String>,
    },
    /// Check the data directory against the metadata (read-only, safe while the server runs):
    /// sealed files' size and sha256, the open file against the checkpoint, orphan files.
    /// With --repair (server stopped): orphans moved to .stale/, damaged sealed files restored
    /// from the bucket's verified copy, the rest explained. Exit 0: all well (or all repaired);
    /// 3: problems found (or left after the repair); 4: --repair refused, a server holds the
    /// data directory; 1: the check could not run.
    Doctor {
        /// Check only this task.
        #[arg(long)]
        task: Option<i64>,
        /// Print one JSON document instead of lines.
        #[arg(long)]
        json: bool,
        /// Repair what can be repaired (never deletes: what is moved away goes to
        /// {data_dir}/.stale/doctor-<time>/). Refused while a server runs on the data directory.
        #[arg(long)]
        repair: bool,
        /// Metadata database (default: meta_dsn from the configuration).
        #[arg(long)]
        meta_dsn: Option<String>,
    },
    /// Import existing binlog files (a `mysqlbinlog --raw` directory, a backup, a copy of a
    /// server's binlogs) into a task's archive. Each file is verified whole (framing, CRC32,
    /// log_pos chain) and must continue the task's archive from the same server; a refused file
    /// leaves nothing behind. The task must be stopped (or ARCHIVE_ONLY). Exit 0: imported; 1:
    /// refused or failed (one line saying which file, where and why).
    Import {
        /// The task to add the files to.
        #[arg(long)]
        task: i64,
        /// Binlog files, or folders whose `name.NNNNNN` files are all imported (in name order).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the report as one JSON document.
        #[arg(long)]
        json: bool,
        /// MySQL: the server_uuid of the server that wrote the files, for files that do not
        /// say (a server with gtid_mode=OFF writes only anonymous transactions). Files that
        /// carry their server's uuid must agree with it.
        #[arg(long)]
        source_uuid: Option<String>,
    },
    /// Plan a point-in-time replay through a running server's API; print the decoder command
    /// (or, with --fetch, download the files and print the command over them).
    Replay(Box<ReplayCli>),
    /// Print the shell completion script (e.g. `binlog-server completions bash >
    /// /etc/bash_completion.d/binlog-server`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into --dir.
    Man {
        /// Write binlog-server.1 and binlog-server-<command>.1 here instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("stop").required(true).args(["stop_datetime", "stop_gtid", "stop_file"])))]
struct ReplayCli {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Task id.
    #[arg(long)]
    task: i64,
    /// API bearer token. On the command line it is visible to every local user (ps, /proc):
    /// prefer the BINLOG_SERVER_API_TOKEN environment variable or --token-file.
    #[arg(long, env = "BINLOG_SERVER_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the API bearer token from this file (one trailing newline is ignored); it wins over
    /// --token and BINLOG_SERVER_API_TOKEN.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Start at this source file (with --start-pos), as a --master-data dump records it.
    #[arg(long, requires = "start_pos")]
    start_file: Option<String>,
    #[arg(long, requires = "start_file")]
    start_pos: Option<u64>,
    /// Start after this GTID state (what the snapshot holds).
    #[arg(long)]
    start_gtid_set: Option<String>,
    /// Start at this time (UTC: RFC 3339 or 'YYYY-MM-DD HH:MM:SS').
    #[arg(long)]
    start_datetime: Option<String>,
    /// Stop before this time (UTC: RFC 3339 or 'YYYY-MM-DD HH:MM:SS').
    #[arg(long)]
    stop_datetime: Option<String>,
    /// Stop before this GTID's transaction.
    #[arg(long)]
    stop_gtid: Option<String>,
    /// Stop at this source file and position (with --stop-pos).
    #[arg(long, requires = "stop_pos")]
    stop_file: Option<String>,
    #[arg(long, requires = "stop_file")]
    stop_pos: Option<u64>,
    /// The source whose files --start-file and --stop-file name, when a name exists under
    /// several sources (after a switchover).
    #[arg(long)]
    source_identity: Option<String>,
    /// The same for --start-file only.
    #[arg(long, requires = "start_file")]
    start_source_identity: Option<String>,
    /// The same for --stop-file only.
    #[arg(long, requires = "stop_file")]
    stop_source_identity: Option<String>,
    /// Download the files into this directory and print the command over the copies.
    #[arg(long)]
    fetch: Option<PathBuf>,
}

impl ReplayCli {
    fn into_args(self) -> Result<binlog_server::pitr::client::ReplayArgs, String> {
        let token = match &self.token_file {
            Some(path) => {
                let t =
                    Secret::from_file(path).map_err(|e| format!("cannot read --token-file {}: {e}", path.display()))?;
                if t.expose().trim().is_empty() {
                    return Err(format!("--token-file {} is empty", path.display()));
                }
                Some(t)
            }
            None => self.token.clone().filter(|t| !t.is_empty()).map(Secret::new),
        };
        let mut params = Vec::new();
        let mut put = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                params.push((k, v));
            }
        };
        put("start_file", self.start_file);
        put("start_pos", self.start_pos.map(|p| p.to_string()));
        put("start_gtid_set", self.start_gtid_set);
        put("start_datetime", self.start_datetime);
        put("stop_datetime", self.stop_datetime);
        put("stop_gtid", self.stop_gtid);
        put("stop_file", self.stop_file);
        put("stop_pos", self.stop_pos.map(|p| p.to_string()));
        put("source_identity", self.source_identity);
        put("start_source_identity", self.start_source_identity);
        put("stop_source_identity", self.stop_source_identity);
        Ok(binlog_server::pitr::client::ReplayArgs {
            server: self.server,
            task: self.task,
            token,
            params,
            fetch: self.fetch,
        })
    }
}

#[derive(Subcommand, Clone, Copy)]
enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Revert the most recent migration.
    Down,
    /// Show applied and pending migrations.
    Status,
}

fn load_settings(cli: &Cli) -> Result<Settings, ExitCode> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let purpose = match cli.command {
        None | Some(Command::Serve) => config::Purpose::Serve,
        Some(_) => config::Purpose::Tool,
    };
    config::load(cli.config.as_deref(), &env, purpose).map_err(|e| {
        eprintln!("binlog-server: configuration error: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    // Before anything is created (log, data_dir, meta.db, fetched files): private to the owner.
    binlog_server::fsmode::restrict_umask();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Generated from this definition; no configuration is read.
    match &cli.command {
        Some(Command::Completions { shell }) => {
            cli_docs::completions(*shell, &mut Cli::command(), &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Some(Command::Man { dir }) => return man(dir.as_deref()),
        _ => {}
    }
    // A client of the API: no configuration of this host is needed.
    if let Some(Command::Replay(r)) = cli.command.take_if(|c| matches!(c, Command::Replay(_))) {
        let token_in_argv = matches
            .subcommand_matches("replay")
            .is_some_and(|m| m.value_source("token") == Some(clap::parser::ValueSource::CommandLine));
        if token_in_argv {
            eprintln!(
                "binlog-server replay: warning: --token is visible to every local user (ps, /proc); use \
                 --token-file or BINLOG_SERVER_API_TOKEN"
            );
        }
        let args = match r.into_args() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("binlog-server replay: {e}");
                return ExitCode::from(2);
            }
        };
        return match binlog_server::pitr::client::run(&args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("binlog-server replay: {e}");
                ExitCode::from(1)
            }
        };
    }
    let settings = match load_settings(&cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            // Outside the async runtime: the OTLP exporter's blocking client must be built and
            // dropped on a plain thread.
            let tracing = match binlog_server::telemetry::tracing::init(&settings.tracing) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("binlog-server: {e}");
                    return ExitCode::from(1);
                }
            };
            let system = actix_rt::System::new();
            let result = system.block_on(binlog_server::app::run(settings));
            drop(tracing);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("binlog-server: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Migrate { action, meta_dsn } => migrate(settings, action, meta_dsn),
        Command::Doctor { task, json, repair, meta_dsn } => doctor(settings, task, json, repair, meta_dsn),
        Command::Import { task, paths, json, source_uuid } => {
            import(settings, task, &paths, json, source_uuid.as_deref())
        }
        // Taken before the configuration is loaded.
        Command::Replay(_) | Command::Completions { .. } | Command::Man { .. } => ExitCode::from(2),
    }
}

fn man(dir: Option<&std::path::Path>) -> ExitCode {
    let written = match dir {
        None => cli_docs::man_page(Cli::command(), &mut std::io::stdout()).map(|()| Vec::new()),
        Some(dir) => cli_docs::write_man_pages(Cli::command(), dir),
    };
    match written {
        Ok(paths) => {
            for p in paths {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("binlog-server man: {e}");
            ExitCode::from(1)
        }
    }
}

/// The metadata DSN of `--meta-dsn` or the configuration, parsed; exit code 2 when invalid.
fn meta_dsn(settings: &Settings, flag: Option<String>) -> Result<MetaDsn, ExitCode> {
    let text = flag.unwrap_or_else(|| settings.meta_dsn.expose().to_string());
    MetaDsn::parse(&text, &settings.data_dir).map_err(|e| {
        eprintln!("binlog-server: invalid meta DSN: {e}");
        ExitCode::from(2)
    })
}

fn migrate(settings: Settings, action: MigrateAction, dsn: Option<String>) -> ExitCode {
    let dsn = match meta_dsn(&settings, dsn) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let run = || -> Result<ExitCode, meta::StoreError> {
        let pool = meta::build_pool(&dsn, 1, meta::ConnTuning::default())?;
        let mut conn = pool.get()?;
        match action {
            MigrateAction::Up => {
                let done = meta::migrate_up(&mut conn)?;
                if done.is_empty() {
                    println!("{dsn}: schema is up to date");
                }
                for v in done {
                    println!("{dsn}: applied {v}");
                }
            }
            MigrateAction::Down => match meta::migrate_down(&mut conn)? {
                Some(v) => println!("{dsn}: reverted {v}"),
                None => println!("{dsn}: nothing to revert"),
            },
            MigrateAction::Status => {
                let st = meta::migration_status(&mut conn)?;
                for v in &st.applied {
                    println!("applied  {v}");
                }
                for v in &st.pending {
                    println!("pending  {v}");
                }
                for v in &st.unknown {
                    println!("unknown  {v} (applied by a newer binlog-server)");
                }
                let verdict = migrate_status_verdict(&st);
                println!("{dsn}: {}", verdict.text);
                return Ok(ExitCode::from(verdict.code));
            }
        }
        Ok(ExitCode::SUCCESS)
    };
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("binlog-server: migrate failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// `doctor` exit code when it found problems (an error that stopped the check is 1).
const EXIT_DOCTOR_FOUND_PROBLEMS: u8 = 3;
/// `doctor --repair` exit code when a server holds the data directory.
const EXIT_DOCTOR_REFUSED: u8 = 4;

/// What one doctor pass saw: the tasks checked, each task's facts, and orphan task directories.
struct DoctorPass {
    tasks_checked: usize,
    facts: Vec<binlog_server::doctor::TaskFacts>,
    orphan_dirs: Vec<binlog_server::doctor::Finding>,
}

impl DoctorPass {
    fn findings(&self) -> Vec<binlog_server::doctor::Finding> {
        let mut all: Vec<_> = self.facts.iter().flat_map(|f| f.report().findings).collect();
        all.extend(self.orphan_dirs.iter().cloned());
        all
    }

    fn files_checked(&self) -> usize {
        self.facts.iter().map(|f| f.catalog.len()).sum()
    }
}

fn doctor_pass(settings: &Settings, dsn: &MetaDsn, task: Option<i64>) -> Result<DoctorPass, String> {
    use binlog_server::doctor;
    use binlog_server::domain::TaskId;
    let mut catalog = meta::CatalogReader::open(dsn).map_err(|e| e.to_string())?;
    let ids = catalog.task_ids().map_err(|e| e.to_string())?;
    let ids = match task {
        Some(t) if ids.contains(&TaskId(t)) => vec![TaskId(t)],
        Some(t) => return Err(format!("no task {t} in {dsn}")),
        None => ids,
    };
    let facts = ids
        .iter()
        .map(|&id| doctor::gather(&mut catalog, &settings.data_dir, id).map_err(|e| format!("task {id}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let orphan_dirs = if task.is_none() {
        let dirs = doctor::data_dir_subdirs(&settings.data_dir).map_err(|e| e.to_string())?;
        doctor::orphan_task_dirs(&ids, &dirs)
    } else {
        Vec::new()
    };
    Ok(DoctorPass { tasks_checked: ids.len(), facts, orphan_dirs })
}

fn doctor(settings: Settings, task: Option<i64>, json: bool, repair: bool, dsn: Option<String>) -> ExitCode {
    let dsn = match meta_dsn(&settings, dsn) {
        Ok(d) => d,
        Err(code) => return code,
    };
    // Taken before the first look and held to the end: no server changes the files while the
    // repair decides about them and carries its decisions out.
    let _lock = if repair {
        match binlog_server::data_lock::DataDirLock::exclusive(&settings.data_dir) {
            Ok(l) => Some(l),
            Err(e @ binlog_server::data_lock::LockError::Held { .. }) => {
                eprintln!(
                    "binlog-server doctor --repair: refused: a server is running on {} ({e}); stop it (e.g. \
                     `systemctl stop binlog-server`) and run `doctor --repair` again. `doctor` without --repair \
                     is safe beside it.",
                    settings.data_dir.display()
                );
                return ExitCode::from(EXIT_DOCTOR_REFUSED);
            }
            Err(e) => {
                eprintln!("binlog-server doctor --repair: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let pass = match doctor_pass(&settings, &dsn, task) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("binlog-server doctor: {e}");
            return ExitCode::from(1);
        }
    };
    if repair {
        return doctor_repair(&settings, &dsn, task, json, pass);
    }
    let findings = pass.findings();
    let files = pass.files_checked();
    if json {
        let doc = serde_json::json!({
            "ok": findings.is_empty(),
            "tasks_checked": pass.tasks_checked,
            "files_checked": files,
            "findings": findings,
        });
        println!("{doc:#}");
    } else {
        for f in &findings {
            println!("task {} file {}: {}", f.task_id, f.file, f.problem);
        }
        let verdict = if findings.is_empty() { "all well" } else { "PROBLEMS FOUND" };
        println!(
            "doctor: {verdict}: {} task(s), {files} catalogued file(s), {} finding(s) in {}",
            pass.tasks_checked,
            findings.len(),
            settings.data_dir.display()
        );
    }
    if findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_DOCTOR_FOUND_PROBLEMS) }
}

/// Repairs what `pass` found, then checks again: the exit code is the second check's.
fn doctor_repair(settings: &Settings, dsn: &MetaDsn, task: Option<i64>, json: bool, pass: DoctorPass) -> ExitCode {
    use binlog_server::doctor::{self, repair};
    let mut notes = Vec::new();
    let bucket = if settings.upload.enabled {
        let built =
            binlog_server::upload::ObjectStore::new(&settings.upload).map_err(|e| e.to_string()).and_then(|o| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| (o, rt))
                    .map_err(|e| e.to_string())
            });
        match built {
            Ok(b) => Some(b),
            Err(e) => {
                notes.push(format!("the bucket is out of reach for this run: {e}"));
                None
            }
        }
    } else {
        None
    };
    let repairer = repair::Repairer {
        data_dir: &settings.data_dir,
        stale: repair::stale_dir(&settings.data_dir, chrono::Utc::now()),
        bucket: bucket.as_ref().map(|(o, rt)| (o, rt)),
    };
    let mut steps = Vec::new();
    for facts in &pass.facts {
        for f in &facts.report().findings {
            steps.push(repairer.run(Some(facts), f));
        }
        let tails = doctor::open_tails(facts.task_id, &facts.catalog, facts.checkpoint.as_ref(), &facts.disk);
        steps.extend(tails.iter().map(repair::tail_step));
    }
    for f in &pass.orphan_dirs {
        steps.push(repairer.run(None, f));
    }
    let after = match doctor_pass(settings, dsn, task) {
        Ok(p) => p.findings(),
        Err(e) => {
            eprintln!("binlog-server doctor --repair: the check after the repair could not run: {e}");
            return ExitCode::from(1);
        }
    };
    let count = |pred: fn(&repair::Outcome) -> bool| steps.iter().filter(|s| pred(&s.outcome)).count();
    let repaired = count(|o| matches!(o, repair::Outcome::Done { .. }));
    let not_repaired = count(|o| matches!(o, repair::Outcome::NotRepaired { .. }));
    if json {
        let doc = serde_json::json!({
            "ok": after.is_empty(),
            "tasks_checked": pass.tasks_checked,
            "files_checked": pass.files_checked(),
            "findings": pass.findings(),
            "repairs": steps,
            "notes": notes,
            "remaining": after,
            "stale_dir": repairer.stale,
        });
        println!("{doc:#}");
    } else {
        for n in &notes {
            println!("doctor --repair: note: {n}");
        }
        for s in &steps {
            println!("{s}");
        }
        for f in &after {
            println!("still: task {} file {}: {}", f.task_id, f.file, f.problem);
        }
        let verdict = if after.is_empty() {
            "all well".to_string()
        } else {
            format!("PROBLEMS REMAIN: {} finding(s)", after.len())
        };
        println!(
            "doctor --repair: {repaired} repaired, {not_repaired} not repaired; after the repair: {verdict} in {}",
            settings.data_dir.display()
        );
    }
    if after.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_DOCTOR_FOUND_PROBLEMS) }
}

fn import(settings: Settings, task: i64, paths: &[PathBuf], json: bool, source_uuid: Option<&str>) -> ExitCode {
    use binlog_server::import::run;
    let run = || -> Result<run::Report, String> {
        if let Some(u) = source_uuid {
            binlog_server::binlog::gtid::Uuid::parse(u).map_err(|e| format!("--source-uuid {u:?}: {}", e.0))?;
        }
        let mut offers = Vec::new();
        for p in paths {
            let files = if p.is_dir() {
                let found = run::binlog_files_in(p).map_err(|e| format!("{}: {e}", p.display()))?;
                if found.is_empty() {
                    return Err(format!("{}: no binlog file (name.NNNNNN) in this folder", p.display()));
                }
                found
            } else {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                let name = binlog_server::binlog::name::BinlogFileName::parse(name)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                vec![(name, p.clone())]
            };
            for (name, path) in files {
                let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                offers.push(run::Offer { name, file, shown: path.display().to_string() });
            }
        }
        let (store, _watch) = binlog_server::app::open_store(&settings).map_err(|e| format!("{e:#}"))?;
        run::import_from(&store, &settings.data_dir, binlog_server::domain::TaskId(task), offers, source_uuid)
            .map_err(|e| e.to_string())
    };
    match run() {
        Ok(report) if json => {
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            for f in &report.files {
                println!("imported {} ({}, {} bytes)", f.file, f.state, f.size);
                if let Some(t) = &f.truncated {
                    println!("  truncated: {t}");
                }
                if let Some(g) = &f.gap {
                    println!("  gap before it: {g}");
                }
            }
            println!(
                "task {}: {} file(s) from source {}; checkpoint {}:{}",
                report.task_id,
                report.files.len(),
                report.source_identity,
                report.checkpoint_file,
                report.checkpoint_pos
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("binlog-server import: {e}");
            ExitCode::from(1)
        }
    }
}

/// `migrate status` exit code when migrations are pending (`migrate up` would apply them).
const EXIT_MIGRATIONS_PENDING: u8 = 3;
/// `migrate status` exit code when the schema is ahead of this binary (a newer one migrated it).
const EXIT_SCHEMA_AHEAD: u8 = 4;

/// What `migrate status` prints last and exits with, for scripts and health checks.
struct StatusVerdict {
    code: u8,
    text: &'static str,
}

fn migrate_status_verdict(st: &meta::MigrationStatus) -> StatusVerdict {
    // Ahead wins over pending: `migrate up` cannot fix it, an upgrade of the binary can.
    if !st.unknown.is_empty() {
        StatusVerdict { code: EXIT_SCHEMA_AHEAD, text: "NOT up to date: the schema is newer than this binary" }
    } else if !st.pending.is_empty() {
        StatusVerdict { code: EXIT_MIGRATIONS_PENDING, text: "NOT up to date: run `binlog-server migrate up`" }
    } else {
        StatusVerdict { code: 0, text: "up to date" }
    }
}
