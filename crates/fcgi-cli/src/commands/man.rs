//! `fcgi man [COMMAND]`: manual pages in roff, generated from the command
//! line's definition (clap_mangen), one per command as git and cargo ship
//! them: fcgi(1) lists the commands, fcgi-COMMAND(1) holds a command's
//! options and help (the text of `--help` in its DETAILS section).
//! Printed on standard output, or all written into a directory with
//! `--dir`.

use std::fs;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_mangen::Man;

use crate::cli::{subcommand_names, Cli};
use crate::shared::failure::{Failure, OTHER};
use crate::shared::output::write_stdout;

const MAN_HELP: &str = "\
One page per command: `fcgi man` prints fcgi(1), which lists the commands;
`fcgi man COMMAND` prints fcgi-COMMAND(1), with that command's options and
the text of `fcgi COMMAND --help`. --dir writes them all as files.

Install them where man looks (man-db finds ~/.local/share/man when
~/.local/bin is on PATH; else add it to MANPATH):
  mkdir -p ~/.local/share/man/man1
  fcgi man --dir ~/.local/share/man/man1
  man fcgi; man fcgi-request
or a single page:
  fcgi man > ~/.local/share/man/man1/fcgi.1

Exit codes: 0, 1 when a page cannot be written, 2 for an unknown COMMAND.";

/// `fcgi man`.
#[derive(Debug, Args)]
#[command(after_help = MAN_HELP)]
pub struct ManArgs {
    /// The command whose page to print, fcgi-COMMAND(1); fcgi(1) when left
    /// out.
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
    /// Write fcgi.1 and fcgi-COMMAND.1 for every command into DIR (created
    /// when missing), and print their paths, instead of printing one page.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub dir: Option<PathBuf>,
}

/// The command line as the pages describe it: built, so that each
/// subcommand knows its `fcgi NAME` usage and its `fcgi-NAME` page, and
/// without clap's `help` command, which needs no page.
fn definition() -> clap::Command {
    let mut definition = Cli::command().disable_help_subcommand(true);
    definition.build();
    definition
}

/// A page in roff: fcgi(1) for `None`, fcgi-NAME(1) for a command's name.
pub fn page(command: Option<&str>) -> Result<Vec<u8>, Failure> {
    let definition = definition();
    let source = format!("fcgi {}", env!("CARGO_PKG_VERSION"));
    let described = match command {
        None => definition.clone(),
        Some(name) => match definition.find_subcommand(name) {
            Some(subcommand) => subcommand.clone(),
            None => {
                return Err(Failure::usage(format!(
                    "no command {name:?} has a manual page: give one of {} (or none for fcgi(1))",
                    subcommand_names(&definition).join(", ")
                )))
            }
        },
    };
    let mut roff = Vec::new();
    Man::new(described)
        .source(source)
        .manual("fcgi manual")
        .render(&mut roff)
        .map_err(|e| Failure::new(OTHER, format!("cannot render the manual page: {e}")))?;
    Ok(tidy(&String::from_utf8_lossy(&roff)).into_bytes())
}

/// clap_mangen's page, tidied: the `.TH` title line first, as man pages
/// start (clap_mangen defines its apostrophe string before it), and the
/// text of `--help` after the options (its EXTRA section, here DETAILS)
/// with the indented lines (examples, tables) kept as written (`.nf`)
/// instead of filled into the paragraphs around them.
fn tidy(roff: &str) -> String {
    let mut title = "";
    let mut body = String::with_capacity(roff.len() + 256);
    let mut in_details = false;
    let mut verbatim = false;
    for line in roff.split_inclusive('\n') {
        if title.is_empty() && line.starts_with(".TH ") {
            title = line;
            continue;
        }
        if line.starts_with(".SH ") {
            if verbatim {
                body.push_str(".fi\n");
                verbatim = false;
            }
            in_details = line.trim_end() == ".SH EXTRA";
            if in_details {
                body.push_str(".SH DETAILS\n");
                continue;
            }
        } else if in_details {
            let indented = line.starts_with(' ');
            if indented && !verbatim {
                body.push_str(".nf\n");
                verbatim = true;
            } else if !indented && verbatim && !line.trim().is_empty() {
                body.push_str(".fi\n");
                verbatim = false;
            }
        }
        body.push_str(line);
    }
    if verbatim {
        body.push_str(".fi\n");
    }
    format!("{title}{body}")
}

