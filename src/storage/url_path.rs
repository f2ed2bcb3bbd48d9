//! Building request URLs with strict percent-encoding.
//!
//! Every byte outside the RFC 3986 unreserved set (`A-Z a-z 0-9 - . _ ~`) is encoded, so a key or
//! query value can never change the structure of the URL, and `+` is never read back as a space.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::Url;

use super::StorageError;

const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment or query value.
pub(crate) fn encode(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// Appends `path` (already encoded) to the endpoint and adds the query parameters, encoding their
/// values. Parameter names are written as given (`$filter` included), because the services expect
/// them literally.
pub(crate) fn resource_url(
    endpoint: &Url,
    path: &str,
    query: &[(&str, &str)],
) -> Result<Url, StorageError> {
    let mut text = endpoint.as_str().trim_end_matches('/').to_owned();
    text.push('/');
    text.push_str(path);
    for (index, (name, value)) in query.iter().enumerate() {
        text.push(if index == 0 { '?' } else { '&' });
        text.push_str(name);
        text.push('=');
        text.push_str(&encode(value));
    }
    Url::parse(&text).map_err(|error| {
        StorageError::InvalidInput(format!("failed to build a request URL: {error}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_characters() {
        assert_eq!(encode("a b+c'd%e/f"), "a%20b%2Bc%27d%25e%2Ff");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode("safe-._~"), "safe-._~");
    }

    #[test]
    fn builds_path_style_and_host_style_urls() {
        let emulator = Url::parse("http://127.0.0.1:10002/devstoreaccount1").unwrap();
        let url =
            resource_url(&emulator, "jobs()", &[("$filter", "PartitionKey eq 'a+b'")]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:10002/devstoreaccount1/jobs()?$filter=PartitionKey%20eq%20%27a%2Bb%27"
        );

        let azure = Url::parse("https://acct.queue.core.windows.net/").unwrap();
        let url = resource_url(&azure, "work/messages", &[]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://acct.queue.core.windows.net/work/messages"
        );
        let decoded: Vec<(String, String)> = resource_url(&azure, "q", &[("popreceipt", "a+b/c=")])
            .unwrap()
            .query_pairs()
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        assert_eq!(
            decoded,
            vec![("popreceipt".to_owned(), "a+b/c=".to_owned())]
        );
    }
}
