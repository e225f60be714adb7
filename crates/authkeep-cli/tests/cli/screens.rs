//! What people read, as snapshots: `--help` of the commands, and `status` in
//! its states, as one line per session and as JSON. Times, ports, paths and
//! remaining durations are filtered out (`faults::stable`).

use authkeep_devidp::Config;

use crate::faults::stable;
use crate::harness::{Home, Idp, text};

#[test]
fn help_reads_as_recorded() {
    let home = Home::new();
    let mut screens = String::new();
    for args in [
        &["--help"][..],
        &["token", "--help"],
        &["status", "--help"],
        &["request", "--help"],
    ] {
        // The width clap wraps at, whatever the terminal the tests run in.
        let output = home.command(args).env("COLUMNS", "100").output().unwrap();
        let run = crate::harness::Run(output);
        assert_eq!(run.code(), 0, "{args:?}: {}", run.stderr());
        screens.push_str(&format!(
            "$ authkeep {}\n{}\n",
            args.join(" "),
            run.stdout()
        ));
    }
    stable().bind(|| insta::assert_snapshot!("help", screens));
}

#[test]
fn status_reads_as_recorded() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login("fresh", idp.issuer(), &idp.session()).ok();
    let ended = idp.session();
    home.login("gone", idp.issuer(), &ended).ok();
    idp.revoke_grant_of(&text(&ended, "refresh_token"));
    home.age_record("gone", -10, 3600);
    let run = home.run(&["token", "--profile", "gone"]);
    assert_eq!(run.code(), 3, "{}", run.stderr());
    let lines = home.run(&["status"]);
    assert_eq!(lines.code(), 0, "{}", lines.stderr());
    let json = home.run(&["status", "--json"]);
    let pretty = serde_json::to_string_pretty(
        &serde_json::from_str::<serde_json::Value>(&json.stdout()).unwrap(),
    )
    .unwrap();
    let mut settings = stable();
    settings.add_filter(r#""remaining_seconds": \d+"#, r#""remaining_seconds": [n]"#);
    settings.bind(|| {
        insta::assert_snapshot!(
            "status",
            format!(
                "$ authkeep status\n{}\n$ authkeep status --json\n{pretty}\n",
                lines.stdout()
            )
        );
    });
}
