//! A certified OpenID Provider for conformance tests: panva's `oidc-provider` 8.x
//! run by Node.js from `conformance/oidc-provider/server.mjs` on loopback, one
//! process per test (port chosen by the OS), and a browser played over HTTP with
//! a cookie jar that signs in and consents through the provider's own pages. The
//! self-tests at the bottom drive every flow by hand, so a later failure of
//! `authkeep` against this provider is authkeep's, not the harness's.
//!
//! The provider's dependencies are installed by `./scripts/test.sh` (`npm ci`);
//! without them these tests fail, saying so, rather than skip.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::Url;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::redirect::Policy;
use serde_json::Value;

/// The public native client: device code, authorization code with PKCE (any
/// loopback port, path [`REDIRECT_PATH`]) and refresh token grants.
pub const PUBLIC_CLIENT: &str = "authkeep-public";
/// The confidential client of the client credentials grant (client_secret_basic).
pub const SERVICE_CLIENT: &str = "authkeep-service";
/// [`SERVICE_CLIENT`]'s secret.
pub const SERVICE_SECRET: &str = "service-secret";
/// The scope [`SERVICE_CLIENT`] may ask for; its tokens are for [`SERVICE_AUDIENCE`].
pub const SERVICE_SCOPE: &str = "api:read";
/// The audience of the service client's access tokens.
pub const SERVICE_AUDIENCE: &str = "urn:authkeep:api";
/// The path of the public client's loopback redirect URI, `http://127.0.0.1:PORT/callback`.
pub const REDIRECT_PATH: &str = "/callback";
/// The `grant_type` of the device code token request (RFC 8628 §3.4).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The name the played browser signs in with; it becomes the tokens' `sub`.
pub const LOGIN: &str = "alice";

/// How long the provider may take to start: Node.js loading oidc-provider on a
/// busy two-core machine takes a second or two; this is a generous ceiling.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Every HTTP request of the harness.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Most pages a played browser goes through before it must have finished
/// (device: code, confirmation, login, consent, success).
const MAX_PAGES: usize = 12;
/// Most redirects followed between two pages.
const MAX_REDIRECTS: usize = 12;
/// How much of the provider's stderr is kept for failure messages, in bytes.
const LOG_CAP: usize = 16 * 1024;

/// A running `oidc-provider`, stopped when dropped.
pub struct OidcProvider {
    process: Process,
    issuer: String,
    metadata: Value,
    http: Client,
}

/// Options of [`OidcProvider::start_with`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Lifetime of access tokens (and client credentials tokens) in seconds;
    /// the provider's default is an hour.
    pub access_ttl: Option<u64>,
}

