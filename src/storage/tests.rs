//! Tests of account construction, redaction and the bearer-token path.

use std::sync::atomic::{AtomicUsize, Ordering};

use azure_core::credentials::{AccessToken, TokenRequestOptions};
use azure_core::time::{Duration as TimeDuration, OffsetDateTime};

use super::*;

/// A credential that returns a fixed token and counts how often it was asked.
#[derive(Debug)]
struct FixedTokenCredential {
    token: &'static str,
    lifetime: TimeDuration,
    calls: AtomicUsize,
}

impl FixedTokenCredential {
    fn new(token: &'static str, lifetime: TimeDuration) -> Arc<Self> {
        Arc::new(Self {
            token,
            lifetime,
            calls: AtomicUsize::new(0),
        })
    }
}

#[async_trait::async_trait]
impl TokenCredential for FixedTokenCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        assert_eq!(scopes, [STORAGE_SCOPE]);
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(AccessToken::new(
            self.token,
            OffsetDateTime::now_utc() + self.lifetime,
        ))
    }
}

const KEY: &str = "c2VjcmV0LWtleS1ieXRlcw==";

#[test]
fn debug_never_prints_the_key() {
    let account = StorageAccount::from_connection_string(&format!(
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY}"
    ))
    .unwrap();
    let text = format!("{account:?}");
    assert!(text.contains("acct.table.core.windows.net"), "{text}");
    assert!(!text.contains(KEY), "{text}");
    assert!(!text.contains("secret-key-bytes"), "{text}");
}

#[test]
fn token_account_from_name() {
    let credential = FixedTokenCredential::new("t", TimeDuration::hours(1));
    let account = StorageAccount::with_token(Some("acct"), None, None, credential).unwrap();
    assert_eq!(
        account.table_endpoint().as_str(),
        "https://acct.table.core.windows.net/"
    );
    assert_eq!(
        account.queue_endpoint().as_str(),
        "https://acct.queue.core.windows.net/"
    );
    assert!(!format!("{account:?}").contains("\"t\""));
}

#[test]
fn token_account_explicit_uris_win() {
    let credential = FixedTokenCredential::new("t", TimeDuration::hours(1));
    let table = Url::parse("https://other.table.core.usgovcloudapi.net").unwrap();
    let account =
        StorageAccount::with_token(Some("acct"), Some(table.clone()), None, credential).unwrap();
    assert_eq!(account.table_endpoint(), &table);
    assert_eq!(
        account.queue_endpoint().as_str(),
        "https://acct.queue.core.windows.net/"
    );
}

#[test]
fn token_account_rejects_remote_http() {
    let credential = FixedTokenCredential::new("t", TimeDuration::hours(1));
    let plain = Url::parse("http://acct.table.core.windows.net").unwrap();
    let error = StorageAccount::with_token(Some("acct"), Some(plain), None, credential.clone())
        .unwrap_err();
    assert!(error.to_string().contains("https"), "{error}");

    let missing = StorageAccount::with_token(None, None, None, credential.clone()).unwrap_err();
    assert!(matches!(missing, StorageError::InvalidInput(_)));

    let bad_name =
        StorageAccount::with_token(Some("Bad_Name"), None, None, credential).unwrap_err();
    assert!(bad_name.to_string().contains("Bad_Name"), "{bad_name}");
}

/// Starts a one-route HTTP server on 127.0.0.1 that records the Authorization header of each
/// request and answers like the queue service's metadata call.
async fn start_header_recorder() -> (Url, Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::HeaderMap;

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let recorder = recorder.clone();
        async move {
            let authorization = headers
                .get("authorization")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned();
            recorder.lock().unwrap().push(authorization);
            ([("x-ms-approximate-messages-count", "7")], "")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (Url::parse(&format!("http://{address}/acct")).unwrap(), seen)
}

fn token_queue(endpoint: Url, credential: Arc<FixedTokenCredential>) -> QueueClient {
    StorageAccount::with_token(None, Some(endpoint.clone()), Some(endpoint), credential)
        .unwrap()
        .queue("work")
}

#[tokio::test]
async fn bearer_token_sent_and_cached() {
    let (endpoint, seen) = start_header_recorder().await;
    let credential = FixedTokenCredential::new("token-abc", TimeDuration::hours(1));
    let queue = token_queue(endpoint, credential.clone());
    assert_eq!(queue.approximate_count().await.unwrap(), 7);
    assert_eq!(queue.approximate_count().await.unwrap(), 7);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec!["Bearer token-abc".to_owned(), "Bearer token-abc".to_owned()]
    );
    assert_eq!(credential.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn expiring_token_refreshed() {
    let (endpoint, _seen) = start_header_recorder().await;
    // A token inside the refresh margin is fetched again on every request.
    let credential = FixedTokenCredential::new("short", TimeDuration::minutes(1));
    let queue = token_queue(endpoint, credential.clone());
    queue.approximate_count().await.unwrap();
    queue.approximate_count().await.unwrap();
    assert_eq!(credential.calls.load(Ordering::SeqCst), 2);
}
