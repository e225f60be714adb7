//! The status page at `/`: one read-only HTML table of the accounts (state,
//! client, expiry, last error, next attempt), filtered by state and by a part of
//! the id through a plain form, so it works without JavaScript. It never shows a
//! secret: it is built from [`AccountSummary`], which holds none.
//!
//! On a TCP listener a browser cannot send the bearer header on a page load, so
//! the page asks once for the API key in a small form and answers with a cookie
//! (`HttpOnly`, `SameSite=Strict`). The cookie is not the key: it is an HMAC,
//! under the key, of a label and the agent's start, so it cannot be turned
//! into the key and dies with the agent. It is accepted for the page only,
//! never for the token API.

use std::collections::BTreeMap;
use std::sync::Arc;

use authkeep_db::{AccountFilter, AccountState, AccountSummary};
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Extension, Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse as _, Redirect, Response};
use hmac::{Hmac, Mac as _};
use jiff::Timestamp;
use sha2::Sha256;

use crate::api::{Admitted, ApiError};
use crate::listen::ApiKey;
use crate::state::AgentState;

/// The cookie's name.
pub const COOKIE: &str = "authkeep_page";

/// How many rows the page shows at most; the rest are counted.
pub const MAX_ROWS: usize = 500;

/// What the filter form asks for (`?state=…&q=…`).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct PageQuery {
    /// One state's name, or empty for all.
    #[serde(default)]
    pub state: Option<String>,
    /// A part of the account id.
    #[serde(default)]
    pub q: Option<String>,
}

impl PageQuery {
    /// The state asked for; `Err` with the name when it is none of them.
    pub fn state(&self) -> Result<Option<AccountState>, String> {
        match self.state.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(name) => AccountState::parse(name)
                .map(Some)
                .ok_or_else(|| name.chars().take(40).collect()),
        }
    }

    fn needle(&self) -> &str {
        self.q.as_deref().map(str::trim).unwrap_or("")
    }

    /// Whether `account` passes the id filter (the state filter is the store's).
    pub fn matches(&self, account: &AccountSummary) -> bool {
        account.key.as_str().contains(self.needle())
    }
}

/// The page's cookie: an HMAC, under the API key, of a label and of when this
/// agent started. A browser holding it proves it was given the key; the value
/// cannot be turned back into the key, and it stops working when the agent
/// restarts.
pub struct PageCookie {
    value: String,
}

impl std::fmt::Debug for PageCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageCookie([redacted])")
    }
}

impl PageCookie {
    /// The cookie of an agent keyed with `key`, started at `started` in process `pid`.
    pub fn new(key: &ApiKey, started: Timestamp, pid: u32) -> Self {
        // An HMAC takes a key of any length: `new_from_slice` cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(b"authkeep status page\0");
        mac.update(&started.as_nanosecond().to_be_bytes());
        mac.update(&pid.to_be_bytes());
        let tag = mac.finalize().into_bytes();
        let value = tag.iter().map(|b| format!("{b:02x}")).collect();
        Self { value }
    }

    /// The `Set-Cookie` value given once the key was entered.
    pub fn set_cookie(&self) -> String {
        format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", self.value)
    }

    /// Whether a `Cookie` header carries this agent's page cookie.
    pub fn admits(&self, cookie_header: &str) -> bool {
        cookie_header
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == COOKIE)
            .any(|(_, value)| constant_time_eq(value.as_bytes(), self.value.as_bytes()))
    }
}

