//! The few HTML pages a person sees: the device verification form, the consent page
//! of the authorization endpoint, and the pages that say what happened. Each is one
//! small, valid, self-contained document (no scripts, no external assets, one inline
//! style sheet). Everything that came from a request is HTML-escaped here, at the one
//! place it enters the markup.

use crate::authorize::AuthorizeRequest;
use crate::config::DEFAULT_USER;

/// Longest echo of a value a person typed, in characters; the rest is cut.
const ECHO_MAX_CHARS: usize = 64;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;\
padding:0 1rem;line-height:1.5}label{display:block;margin:.75rem 0}\
input[type=text]{display:block;width:100%;padding:.4rem;font-size:1rem;box-sizing:border-box}\
button{font-size:1rem;padding:.4rem 1.2rem;margin-right:.5rem}\
.note{color:#555;font-size:.9rem}";

/// `text` with the five characters that mean something in HTML replaced by references,
/// safe inside element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
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

/// What a person typed, cut to a length fit to show, escaped.
fn echo(text: &str) -> String {
    let cut: String = text.chars().take(ECHO_MAX_CHARS).collect();
    let ellipsis = if cut.len() < text.len() { "…" } else { "" };
    format!("{}{ellipsis}", escape(&cut))
}

/// A whole document; `body` is markup already escaped.
fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · authkeep devidp</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>{title}</h1>\n{body}\n\
         <p class=\"note\">authkeep development identity provider: for tests only, never \
         for production.</p>\n</body>\n</html>\n",
        title = escape(title),
    )
}

/// The text input for the user name, `alice` unless given.
fn user_input() -> String {
    format!(
        "<label>User name <input type=\"text\" name=\"user\" value=\"{}\" \
         autocomplete=\"username\"></label>",
        escape(DEFAULT_USER)
    )
}

const BUTTONS: &str = "<p><button type=\"submit\" name=\"action\" value=\"approve\">Approve\
</button><button type=\"submit\" name=\"action\" value=\"deny\">Deny</button></p>";

/// The device verification page: a form for the user code (pre-filled with
/// `user_code`) and the user name, posting to `action`.
pub(crate) fn device_form(action: &str, user_code: &str) -> String {
    let body = format!(
        "<p>Enter the code shown on your device.</p>\n\
         <form method=\"post\" action=\"{action}\">\n\
         <label>Code <input type=\"text\" name=\"user_code\" value=\"{code}\" \
         autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\"></label>\n\
         {user}\n{BUTTONS}\n</form>",
        action = escape(action),
        code = echo(user_code),
        user = user_input(),
    );
    document("Connect a device", &body)
}

/// The page after a device authorization was answered.
pub(crate) fn device_done(user_code: &str, approved_for: Option<&str>) -> String {
    let code = escape(user_code);
    match approved_for {
        Some(user) => document(
            "Device approved",
            &format!(
                "<p>The device with code <strong>{code}</strong> is signed in as \
                 <strong>{}</strong>. You may close this page.</p>",
                echo(user)
            ),
        ),
        None => document(
            "Device denied",
            &format!(
                "<p>The device with code <strong>{code}</strong> was denied. You may close \
                 this page.</p>"
            ),
        ),
    }
}

/// The consent page of the authorization endpoint: who asks for what, a user name,
/// and a form posting the request's parameters back to `action`.
pub(crate) fn consent(action: &str, request: &AuthorizeRequest) -> String {
    let hidden: String = request
        .fields()
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
                escape(value)
            )
        })
        .collect();
    let body = format!(
        "<p><strong>{client}</strong> asks to sign you in with the scope \
         <strong>{scope}</strong>.</p>\n<p class=\"note\">It will be sent back to {redirect}.\
         </p>\n<form method=\"post\" action=\"{action}\">\n{hidden}{user}\n{BUTTONS}\n</form>",
        client = echo(&request.client_id),
        scope = escape(&request.scope),
        redirect = escape(&request.redirect_uri),
        action = escape(action),
        user = user_input(),
    );
    document("Sign in", &body)
}

/// A page saying what went wrong; `message` is plain text.
pub(crate) fn problem(title: &str, message: &str) -> String {
    document(title, &format!("<p>{}</p>", escape(message)))
}

/// A page saying a user code was not accepted, echoing what was typed.
pub(crate) fn unknown_user_code(typed: &str, reason: &str) -> String {
    document(
        "Code not accepted",
        &format!(
            "<p>The code <strong>{}</strong> {}.</p>\n<p><a href=\"/device\">Try again</a></p>",
            echo(typed),
            escape(reason)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_both_quotes() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_device_form_escapes_and_prefills_the_user_code() {
        let page = device_form("/device", "\"><script>alert(1)</script>");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("value=\"&quot;&gt;&lt;script&gt;"), "{page}");
        assert!(page.contains("name=\"user\" value=\"alice\""));
        assert!(page.contains("name=\"action\" value=\"approve\""));
        assert!(page.contains("name=\"action\" value=\"deny\""));
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(!page.contains("http"), "no external assets: {page}");
    }

    #[test]
    fn long_echoes_are_cut() {
        let page = unknown_user_code(&"B".repeat(1000), "is unknown");
        assert!(page.contains(&format!("{}…", "B".repeat(64))));
        assert!(!page.contains(&"B".repeat(65)));
    }
}