impl OidcProvider {
    /// Starts a provider with the default settings (see [`Self::start_with`]).
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// Starts a provider on an OS-chosen loopback port and reads its discovery
    /// document.
    ///
    /// Panics, failing the test, when Node.js or the provider's npm packages are
    /// missing (the message names the command that installs them), or when the
    /// provider does not announce its issuer within 30 seconds.
    pub fn start_with(options: Options) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance/oidc-provider");
        if !dir
            .join("node_modules/oidc-provider/package.json")
            .is_file()
        {
            panic!(
                "the conformance provider's npm packages are not installed in {}: run ./scripts/test.sh \
                 (the README's test command), or `npm ci --prefix conformance/oidc-provider` from the \
                 repository root",
                dir.display()
            );
        }
        let mut command = Command::new("node");
        command
            .arg("server.mjs")
            .arg("0")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ttl) = options.access_ttl {
            command.env("ACCESS_TTL", ttl.to_string());
        }
        let (process, first_line) = Process::spawn(command);
        let issuer = match first_line {
            FirstLine::Line(line) => {
                let announced: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!(
                        "oidc-provider printed {line:?}, not its issuer as JSON: {e}{}",
                        process.log_excerpt()
                    )
                });
                match announced["issuer"].as_str() {
                    Some(issuer) => issuer.to_owned(),
                    None => panic!(
                        "oidc-provider printed {line:?}, without an issuer{}",
                        process.log_excerpt()
                    ),
                }
            }
            FirstLine::Closed => panic!(
                "oidc-provider exited before announcing its issuer{}",
                process.log_excerpt()
            ),
            FirstLine::TimedOut => panic!(
                "oidc-provider did not announce its issuer within {START_TIMEOUT:?}{}",
                process.log_excerpt()
            ),
        };
        let http = Client::builder()
            .redirect(Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("an HTTP client with a redirect policy and a timeout");
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        let metadata = json_of(http.get(&discovery).send(), &discovery, StatusCode::OK);
        assert_eq!(
            metadata["issuer"].as_str(),
            Some(issuer.as_str()),
            "the discovery document names another issuer"
        );
        Self {
            process,
            issuer,
            metadata,
            http,
        }
    }

    /// The issuer, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// An endpoint from the discovery document, by its metadata name
    /// (`token_endpoint`, `device_authorization_endpoint`, …).
    pub fn endpoint(&self, name: &str) -> String {
        match self.metadata[name].as_str() {
            Some(url) => url.to_owned(),
            None => panic!("the discovery document has no {name}"),
        }
    }

    /// An HTTP client for requests made by hand: no cookies, no redirects
    /// followed.
    pub fn http(&self) -> &Client {
        &self.http
    }

    /// The tail of what the provider wrote to stderr, for failure messages.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Approves a device authorization as its user would in a browser: opens the
    /// verification page, enters `user_code`, confirms the device, signs in as
    /// [`LOGIN`] and consents, until the provider shows its success page.
    /// Panics when any page is an error or the flow ends elsewhere.
    pub fn approve_device(&self, user_code: &str) {
        let start = self.url(&self.endpoint("device_authorization_endpoint"));
        // The page where the user types the code (RFC 8628 `verification_uri`);
        // oidc-provider serves it at /device beside /device/auth.
        let verification = start
            .join("/device")
            .expect("an absolute path joins any URL");
        let browser = Browser::new(&self.issuer);
        let inputs = [
            ("user_code", user_code),
            ("login", LOGIN),
            ("password", "any password"),
        ];
        match browser.browse(
            browser.client.get(verification.clone()),
            &verification,
            &inputs,
        ) {
            Ending::Page { url, body } => {
                let title = title_of(&body);
                assert!(
                    title.contains("Success"),
                    "the device approval ended on {url} titled {title:?}, not the success page{}",
                    self.process.log_excerpt()
                );
            }
            Ending::Left(location) => panic!(
                "the device approval left the provider for {location}{}",
                self.process.log_excerpt()
            ),
        }
    }

    /// Plays the browser on `authorization_url`: signs in as [`LOGIN`] and
    /// consents through the provider's pages, and returns the redirect to the
    /// client (the `Location` that leaves the provider, with `code`, `state` and
    /// `iss`, or an `error`) without following it, so the test can deliver it
    /// to authkeep's loopback listener itself.
    pub fn authorize(&self, authorization_url: &str) -> String {
        let url = self.url(authorization_url);
        let browser = Browser::new(&self.issuer);
        let inputs = [("login", LOGIN), ("password", "any password")];
        match browser.browse(browser.client.get(url.clone()), &url, &inputs) {
            Ending::Left(location) => location.to_string(),
            Ending::Page { url, body } => panic!(
                "the authorization ended on {url} titled {:?} instead of redirecting to the client{}",
                title_of(&body),
                self.process.log_excerpt()
            ),
        }
    }

    /// Introspects `token` (RFC 7662) as [`SERVICE_CLIENT`], which may
    /// introspect any client's tokens; `active` is false for a revoked, consumed
    /// or expired token.
    pub fn introspect(&self, token: &str) -> Value {
        let endpoint = self.endpoint("introspection_endpoint");
        let response = self
            .http
            .post(&endpoint)
            .basic_auth(SERVICE_CLIENT, Some(SERVICE_SECRET))
            .form(&[("token", token)])
            .send();
        json_of(response, &endpoint, StatusCode::OK)
    }

    /// Whether introspection says `token` is active.
    pub fn is_active(&self, token: &str) -> bool {
        match self.introspect(token)["active"].as_bool() {
            Some(active) => active,
            None => panic!("an introspection answer without a boolean `active`"),
        }
    }

    fn url(&self, text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|e| panic!("{text:?} is not a URL: {e}"))
    }
}

