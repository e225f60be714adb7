//! `docker-credential-authkeep`: docker's credential helper, installed on
//! `PATH` beside `authkeep`. docker runs it as `docker-credential-authkeep
//! get` (or `list`, `store`, `erase`) for the registries that
//! `~/.docker/config.json` names in `credHelpers`. It is a name docker can
//! find and nothing more: it hands the call, stdin and all, to
//! `authkeep-main credential docker OPERATION` beside it, which implements the
//! protocol (`commands/credential/docker.rs`).

use std::ffi::OsString;
use std::process::ExitCode;

mod handover;

fn main() -> ExitCode {
    let mut args: Vec<OsString> = vec!["credential".into(), "docker".into()];
    args.extend(std::env::args_os().skip(1));
    handover::run_full("authkeep".into(), &args)
}
