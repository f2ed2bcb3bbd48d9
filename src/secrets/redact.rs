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

/// Replaces the user-info part of a MongoDB connection string (`user:password@`) and any
/// `password=`-style option with `***`, for text that must mention a URI.
pub fn redact_connection_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("mongodb") {
        out.push_str(&rest[..start]);
        let candidate = &rest[start..];
        let Some(scheme_end) = candidate.find("://") else {
            out.push_str(candidate);
            return out;
        };
        let after_scheme = &candidate[scheme_end + 3..];
        // The authority ends at the first '/', '?' or whitespace; user info ends at its last '@'.
        let authority_len = after_scheme
            .find(|c: char| c == '/' || c == '?' || c.is_whitespace())
            .unwrap_or(after_scheme.len());
        let authority = &after_scheme[..authority_len];
        out.push_str(&candidate[..scheme_end + 3]);
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***@");
                out.push_str(&authority[at + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &after_scheme[authority_len..];
    }
    out.push_str(rest);
    redact_key_values(&out)
}

fn redact_key_values(text: &str) -> String {
    const KEYS: [&str; 4] = ["password=", "accountkey=", "sharedaccesssignature=", "sig="];
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