/// The answer's JSON, asserting its status.
fn json_of(response: reqwest::Result<Response>, url: &str, expected: StatusCode) -> Value {
    let response = response.unwrap_or_else(|e| panic!("no answer from {url}: {e}"));
    let status = response.status();
    let body = response
        .text()
        .unwrap_or_else(|e| panic!("the answer of {url} could not be read: {e}"));
    assert_eq!(status, expected, "{url} answered {status}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url} answered {body:?}, not JSON: {e}"))
}

/// The Node.js process, with its stdin held open (the server exits when it
/// closes) and its stderr collected; killed and reaped when dropped.
struct Process {
    child: Child,
    /// Held only so that it closes when the process is dropped.
    _stdin: ChildStdin,
    log: Arc<Mutex<String>>,
}

/// What came of waiting for the server's announcement.
enum FirstLine {
    Line(String),
    Closed,
    TimedOut,
}

impl Process {
    fn spawn(mut command: Command) -> (Self, FirstLine) {
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot run `node` (the conformance tests need Node.js 20 on the PATH): {e}")
        });
        let stdin = child.stdin.take().expect("stdin was piped");
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr = child.stderr.take().expect("stderr was piped");
        let log = Arc::new(Mutex::new(String::new()));
        let process = Self {
            child,
            _stdin: stdin,
            log: Arc::clone(&log),
        };
        collect_log(stderr, Arc::clone(&log));
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = match lines.next() {
                Some(Ok(line)) => FirstLine::Line(line),
                Some(Err(_)) | None => FirstLine::Closed,
            };
            // The receiver is gone only if the test already gave up waiting.
            if sender.send(first).is_err() {
                return;
            }
            // The server prints nothing more; anything that does come is kept
            // with its stderr, and the pipe never fills.
            for line in lines.map_while(Result::ok) {
                append_log(&log, &format!("stdout: {line}\n"));
            }
        });
        let first = receiver
            .recv_timeout(START_TIMEOUT)
            .unwrap_or(FirstLine::TimedOut);
        (process, first)
    }

    fn log(&self) -> String {
        match self.log.lock() {
            Ok(log) => log.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn log_excerpt(&self) -> String {
        let log = self.log();
        if log.is_empty() {
            String::new()
        } else {
            format!("; the provider's stderr:\n{log}")
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Drop cannot fail the test; a process that outlives its test would
        // still exit when its stdin closes, which this drop also causes.
        match self.child.try_wait() {
            Ok(Some(_)) => {}
            Ok(None) => {
                if let Err(e) = self.child.kill() {
                    eprintln!("oidc-provider (pid {}): cannot kill: {e}", self.child.id());
                }
                if let Err(e) = self.child.wait() {
                    eprintln!("oidc-provider (pid {}): cannot reap: {e}", self.child.id());
                }
            }
            Err(e) => eprintln!("oidc-provider (pid {}): cannot check: {e}", self.child.id()),
        }
    }
}

/// Reads the server's stderr to its end on a thread of its own.
fn collect_log(mut stderr: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        loop {
            match stderr.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => append_log(&log, &String::from_utf8_lossy(&buffer[..n])),
                Err(e) => {
                    append_log(&log, &format!("(reading stderr failed: {e})\n"));
                    return;
                }
            }
        }
    });
}

/// Appends to the log, keeping its last [`LOG_CAP`] bytes.
fn append_log(log: &Mutex<String>, text: &str) {
    let mut log = match log.lock() {
        Ok(log) => log,
        Err(poisoned) => poisoned.into_inner(),
    };
    log.push_str(text);
    if log.len() > LOG_CAP {
        let mut cut = log.len() - LOG_CAP;
        while !log.is_char_boundary(cut) {
            cut += 1;
        }
        log.drain(..cut);
    }
}

/// A browser with its own cookie jar, following redirects itself so that it
/// stops at the first one that leaves the provider.
struct Browser {
    client: Client,
    origin: String,
}

/// Where a played browser stopped.
enum Ending {
    /// A redirect away from the provider, not followed.
    Left(Url),
    /// A page of the provider without a form to submit.
    Page { url: Url, body: String },
}

