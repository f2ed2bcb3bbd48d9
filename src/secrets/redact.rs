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
