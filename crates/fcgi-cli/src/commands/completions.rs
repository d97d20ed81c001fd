//! `fcgi completions SHELL`: the completion script for a shell, generated
//! from the command line's definition (clap_complete), on standard output.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::shared::failure::Failure;
use crate::shared::output::write_stdout;

const COMPLETIONS_HELP: &str = "\
Prints the script on standard output; install it where the shell looks
(create the directory first if missing):

  bash:        fcgi completions bash > ~/.local/share/bash-completion/completions/fcgi
  zsh:         fcgi completions zsh > ~/.zfunc/_fcgi
               (and in ~/.zshrc, before `compinit`: fpath=(~/.zfunc $fpath))
  fish:        fcgi completions fish > ~/.config/fish/completions/fcgi.fish
  elvish:      eval (fcgi completions elvish | slurp)
               (in ~/.config/elvish/rc.elv)
  powershell:  fcgi completions powershell >> $PROFILE

A new shell then completes fcgi's commands and options. Exit codes: 0, 1
when standard output cannot be written, 2 for an unknown shell.";

/// `fcgi completions`.
#[derive(Debug, Args)]
#[command(after_help = COMPLETIONS_HELP)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// The completion script of `fcgi` for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "fcgi", &mut script);
    script
}

/// `fcgi completions`.
pub fn run(args: &CompletionsArgs) -> Result<(), Failure> {
    // Generated in memory first: clap_complete panics when its writer
    // fails, and a closed standard output is an error to report.
    let script = script(args.shell);
    write_stdout(&script, "the completion script to standard output")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::subcommand_names;

    #[test]
    fn the_bash_script_offers_every_command_first() {
        let text = String::from_utf8(script(Shell::Bash)).unwrap();
        let top = text
            .lines()
            .find(|line| {
                line.trim_start()
                    .starts_with("opts=\"-h -V --help --version ")
            })
            .unwrap_or_else(|| panic!("no top-level opts line in\n{text}"));
        let offered: Vec<&str> = top
            .trim()
            .trim_start_matches("opts=\"")
            .trim_end_matches('"')
            .split(' ')
            .collect();
        let definition = Cli::command();
        for name in subcommand_names(&definition) {
            assert!(offered.contains(&name), "{name} not in {offered:?}");
        }
    }
}