impl Browser {
    fn new(issuer: &str) -> Self {
        let client = Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("an HTTP client with a cookie jar, a redirect policy and a timeout");
        let origin = Url::parse(issuer)
            .unwrap_or_else(|e| panic!("the issuer {issuer:?} is not a URL: {e}"))
            .origin()
            .ascii_serialization();
        Self { client, origin }
    }

    /// Sends `request`, then submits each page's form filled from `inputs` (by
    /// field name; other fields keep the page's value), until a page without a
    /// form or a redirect that leaves the provider.
    fn browse(&self, request: RequestBuilder, url: &Url, inputs: &[(&str, &str)]) -> Ending {
        let (mut url, mut body) = match self.follow(request, url) {
            Step::Left(location) => return Ending::Left(location),
            Step::Page { url, body } => (url, body),
        };
        for _ in 0..MAX_PAGES {
            if let Some(message) = error_message_of(&body) {
                panic!("the provider's page {url} says: {message}");
            }
            let Some(form) = forms_of(&body).into_iter().find(|f| f.method == "post") else {
                return Ending::Page { url, body };
            };
            let action = url.join(&form.action).unwrap_or_else(|e| {
                panic!(
                    "the form action {:?} on {url} is not a URL: {e}",
                    form.action
                )
            });
            let fields: Vec<(String, String)> = form
                .fields
                .into_iter()
                .map(|(name, value)| {
                    let given = inputs.iter().find(|(input, _)| *input == name);
                    let value = given.map_or(value, |(_, given)| (*given).to_owned());
                    (name, value)
                })
                .collect();
            match self.follow(self.client.post(action.clone()).form(&fields), &action) {
                Step::Left(location) => return Ending::Left(location),
                Step::Page {
                    url: next,
                    body: page,
                } => (url, body) = (next, page),
            }
        }
        panic!("still on the provider's pages after {MAX_PAGES} forms, now at {url}");
    }

    /// Sends `request` and follows the redirects that stay on the provider.
    fn follow(&self, request: RequestBuilder, url: &Url) -> Step {
        let mut response = request
            .send()
            .unwrap_or_else(|e| panic!("no answer from {url}: {e}"));
        let mut url = url.clone();
        for _ in 0..MAX_REDIRECTS {
            let status = response.status();
            if !status.is_redirection() {
                let body = response
                    .text()
                    .unwrap_or_else(|e| panic!("the page {url} could not be read: {e}"));
                if status != StatusCode::OK {
                    let message = error_message_of(&body).unwrap_or_else(|| excerpt(&body));
                    panic!("{url} answered {status}: {message}");
                }
                return Step::Page { url, body };
            }
            // A 307 or 308 after a form would need the form sent again;
            // oidc-provider answers 302 and 303 only.
            assert!(
                matches!(status, StatusCode::FOUND | StatusCode::SEE_OTHER),
                "{url} answered the unexpected redirect {status}"
            );
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .unwrap_or_else(|| panic!("{url} answered {status} without a Location"))
                .to_str()
                .unwrap_or_else(|e| panic!("{url} answered a Location that is not text: {e}"));
            let next = url
                .join(location)
                .unwrap_or_else(|e| panic!("{url} redirected to {location:?}, not a URL: {e}"));
            if next.origin().ascii_serialization() != self.origin {
                return Step::Left(next);
            }
            response = self
                .client
                .get(next.clone())
                .send()
                .unwrap_or_else(|e| panic!("no answer from {next}: {e}"));
            url = next;
        }
        panic!("more than {MAX_REDIRECTS} redirects, the last to {url}");
    }
}

/// One hop of a played browser.
enum Step {
    Left(Url),
    Page { url: Url, body: String },
}

/// The start of a page, for failure messages.
fn excerpt(body: &str) -> String {
    body.chars().take(600).collect()
}

/// The text of the page's `<title>`.
fn title_of(html: &str) -> String {
    match (html.find("<title>"), html.find("</title>")) {
        (Some(start), Some(end)) if start + 7 <= end => decode(html[start + 7..end].trim()),
        _ => String::new(),
    }
}

