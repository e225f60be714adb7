//! Opening a URL in the user's browser, and whether one can be opened at all
//! (which decides between a browser login and a device login).
//!
//! `BROWSER` is honoured first, as a list of commands separated by `:` (each
//! may hold `%s` for the URL, else the URL is its last argument); then the
//! platform's opener: `open` on macOS, `rundll32 url.dll` on Windows,
//! `xdg-open` on other systems when a display (`DISPLAY` or `WAYLAND_DISPLAY`)
//! is set. A crate would do the same lookup; these few lines keep every
//! platform's choice in view, and errors reach the caller.

use std::ffi::OsString;
use std::process::{Command, Stdio};

/// The environment variable naming the browser command.
pub const ENV_BROWSER: &str = "BROWSER";

/// Whether a browser can be opened here: `BROWSER` is set, the platform always
/// has one (macOS, Windows), or a graphical display is available.
pub fn can_open(var: impl Fn(&str) -> Option<OsString>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.is_empty());
    set(ENV_BROWSER)
        || cfg!(any(target_os = "macos", windows))
        || set("DISPLAY")
        || set("WAYLAND_DISPLAY")
}

/// The commands to try for `url`, in order.
fn commands(url: &str, var: impl Fn(&str) -> Option<OsString>) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    if let Some(browser) = var(ENV_BROWSER).map(|v| v.to_string_lossy().into_owned()) {
        for entry in browser.split(':').map(str::trim).filter(|e| !e.is_empty()) {
            let mut words = entry.split_whitespace().map(str::to_owned);
            let Some(program) = words.next() else {
                continue;
            };
            let mut args: Vec<String> = words.collect();
            if args.iter().any(|a| a.contains("%s")) {
                for arg in &mut args {
                    *arg = arg.replace("%s", url);
                }
            } else {
                args.push(url.to_owned());
            }
            found.push((program, args));
        }
    }
    if cfg!(target_os = "macos") {
        found.push(("open".to_owned(), vec![url.to_owned()]));
    } else if cfg!(windows) {
        let handler = "url.dll,FileProtocolHandler".to_owned();
        found.push(("rundll32".to_owned(), vec![handler, url.to_owned()]));
    } else if var("DISPLAY").is_some() || var("WAYLAND_DISPLAY").is_some() {
        found.push(("xdg-open".to_owned(), vec![url.to_owned()]));
    }
    found
}

/// Opens `url`; returns the command that accepted it, or why none did. The
/// browser's own output is discarded: it must not mix with authkeep's.
pub fn open(url: &str) -> Result<String, String> {
    let candidates = commands(url, |name| std::env::var_os(name));
    if candidates.is_empty() {
        return Err("no browser is known here (set BROWSER, or open the URL yourself)".to_owned());
    }
    let mut failures = Vec::new();
    for (program, args) in candidates {
        let status = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(status) if status.success() => return Ok(program),
            Ok(status) => failures.push(format!("{program} exited with {status}")),
            Err(e) => failures.push(format!("{program}: {e}")),
        }
    }
    Err(failures.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn browser_commands_take_the_url_where_they_say() {
        let url = "https://idp.example/authorize?a=1&b=2";
        let found = commands(url, env(&[("BROWSER", "firefox --new-tab %s:lynx")]));
        assert_eq!(
            found[0],
            (
                "firefox".to_owned(),
                vec!["--new-tab".to_owned(), url.to_owned()]
            )
        );
        assert_eq!(found[1], ("lynx".to_owned(), vec![url.to_owned()]));
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn a_browser_opens_where_there_is_a_display_or_a_browser_command() {
        assert!(!can_open(env(&[])));
        assert!(!can_open(env(&[("BROWSER", "")])));
        assert!(can_open(env(&[("BROWSER", "w3m")])));
        assert!(can_open(env(&[("DISPLAY", ":0")])));
        assert!(can_open(env(&[("WAYLAND_DISPLAY", "wayland-0")])));
        assert!(commands("u", env(&[])).is_empty());
        assert_eq!(commands("u", env(&[("DISPLAY", ":0")]))[0].0, "xdg-open");
    }
}
