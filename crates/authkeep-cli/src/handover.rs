//! Handing a command line to the full binary, `authkeep-main`, installed
//! beside the running one: the front (`front.rs`) does so for every command
//! it does not serve itself, and `docker-credential-authkeep` (`docker.rs`)
//! for every call docker makes. Both compile this module; it links nothing
//! else of the CLI.

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;

/// The full binary's name.
pub const FULL: &str = "authkeep-main";

/// Replaces this process with the full binary run as `program` with `args` (on
/// Unix; elsewhere runs it and passes its exit code on). Returns only on
/// failure, after saying why on stderr.
pub fn run_full(program: OsString, args: &[OsString]) -> ExitCode {
    let full = std::env::current_exe()
        .map(|exe| exe.with_file_name(format!("{FULL}{}", std::env::consts::EXE_SUFFIX)));
    let full = match full {
        Ok(path) if path.is_file() => path,
        Ok(path) => {
            stderr_line(&format!(
                "authkeep: error: {} is missing; install authkeep with `cargo install --path crates/authkeep-cli` (or build it with `cargo build`)",
                path.display()
            ));
            return ExitCode::from(1);
        }
        Err(e) => {
            stderr_line(&format!(
                "authkeep: error: cannot find the authkeep executable: {e}"
            ));
            return ExitCode::from(1);
        }
    };
    let mut command = std::process::Command::new(&full);
    command.args(args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        let error = command.arg0(program).exec();
        stderr_line(&format!(
            "authkeep: error: cannot run {}: {error}",
            full.display()
        ));
        ExitCode::from(1)
    }
    #[cfg(not(unix))]
    {
        // The name is Unix's to pass on; elsewhere the program is its path.
        drop(program);
        match command.status() {
            Ok(status) => ExitCode::from(
                status
                    .code()
                    .and_then(|c| u8::try_from(c).ok())
                    .unwrap_or(1),
            ),
            Err(error) => {
                stderr_line(&format!(
                    "authkeep: error: cannot run {}: {error}",
                    full.display()
                ));
                ExitCode::from(1)
            }
        }
    }
}

/// Writes a line on stderr; when that fails there is nowhere left to say so,
/// and the exit code still tells.
fn stderr_line(line: &str) {
    writeln!(std::io::stderr().lock(), "{line}").ok();
}
