//! What both binaries share for `authkeep kubectl`, kubectl's credential plugin:
//! reading `KUBERNETES_EXEC_INFO` (the request kubectl hands its plugin), the
//! common command line read without clap (for the front), and printing the
//! `ExecCredential` kubectl reads from the plugin's stdout.
//!
//! kubectl runs the plugin before every request whose cached credential has
//! expired, so the warm path matters as much as for `authkeep token`: the front
//! (`front.rs`) serves this command line with the same decision, and hands any
//! other to the full binary (`commands/kubectl.rs`).

use std::ffi::OsString;
use std::io::Write as _;

use authkeep::AccessToken;
use jiff::Timestamp;
use serde_json::Value;

use crate::common::{CommonToken, instant};
use crate::names;

/// The `ExecCredential` API version answered by default.
pub const API_V1: &str = "client.authentication.k8s.io/v1";
/// The older API version, answered when kubectl asks in it.
pub const API_V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// What kubectl asked for, from `KUBERNETES_EXEC_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecInfo {
    /// The API version to answer in.
    pub api_version: &'static str,
    /// `spec.interactive`: whether kubectl gave the plugin a terminal; `None`
    /// when it did not say (the variable is unset, or has no `spec`).
    pub interactive: Option<bool>,
}

impl Default for ExecInfo {
    fn default() -> Self {
        Self {
            api_version: API_V1,
            interactive: None,
        }
    }
}

impl ExecInfo {
    /// Reads `KUBERNETES_EXEC_INFO`: unset is the default (v1, interactive
    /// unknown); anything else must be kubectl's `ExecCredential` object. The
    /// error says what is wrong without repeating the value.
    pub fn from_environment() -> Result<Self, String> {
        match std::env::var(names::ENV_KUBERNETES_EXEC_INFO) {
            Ok(text) => Self::parse(&text),
            Err(std::env::VarError::NotPresent) => Ok(Self::default()),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "{} is not valid UTF-8; it should be the JSON object kubectl sets",
                names::ENV_KUBERNETES_EXEC_INFO
            )),
        }
    }

    /// Reads the JSON object kubectl puts in `KUBERNETES_EXEC_INFO`:
    /// `{"apiVersion", "kind": "ExecCredential", "spec": {"interactive": bool}}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let variable = names::ENV_KUBERNETES_EXEC_INFO;
        let value: Value = serde_json::from_str(text).map_err(|e| {
            format!("{variable} is not valid JSON ({e}); it should be the JSON object kubectl sets")
        })?;
        let Value::Object(object) = value else {
            return Err(format!(
                "{variable} is not a JSON object; it should be the ExecCredential object kubectl sets"
            ));
        };
        let api_version = match object.get("apiVersion") {
            None => API_V1,
            Some(Value::String(v)) if v == API_V1 => API_V1,
            Some(Value::String(v)) if v == API_V1BETA1 => API_V1BETA1,
            Some(_) => {
                return Err(format!(
                    "{variable} asks for an apiVersion authkeep does not speak: set apiVersion: {API_V1} (or {API_V1BETA1}) in the kubeconfig's exec section"
                ));
            }
        };
        match object.get("kind") {
            None => {}
            Some(Value::String(kind)) if kind == "ExecCredential" => {}
            Some(_) => {
                return Err(format!(
                    "{variable} is not an ExecCredential (its \"kind\" differs)"
                ));
            }
        }
        let interactive = match object.get("spec") {
            None | Some(Value::Null) => None,
            Some(Value::Object(spec)) => match spec.get("interactive") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(_) => {
                    return Err(format!("{variable}: spec.interactive is not true or false"));
                }
            },
            Some(_) => return Err(format!("{variable}: spec is not an object")),
        };
        Ok(Self {
            api_version,
            interactive,
        })
    }
}

/// Reads the common `authkeep kubectl` command line without clap, for the
/// front: `kubectl` with any of `--profile NAME` (`-p NAME`, `--profile=NAME`),
/// `--login`, `-v`/`--verbose` or `-q`/`--quiet`, each at most once, and a
/// readable `KUBERNETES_EXEC_INFO` (`info` reads it, only for such a line).
/// Anything else is `None`, for the
/// full binary. The answer is the common token line it amounts to (never
/// `--json`), and the API version to answer in. `--login` changes nothing
/// where a token is served without a refresh, the only case the front serves.
#[allow(dead_code, reason = "the front's; the full binary parses with clap")]
pub fn read_common(
    args: &[OsString],
    info: impl FnOnce() -> Result<ExecInfo, String>,
) -> Option<(CommonToken, &'static str)> {
    let mut rest = args.iter().map(|a| a.to_str());
    if rest.next()? != Some("kubectl") {
        return None;
    }
    let (mut profile, mut login, mut verbose, mut quiet) = (None, false, false, false);
    while let Some(arg) = rest.next() {
        let seen = match arg? {
            "--login" => std::mem::replace(&mut login, true),
            "-v" | "--verbose" => std::mem::replace(&mut verbose, true),
            "-q" | "--quiet" => std::mem::replace(&mut quiet, true),
            "-p" | "--profile" => {
                let value: &str = rest.next()??;
                profile.replace(value.to_owned()).is_some() || value.starts_with('-')
            }
            other => {
                let value = other.strip_prefix("--profile=")?;
                profile.replace(value.to_owned()).is_some()
            }
        };
        if seen || (verbose && quiet) {
            return None;
        }
    }
    let info = info().ok()?;
    let invocation = CommonToken {
        profile,
        json: false,
        verbose,
        quiet,
    };
    Some((invocation, info.api_version))
}