/// Compares without an early exit, so the time taken says nothing of where two
/// values differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Escapes text for HTML element content and quoted attribute values. Written
/// here rather than taken from a template crate: five replacements are the whole
/// of what the page needs.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.3em}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd;white-space:nowrap}\
th{background:#f4f4f4}td.id{font-family:monospace}\
.active{color:#176f2c}.failing{color:#a35c00}.needs_login{color:#b00020;font-weight:600}\
.cannot_renew{color:#555}form{margin:.8em 0}.counts span{margin-right:1.2em}";

fn head(title: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        escape(title)
    )
}

/// The form that asks for the API key (TCP listeners only).
pub fn key_form(wrong: bool) -> String {
    let mut page = head("authkeep agent: sign in");
    page.push_str("<h1>authkeep agent</h1>");
    if wrong {
        page.push_str(
            "<p id=\"error\" class=\"needs_login\">That is not this agent's API key.</p>",
        );
    }
    page.push_str(
        "<form method=\"post\" action=\"/login\">\
         <label>API key <input type=\"password\" name=\"key\" id=\"key\" autocomplete=\"off\" autofocus></label> \
         <button type=\"submit\">Show the accounts</button></form>\
         <p>The key is the content of the agent's <code>--api-key-file</code>.</p></body></html>",
    );
    page
}

fn when(at: Option<Timestamp>, now: Timestamp) -> String {
    let Some(at) = at else {
        return "–".to_owned();
    };
    let rel = relative(at.as_second().saturating_sub(now.as_second()));
    format!(
        "<time datetime=\"{at}\" title=\"{at}\">{}</time>",
        escape(&rel)
    )
}

/// `secs` from now as people say it: "in 4m 10s", "3h 2m ago", "now".
fn relative(secs: i64) -> String {
    let n = secs.unsigned_abs();
    let text = match n {
        0 => return "now".to_owned(),
        1..=59 => format!("{n}s"),
        60..=3599 => format!("{}m {}s", n / 60, n % 60),
        3600..=86_399 => format!("{}h {}m", n / 3600, n % 3600 / 60),
        _ => format!("{}d {}h", n / 86_400, n % 86_400 / 3600),
    };
    if secs > 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// The accounts page: counts by state, the filter form, and the table of the
/// accounts that pass it (at most [`MAX_ROWS`]); `total` is how many accounts
/// the state filter let through before the id filter.
pub fn accounts_page(
    accounts: &[AccountSummary],
    query: &PageQuery,
    counts: &BTreeMap<AccountState, u64>,
    now: Timestamp,
) -> String {
    let mut page = head("authkeep agent: accounts");
    page.push_str("<h1>authkeep agent: accounts</h1><p class=\"counts\">");
    for (state, count) in counts {
        page.push_str(&format!(
            "<span class=\"{0}\">{0}: <b data-state-count=\"{0}\">{count}</b></span>",
            state.as_str()
        ));
    }
    page.push_str("</p><form method=\"get\" action=\"/\"><label>State <select name=\"state\" id=\"state\"><option value=\"\">all</option>");
    let chosen = query.state().ok().flatten();
    for state in [
        AccountState::Active,
        AccountState::Failing,
        AccountState::NeedsLogin,
        AccountState::CannotRenew,
    ] {
        let selected = if chosen == Some(state) {
            " selected"
        } else {
            ""
        };
        page.push_str(&format!(
            "<option value=\"{0}\"{selected}>{0}</option>",
            state.as_str()
        ));
    }
    page.push_str(&format!(
        "</select></label> <label>Id contains <input name=\"q\" id=\"q\" value=\"{}\"></label> \
         <button type=\"submit\">Filter</button></form>",
        escape(query.needle())
    ));
    let shown: Vec<&AccountSummary> = accounts.iter().filter(|a| query.matches(a)).collect();
    page.push_str(&format!(
        "<p id=\"shown\">{} of {} accounts{}</p>",
        shown.len().min(MAX_ROWS),
        shown.len(),
        if shown.len() > MAX_ROWS {
            " (narrow the filter to see the rest)"
        } else {
            ""
        }
    ));
    page.push_str(
        "<table id=\"accounts\"><thead><tr><th>Account</th><th>State</th><th>Client</th>\
         <th>Token expires</th><th>Last success</th><th>Last error</th><th>Failures</th>\
         <th>Next attempt</th></tr></thead><tbody>",
    );
    for account in shown.iter().take(MAX_ROWS) {
        let error = match (&account.last_error_class, &account.last_error_code) {
            (Some(class), code) => format!(
                "{}{} {}",
                escape(class.as_str()),
                code.as_deref()
                    .map(|c| format!(" ({})", escape(c)))
                    .unwrap_or_default(),
                when(account.last_error_at, now)
            ),
            (None, _) => "–".to_owned(),
        };
        let next = account.next_attempt_at.or(account.due_at);
        page.push_str(&format!(
            "<tr data-account=\"{id}\" data-state=\"{state}\"><td class=\"id\">{id}</td>\
             <td class=\"{state}\">{state}</td><td>{client}</td><td>{expires}</td>\
             <td>{success}</td><td>{error}</td><td>{failures}</td><td>{next}</td></tr>",
            id = escape(account.key.as_str()),
            state = account.state.as_str(),
            client = escape(account.client.as_deref().unwrap_or("–")),
            expires = when(account.expires_at, now),
            success = when(account.last_success_at, now),
            failures = account.consecutive_failures,
            next = when(next, now),
        ));
    }
    page.push_str("</tbody></table></body></html>");
    page
}

/// Headers of every page: never cached, never framed, nothing loaded from
/// elsewhere, no script at all.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `GET /`: the accounts, or the key form for a browser that has not given
/// the key yet (401).
pub(crate) async fn show(
    State(state): State<Arc<AgentState>>,
    Extension(Admitted(admitted)): Extension<Admitted>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    if !admitted {
        return Ok(html(StatusCode::UNAUTHORIZED, key_form(false)));
    }
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let chosen = query.state().map_err(|name| {
        ApiError::bad_request(format!(
            "no account state {name:?}; states are active, failing, needs_login, cannot_renew"
        ))
    })?;
    let filter = match chosen {
        Some(chosen) => AccountFilter::all().state(chosen),
        None => AccountFilter::all(),
    };
    let accounts = state
        .store
        .accounts(&filter)
        .await
        .map_err(|e| ApiError::store(&e))?;
    let counts = state
        .store
        .counts()
        .await
        .map_err(|e| ApiError::store(&e))?;
    let page = accounts_page(&accounts, &query, &counts, state.keeper.now());
    Ok(html(StatusCode::OK, page))
}

/// The key form's fields.
#[derive(serde::Deserialize)]
pub(crate) struct KeyForm {
    key: String,
}

/// `POST /login`: the key form. The right key gets the cookie and the page;
/// a wrong one the form again (401). On a unix socket there is no key to give.
pub(crate) async fn login(
    State(state): State<Arc<AgentState>>,
    form: Result<Form<KeyForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let (Some(key), Some(cookie)) = (state.access.key(), state.access.page_cookie()) else {
        return Ok(Redirect::to("/").into_response());
    };
    let Form(form) = form.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let form = zeroize::Zeroizing::new(form.key);
    if !key.matches(form.trim()) {
        return Ok(html(StatusCode::UNAUTHORIZED, key_form(true)));
    }
    let mut response = Redirect::to("/").into_response();
    let value = HeaderValue::from_str(&cookie.set_cookie())
        .map_err(|_| ApiError::bad_request("the cookie could not be set"))?;
    response.headers_mut().insert(header::SET_COOKIE, value);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use authkeep::{FailureClass, SessionKey};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn summary(id: &str, state: AccountState) -> AccountSummary {
        let mut s = AccountSummary::new(SessionKey::account(id).unwrap(), state);
        s.client = Some("mirror<app>".into());
        s.expires_at = Some(at("2026-06-01T12:04:10Z"));
        s
    }

    #[test]
    fn text_is_escaped_for_elements_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain id 42"), "plain id 42");
    }

    #[test]
    fn instants_read_relative_to_now() {
        assert_eq!(relative(0), "now");
        assert_eq!(relative(250), "in 4m 10s");
        assert_eq!(relative(-7_320), "2h 2m ago");
        assert_eq!(relative(90_000), "in 1d 1h");
        assert!(relative(i64::MIN).ends_with(" ago"));
        assert!(relative(i64::MAX).starts_with("in "));
    }

    #[test]
    fn the_state_filter_takes_only_known_states() {
        let query = |state: &str| PageQuery {
            state: Some(state.into()),
            q: None,
        };
        assert_eq!(query("").state(), Ok(None));
        assert_eq!(
            query("needs_login").state(),
            Ok(Some(AccountState::NeedsLogin))
        );
        assert_eq!(query("<b>").state(), Err("<b>".to_owned()));
    }

    #[test]
    fn the_cookie_is_not_the_key_and_admits_only_itself() {
        let key = ApiKey::new("k3y-for-the-page-test-0123456789").unwrap();
        let started = at("2026-06-01T12:00:00Z");
        let cookie = PageCookie::new(&key, started, 7);
        let set = cookie.set_cookie();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(
            !set.contains(key.expose_secret()),
            "the cookie is not the key"
        );
        let value = set.split(';').next().unwrap().to_owned();
        assert!(cookie.admits(&value));
        assert!(cookie.admits(&format!("other=1; {value}")));
        assert!(!cookie.admits(&format!("{COOKIE}={}", key.expose_secret())));
        assert!(!cookie.admits(&value.replace(&value[value.len() - 2..], "zz")));
        assert!(!cookie.admits(&value.replace(COOKIE, "other")));
        // Another start of the agent, or another key: another cookie.
        assert!(!PageCookie::new(&key, started, 8).admits(&value));
        let other = ApiKey::new("another-key-for-the-page-test-987").unwrap();
        assert!(!PageCookie::new(&other, started, 7).admits(&value));
    }

    #[test]
    fn the_page_lists_filtered_accounts_escaped() {
        let mut failing = summary("team <x> & co", AccountState::Failing);
        failing.last_error_class = Some(FailureClass::Transient);
        failing.last_error_code = Some("http_503".into());
        failing.last_error_at = Some(at("2026-06-01T11:59:00Z"));
        failing.consecutive_failures = 3;
        let accounts = vec![summary("alice", AccountState::Active), failing];
        let counts = BTreeMap::from([(AccountState::Active, 1), (AccountState::Failing, 1)]);
        let now = at("2026-06-01T12:00:00Z");
        let all = accounts_page(&accounts, &PageQuery::default(), &counts, now);
        assert!(all.contains(r#"data-account="alice""#), "{all}");
        assert!(all.contains("team &lt;x&gt; &amp; co"), "{all}");
        assert!(!all.contains("team <x>"), "{all}");
        assert!(all.contains("mirror&lt;app&gt;"));
        assert!(all.contains("transient (http_503) <time"), "{all}");
        assert!(all.contains("in 4m 10s"));
        assert!(all.contains(r#"<p id="shown">2 of 2 accounts</p>"#));
        let query = PageQuery {
            state: None,
            q: Some(" ali ".into()),
        };
        let some = accounts_page(&accounts, &query, &counts, now);
        assert!(some.contains(r#"data-account="alice""#));
        assert!(!some.contains("team &lt;x&gt;"));
        assert!(some.contains(r#"value="ali""#));
    }
}
