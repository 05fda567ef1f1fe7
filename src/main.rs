//! The `binlog-server` command line: parse, then hand over to `app`. Nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use binlog_server::config::{self, ENV_CONFIG_FILE, Settings};
use binlog_server::meta::{self, MetaDsn};

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
    let cli = Cli::parse();
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
    }
}

fn migrate(settings: Settings, action: MigrateAction, dsn: Option<String>) -> ExitCode {
    let text = dsn.unwrap_or_else(|| settings.meta_dsn.expose().to_string());
    let dsn = match MetaDsn::parse(&text, &settings.data_dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("binlog-server: invalid meta DSN: {e}");
            return ExitCode::from(2);
        }
    };
    let run = || -> Result<(), meta::StoreError> {
        let pool = meta::build_pool(&dsn, 1)?;
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
                println!("{dsn}: {}", if st.is_current() { "up to date" } else { "NOT up to date" });
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("binlog-server: migrate failed: {e}");
            ExitCode::from(1)
        }
    }
}
