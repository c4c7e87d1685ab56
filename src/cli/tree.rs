//! The command tree as users meet it beyond `--help`: shell completions and manual pages made
//! from it, and a variable for every flag.
//!
//! Every flag can be set from the environment, and `--help` says how: a flag without an `env`
//! of its own (such as `LEDGERLINE_BATCH_POSTINGS`) takes `LEDGERLINE_<COMMAND>_<FLAG>`, with
//! the command's path in capitals and `-` as `_`: `ledgerline report holds --limit` is
//! `LEDGERLINE_REPORT_HOLDS_LIMIT` (the name comes from the flag's field: `verify --archive` is
//! `LEDGERLINE_VERIFY_ARCHIVES`; `--help` shows each). A flag on the command line wins over its
//! variable; `--help` shows the variable's name, not its value. Not from the environment, on
//! purpose: the flags of `replay` and `prune` (what to move or delete) and the switches
//! `--force`, `--dry-run` and `--openapi`.

use clap::{Arg, Command, CommandFactory, FromArgMatches};

use super::Cli;

/// The command line, with variables for every flag, parsed (exits with clap's message on an
/// error, as `Cli::parse` does).
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The clap tree of `Cli` with a variable for every flag.
pub fn command() -> Command {
    with_env(Cli::command(), "LEDGERLINE")
}

/// Commands that move positions or delete records: their flags come from the command line
/// only, never from a variable left behind in the environment.
const COMMAND_LINE_ONLY_COMMANDS: &[&str] = &["LEDGERLINE_REPLAY", "LEDGERLINE_PRUNE"];
/// Switches that turn a safety check off or change what a command is: command line only.
const COMMAND_LINE_ONLY_FLAGS: &[&str] = &["force", "dry_run", "openapi"];

fn with_env(command: Command, prefix: &str) -> Command {
    let command_line_only = COMMAND_LINE_ONLY_COMMANDS.contains(&prefix);
    let command = command.mut_args(|arg| {
        let id = arg.get_id().as_str();
        if arg.get_env().is_some()
            || arg.is_positional()
            || command_line_only
            || COMMAND_LINE_ONLY_FLAGS.contains(&id)
        {
            arg
        } else {
            let name = format!("{prefix}_{}", shout(arg.get_id().as_str()));
            // `--help` names the variable but never prints its value.
            arg.env(name).hide_env_values(true)
        }
    });
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    subcommands.into_iter().fold(command, |command, name| {
        let prefix = format!("{prefix}_{}", shout(&name));
        command.mut_subcommand(name, |sub| with_env(sub, &prefix))
    })
}

fn shout(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

/// Writes the completion script for `shell` of the whole command tree to standard output.
pub fn completions(shell: clap_complete::Shell) {
    let mut command = command();
    clap_complete::generate(shell, &mut command, "ledgerline", &mut std::io::stdout());
}

/// Writes the manual page (roff) of `ledgerline` or of the command at `path` (e.g. `report
/// holds`, named `ledgerline-report-holds`) to standard output.
pub fn man_page(path: &[String]) -> anyhow::Result<()> {
    let mut page = command();
    page.build();
    let mut name = String::from("ledgerline");
    for part in path {
        page = page
            .find_subcommand(part)
            .ok_or_else(|| anyhow::anyhow!("no command {name} {part}"))?
            .clone();
        name = format!("{name}-{part}");
    }
    clap_mangen::Man::new(page.name(name)).render(&mut std::io::stdout().lock())?;
    Ok(())
}

/// Every flag of every command, with its variable (for the tests and the docs).
pub fn every_flag(command: &Command) -> Vec<(String, &Arg)> {
    fn walk<'a>(command: &'a Command, path: String, out: &mut Vec<(String, &'a Arg)>) {
        for arg in command.get_arguments().filter(|a| !a.is_positional()) {
            out.push((path.clone(), arg));
        }
        for sub in command.get_subcommands() {
            walk(sub, format!("{path} {}", sub.get_name()), out);
        }
    }
    let mut out = Vec::new();
    walk(command, command.get_name().to_string(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_a_variable_and_help_shows_it() {
        let mut command = command();
        command.build();
        let flags = every_flag(&command);
        assert!(flags.len() > 100, "only {} flags", flags.len());
        let builtin = |a: &Arg| matches!(a.get_id().as_str(), "help" | "version");
        let name = |(path, a): &(String, &Arg)| format!("{path} --{}", a.get_id());
        let without: Vec<String> = flags
            .iter()
            .filter(|(_, a)| !builtin(a) && a.get_env().is_none())
            .map(name)
            .collect();
        let explicit = |flag: &String| {
            flag.starts_with("ledgerline replay ")
                || flag.starts_with("ledgerline prune ")
                || COMMAND_LINE_ONLY_FLAGS
                    .iter()
                    .any(|f| flag.ends_with(&format!("--{f}")))
        };
        let missing: Vec<&String> = without.iter().filter(|f| !explicit(f)).collect();
        assert!(missing.is_empty(), "flags without a variable: {missing:?}");
        for flag in [
            "ledgerline replay --force",
            "ledgerline replay --to-offset",
            "ledgerline api --openapi",
        ] {
            let flag = flag.replace("--to-offset", "--to_offset");
            assert!(
                without.contains(&flag),
                "{flag} must be command line only: {without:?}"
            );
        }
        let mut holds = command
            .find_subcommand_mut("report")
            .and_then(|r| r.find_subcommand_mut("holds"))
            .expect("report holds")
            .clone();
        let help = holds.render_long_help().to_string();
        assert!(
            help.contains("[env: LEDGERLINE_REPORT_HOLDS_LIMIT]"),
            "{help}"
        );
    }

    #[test]
    fn completions_and_man_pages_come_from_the_same_tree() {
        let mut script = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut command(),
            "ledgerline",
            &mut script,
        );
        let script = String::from_utf8(script).unwrap();
        for word in [
            "trial-balance",
            "--event-format",
            "--group-instance-id",
            "completions",
        ] {
            assert!(script.contains(word), "bash completion lacks {word}");
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(command()).render(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH ledgerline"),
            "{page}"
        );
        assert!(page.contains("reporter"), "the page lists the commands");
    }
}
