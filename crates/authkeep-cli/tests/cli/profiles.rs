//! Profiles in `config.toml`: `authkeep profiles`, the default profile, a broken
//! file that `status` and `logout` survive, and the front reading the file and
//! deciding exactly as the full binary does.

use authkeep_devidp::{Config, FaultKind};
use serde_json::Value;

use crate::faults::stable;
use crate::harness::{Home, Idp, Run, text};

fn write_config(home: &Home, text: &str) {
    std::fs::write(home.path().join("config.toml"), text).unwrap();
}

#[test]
fn profiles_are_listed_and_the_default_is_chosen() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login("work", idp.issuer(), &idp.session()).ok();
    home.login("loose", idp.issuer(), &idp.session()).ok();
    write_config(
        &home,
        "# mine\n\n[profiles.work]\nissuer = \"https://login.example.com/\"\nclient_id = \"cli\"\nclient_secret_env = \"WORK_SECRET\"\nlogin = \"browser\"\n\n[profiles.ci]\nclient_id = \"robot\"\nclient_secret_file = \"/run/secret\"\nlogin = \"client-credentials\"\n",
    );
    let mut screens = String::new();
    let mut show = |args: &[&str], run: &Run| {
        let stdout = match serde_json::from_str::<Value>(&run.stdout()) {
            Ok(json) => serde_json::to_string_pretty(&json).unwrap() + "\n",
            Err(_) => run.stdout(),
        };
        screens.push_str(&format!(
            "$ authkeep {}\n[exit {}]\n{stdout}{}\n",
            args.join(" "),
            run.code(),
            run.stderr()
        ));
    };
    for args in [
        &["profiles", "--help"][..],
        &["profiles"],
        &["profiles", "--json"],
        &["profiles", "default", "nope"],
        &["profiles", "default", "work"],
        &["profiles"],
    ] {
        // The width clap wraps at, whatever the terminal the tests run in.
        let run = Run(home.command(args).env("COLUMNS", "100").output().unwrap());
        show(args, &run);
    }
    stable().bind(|| insta::assert_snapshot!("profiles", screens));
    let text_now = std::fs::read_to_string(home.path().join("config.toml")).unwrap();
    assert!(
        text_now.contains("# mine\n\n[profiles.work]\n"),
        "{text_now}"
    );
    assert!(!text_now.contains("WORK_SECRET=") && !text_now.contains("secret ="));
    // No --profile: the default profile's session.
    let work = home.record("work");
    let loose = home.record("loose");
    assert_eq!(home.run(&["token"]).ok(), text(&work, "access_token"));
    // AUTHKEEP_PROFILE and --profile beat it, in that order.
    let mut command = home.command(&["token"]);
    command.env("AUTHKEEP_PROFILE", "loose");
    assert_eq!(
        Run(command.output().unwrap()).ok(),
        text(&loose, "access_token")
    );
    let mut command = home.command(&["token", "--profile", "work"]);
    command.env("AUTHKEEP_PROFILE", "loose");
    assert_eq!(
        Run(command.output().unwrap()).ok(),
        text(&work, "access_token")
    );
    // Without default_profile, `default`: no session there.
    write_config(&home, "[profiles.work]\n");
    assert_eq!(home.run(&["token"]).code(), 3);
    // An invalid name is refused before anything is written.
    let run = home.run(&["profiles", "default", "../x"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert_eq!(
        std::fs::read_to_string(home.path().join("config.toml")).unwrap(),
        "[profiles.work]\n"
    );
}

#[test]
fn a_broken_configuration_never_blocks_status_or_logout() {
    let idp = Idp::start(Config::default());
    let home = Home::new();
    home.login("default", idp.issuer(), &idp.session()).ok();
    write_config(&home, "[profiles.default]\nisuer = \"https://x\"\n");
    let run = home.run(&["status", "--profile", "default"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.stdout().starts_with("default: valid;"),
        "{}",
        run.stdout()
    );
    let warning = run.stderr_lines();
    assert_eq!(warning.len(), 1, "{warning:?}");
    assert!(
        warning[0].contains("config.toml:2:1: unknown key \"isuer\" in [profiles.default]")
            && warning[0].contains("going on without the configuration file"),
        "{warning:?}"
    );
    // Every other command stops with the error (exit 2), the warm path of
    // `token` too: the front hands a key it does not know to the full binary.
    for args in [
        &["token"][..],
        &["profiles"],
        &["request", "http://127.0.0.1:1/"],
    ] {
        let run = home.run(args);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr());
        assert!(
            run.stderr().contains("config.toml:2:1: unknown key"),
            "{}",
            run.stderr()
        );
    }
    // Not TOML at all: the front cannot read it either, and hands over.
    write_config(&home, "[profiles.default\n");
    let run = home.run(&["token"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().contains("config.toml:1:"), "{}", run.stderr());
    let run = home.run(&["logout"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("going on without the configuration file"),
        "{lines:?}"
    );
    assert!(lines[1].contains("logged out"), "{lines:?}");
    assert!(!home.record_path("default").exists());
    // A bad --profile is still a usage error.
    assert_eq!(home.run(&["logout", "--profile", "a/b"]).code(), 2);
}

/// The front alone (no full binary beside it) and the full binary, on the same
/// session, configuration and environment. A token whose lifetime is an hour
/// with 20 minutes left is inside a window of 30 minutes and outside one of 10.
/// The provider fails every token request, so a refresh the full binary makes
/// leaves the record as it was and is counted.
struct Pair {
    idp: Idp,
    home: Home,
    front: std::path::PathBuf,
    _dir: tempfile::TempDir,
    record: Value,
}

impl Pair {
    fn new() -> Self {
        let idp = Idp::start(Config::default());
        let home = Home::new();
        for profile in ["default", "work"] {
            home.login(profile, idp.issuer(), &idp.session()).ok();
            home.age_record(profile, 20 * 60, 3600);
        }
        idp.fail_with(FaultKind::Status {
            status: 503,
            retry_after: None,
            body: None,
        });
        let dir = tempfile::tempdir().unwrap();
        let front = dir.path().join("authkeep");
        std::fs::copy(env!("CARGO_BIN_EXE_authkeep"), &front).unwrap();
        let record = home.record("work");
        Self {
            idp,
            home,
            front,
            _dir: dir,
            record,
        }
    }

    fn command(&self, program: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        // The harness's environment (this home, no other AUTHKEEP_ variable),
        // for another program.
        let template = self.home.command(args);
        let mut command = std::process::Command::new(program);
        command.args(args).stdin(std::process::Stdio::null());
        for (name, value) in template.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command.envs(env.iter().copied());
        Run(command.output().unwrap())
    }

    /// Whether the front served the token itself; it hands over otherwise.
    fn front_serves(&self, args: &[&str], env: &[(&str, &str)]) -> bool {
        let run = self.command(&self.front, args, env);
        match run.code() {
            0 => true,
            _ => {
                assert!(
                    run.stderr().contains("authkeep-main is missing"),
                    "{}",
                    run.stderr()
                );
                false
            }
        }
    }

    /// Whether the full binary tried to refresh.
    fn full_refreshes(&self, args: &[&str], env: &[(&str, &str)]) -> bool {
        let before = self.idp.refreshes();
        let run = self.command(
            std::path::Path::new(env!("CARGO_BIN_EXE_authkeep-main")),
            args,
            env,
        );
        assert_eq!(run.code(), 0, "{args:?} {env:?}: {}", run.stderr());
        // Forget the back-off the failure recorded, for the next case.
        for profile in ["default", "work"] {
            let mut record = self.home.record(profile);
            record["health"] = self.record["health"].clone();
            self.home.write_record(profile, &record);
        }
        self.idp.refreshes() > before
    }
}

/// (config.toml, arguments, environment, whether the front serves).
type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)], bool);

