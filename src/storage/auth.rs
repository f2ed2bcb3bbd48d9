//! Request authorization: Shared Key signatures and Microsoft Entra ID bearer tokens.
//!
//! Shared Key follows "Authorize with Shared Key" in the Azure Storage REST reference. The Table
//! service signs `VERB, Content-MD5, Content-Type, Date, CanonicalizedResource`, while the Queue
//! service signs the verb, eleven standard headers, the `x-ms-*` headers and the resource with its
//! query parameters.

use std::fmt;
use std::sync::Arc;

use azure_core::credentials::{AccessToken, SecretBytes, TokenCredential};
use azure_core::time::{Duration as TimeDuration, OffsetDateTime};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::Request;
use sha2::Sha256;
use tokio::sync::Mutex;

use super::StorageError;

/// The OAuth scope of Azure Storage data-plane requests.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// A token is renewed this long before it expires, so a request never carries one that expires in
/// flight.
const TOKEN_REFRESH_MARGIN: TimeDuration = TimeDuration::minutes(5);

/// How requests to the account are authorized.
#[derive(Clone)]
pub enum StorageAuth {
    /// Shared Key with the account name and the decoded account key. [`SecretBytes`] keeps the key
    /// out of `Debug` output.
    SharedKey { account: String, key: SecretBytes },
    /// Microsoft Entra ID bearer tokens for the scope [`STORAGE_SCOPE`].
    Token(Arc<dyn TokenCredential>),
}

impl fmt::Debug for StorageAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageAuth::SharedKey { account, .. } => f
                .debug_struct("SharedKey")
                .field("account", account)
                .field("key", &"<redacted>")
                .finish(),
            StorageAuth::Token(_) => f.write_str("Token(<credential>)"),
        }
    }
}

/// The service a request goes to, because Table and Queue sign different strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Table,
    Queue,
}

impl Service {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::Table => "table",
            Service::Queue => "queue",
        }
    }
}

/// Applies [`StorageAuth`] to requests and caches bearer tokens.
///
/// Tokens are cached here because the `TokenCredential` trait does not promise that an
/// implementation caches, and fetching a token per request would add a round trip to every call.
pub(crate) struct Authorizer {
    auth: StorageAuth,
    cached_token: Mutex<Option<AccessToken>>,
}

impl Authorizer {
    pub(crate) fn new(auth: StorageAuth) -> Self {
        Self {
            auth,
            cached_token: Mutex::new(None),
        }
    }

    pub(crate) fn auth(&self) -> &StorageAuth {
        &self.auth
    }

    /// Adds the `Authorization` header. The request must already carry `x-ms-date`, `x-ms-version`
    /// and its final body, because Shared Key signs them.
    pub(crate) async fn authorize(
        &self,
        service: Service,
        request: &mut Request,
    ) -> Result<(), StorageError> {
        let value = match &self.auth {
            StorageAuth::SharedKey { account, key } => {
                let string_to_sign = match service {
                    Service::Table => table_string_to_sign(account, request),
                    Service::Queue => queue_string_to_sign(account, request),
                };
                format!("SharedKey {account}:{}", sign(key.bytes(), &string_to_sign))
            }
            StorageAuth::Token(credential) => {
                let token = self.token(credential.as_ref()).await?;
                format!("Bearer {token}")
            }
        };

        let mut header = HeaderValue::from_str(&value).map_err(|_| {
            StorageError::Transport("the authorization header contains invalid characters".into())
        })?;
        header.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, header);
        Ok(())
    }

    async fn token(&self, credential: &dyn TokenCredential) -> Result<String, StorageError> {
        let mut cached = self.cached_token.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some(token) = cached.as_ref() {
            if token.expires_on - TOKEN_REFRESH_MARGIN > now {
                return Ok(token.token.secret().to_owned());
            }
        }

        let token = credential
            .get_token(&[STORAGE_SCOPE], None)
            .await
            // The credential's error text describes the identity endpoint, never the token.
            .map_err(|error| {
                StorageError::Transport(format!("failed to get a storage token: {error}"))
            })?;
        let secret = token.token.secret().to_owned();
        *cached = Some(token);
        Ok(secret)
    }
}

fn sign(key: &[u8], string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn header_text<'a>(request: &'a Request, name: &str) -> &'a str {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

