//! The floor for the warm path of `authkeep token`: a program that does nothing
//! but read the same session record with serde_json and print its access token.
//! `scripts/bench-warm.sh` times both side by side.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;

fn main() {
    let home = std::env::var_os("AUTHKEEP_HOME")
        .map(PathBuf::from)
        .expect("set AUTHKEEP_HOME");
    let profile = std::env::args().nth(1).unwrap_or_else(|| "default".into());
    let bytes = std::fs::read(home.join("sessions").join(format!("{profile}.json")))
        .expect("a session record");
    let record: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
    println!(
        "{}",
        record["access_token"].as_str().expect("an access token")
    );
}