#[test]
fn the_front_reads_the_configuration_and_decides_like_the_full_binary() {
    let pair = Pair::new();
    let cases: &[Case] = &[
        ("", &["token"], &[], true),
        ("refresh_threshold = \"30m\"\n", &["token"], &[], false),
        // The fraction caps the window: a tenth of the hour.
        (
            "refresh_threshold = \"50m\"\nrefresh_fraction = 0.1\n",
            &["token"],
            &[],
            true,
        ),
        // A profile's own threshold beats the top level's, for that profile only.
        (
            "refresh_threshold = \"30m\"\n[profiles.work]\nrefresh_threshold = \"10m\"\n",
            &["token", "-p", "work"],
            &[],
            true,
        ),
        (
            "refresh_threshold = \"30m\"\n[profiles.work]\nrefresh_threshold = \"10m\"\n",
            &["token"],
            &[],
            false,
        ),
        // default_profile picks the profile, and so its settings.
        (
            "default_profile = \"work\"\n[profiles.work]\nrefresh_threshold = \"30m\"\n",
            &["token", "--json"],
            &[],
            false,
        ),
        (
            "default_profile = \"work\"\n[profiles.work]\nrefresh_threshold = \"30m\"\n",
            &["token", "-q"],
            &[("AUTHKEEP_PROFILE", "default")],
            true,
        ),
        (
            "[profiles.work]\nrefresh_threshold = \"30m\"\n",
            &["token"],
            &[("AUTHKEEP_PROFILE", "work")],
            false,
        ),
        // The variables beat the file.
        (
            "refresh_threshold = \"30m\"\n",
            &["token"],
            &[("AUTHKEEP_REFRESH_THRESHOLD", "10m")],
            true,
        ),
        (
            "refresh_threshold = \"30m\"\n",
            &["token"],
            &[("AUTHKEEP_REFRESH_FRACTION", "0.1")],
            true,
        ),
        (
            "",
            &["token"],
            &[("AUTHKEEP_REFRESH_THRESHOLD", "30m")],
            false,
        ),
        // Keys the front does not need, and timeouts, do not stop it.
        (
            "timeout = \"3s\"\n[profiles.default]\nissuer = \"https://x\"\nscopes = [\"a\"]\nauthorization_params = { prompt = \"login\" }\n",
            &["token"],
            &[
                ("AUTHKEEP_TIMEOUT", "2s"),
                ("AUTHKEEP_CONNECT_TIMEOUT", "1s"),
            ],
            true,
        ),
    ];
    for (config, args, env, serves) in cases {
        write_config(&pair.home, config);
        let what = format!("{config:?} {args:?} {env:?}");
        assert_eq!(pair.front_serves(args, env), *serves, "front: {what}");
        assert_eq!(pair.full_refreshes(args, env), !serves, "full: {what}");
    }
    // What the front cannot judge it hands over, whatever the decision would be.
    for (config, env) in [
        ("refresh_threshold = 5\n", &[][..]),
        ("refresh_threshold = \"soon\"\n", &[]),
        ("[profiles.default]\nrefresh_fraction = 2.0\n", &[]),
        ("not toml", &[]),
        ("", &[("AUTHKEEP_REFRESH_THRESHOLD", "")]),
        ("", &[("AUTHKEEP_PROFILE", "")]),
        ("default_profile = \"a/b\"\n", &[]),
        ("[profiles.default]\nisuer = \"https://x\"\n", &[]),
        ("[profiles.default]\nclient_secret = \"s\"\n", &[]),
    ] {
        write_config(&pair.home, config);
        assert!(!pair.front_serves(&["token"], env), "{config:?} {env:?}");
    }
    // With -v, the full binary's status lines.
    write_config(&pair.home, "");
    assert!(!pair.front_serves(&["token", "-v"], &[]));
}