/// The `ExecCredential` kubectl reads: the token and, when known, its expiry
/// (RFC 3339 UTC), after which kubectl runs the plugin again.
pub fn credential(
    api_version: &str,
    access_token: &AccessToken,
    expires_at: Option<Timestamp>,
) -> Value {
    let mut status = serde_json::Map::new();
    status.insert(
        "token".into(),
        Value::String(access_token.expose_secret().to_owned()),
    );
    if let Some(at) = expires_at {
        status.insert("expirationTimestamp".into(), Value::String(instant(at)));
    }
    serde_json::json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "status": status,
    })
}

/// Prints the `ExecCredential` on stdout, one line.
pub fn print_credential(
    api_version: &str,
    access_token: &AccessToken,
    expires_at: Option<Timestamp>,
) -> std::io::Result<()> {
    let line = credential(api_version, access_token, expires_at).to_string();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").and_then(|()| stdout.flush())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn exec_info_as_kubectl_writes_it() {
        let info = ExecInfo::parse(
            r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#,
        )
        .unwrap();
        assert_eq!(
            info,
            ExecInfo {
                api_version: API_V1,
                interactive: Some(false)
            }
        );
        let info = ExecInfo::parse(
            r#"{"apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":true}}"#,
        )
        .unwrap();
        assert_eq!(info.api_version, API_V1BETA1);
        assert_eq!(info.interactive, Some(true));
        assert_eq!(ExecInfo::parse("{}").unwrap(), ExecInfo::default());
        assert_eq!(ExecInfo::parse(r#"{"spec":{}}"#).unwrap().interactive, None);
    }

    #[test]
    fn malformed_exec_info_is_named_and_never_repeated() {
        for (text, says) in [
            ("{\"spec\": ", "is not valid JSON"),
            ("", "is not valid JSON"),
            ("[1]", "is not a JSON object"),
            (
                r#"{"apiVersion":"client.authentication.k8s.io/v9"}"#,
                "apiVersion",
            ),
            (r#"{"apiVersion":7}"#, "apiVersion"),
            (r#"{"kind":"Pod"}"#, "not an ExecCredential"),
            (r#"{"spec":{"interactive":"no"}}"#, "spec.interactive"),
            (
                r#"{"spec":"secret-looking-value"}"#,
                "spec is not an object",
            ),
        ] {
            let error = ExecInfo::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
            assert!(error.starts_with("KUBERNETES_EXEC_INFO"), "{error}");
            assert!(!error.contains("secret-looking-value") && !error.contains("v9"));
        }
    }

    #[test]
    fn the_credential_carries_the_token_and_its_expiry() {
        let token = AccessToken::new("tok");
        let at: Timestamp = "2026-06-01T12:00:00.75Z".parse().unwrap();
        assert_eq!(
            credential(API_V1, &token, Some(at)).to_string(),
            r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"expirationTimestamp":"2026-06-01T12:00:00Z","token":"tok"}}"#
        );
        let unknown = credential(API_V1BETA1, &token, None);
        assert_eq!(unknown["status"], serde_json::json!({"token": "tok"}));
        assert_eq!(unknown["apiVersion"], API_V1BETA1);
    }

    #[test]
    fn the_common_kubectl_line() {
        let ok = || || Ok(ExecInfo::default());
        let (common, api) = read_common(&os(&["kubectl", "-p", "work", "--login"]), ok()).unwrap();
        assert_eq!(common.profile.as_deref(), Some("work"));
        assert!(!common.json && !common.verbose && !common.quiet);
        assert_eq!(api, API_V1);
        let (common, _) = read_common(&os(&["kubectl", "--profile=a", "-q"]), ok()).unwrap();
        assert_eq!(common.profile.as_deref(), Some("a"));
        assert!(common.quiet);
        assert!(read_common(&os(&["kubectl"]), ok()).is_some());
        for left in [
            &["kubectl", "--min-valid", "5m"][..],
            &["kubectl", "--json"],
            &["kubectl", "--login", "--login"],
            &["kubectl", "-v", "-q"],
            &["kubectl", "--profile"],
            &["kubectl", "-p", "--login"],
            &["token"],
            &[],
        ] {
            assert!(read_common(&os(left), ok()).is_none(), "{left:?}");
        }
        // Malformed exec info goes to the full binary, which reports it.
        assert!(read_common(&os(&["kubectl"]), || Err("bad".into())).is_none());
    }
}
