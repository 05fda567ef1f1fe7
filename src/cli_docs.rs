//! Man pages and shell completions, generated from the command-line definition `main.rs` hands
//! over, so they cannot drift from what the binary accepts. The package installs what
//! `binlog-server man --dir` and `binlog-server completions <shell>` print.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

/// The completion script for `shell`.
pub fn completions(shell: Shell, cmd: &mut Command, out: &mut dyn Write) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, cmd, name, out);
}

/// The top page, `binlog-server(1)`: the generated options and commands, then what clap does not
/// know (exit status, environment, files, where the guides are), before the version.
pub fn man_page(cmd: Command, out: &mut dyn Write) -> io::Result<()> {
    let mut generated = Vec::new();
    Man::new(cmd.disable_help_subcommand(true)).manual("binlog-server manual").render(&mut generated)?;
    let generated = String::from_utf8(generated).map_err(io::Error::other)?;
    // No apostrophes in our text: the generated page's preamble handles them for its own part.
    let ours = operator_sections().to_roff();
    let at = generated.find(".SH VERSION").unwrap_or(generated.len());
    out.write_all(&generated.as_bytes()[..at])?;
    out.write_all(ours.as_bytes())?;
    out.write_all(&generated.as_bytes()[at..])
}

/// Writes `binlog-server.1` and one `binlog-server-<command>.1` per command (nested ones too)
/// into `dir`; returns the paths written.
pub fn write_man_pages(cmd: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let top = dir.join(format!("{}.1", cmd.get_name()));
    let mut file = std::fs::File::create(&top)?;
    man_page(cmd.clone(), &mut file)?;
    file.sync_all()?;
    let mut written = vec![top];
    let mut stack: Vec<Command> = cmd.get_subcommands().cloned().collect();
    while let Some(sub) = stack.pop() {
        if sub.is_hide_set() {
            continue;
        }
        stack.extend(sub.get_subcommands().cloned());
        let man = Man::new(sub).manual("binlog-server manual");
        written.push(man.generate_to(dir)?);
    }
    Ok(written)
}

fn section(roff: &mut Roff, title: &str) {
    roff.control("SH", [title]);
}

fn item(roff: &mut Roff, term: &str, text: &str) {
    roff.control("TP", []).text([bold(term)]).text([roman(text)]);
}

fn operator_sections() -> Roff {
    let mut roff = Roff::default();
    section(&mut roff, "EXIT STATUS");
    item(&mut roff, "0", "The service stopped in order (SIGTERM or SIGINT), or the command succeeded.");
    item(&mut roff, "1", "A runtime error: the metadata store, the listener, a migration.");
    item(&mut roff, "2", "Invalid configuration or arguments; the message names the key and where it came from.");
    item(&mut roff, "3", "migrate status: migrations are pending (run migrate up).");
    item(&mut roff, "4", "migrate status: the schema is newer than this binary (upgrade binlog-server).");

    section(&mut roff, "ENVIRONMENT");
    item(&mut roff, "BINLOG_SERVER_CONFIG", "The YAML configuration file, as --config.");
    item(
        &mut roff,
        "BINLOG_SERVER_<SECTION>_<KEY>",
        "Overrides one configuration key, e.g. BINLOG_SERVER_API_AUTH_ENABLED=true. Defaults < file < environment.",
    );
    item(
        &mut roff,
        "NOTIFY_SOCKET",
        "Set by systemd for a Type=notify service: serve sends READY=1 once the listener is bound and the \
         metadata store is open, and STOPPING=1 when the ordered shutdown begins.",
    );

    section(&mut roff, "FILES");
    item(&mut roff, "/etc/binlog-server/config.yaml", "The configuration of the packaged service.");
    item(
        &mut roff,
        "/var/lib/binlog-server",
        "Its data_dir: binlog files, the embedded SQLite metadata (meta.db) and the generated secrets key. \
         Removing or purging the package keeps it.",
    );
    item(
        &mut roff,
        "/usr/lib/systemd/system/binlog-server.service",
        "The unit: runs serve as the binlog-server user, sandboxed by systemd.",
    );

    section(&mut roff, "SEE ALSO");
    roff.text([
        roman("The guides in "),
        italic("/usr/share/doc/binlog-server/"),
        roman(" (configuration, point-in-time recovery, upload, cluster), "),
        bold("systemctl"),
        roman("(1), "),
        bold("journalctl"),
        roman("(1), "),
        bold("mariadb-binlog"),
        roman("(1)."),
    ]);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Command {
        Command::new("binlog-server")
            .version("1.2.3")
            .about("Pulls binlogs")
            .subcommand(Command::new("serve").about("Run the service"))
            .subcommand(
                Command::new("migrate").about("Manage the schema").subcommand(Command::new("up").about("Apply")),
            )
            .subcommand(Command::new("secret").hide(true))
    }

    #[test]
    fn the_top_page_has_the_generated_and_the_operator_sections() {
        let mut out = Vec::new();
        man_page(cli(), &mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.contains(".TH binlog-server 1"), "{page}");
        let headings: Vec<&str> = page.lines().filter_map(|l| l.strip_prefix(".SH ")).collect();
        assert_eq!(
            headings,
            [
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "OPTIONS",
                "SUBCOMMANDS",
                "\"EXIT STATUS\"",
                "ENVIRONMENT",
                "FILES",
                "\"SEE ALSO\"",
                "VERSION"
            ]
        );
        assert_eq!(page.matches(".ds Aq").count(), 2, "one apostrophe preamble (.ie/.el): {page}");
        assert!(page.contains("binlog\\-server\\-migrate(1)"), "commands link to their pages: {page}");
        assert!(!page.contains("binlog\\-server\\-help(1)"), "no page for clap's help command: {page}");
    }

    #[test]
    fn one_page_per_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        let mut names: Vec<String> = write_man_pages(cli(), dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["binlog-server-migrate-up.1", "binlog-server-migrate.1", "binlog-server-serve.1", "binlog-server.1"]
        );
    }

    #[test]
    fn completions_name_the_commands() {
        let mut out = Vec::new();
        completions(Shell::Bash, &mut cli(), &mut out);
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("complete -F _binlog__server"), "{script}");
        assert!(script.contains("binlog__server,migrate)"), "{script}");
    }
}
