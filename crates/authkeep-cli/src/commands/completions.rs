//! `authkeep completions SHELL` and `authkeep man`: shell completion scripts
//! (clap_complete) and roff man pages (clap_mangen), generated from the full
//! binary's own command-line definition, so they always name the flags this
//! build parses. `man` prints the page of `authkeep` itself; `man --dir DIR`
//! writes one page per command and subcommand (`authkeep.1`,
//! `authkeep-login.1`, `authkeep-store-keygen.1`, …) into DIR.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap_complete::Shell;

use crate::printer;

/// The name completions and man pages are written for: the command people type
/// (the front, which hands everything but the warm `token` to the full binary).
const BIN_NAME: &str = "authkeep";

/// Print a shell completion script: bash, zsh, fish, powershell or elvish.
#[derive(clap::Args, Debug)]
#[command(after_help = COMPLETIONS_AFTER_HELP)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

/// Where each shell looks for the script.
const COMPLETIONS_AFTER_HELP: &str = "\
Install (then start a new shell):
  bash:       authkeep completions bash > ~/.local/share/bash-completion/completions/authkeep
  zsh:        authkeep completions zsh > ~/.zfunc/_authkeep   (with fpath+=(~/.zfunc) before compinit in ~/.zshrc)
  fish:       authkeep completions fish > ~/.config/fish/completions/authkeep.fish
  powershell: authkeep completions powershell >> $PROFILE";

/// Print the man page of authkeep, or write one page per command into a directory.
#[derive(clap::Args, Debug)]
#[command(after_help = MAN_AFTER_HELP)]
pub struct ManArgs {
    /// Write authkeep.1 and one page per subcommand (authkeep-login.1, …) into this
    /// directory instead of printing authkeep's page.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

const MAN_AFTER_HELP: &str = "\
Install:
  mkdir -p ~/.local/share/man/man1 && authkeep man --dir ~/.local/share/man/man1
Read one page without installing: authkeep man | man -l -";

/// Runs `completions`; `command` is the full binary's definition.
pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, BIN_NAME, &mut script);
    printer::bytes(&script)
}

/// Runs `man`; `command` is the full binary's definition.
pub fn man(args: ManArgs, command: clap::Command) -> Result<()> {
    let mut command = command.bin_name(BIN_NAME).disable_help_subcommand(true);
    command.build();
    match args.dir {
        None => printer::bytes(&render(&command)?),
        Some(dir) => {
            for written in write_pages(&command, &dir)? {
                printer::out(&written.display().to_string())?;
            }
            Ok(())
        }
    }
}

/// The roff page of one (built) command.
fn render(command: &clap::Command) -> Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .context("cannot render the man page")?;
    Ok(page)
}

/// Writes the page of `command` and of every visible subcommand below it into
/// `dir` (which must exist); returns the files written, parents first.
fn write_pages(command: &clap::Command, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut pending = vec![command.clone()];
    while let Some(command) = pending.pop() {
        let page = clap_mangen::Man::new(command.clone());
        let path = dir.join(page.get_filename());
        std::fs::write(&path, render(&command)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
        // Reversed, so that they are written in the order --help lists them.
        let mut subcommands: Vec<clap::Command> = command
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
            .collect();
        subcommands.reverse();
        pending.extend(subcommands);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> clap::Command {
        let mut command = clap::Command::new("authkeep")
            .about("keeps sessions")
            .subcommand(
                clap::Command::new("store")
                    .about("stores")
                    .subcommand(clap::Command::new("keygen").about("a key")),
            )
            .subcommand(clap::Command::new("token").about("a token"))
            .subcommand(clap::Command::new("secret").hide(true))
            .disable_help_subcommand(true);
        command.build();
        command
    }

    #[test]
    fn one_page_per_visible_command_in_help_order() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_pages(&tree(), dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "authkeep.1",
                "authkeep-store.1",
                "authkeep-store-keygen.1",
                "authkeep-token.1"
            ]
        );
        let page = std::fs::read_to_string(dir.path().join("authkeep-store-keygen.1")).unwrap();
        assert!(page.starts_with(".ie"), "{page}");
        assert!(page.contains(".TH authkeep-store-keygen 1"), "{page}");
    }

    #[test]
    fn a_directory_that_is_not_there_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere");
        let error = write_pages(&tree(), &missing).unwrap_err();
        assert!(
            format!("{error:#}").starts_with(&format!(
                "cannot write {}",
                missing.join("authkeep.1").display()
            )),
            "{error:#}"
        );
    }
}