/// Table service: `VERB\nContent-MD5\nContent-Type\nDate\nCanonicalizedResource`, where the
/// resource is `/account/path` plus `?comp=..` when the request has a `comp` parameter.
fn table_string_to_sign(account: &str, request: &Request) -> String {
    let mut resource = format!("/{account}{}", request.url().path());
    if let Some((_, comp)) = request.url().query_pairs().find(|(name, _)| name == "comp") {
        resource.push_str("?comp=");
        resource.push_str(&comp);
    }
    format!(
        "{}\n{}\n{}\n{}\n{}",
        request.method().as_str(),
        header_text(request, "content-md5"),
        header_text(request, "content-type"),
        header_text(request, "x-ms-date"),
        resource
    )
}

/// Queue service: the verb, eleven standard headers (Content-Length empty when zero), the sorted
/// `x-ms-*` headers and the resource followed by its sorted query parameters.
fn queue_string_to_sign(account: &str, request: &Request) -> String {
    let content_length = request
        .body()
        .and_then(|body| body.as_bytes())
        .map(|bytes| bytes.len())
        .unwrap_or(0);
    let content_length = if content_length == 0 {
        String::new()
    } else {
        content_length.to_string()
    };

    let mut lines = vec![
        request.method().as_str().to_owned(),
        header_text(request, "content-encoding").to_owned(),
        header_text(request, "content-language").to_owned(),
        content_length,
        header_text(request, "content-md5").to_owned(),
        header_text(request, "content-type").to_owned(),
        // Date is empty because x-ms-date is sent and signed among the canonical headers.
        String::new(),
        header_text(request, "if-modified-since").to_owned(),
        header_text(request, "if-match").to_owned(),
        header_text(request, "if-none-match").to_owned(),
        header_text(request, "if-unmodified-since").to_owned(),
        header_text(request, "range").to_owned(),
    ];

    let mut ms_headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-ms-"))
        .map(|(name, value)| {
            let value = value.to_str().unwrap_or("").trim().to_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    ms_headers.sort();
    for (name, value) in ms_headers {
        lines.push(format!("{name}:{value}"));
    }

    let mut resource = format!("/{account}{}", request.url().path());
    let mut parameters: Vec<(String, String)> = request
        .url()
        .query_pairs()
        .map(|(name, value)| (name.to_lowercase(), value.into_owned()))
        .collect();
    parameters.sort();
    let mut index = 0;
    while index < parameters.len() {
        let name = parameters[index].0.clone();
        let mut values = Vec::new();
        while index < parameters.len() && parameters[index].0 == name {
            values.push(parameters[index].1.clone());
            index += 1;
        }
        resource.push_str(&format!("\n{name}:{}", values.join(",")));
    }
    lines.push(resource);
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Method;

    fn request(method: Method, url: &str, headers: &[(&'static str, &str)], body: &str) -> Request {
        let client = reqwest::Client::new();
        let mut builder = client.request(method, url).body(body.to_owned());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.build().unwrap()
    }

    #[test]
    fn table_string_to_sign_layout() {
        let request = request(
            Method::PUT,
            "http://127.0.0.1:10002/devstoreaccount1/jobs(PartitionKey='a',RowKey='b')?comp=x&timeout=5",
            &[
                ("content-type", "application/json"),
                ("x-ms-date", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ],
            "{}",
        );
        assert_eq!(
            table_string_to_sign("devstoreaccount1", &request),
            "PUT\n\napplication/json\nMon, 01 Jan 2024 00:00:00 GMT\n\
             /devstoreaccount1/devstoreaccount1/jobs(PartitionKey='a',RowKey='b')?comp=x"
        );
    }

    #[test]
    fn queue_string_to_sign_layout() {
        let request = request(
            Method::POST,
            "https://acct.queue.core.windows.net/work/messages?visibilitytimeout=5&messagettl=-1",
            &[
                ("content-type", "application/xml"),
                ("x-ms-version", "2021-12-02"),
                ("x-ms-date", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ],
            "abc",
        );
        assert_eq!(
            queue_string_to_sign("acct", &request),
            "POST\n\n\n3\n\napplication/xml\n\n\n\n\n\n\n\
             x-ms-date:Mon, 01 Jan 2024 00:00:00 GMT\nx-ms-version:2021-12-02\n\
             /acct/work/messages\nmessagettl:-1\nvisibilitytimeout:5"
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let auth = StorageAuth::SharedKey {
            account: "acct".into(),
            key: SecretBytes::new(b"very-secret-key".to_vec()),
        };
        let text = format!("{auth:?}");
        assert!(text.contains("acct"));
        assert!(!text.contains("very-secret-key"));
    }
}