/// Writes fcgi.1 and every fcgi-COMMAND.1 into `dir`; returns the files.
fn write_pages(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    fs::create_dir_all(dir).map_err(|e| {
        Failure::new(
            OTHER,
            format!("cannot create the directory {}: {e}", dir.display()),
        )
    })?;
    let definition = definition();
    let mut pages = vec![(None, dir.join("fcgi.1"))];
    for name in subcommand_names(&definition) {
        pages.push((Some(name), dir.join(format!("fcgi-{name}.1"))));
    }
    let mut written = Vec::with_capacity(pages.len());
    for (command, path) in pages {
        let roff = page(command)?;
        fs::write(&path, roff)
            .map_err(|e| Failure::new(OTHER, format!("cannot write {}: {e}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

/// `fcgi man`.
pub fn run(args: &ManArgs) -> Result<(), Failure> {
    if let Some(dir) = &args.dir {
        for path in write_pages(dir)? {
            println!("{}", path.display());
        }
        return Ok(());
    }
    let roff = page(args.command.as_deref())?;
    write_stdout(&roff, "the manual page to standard output")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(command: Option<&str>) -> String {
        String::from_utf8(page(command).unwrap()).unwrap()
    }

    #[test]
    fn the_main_page_lists_a_page_per_command() {
        let roff = text(None);
        assert!(roff.starts_with(".TH"), "{roff}");
        let definition = definition();
        let names = subcommand_names(&definition);
        assert_eq!(names.len(), 12, "{names:?}");
        for name in names {
            assert!(
                roff.contains(&format!("fcgi\\-{name}(1)")),
                "{name}:\n{roff}"
            );
        }
    }

    #[test]
    fn a_command_page_has_its_usage_options_and_help() {
        let roff = text(Some("request"));
        assert!(roff.starts_with(".TH fcgi-request 1 "), "{roff}");
        assert!(roff.contains("\\-\\-document\\-root"), "{roff}");
        assert!(roff.contains("Roles: \\-\\-role authorizer"), "{roff}");
    }

    #[test]
    fn tidying_puts_the_title_first_and_keeps_indented_help_lines_as_written() {
        let page = ".ie a\n.el b\n.TH x 1\n.SH NAME\nx\n.SH EXTRA\nSome text\nfilled.\n\nExamples:\n  x -a\n    more\n\n  x -b\nText.\n  x -c\n.SH VERSION\nv1\n";
        assert_eq!(
            tidy(page),
            ".TH x 1\n.ie a\n.el b\n.SH NAME\nx\n.SH DETAILS\nSome text\nfilled.\n\nExamples:\n.nf\n  x -a\n    more\n\n  x -b\n.fi\nText.\n.nf\n  x -c\n.fi\n.SH VERSION\nv1\n"
        );
        assert_eq!(tidy(".SH EXTRA\n  x\n"), ".SH DETAILS\n.nf\n  x\n.fi\n");
        assert_eq!(tidy(".SH NAME\n  x\n"), ".SH NAME\n  x\n");
    }

    #[test]
    fn an_unknown_command_is_a_usage_error_naming_the_known_ones() {
        let err = page(Some("nope")).unwrap_err();
        assert_eq!(err.code, crate::shared::failure::USAGE);
        assert!(err.message.contains("request, ping"), "{}", err.message);
    }

    #[test]
    fn dir_writes_every_page() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("man1");
        let written = write_pages(&target).unwrap();
        assert_eq!(written.len(), 13);
        assert!(target.join("fcgi.1").is_file());
        assert!(target.join("fcgi-serve.1").is_file());
        for path in written {
            assert!(fs::read_to_string(&path).unwrap().starts_with(".TH"));
        }
    }
}
