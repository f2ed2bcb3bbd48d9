//! Reading JSON request bodies into typed requests, with errors a caller can act on.
//!
//! serde_json's own messages speak Rust ("expected u32") and, through `serde_path_to_error`,
//! blame whatever field was open when the text ran out. Here a body that is not JSON at all is
//! reported as such, with its line and column, and a value of the wrong kind is reported by its
//! field path with the kind the field takes.

use axum::body::Bytes;
use serde_json::error::Category;

use super::ApiError;

/// Parses a JSON body, naming the field at fault and the fix.
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalidBody",
            "the request body is empty; send a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let error = e.inner();
        // serde_json reports a value of the wrong kind where it expected an enum's string as a
        // syntax error, so a body that parses as JSON gets the field-level message.
        let message = if error.is_syntax() && is_json(body) {
            wrong_kind(&path, "expected a string naming one of the field's values")
        } else {
            describe(&path, error)
        };
        ApiError::bad_request("invalidBody", message)
    })?;
    // Text after the object is a malformed body too, not something to drop unread.
    deserializer
        .end()
        .map_err(|e| ApiError::bad_request("invalidBody", describe(".", &e)))?;
    Ok(value)
}

/// Returns true when `body` is one well-formed JSON value.
fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// Describes a value of the wrong kind at `path`.
fn wrong_kind(path: &str, detail: &str) -> String {
    if path == "." || path.is_empty() {
        format!("the request body is invalid: {detail}; the schema is at GET /api/openapi.json")
    } else {
        format!("field {path} is invalid: {detail}; the schema is at GET /api/openapi.json")
    }
}

/// Describes one parse failure at `path` (`.` for the body itself).
fn describe(path: &str, error: &serde_json::Error) -> String {
    let (line, column) = (error.line(), error.column());
    let detail = strip_position(&error.to_string());
    match error.classify() {
        Category::Eof => format!(
            "the request body ends early, at line {line} column {column} ({detail}); send one \
             complete JSON object"
        ),
        Category::Syntax | Category::Io => format!(
            "the request body is not valid JSON at line {line} column {column} ({detail}); fix \
             the syntax there"
        ),
        Category::Data => {
            let detail = plain_kinds(&detail);
            if let Some(field) = missing_field(&detail) {
                let owner = if path == "." || path.is_empty() {
                    "the request body".to_string()
                } else {
                    format!("field {path}")
                };
                return format!("{owner} lacks the required field `{field}`; add it");
            }
            wrong_kind(path, &detail)
        }
    }
}

/// Drops serde_json's " at line L column C" suffix, because callers say where in their own words.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => message[..at].to_string(),
        _ => message.to_string(),
    }
}

/// Extracts the field name from serde's "missing field `name`".
fn missing_field(detail: &str) -> Option<&str> {
    detail
        .strip_prefix("missing field `")?
        .split('`')
        .next()
        .filter(|name| !name.is_empty())
}

/// Replaces Rust type names in serde's "expected ..." with the JSON kinds they accept.
fn plain_kinds(detail: &str) -> String {
    const NUMBER: &str = "expected a whole number, not in quotes";
    const KINDS: &[(&str, &str)] = &[
        ("expected u8", NUMBER),
        ("expected u16", NUMBER),
        ("expected u32", NUMBER),
        ("expected u64", NUMBER),
        ("expected usize", NUMBER),
        ("expected i32", NUMBER),
        ("expected i64", NUMBER),
        ("expected f64", "expected a number, not in quotes"),
        ("expected a sequence", "expected a JSON array"),
    ];
    for (rust, json) in KINDS {
        if let Some(rest) = detail.strip_suffix(rust) {
            return format!("{rest}{json}");
        }
    }
    // serde names the Rust struct that a JSON object maps to, which means nothing to a caller.
    if let Some(at) = detail.rfind("expected struct ") {
        return format!("{}expected a JSON object", &detail[..at]);
    }
    detail.to_string()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        #[serde(default)]
        options: Options,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Options {
        batch_size: Option<u32>,
    }

    fn message(body: &str) -> String {
        let error = parse_body::<Sample>(&Bytes::from(body.to_string())).unwrap_err();
        assert_eq!(error.code, "invalidBody");
        error.message
    }

    #[test]
    fn truncated_body_is_reported_as_truncated() {
        let text = message(r#"{"name": "a", "options": {"batchSize": 5"#);
        assert!(text.contains("ends early"), "{text}");
        assert!(text.contains("line 1 column"), "{text}");
        assert!(!text.contains("field"), "{text}");
    }

    #[test]
    fn syntax_error_names_the_position() {
        let text = message("{\"name\": \"a\",\n \"options\": {batchSize: 5}}");
        assert!(text.contains("not valid JSON at line 2"), "{text}");
        let text = message(r#"{"name": "a"} {"name": "b"}"#);
        assert!(text.contains("not valid JSON"), "{text}");
        assert!(text.contains("trailing characters"), "{text}");
    }

    #[test]
    fn wrong_kind_names_field_and_json_kind() {
        let text = message(r#"{"name": "a", "options": {"batchSize": "big"}}"#);
        assert!(text.contains("field options.batchSize"), "{text}");
        assert!(
            text.contains("expected a whole number, not in quotes"),
            "{text}"
        );
        assert!(!text.contains("u32"), "{text}");
        let text = message(r#"{"name": "a", "options": {"batchSize": -1}}"#);
        assert!(text.contains("integer `-1`"), "{text}");
        let text = message(r#"{"name": "a", "options": "fast"}"#);
        assert!(text.contains("field options"), "{text}");
        assert!(text.contains("expected a JSON object"), "{text}");
        assert!(!text.contains("struct"), "{text}");
    }

    #[test]
    fn enum_wrong_kind_names_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        enum Speed {
            Slow,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct WithEnum {
            speed: Speed,
        }
        for body in [r#"{"speed": null}"#, r#"{"speed": 1}"#] {
            let error = parse_body::<WithEnum>(&Bytes::from(body.to_string())).unwrap_err();
            assert!(error.message.contains("field speed"), "{}", error.message);
            assert!(
                !error.message.contains("not valid JSON"),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn missing_field_is_named() {
        let text = message(r#"{"options": {}}"#);
        assert_eq!(
            text,
            "the request body lacks the required field `name`; add it"
        );
    }

    #[test]
    fn empty_and_blank_bodies_are_refused() {
        assert!(message("").contains("empty"));
        assert!(message(" \n").contains("empty"));
    }

    #[test]
    fn valid_body_parses() {
        let sample: Sample = parse_body(&Bytes::from_static(
            br#"{"name": "a", "options": {"batchSize": 7}}"#,
        ))
        .unwrap();
        assert_eq!(sample.options.batch_size, Some(7));
    }
}
