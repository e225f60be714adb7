//! Text from a provider made fit to show: every secret the request carried
//! redacted, control characters and terminal escape sequences removed, one line, a
//! bounded length. Providers echo what they were sent (a refresh token, a client
//! secret, an `Authorization` header) and some put escape sequences in their
//! errors, so nothing a provider says reaches a person, a log or a stored record
//! without passing through [`sanitize`]. URLs shown to people pass through
//! [`display_url`], which also drops user information.

use std::fmt;

use url::Url;
use zeroize::Zeroizing;

/// What a redacted secret is shown as.
const REDACTED: &str = "[redacted]";
/// Stands for a redacted secret between the steps of [`sanitize`], so that the
/// second redaction cannot find a short secret inside `[redacted]`: a Unicode
/// noncharacter, reserved for internal use, removed from the provider's text first.
const MARKER: char = '\u{fdd0}';
/// The longest URL shown, in characters.
const URL_MAX_CHARS: usize = 200;

/// The secrets one request carried, for [`sanitize`] to redact. `Debug` shows only
/// how many there are; the values are zeroized on drop.
#[derive(Clone, Default)]
pub struct Secrets(Vec<Zeroizing<String>>);

impl Secrets {
    /// No secrets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret as the request carried it. It is redacted as it is, and also
    /// form-encoded and percent-encoded, the forms a provider echoing a request body
    /// or URL would show. An empty secret is ignored.
    pub fn add(&mut self, secret: &str) {
        if !secret.is_empty() {
            self.0.push(Zeroizing::new(secret.to_owned()));
        }
    }

    /// Adds the HTTP Basic credential a client authenticating with
    /// `client_secret_basic` sends, `base64(urlencode(id):urlencode(secret))`.
    pub fn add_basic_credential(&mut self, client_id: &str, client_secret: &str) {
        let credential = Zeroizing::new(super::basic_credential(client_id, client_secret));
        self.add(&credential);
    }

    /// How many secrets were added.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no secret was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every form of every secret, without duplicates.
    fn patterns(&self) -> Vec<Zeroizing<String>> {
        let mut patterns: Vec<Zeroizing<String>> = Vec::with_capacity(self.0.len() * 3);
        for secret in &self.0 {
            let forms = [
                Zeroizing::new(secret.as_str().to_owned()),
                Zeroizing::new(
                    url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
                ),
                Zeroizing::new(percent_encode(secret)),
            ];
            for form in forms {
                if !patterns.contains(&form) {
                    patterns.push(form);
                }
            }
        }
        patterns
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("count", &self.len())
            .finish()
    }
}

/// Provider text as it may be shown: (a) every form of every secret in `secrets`
/// replaced by `[redacted]`, (b) control characters, ANSI escape sequences and
/// invisible formatting characters removed and whitespace runs made single spaces,
/// (c) at most `max_chars` characters, the last one `…` when text was cut.
///
/// Redaction comes before the cut, so a secret the cut would halve is gone
/// entirely; it runs again after (b), because removing a control character can
/// join the two halves of a secret it split.
pub fn sanitize(text: &str, secrets: &Secrets, max_chars: usize) -> String {
    let patterns = secrets.patterns();
    let redacted = redact(&text.replace(MARKER, ""), &patterns);
    let plain = redact(&Plain::of(&redacted), &patterns);
    cap(plain.replace(MARKER, REDACTED), max_chars)
}

/// A URL as people may see it: without user information (`user:pass@`), on one
/// line, shortened. Anything else stays as written, so an issuer that differs from
/// another only by a trailing slash still shows the difference. Text that is not a
/// URL is shown sanitised.
pub fn display_url(url: &str) -> String {
    sanitize(&without_userinfo(url), &Secrets::new(), URL_MAX_CHARS)
}

