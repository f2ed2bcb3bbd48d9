//! Parsing of Azure Storage connection strings.
//!
//! Supported forms: `UseDevelopmentStorage=true` (Azurite's well-known account on 127.0.0.1), and
//! `DefaultEndpointsProtocol=..;AccountName=..;AccountKey=..` with optional `TableEndpoint`,
//! `QueueEndpoint` and `EndpointSuffix`. Keys are matched case-insensitively and unknown keys such
//! as `BlobEndpoint` are ignored. No error message repeats the account key or any other value of
//! the string, because a parse error may be logged.

use base64::Engine as _;
use url::Url;

use super::StorageError;

/// Azurite's well-known development account. These values are public and fixed by the emulator.
pub(crate) const DEV_ACCOUNT: &str = "devstoreaccount1";
pub(crate) const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_QUEUE_ENDPOINT: &str = "http://127.0.0.1:10001/devstoreaccount1";
const DEV_TABLE_ENDPOINT: &str = "http://127.0.0.1:10002/devstoreaccount1";

const DEFAULT_ENDPOINT_SUFFIX: &str = "core.windows.net";

/// The parts of a connection string that the table and queue clients use.
pub(crate) struct ParsedConnectionString {
    pub account: String,
    pub key: Vec<u8>,
    pub table_endpoint: Url,
    pub queue_endpoint: Url,
}

pub(crate) fn parse(connection_string: &str) -> Result<ParsedConnectionString, StorageError> {
    let settings = split_settings(connection_string)?;
    let setting = |name: &str| -> Option<&str> {
        settings
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    };

    if let Some(value) = setting("UseDevelopmentStorage") {
        if !value.eq_ignore_ascii_case("true") {
            return Err(invalid("UseDevelopmentStorage must be `true` when present"));
        }
        if setting("DevelopmentStorageProxyUri").is_some() {
            return Err(invalid(
                "DevelopmentStorageProxyUri is not supported; give explicit TableEndpoint and QueueEndpoint instead",
            ));
        }
        return Ok(ParsedConnectionString {
            account: DEV_ACCOUNT.to_owned(),
            key: decode_key(DEV_ACCOUNT_KEY)?,
            table_endpoint: Url::parse(DEV_TABLE_ENDPOINT).expect("constant URL is valid"),
            queue_endpoint: Url::parse(DEV_QUEUE_ENDPOINT).expect("constant URL is valid"),
        });
    }

    if setting("SharedAccessSignature").is_some() {
        return Err(invalid(
            "SAS connection strings are not supported; use an account key or a Microsoft Entra ID identity",
        ));
    }

    let account = setting("AccountName")
        .filter(|name| !name.is_empty())
        .ok_or_else(|| invalid("AccountName is missing"))?
        .to_owned();
    let key = decode_key(setting("AccountKey").ok_or_else(|| invalid("AccountKey is missing"))?)?;

    let protocol = setting("DefaultEndpointsProtocol").unwrap_or("https");
    if !protocol.eq_ignore_ascii_case("https") && !protocol.eq_ignore_ascii_case("http") {
        return Err(invalid(
            "DefaultEndpointsProtocol must be `https` or `http`",
        ));
    }
    let suffix = setting("EndpointSuffix").unwrap_or(DEFAULT_ENDPOINT_SUFFIX);

    let endpoint = |explicit_name: &str, service: &str| -> Result<Url, StorageError> {
        match setting(explicit_name) {
            Some(explicit) => parse_endpoint(explicit_name, explicit),
            None => parse_endpoint(
                explicit_name,
                &format!("{protocol}://{account}.{service}.{suffix}"),
            ),
        }
    };

    Ok(ParsedConnectionString {
        table_endpoint: endpoint("TableEndpoint", "table")?,
        queue_endpoint: endpoint("QueueEndpoint", "queue")?,
        account,
        key,
    })
}

/// Splits `key=value;key=value` at the first `=` of each segment, because base64 keys end in `=`.
fn split_settings(connection_string: &str) -> Result<Vec<(&str, &str)>, StorageError> {
    let mut settings = Vec::new();
    for (index, segment) in connection_string.split(';').enumerate() {
        let segment = segment.trim();
        if segment.is_empty() {
            continue;
        }
        // The segment itself is not quoted in the error because it may be the account key.
        let (key, value) = segment.split_once('=').ok_or_else(|| {
            invalid(&format!(
                "segment {} of the connection string has no `=`",
                index + 1
            ))
        })?;
        settings.push((key.trim(), value.trim()));
    }
    if settings.is_empty() {
        return Err(invalid("the connection string is empty"));
    }
    Ok(settings)
}

