//! Man pages and shell completions generated from the binary's own clap
//! definition, for the Debian package (`registry __assets DIR`, a hidden
//! command; conformance/package.sh runs it before `cargo deb --no-build`).
//!
//! ```text
//! DIR/man/registry.1, registry-serve.1, ...   one page per visible (sub)command
//! DIR/completions/registry.bash               bash
//! DIR/completions/_registry                   zsh
//! DIR/completions/registry.fish               fish
//! ```

use std::path::Path;

use clap_complete::Shell;

/// Writes the man pages and completions of `cmd`, the binary `name`, under
/// `dir` (created).
pub fn write(name: &'static str, cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(cmd.clone(), &man)?;
    let mut visible = without_hidden(name, &cmd);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut visible, name, &completions)?;
    }
    Ok(())
}

/// `cmd` without its hidden subcommands (the completions would offer them;
/// the man pages already leave them out).
fn without_hidden(name: &'static str, cmd: &clap::Command) -> clap::Command {
    let mut visible = clap::Command::new(name)
        .args(cmd.get_arguments().cloned())
        .subcommand_required(cmd.is_subcommand_required_set());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        visible = visible.subcommand(sub.clone());
    }
    visible
}