/// `url` with the user information of its authority removed as written; when the
/// URL parser still finds user information (it accepts forms such as `http:u:p@h`),
/// its own serialisation with the user information cleared.
fn without_userinfo(url: &str) -> String {
    let textual = match url.find("//") {
        Some(slashes) => {
            let (head, rest) = url.split_at(slashes + 2);
            let authority = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
            match rest[..authority].rfind('@') {
                Some(at) => format!("{head}{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    match Url::parse(&textual) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            // Only URLs that cannot have user information refuse these, and this
            // one has some.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.into()
        }
        _ => textual,
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `text` with every occurrence of every pattern replaced by [`MARKER`].
/// Occurrences that overlap or touch, of one pattern or of several, become one
/// marker, so no order of patterns can leave part of a secret behind.
fn redact(text: &str, patterns: &[Zeroizing<String>]) -> String {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for pattern in patterns.iter().filter(|p| !p.is_empty()) {
        let mut from = 0;
        while let Some(found) = text[from..].find(pattern.as_str()) {
            let start = from + found;
            spans.push((start, start + pattern.len()));
            // One character on, so overlapping occurrences are found too.
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    if spans.is_empty() {
        return text.to_owned();
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut spans = spans.into_iter();
    let mut current = spans.next();
    while let Some((start, mut end)) = current {
        current = None;
        for (next_start, next_end) in spans.by_ref() {
            if next_start <= end {
                end = end.max(next_end);
            } else {
                current = Some((next_start, next_end));
                break;
            }
        }
        out.push_str(&text[copied..start]);
        out.push(MARKER);
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// At most `max_chars` characters, ending in `…` when cut.
fn cap(text: String, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text;
    }
    let Some(keep) = max_chars.checked_sub(1) else {
        return String::new();
    };
    let mut out: String = text.chars().take(keep).collect();
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}

/// Where [`Plain`] is inside an escape sequence (ECMA-48).
#[derive(Clone, Copy)]
enum State {
    Text,
    /// After ESC.
    Escape,
    /// After ESC and intermediate bytes, before the final byte.
    EscapeIntermediate,
    /// Inside a control sequence (ESC `[` or CSI), up to its final byte.
    ControlSequence,
    /// Inside a control string (OSC, DCS, SOS, PM, APC), up to BEL or ST.
    ControlString,
    /// ESC inside a control string: `\` ends the string, anything else starts a
    /// new escape.
    ControlStringEscape,
}

const ESC: char = '\u{1b}';
const BEL: char = '\u{7}';
const CSI: char = '\u{9b}';
const ST: char = '\u{9c}';

/// Text without control characters or escape sequences, whitespace runs as single
/// spaces, trimmed.
struct Plain {
    out: String,
    space_pending: bool,
}

impl Plain {
    fn of(text: &str) -> String {
        let mut plain = Plain {
            out: String::with_capacity(text.len()),
            space_pending: false,
        };
        let mut state = State::Text;
        for c in text.chars() {
            state = match state {
                State::Text => plain.text(c),
                State::Escape => plain.escape(c),
                State::EscapeIntermediate => match c {
                    '\u{20}'..='\u{2f}' => State::EscapeIntermediate,
                    '\u{30}'..='\u{7e}' => State::Text,
                    _ => plain.text(c),
                },
                State::ControlSequence => match c {
                    '\u{20}'..='\u{3f}' => State::ControlSequence,
                    '\u{40}'..='\u{7e}' => State::Text,
                    _ => plain.text(c),
                },
                State::ControlString => match c {
                    BEL | ST => State::Text,
                    ESC => State::ControlStringEscape,
                    _ => State::ControlString,
                },
                State::ControlStringEscape => match c {
                    '\\' => State::Text,
                    _ => plain.escape(c),
                },
            };
        }
        plain.out
    }

    fn text(&mut self, c: char) -> State {
        match c {
            ESC => State::Escape,
            CSI => State::ControlSequence,
            // DCS, SOS, OSC, PM, APC.
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => State::ControlString,
            c if c.is_whitespace() => {
                self.space_pending = !self.out.is_empty();
                State::Text
            }
            c if c.is_control() || is_invisible_format(c) => State::Text,
            c => {
                if self.space_pending {
                    self.out.push(' ');
                    self.space_pending = false;
                }
                self.out.push(c);
                State::Text
            }
        }
    }

    /// The character after ESC.
    fn escape(&mut self, c: char) -> State {
        match c {
            '[' => State::ControlSequence,
            ']' | 'P' | 'X' | '^' | '_' => State::ControlString,
            '\u{20}'..='\u{2f}' => State::EscapeIntermediate,
            '\u{30}'..='\u{7e}' => State::Text,
            // A lone ESC: drop it, keep what follows.
            _ => self.text(c),
        }
    }
}

/// Characters that show nothing yet change how the text around them shows:
/// zero-width characters and bidirectional overrides.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Secrets {
        let mut secrets = Secrets::new();
        for value in values {
            secrets.add(value);
        }
        secrets
    }

    /// No character a terminal would act on.
    fn assert_plain(text: &str) {
        for c in text.chars() {
            let code = u32::from(c);
            assert!(
                code >= 0x20 && !(0x7f..=0x9f).contains(&code),
                "control character U+{code:04X} in {text:?}"
            );
        }
    }

    /// Neither the secret nor any 8-character piece of it.
    fn assert_hidden(text: &str, secret: &str) {
        assert!(!text.contains(secret), "{secret:?} in {text:?}");
        let chars: Vec<char> = secret.chars().collect();
        for piece in chars.windows(8) {
            let piece: String = piece.iter().collect();
            assert!(
                !text.contains(&piece),
                "{piece:?} of {secret:?} in {text:?}"
            );
        }
    }

    #[test]
    fn debug_shows_only_a_count() {
        let mut s = secrets(&["hunter2-refresh", "hunter3-client"]);
        s.add_basic_credential("svc", "hunter3-client");
        let shown = format!("{s:?}");
        assert_eq!(shown, "Secrets { count: 3 }");
        assert!(!shown.contains("hunter"));
    }

    #[test]
    fn every_form_of_a_secret_is_redacted() {
        let secret = "a b/c+d~e*f";
        let s = secrets(&[secret]);
        for form in [secret, "a+b%2Fc%2Bd%7Ee*f", "a%20b%2Fc%2Bd~e%2Af"] {
            assert_eq!(
                sanitize(&format!("got {form} here"), &s, 100),
                "got [redacted] here",
                "{form}"
            );
        }
    }

    #[test]
    fn secrets_of_any_length_are_redacted() {
        assert_eq!(sanitize("a=pw;", &secrets(&["pw"]), 100), "a=[redacted];");
        assert_eq!(sanitize("x", &secrets(&["x"]), 100), "[redacted]");
        // A secret found again after controls are removed is not looked for inside
        // an earlier `[redacted]`.
        assert_eq!(
            sanitize("x\u{7}y e", &secrets(&["xy", "e"]), 100),
            "[redacted] [redacted]"
        );
        assert_eq!(sanitize("abc", &secrets(&[""]), 100), "abc");
    }

    #[test]
    fn overlapping_and_nested_secrets_leave_nothing_behind() {
        // "cdefgh" inside "abcdefghij", and overlapping occurrences of one secret.
        let s = secrets(&["cdefgh", "abcdefghij", "xyxy"]);
        assert_eq!(
            sanitize("1 abcdefghij 2 cdefgh 3 xyxyxy 4", &s, 100),
            "1 [redacted] 2 [redacted] 3 [redacted] 4"
        );
    }

    #[test]
    fn secret_straddling_the_length_cap_is_redacted_before_truncation() {
        let secret = "SECRET-0123456789-abcdefghijklmnop";
        let text = format!("{}{secret} and more", "x".repeat(290));
        let shown = sanitize(&text, &secrets(&[secret]), 300);
        assert_hidden(&shown, secret);
        assert_eq!(shown.chars().count(), 300);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn a_secret_split_by_a_control_character_is_still_redacted() {
        let shown = sanitize(
            "token: SECRET\u{0}-TOKEN-42",
            &secrets(&["SECRET-TOKEN-42"]),
            100,
        );
        assert_eq!(shown, "token: [redacted]");
    }

    #[test]
    fn escape_sequences_and_controls_are_removed() {
        let cases = [
            ("\u{1b}[31mred\u{1b}[0m", "red"),
            ("\u{1b}]0;title\u{7}after", "after"),
            ("\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\", "link"),
            ("\u{1b}Pdevice\u{1b}\\ok", "ok"),
            ("lone \u{1b}", "lone"),
            ("\u{1b}(Bcharset", "charset"),
            (
                "c1 \u{9b}2Jclear \u{9d}osc\u{9c}done \u{85}next",
                "c1 clear done next",
            ),
            ("bell\u{7} nul\u{0} del\u{7f}", "bell nul del"),
            ("a\r\n\tb  \u{b}c\u{2028}d", "a b c d"),
            (
                "bidi \u{202e}desrever\u{202c} \u{200b}zw",
                "bidi desrever zw",
            ),
            ("  trimmed  ", "trimmed"),
        ];
        for (text, expected) in cases {
            let shown = sanitize(text, &Secrets::new(), 100);
            assert_eq!(shown, expected, "{text:?}");
            assert_plain(&shown);
        }
    }

    #[test]
    fn an_unterminated_control_string_hides_the_rest() {
        assert_eq!(
            sanitize("shown \u{1b}]0;never shown", &Secrets::new(), 100),
            "shown"
        );
    }

    #[test]
    fn the_cap_counts_characters_and_includes_the_ellipsis() {
        assert_eq!(sanitize("abcdef", &Secrets::new(), 6), "abcdef");
        assert_eq!(sanitize("abcdefg", &Secrets::new(), 6), "abcde…");
        assert_eq!(sanitize("ab   cdefg", &Secrets::new(), 4), "ab…");
        assert_eq!(sanitize("ééééé", &Secrets::new(), 3), "éé…");
        assert_eq!(sanitize("abc", &Secrets::new(), 0), "");
    }

    #[test]
    fn the_basic_credential_is_redacted_in_every_form() {
        let mut s = Secrets::new();
        s.add_basic_credential("svc", "pw?x");
        let credential = crate::oauth::basic_credential("svc", "pw?x");
        let header = format!("Authorization: Basic {credential}");
        assert_eq!(
            sanitize(&header, &s, 100),
            "Authorization: Basic [redacted]"
        );
        let encoded: String = url::form_urlencoded::byte_serialize(credential.as_bytes()).collect();
        assert_eq!(sanitize(&encoded, &s, 100), "[redacted]");
    }

    #[test]
    fn display_url_drops_user_information() {
        let cases = [
            (
                "https://user:pass@idp.example/realm",
                "https://idp.example/realm",
            ),
            ("https://user@idp.example", "https://idp.example"),
            (
                "https://us:p@ss@idp.example/x?q=1#f",
                "https://idp.example/x?q=1#f",
            ),
            ("http:user:pass@idp.example/x", "http://idp.example/x"),
            ("https://idp.example/a@b", "https://idp.example/a@b"),
            ("https://idp.example/", "https://idp.example/"),
            ("not a url", "not a url"),
            ("nope://us:pw@[bad/x", "nope://[bad/x"),
        ];
        for (url, expected) in cases {
            assert_eq!(display_url(url), expected, "{url}");
        }
    }

    #[test]
    fn display_url_is_one_short_line() {
        assert_eq!(
            display_url("https://idp.example/\u{1b}[2J\nx"),
            "https://idp.example/ x"
        );
        let long = format!("https://idp.example/{}", "a".repeat(70_000));
        let shown = display_url(&long);
        assert_eq!(shown.chars().count(), URL_MAX_CHARS);
        assert!(shown.starts_with("https://idp.example/aaa") && shown.ends_with('…'));
    }
}