/// The message of an error page or of a form shown again with an error:
/// oidc-provider's error page puts each of `error` and `error_description` in a
/// `<pre>`, and its device pages write a rejected code's message in
/// `<p class="red">`.
fn error_message_of(html: &str) -> Option<String> {
    let mut messages = Vec::new();
    for (open, close) in [("<pre>", "</pre>"), ("<p class=\"red\">", "</p>")] {
        let mut rest = html;
        while let Some(start) = rest.find(open) {
            let inner = &rest[start + open.len()..];
            let end = inner.find(close).unwrap_or(inner.len());
            let text = inner[..end]
                .replace("<strong>", "")
                .replace("</strong>", "");
            messages.push(decode(text.trim()));
            rest = &inner[end..];
        }
    }
    (!messages.is_empty()).then(|| messages.join("; "))
}

/// A form of a page: its method (lower case), action and the fields a browser
/// would submit, in order.
#[derive(Debug, PartialEq)]
struct Form {
    method: String,
    action: String,
    fields: Vec<(String, String)>,
}

/// The forms of a page, read from the markup oidc-provider's own templates
/// write (lower-case tags, `<input>` fields only, no `<select>` or `<textarea>`). A small
/// reader rather than an HTML parser crate: the pages are the provider's fixed
/// templates, and an HTML5 parser would be the largest build of this test
/// binary for a handful of hidden fields; the self-tests fail should a page
/// change shape.
fn forms_of(html: &str) -> Vec<Form> {
    let mut forms = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<form") {
        let after = &rest[start + "<form".len()..];
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let attributes = attributes_of(&after[..tag_end]);
        let inner_and_rest = &after[tag_end + 1..];
        let inner_end = inner_and_rest
            .find("</form>")
            .unwrap_or(inner_and_rest.len());
        let inner = &inner_and_rest[..inner_end];
        let attribute = |name: &str| {
            attributes
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        forms.push(Form {
            method: attribute("method")
                .unwrap_or_else(|| "get".to_owned())
                .to_ascii_lowercase(),
            action: attribute("action").unwrap_or_default(),
            fields: fields_of(inner),
        });
        rest = &inner_and_rest[inner_end..];
    }
    forms
}

/// The named `<input>` fields a browser submits: every one but buttons and
/// unchecked boxes, with its `value` (empty when absent).
pub fn fields_of(html: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<input") {
        let after = &rest[start + "<input".len()..];
        let tag_end = after.find('>').unwrap_or(after.len());
        let attributes = attributes_of(after[..tag_end].trim_end_matches('/'));
        let attribute = |name: &str| {
            attributes
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, v)| v.as_str())
        };
        let kind = attribute("type").unwrap_or("text").to_ascii_lowercase();
        let submitted = match kind.as_str() {
            "submit" | "button" | "reset" | "image" => false,
            "checkbox" | "radio" => attribute("checked").is_some(),
            _ => true,
        };
        if let (true, Some(name)) = (submitted, attribute("name")) {
            fields.push((name.to_owned(), attribute("value").unwrap_or("").to_owned()));
        }
        rest = &after[tag_end..];
    }
    fields
}

/// The attributes of a tag's inside (`name="v"`, `name='v'`, `name=v` or bare
/// `name`), names in lower case, values with entities decoded.
fn attributes_of(tag: &str) -> Vec<(String, String)> {
    let mut attributes = Vec::new();
    let mut chars = tag.char_indices().peekable();
    loop {
        while chars
            .next_if(|(_, c)| c.is_whitespace() || *c == '/')
            .is_some()
        {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut end = tag.len();
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || c == '=' {
                end = i;
                break;
            }
            chars.next();
        }
        let name = tag[start..end].to_ascii_lowercase();
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            attributes.push((name, String::new()));
            continue;
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let value = match chars.peek() {
            Some(&(i, quote)) if quote == '"' || quote == '\'' => {
                chars.next();
                let close = tag[i + 1..].find(quote).map_or(tag.len(), |j| i + 1 + j);
                while chars.next_if(|(k, _)| *k <= close).is_some() {}
                &tag[i + 1..close]
            }
            Some(&(i, _)) => {
                let mut close = tag.len();
                while let Some(&(k, c)) = chars.peek() {
                    if c.is_whitespace() {
                        close = k;
                        break;
                    }
                    chars.next();
                }
                &tag[i..close]
            }
            None => "",
        };
        attributes.push((name, decode(value)));
    }
    attributes
}

