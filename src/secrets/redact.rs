use std::fmt;

/// A secret value whose `Debug` and `Display` print a placeholder instead of the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    pub fn new(value: T) -> Self {
        Redacted(value)
    }

    /// Returns the secret. Call it only where the value goes to its one consumer (a driver or
    /// a signing routine), never to build a message.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Replaces the user-info part (`user:password@`) of every URL in `text`, MongoDB connection
/// strings included, and the value of any `password=`-style option with `***`, for text that
/// may quote a URI.
pub fn redact_connection_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // User info ends at the last '@' before the URL ends. Searching to the end of the word,
        // not to the first '/', also covers a password with an unencoded '/'.
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`'))
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(user_info_end) => {
                out.push_str("***");
                rest = &tail[user_info_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    redact_key_values(&out)
}

fn redact_key_values(text: &str) -> String {
    const KEYS: [&str; 6] = [
        "password=",
        "pwd=",
        "accountkey=",
        "sharedaccesskey=",
        "sharedaccesssignature=",
        "sig=",
    ];
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hit = KEYS.iter().find(|k| lower[i..].starts_with(*k));
        match hit {
            Some(key) => {
                out.push_str(&text[i..i + key.len()]);
                out.push_str("***");
                i += key.len();
                while i < text.len() && !matches!(text.as_bytes()[i], b';' | b'&' | b' ' | b'"') {
                    i += 1;
                }
            }
            None => {
                let ch = text[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}

/// Removes `secret` from `text`: the whole value, the user info of a connection string, and its
/// user name and password as written, percent-decoded and percent-encoded. Other connection
/// strings in the text are redacted too. Used on error text from libraries that might quote
/// the connection string they failed to parse.
pub fn scrub_secret(text: &str, secret: &str) -> String {
    let mut fragments = vec![secret.to_string()];
    if let Some(user_info) = user_info(secret) {
        fragments.push(user_info.to_string());
        let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
        for part in [user, password] {
            fragments.push(part.to_string());
            fragments.push(decode(part));
            fragments.push(encode(&decode(part)));
        }
    }
    // Longest first, so a fragment never leaves a piece of a longer one behind.
    fragments.sort_by_key(|f| std::cmp::Reverse(f.len()));
    let mut out = text.to_string();
    for fragment in fragments.iter().filter(|f| f.len() >= 3) {
        out = out.replace(fragment.as_str(), "***");
    }
    redact_connection_string(&out)
}

/// The user info of a URI-style connection string: from the scheme's `://` to the last `@`.
/// The last `@` is used because an unencoded password may itself contain `@`.
fn user_info(connection_string: &str) -> Option<&str> {
    let start = connection_string.find("://")? + 3;
    let rest = &connection_string[start..];
    let end = rest.rfind('@')?;
    Some(&rest[..end])
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_value() {
        let secret = Redacted::new("p@ss".to_string());
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(secret.expose(), "p@ss");
    }

    #[test]
    fn uri_user_info_is_removed() {
        let text = "failed to reach mongodb://admin:p%40ss%3Aw0rd@127.0.0.1:27017/?tls=false now";
        let redacted = redact_connection_string(text);
        assert_eq!(
            redacted,
            "failed to reach mongodb://***@127.0.0.1:27017/?tls=false now"
        );
    }

    #[test]
    fn user_info_of_any_url_is_removed() {
        let text = "bad: https://hook:PW1@[::1/ and \"postgres://u:pa/ss@db:5432/x\" or mongodb://a:PW2@h1,h2/";
        let redacted = redact_connection_string(text);
        for secret in ["PW1", "pa/ss", "PW2"] {
            assert!(!redacted.contains(secret), "{redacted}");
        }
        assert!(redacted.contains("https://***@[::1/"), "{redacted}");
        assert!(redacted.contains("postgres://***@db:5432/x"), "{redacted}");
        assert!(redacted.contains("mongodb://***@h1,h2/"), "{redacted}");
        let plain = "see https://myvault.vault.azure.net/ and mongodb is fine";
        assert_eq!(redact_connection_string(plain), plain);
    }

    #[test]
    fn srv_uri_and_options_are_removed() {
        let text = "mongodb+srv://u:pw@h.example/?authSource=admin&password=x1";
        let redacted = redact_connection_string(text);
        assert!(!redacted.contains("pw@"));
        assert!(!redacted.contains("x1"));
        assert!(redacted.contains("h.example"));
    }

    #[test]
    fn storage_key_is_removed() {
        let text = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=abc+/==;QueueEndpoint=x";
        let redacted = redact_connection_string(text);
        assert_eq!(
            redacted,
            "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=***;QueueEndpoint=x"
        );
    }
}