fn decode_key(key: &str) -> Result<Vec<u8>, StorageError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| invalid("AccountKey is not valid base64"))?;
    if bytes.is_empty() {
        return Err(invalid("AccountKey is empty"));
    }
    Ok(bytes)
}

/// Parses and checks a service endpoint. A query string is rejected because it would carry a SAS
/// token that this client neither uses nor redacts.
pub(crate) fn parse_endpoint(name: &str, value: &str) -> Result<Url, StorageError> {
    let url = Url::parse(value)
        .map_err(|error| invalid(&format!("{name} is not a valid URL: {error}")))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(invalid(&format!("{name} must use https or http")));
    }
    if url.host_str().is_none() {
        return Err(invalid(&format!("{name} has no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(&format!(
            "{name} must not contain a query string or fragment"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(&format!(
            "{name} must not contain user information"
        )));
    }
    Ok(url)
}

fn invalid(message: &str) -> StorageError {
    StorageError::InvalidInput(format!("invalid storage connection string: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1ieXRlcw==";

    #[test]
    fn development_storage_uses_loopback() {
        let parsed = parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(parsed.account, DEV_ACCOUNT);
        assert_eq!(
            parsed.table_endpoint.as_str(),
            "http://127.0.0.1:10002/devstoreaccount1"
        );
        assert_eq!(
            parsed.queue_endpoint.as_str(),
            "http://127.0.0.1:10001/devstoreaccount1"
        );
    }

    #[test]
    fn account_defaults_to_public_cloud_https() {
        let parsed = parse(&format!("AccountName=acct;AccountKey={KEY}")).unwrap();
        assert_eq!(
            parsed.table_endpoint.as_str(),
            "https://acct.table.core.windows.net/"
        );
        assert_eq!(
            parsed.queue_endpoint.as_str(),
            "https://acct.queue.core.windows.net/"
        );
        assert_eq!(parsed.key, b"secret-key-bytes");
    }

    #[test]
    fn endpoint_suffix_and_protocol_applied() {
        let parsed = parse(&format!(
            "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.chinacloudapi.cn;"
        ))
        .unwrap();
        assert_eq!(
            parsed.table_endpoint.as_str(),
            "http://acct.table.core.chinacloudapi.cn/"
        );
    }

    #[test]
    fn explicit_endpoints_win() {
        let parsed = parse(&format!(
            "defaultendpointsprotocol=http;accountname=devstoreaccount1;accountkey={KEY};\
             TableEndpoint=http://127.0.0.1:20002/devstoreaccount1;QueueEndpoint=http://127.0.0.1:20001/devstoreaccount1"
        ))
        .unwrap();
        assert_eq!(parsed.table_endpoint.port(), Some(20002));
        assert_eq!(parsed.queue_endpoint.port(), Some(20001));
    }

    #[test]
    fn errors_never_contain_the_key() {
        let bad_key = "not*base64*secret";
        let cases = [
            format!("AccountName=acct;AccountKey={bad_key}"),
            format!("AccountName=acct;{bad_key}"),
            format!("AccountKey={bad_key}"),
            format!("AccountName=acct;AccountKey={KEY};TableEndpoint=ftp://x/{bad_key}"),
        ];
        for case in cases {
            let error = parse(&case).err().expect("parse should fail");
            let text = format!("{error} {error:?}");
            assert!(!text.contains(bad_key), "error leaks the input: {text}");
            assert!(!text.contains(KEY), "error leaks the key: {text}");
        }
    }

    #[test]
    fn sas_and_query_strings_rejected() {
        let sas = parse(
            "TableEndpoint=https://a.table.core.windows.net;SharedAccessSignature=sv=1&sig=abc",
        );
        assert!(matches!(sas, Err(StorageError::InvalidInput(_))));

        let query = parse(&format!(
            "AccountName=acct;AccountKey={KEY};TableEndpoint=https://a.table.core.windows.net/?sig=abc"
        ));
        assert!(matches!(query, Err(StorageError::InvalidInput(_))));
    }
}