/// Decodes the entities oidc-provider's escaping writes (`&amp;`, `&lt;`,
/// `&gt;`, `&quot;`, `&#39;`, `&#x27;`).
fn decode(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

mod tests {
    use super::*;

    use authkeep::oauth::authorization::{loopback_redirect_uri, new_pkce};

    /// A form post to `endpoint` by the public client, returning the status and
    /// the JSON answer.
    fn post(provider: &OidcProvider, endpoint: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = provider
            .http()
            .post(endpoint)
            .form(form)
            .send()
            .unwrap_or_else(|e| panic!("no answer from {endpoint}: {e}"));
        let status = response.status();
        let body = response.text().unwrap();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{endpoint} answered {body:?}: {e}"))
        };
        (status, json)
    }

    fn text<'a>(json: &'a Value, name: &str) -> &'a str {
        // The message names the fields present, never their values (tokens).
        let value = json[name].as_str().unwrap_or_else(|| {
            let fields: Vec<&String> = json
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            panic!("no {name} among {fields:?}")
        });
        assert!(!value.is_empty(), "an empty {name}");
        value
    }

    #[test]
    fn device_flow_by_hand_gives_rotating_refresh_tokens_and_a_reused_one_revokes_the_grant() {
        let provider = OidcProvider::start();
        let token_endpoint = provider.endpoint("token_endpoint");
        let (status, device) = post(
            &provider,
            &provider.endpoint("device_authorization_endpoint"),
            &[
                ("client_id", PUBLIC_CLIENT),
                ("scope", "openid offline_access"),
            ],
        );
        assert_eq!(status, StatusCode::OK, "{device}");
        let device_code = text(&device, "device_code");
        let poll = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", device_code),
            ("client_id", PUBLIC_CLIENT),
        ];

        let (status, pending) = post(&provider, &token_endpoint, &poll);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(pending["error"], "authorization_pending");

        provider.approve_device(text(&device, "user_code"));
        let (status, tokens) = post(&provider, &token_endpoint, &poll);
        assert_eq!(status, StatusCode::OK, "{}", provider.log());
        let access = text(&tokens, "access_token");
        let first_refresh = text(&tokens, "refresh_token");
        text(&tokens, "id_token");
        let introspected = provider.introspect(access);
        assert_eq!(introspected["active"], true, "{introspected}");
        assert_eq!(introspected["client_id"], PUBLIC_CLIENT);
        assert_eq!(introspected["sub"], LOGIN);

        let refresh = |token: &str| {
            post(
                &provider,
                &token_endpoint,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token),
                    ("client_id", PUBLIC_CLIENT),
                ],
            )
        };
        let (status, refreshed) = refresh(first_refresh);
        assert_eq!(status, StatusCode::OK, "{refreshed}");
        let second_refresh = text(&refreshed, "refresh_token");
        assert_ne!(second_refresh, first_refresh, "the refresh token rotates");
        assert_ne!(text(&refreshed, "access_token"), access);
        assert!(provider.is_active(second_refresh));
        assert!(
            !provider.is_active(first_refresh),
            "a rotated refresh token is consumed"
        );

        // Last: presenting the consumed token is an invalid_grant that revokes
        // the whole grant, its successor included.
        let (status, reused) = refresh(first_refresh);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(reused["error"], "invalid_grant");
        assert!(
            !provider.is_active(second_refresh),
            "reuse revokes the grant"
        );
    }

    #[test]
    fn authorization_code_flow_by_hand_with_pkce_then_revocation_ends_the_grant() {
        let provider = OidcProvider::start();
        let pkce = new_pkce([7; 32]);
        let state = "state-of-this-test";
        // Nothing listens there: the harness returns the redirect unfollowed.
        let redirect_uri = loopback_redirect_uri(47_011, REDIRECT_PATH);
        let mut url = Url::parse(&provider.endpoint("authorization_endpoint")).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", PUBLIC_CLIENT)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", "openid offline_access")
            .append_pair("state", state)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256");

        let location = Url::parse(&provider.authorize(url.as_str())).unwrap();
        assert_eq!(
            format!(
                "{}{}",
                location.origin().ascii_serialization(),
                location.path()
            ),
            redirect_uri
        );
        let query: Vec<(String, String)> = location.query_pairs().into_owned().collect();
        let param = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
                .unwrap_or_else(|| panic!("no {name} in the redirect to {}", location.path()))
        };
        assert_eq!(param("state"), state);
        assert_eq!(param("iss"), provider.issuer());

        let (status, tokens) = post(
            &provider,
            &provider.endpoint("token_endpoint"),
            &[
                ("grant_type", "authorization_code"),
                ("code", param("code")),
                ("redirect_uri", &redirect_uri),
                ("code_verifier", pkce.verifier.expose_secret()),
                ("client_id", PUBLIC_CLIENT),
            ],
        );
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let access = text(&tokens, "access_token");
        let refresh = text(&tokens, "refresh_token");
        assert!(provider.is_active(access));
        assert!(provider.is_active(refresh));

        let (status, revoked) = post(
            &provider,
            &provider.endpoint("revocation_endpoint"),
            &[
                ("token", refresh),
                ("token_type_hint", "refresh_token"),
                ("client_id", PUBLIC_CLIENT),
            ],
        );
        assert_eq!(status, StatusCode::OK, "{revoked}");
        assert!(
            !provider.is_active(refresh),
            "a revoked refresh token is inactive"
        );
        assert!(
            !provider.is_active(access),
            "revoking the refresh token revokes the grant"
        );
    }

    #[test]
    fn client_credentials_for_the_service_client_with_a_short_access_ttl() {
        let provider = OidcProvider::start_with(Options {
            access_ttl: Some(60),
        });
        let token_endpoint = provider.endpoint("token_endpoint");
        let response = provider
            .http()
            .post(&token_endpoint)
            .basic_auth(SERVICE_CLIENT, Some(SERVICE_SECRET))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", SERVICE_SCOPE),
            ])
            .send();
        let tokens = json_of(response, &token_endpoint, StatusCode::OK);
        assert_eq!(tokens["expires_in"], 60);
        assert_eq!(tokens["scope"], SERVICE_SCOPE);
        let introspected = provider.introspect(text(&tokens, "access_token"));
        assert_eq!(introspected["active"], true, "{introspected}");
        assert_eq!(introspected["client_id"], SERVICE_CLIENT);
        assert_eq!(introspected["aud"], SERVICE_AUDIENCE);

        let response = provider
            .http()
            .post(&token_endpoint)
            .basic_auth(SERVICE_CLIENT, Some("not-the-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send();
        assert_eq!(
            json_of(response, &token_endpoint, StatusCode::UNAUTHORIZED)["error"],
            "invalid_client"
        );
    }

    #[test]
    fn forms_are_read_as_a_browser_submits_them() {
        let html = r#"<p class="red">wrong</p>
            <form id="op.deviceConfirmForm" method="POST" action="/device?a=1&amp;b=2">
            <input type="hidden" name="xsrf" value="abc"/>
            <input required type=text name='login' placeholder="Enter any login" autofocus="on">
            <input type="password" name="password" autofocus>
            <input type="checkbox" name="remember" value="yes">
            <input type="checkbox" name="kept" value="yes" checked>
            <input type="submit" name="go" value="Go">
            <input type="hidden" name="quoted" value="&quot;a&#39;b&lt;"></input>
            </form><form action="/second"></form>"#;
        let forms = forms_of(html);
        assert_eq!(
            forms,
            [
                Form {
                    method: "post".into(),
                    action: "/device?a=1&b=2".into(),
                    fields: [
                        ("xsrf", "abc"),
                        ("login", ""),
                        ("password", ""),
                        ("kept", "yes"),
                        ("quoted", "\"a'b<"),
                    ]
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .into(),
                },
                Form {
                    method: "get".into(),
                    action: "/second".into(),
                    fields: Vec::new(),
                },
            ]
        );
        assert_eq!(error_message_of(html).as_deref(), Some("wrong"));
        assert_eq!(
            error_message_of("<pre><strong>error</strong>: invalid_request</pre>").as_deref(),
            Some("error: invalid_request")
        );
        assert_eq!(
            title_of("<title>Sign-in Success</title>"),
            "Sign-in Success"
        );
    }
}
