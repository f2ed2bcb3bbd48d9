//! Key Vault references against a local HTTPS stand-in, secret rotation, and the field case of a
//! password with reserved characters that must connect and never show anywhere.
//!
//! The stand-in serves `https://myvault.vault.azure.net` on 127.0.0.1 with a certificate from a
//! test-only root that only the test's HTTP client trusts. It answers the first request of a
//! client with a 401 challenge, as Key Vault does, and then serves secrets by name and version.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{AsyncRawResponse, HttpClient, Request, Transport};
use azure_core::time::OffsetDateTime;
use bson::doc;
use common::{EngineHook, Harness, HarnessOptions, LONG};
use mongo_emulator::EmulatorOptions;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use vcore_migrate::mongo::{is_authentication_failure, ClientCache};
use vcore_migrate::queue::TaskKind;
use vcore_migrate::secrets::{
    CredentialRef, CredentialSource, KeyVaultOptions, ReqwestTransport, ResolverOptions,
    SecretResolver,
};

const VAULT_HOST: &str = "myvault.vault.azure.net";
const VAULT_URI: &str = "https://myvault.vault.azure.net/";
const TOKEN: &str = "test-token-5f1c";
/// The field case's password, and the forms it must never appear in.
const PASSWORD: &str = "p@ss:w/rd%?#1";
const PASSWORD_FORMS: &[&str] = &[
    "p@ss:w/rd%?#1",
    "p%40ss%3Aw%2Frd%25%3F%231",
    "p@ss",
    "w/rd",
    "rd%?",
    "%3Aw%2F",
];

// ---------------------------------------------------------------------------------------------
// Key Vault stand-in

/// One request the stand-in received.
#[derive(Clone, Debug)]
struct SeenRequest {
    path: String,
    authorization: Option<String>,
}

#[derive(Default)]
struct VaultState {
    /// Versions of each secret, oldest first.
    secrets: Mutex<HashMap<String, Vec<(String, String)>>>,
    /// Secret names answered with 403.
    forbidden: Mutex<Vec<String>>,
    /// The resource named in the 401 challenge.
    challenge_resource: Mutex<String>,
    requests: Mutex<Vec<SeenRequest>>,
}

struct Vault {
    state: Arc<VaultState>,
    port: u16,
    /// Root certificate (DER) that signed the stand-in's certificate.
    root: Vec<u8>,
}

impl Vault {
    async fn start() -> Vault {
        let root_key = rcgen::KeyPair::generate().unwrap();
        let mut root_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        root_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "vcore-migrate test root");
        let root = root_params.self_signed(&root_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec![VAULT_HOST.to_string()])
            .unwrap()
            .signed_by(&leaf_key, &root, &root_key)
            .unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let state = Arc::new(VaultState::default());
        *state.challenge_resource.lock().unwrap() = "https://vault.azure.net".to_string();
        let app = axum::Router::new()
            .fallback(serve_secret)
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Vault {
            state,
            port,
            root: root.der().to_vec(),
        }
    }

    /// Adds a new version of `name` and returns its id.
    fn set_secret(&self, name: &str, value: &str) -> String {
        let mut secrets = self.state.secrets.lock().unwrap();
        let versions = secrets.entry(name.to_string()).or_default();
        let version = format!("{:032x}", versions.len() + 1);
        versions.push((version.clone(), value.to_string()));
        version
    }

    fn forbid(&self, name: &str) {
        self.state.forbidden.lock().unwrap().push(name.to_string());
    }

    fn requests(&self) -> Vec<SeenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Successful reads of `name`: requests that carried the token.
    fn reads_of(&self, name: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.starts_with(&format!("/secrets/{name}/")))
            .filter(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}")))
            .count()
    }

    /// A transport that reaches the stand-in under the real vault host name.
    fn transport(&self) -> Transport {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_der(&self.root).unwrap())
            .resolve(VAULT_HOST, SocketAddr::from(([127, 0, 0, 1], self.port)))
            .https_only(true)
            .build()
            .unwrap();
        Transport::new(Arc::new(ToPort {
            inner: ReqwestTransport::new(client),
            port: self.port,
        }))
    }

    fn resolver(&self, credential: Arc<FixedToken>, cache_ttl: Duration) -> SecretResolver {
        SecretResolver::new(ResolverOptions {
            cache_ttl,
            key_vault: KeyVaultOptions {
                credential: CredentialSource::Fixed(credential),
                transport: Some(self.transport()),
            },
            settings: Arc::new(|name| std::env::var(name).ok()),
        })
    }
}

async fn serve_secret(
    State(state): State<Arc<VaultState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    state.requests.lock().unwrap().push(SeenRequest {
        path: uri.path().to_string(),
        authorization: authorization.clone(),
    });

    if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        let resource = state.challenge_resource.lock().unwrap().clone();
        let challenge = format!(
            "Bearer authorization=\"https://login.microsoftonline.com/72f988bf-0000-0000-0000-000000000000\", resource=\"{resource}\""
        );
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", challenge)],
            Json(json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}})),
        )
            .into_response();
    }

    let mut parts = uri.path().trim_start_matches('/').split('/');
    let (Some("secrets"), Some(name)) = (parts.next(), parts.next()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let wanted_version = parts.next().filter(|v| !v.is_empty());
    if state.forbidden.lock().unwrap().iter().any(|f| f == name) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": {"code": "Forbidden", "message": "The user does not have secrets get permission."}})),
        )
            .into_response();
    }
    let secrets = state.secrets.lock().unwrap();
    let found = secrets.get(name).and_then(|versions| match wanted_version {
        Some(v) => versions.iter().find(|(id, _)| id == v),
        None => versions.last(),
    });
    match found {
        Some((version, value)) => Json(json!({
            "value": value,
            "id": format!("https://{VAULT_HOST}/secrets/{name}/{version}"),
            "attributes": {"enabled": true, "created": 1_700_000_000, "updated": 1_700_000_000}
        }))
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "SecretNotFound", "message": format!("A secret with (name/id) {name} was not found in this key vault.")}})),
        )
            .into_response(),
    }
}

/// Sends requests for the vault host to the stand-in's port; TLS still checks the vault host
/// name, because only the port changes.
#[derive(Debug)]
struct ToPort {
    inner: ReqwestTransport,
    port: u16,
}

#[async_trait]
impl HttpClient for ToPort {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        assert_eq!(
            request.url().host_str(),
            Some(VAULT_HOST),
            "a request left for another host: {}",
            request.url()
        );
        let mut request = request.clone();
        request.url_mut().set_port(Some(self.port)).unwrap();
        self.inner.execute_request(&request).await
    }
}

/// A credential that returns a fixed token and records the scopes it was asked for.
#[derive(Debug, Default)]
struct FixedToken {
    scopes: Mutex<Vec<String>>,
}

#[async_trait]
impl TokenCredential for FixedToken {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.scopes
            .lock()
            .unwrap()
            .extend(scopes.iter().map(|s| s.to_string()));
        Ok(AccessToken::new(
            TOKEN.to_string(),
            OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

fn vault_ref(name: &str) -> CredentialRef {
    CredentialRef::KeyVault {
        vault_uri: VAULT_URI.to_string(),
        secret_name: name.to_string(),
        secret_version: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Log capture

/// Everything every test of this file logged, at debug level and finer for the service and the
/// Azure SDK crates.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer_buffer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,vcore_migrate=trace,azure_core=trace,typespec_client_core=trace,\
                 azure_security_keyvault_secrets=trace,azure_identity=trace",
            ))
            .with_ansi(false)
            .with_writer(move || LogWriter(writer_buffer.clone()))
            .init();
        buffer
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_no_password(place: &str, text: &str) {
    for form in PASSWORD_FORMS {
        assert!(
            !text.contains(form),
            "{place} shows the password as {form:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Key Vault reads

#[tokio::test]
async fn secret_read_after_challenge() {
    let vault = Vault::start().await;
    vault.set_secret("source-uri", "mongodb://127.0.0.1:1/");
    let credential = Arc::new(FixedToken::default());
    let resolver = vault.resolver(credential.clone(), Duration::from_secs(3600));

    let secret = resolver.resolve(&vault_ref("source-uri")).await.unwrap();

    assert_eq!(secret.value.expose(), "mongodb://127.0.0.1:1/");
    let requests = vault.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        requests[0].authorization, None,
        "the first request goes without a token to get the challenge"
    );
    assert_eq!(
        requests[1].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        *credential.scopes.lock().unwrap(),
        vec!["https://vault.azure.net/.default".to_string()]
    );
}

#[tokio::test]
async fn pinned_version_is_read() {
    let vault = Vault::start().await;
    let first = vault.set_secret("pinned", "mongodb://first/");
    vault.set_secret("pinned", "mongodb://second/");
    let resolver = vault.resolver(Arc::default(), Duration::from_secs(3600));
    let reference = CredentialRef::KeyVault {
        vault_uri: VAULT_URI.to_string(),
        secret_name: "pinned".to_string(),
        secret_version: Some(first.clone()),
    };

    let secret = resolver.resolve(&reference).await.unwrap();

    assert_eq!(secret.value.expose(), "mongodb://first/");
    assert!(
        vault
            .requests()
            .iter()
            .any(|r| r.path == format!("/secrets/pinned/{first}")),
        "{:?}",
        vault.requests()
    );
}

#[tokio::test]
async fn forbidden_secret_names_the_role() {
    let vault = Vault::start().await;
    vault.set_secret("locked", "mongodb://x/");
    vault.forbid("locked");
    let resolver = vault.resolver(Arc::default(), Duration::from_secs(3600));

    let error = resolver
        .resolve(&vault_ref("locked"))
        .await
        .unwrap_err()
        .to_string();

    assert!(error.contains("403"), "{error}");
    assert!(error.contains("Key Vault Secrets User"), "{error}");
    assert!(error.contains("locked"), "{error}");
    assert!(!error.contains("mongodb://x/"), "{error}");
}

#[tokio::test]
async fn missing_secret_is_not_found() {
    let vault = Vault::start().await;
    let resolver = vault.resolver(Arc::default(), Duration::from_secs(3600));

    let error = resolver
        .resolve(&vault_ref("nothing-here"))
        .await
        .unwrap_err()
        .to_string();

    assert!(error.contains("not found"), "{error}");
    assert!(error.contains("nothing-here"), "{error}");
}

#[tokio::test]
async fn foreign_challenge_gets_no_token() {
    // A vault that names another resource in its challenge would receive a token for that
    // resource; the SDK's challenge check refuses before a token is requested.
    let vault = Vault::start().await;
    vault.set_secret("source-uri", "mongodb://x/");
    *vault.state.challenge_resource.lock().unwrap() = "https://storage.azure.com".to_string();
    let credential = Arc::new(FixedToken::default());
    let resolver = vault.resolver(credential.clone(), Duration::from_secs(3600));

    let error = resolver
        .resolve(&vault_ref("source-uri"))
        .await
        .unwrap_err();

    assert!(error.to_string().contains("challenge"), "{error}");
    assert!(credential.scopes.lock().unwrap().is_empty());
    assert_eq!(vault.reads_of("source-uri"), 0);
}

#[tokio::test]
async fn hostile_vault_uri_requests_nothing() {
    let vault = Vault::start().await;
    let credential = Arc::new(FixedToken::default());
    let resolver = vault.resolver(credential.clone(), Duration::from_secs(3600));
    for uri in [
        "https://169.254.169.254/",
        "https://myvault.vault.azure.net.evil.example/",
        "http://myvault.vault.azure.net/",
        "https://myvault.vault.azure.net@127.0.0.1/",
        "https://myvault.vault.azure.net./",
    ] {
        let reference = CredentialRef::KeyVault {
            vault_uri: uri.to_string(),
            secret_name: "s".to_string(),
            secret_version: None,
        };
        let error = resolver.resolve(&reference).await.unwrap_err().to_string();
        assert!(error.contains("invalid Key Vault URI"), "{uri}: {error}");
    }
    assert!(credential.scopes.lock().unwrap().is_empty());
    assert!(vault.requests().is_empty(), "{:?}", vault.requests());
}

// ---------------------------------------------------------------------------------------------
// Rotation

#[tokio::test]
async fn rotation_seen_after_invalidation() {
    let vault = Vault::start().await;
    vault.set_secret("rotating", "mongodb://one/");
    let resolver = vault.resolver(Arc::default(), Duration::from_secs(3600));
    let reference = vault_ref("rotating");
    assert_eq!(
        resolver.resolve(&reference).await.unwrap().value.expose(),
        "mongodb://one/"
    );

    vault.set_secret("rotating", "mongodb://two/");
    let cached = resolver.resolve(&reference).await.unwrap();
    resolver.invalidate(&reference).await;
    let fresh = resolver.resolve(&reference).await.unwrap();

    assert_eq!(cached.value.expose(), "mongodb://one/");
    assert_eq!(fresh.value.expose(), "mongodb://two/");
    assert_ne!(cached.digest, fresh.digest);
    assert_eq!(vault.reads_of("rotating"), 2);
}

#[tokio::test]
async fn rotation_seen_after_cache_expiry() {
    let vault = Vault::start().await;
    vault.set_secret("expiring", "mongodb://one/");
    // A zero lifetime makes every resolve read the vault.
    let resolver = vault.resolver(Arc::default(), Duration::ZERO);
    let reference = vault_ref("expiring");
    resolver.resolve(&reference).await.unwrap();

    vault.set_secret("expiring", "mongodb://two/");
    let fresh = resolver.resolve(&reference).await.unwrap();

    assert_eq!(fresh.value.expose(), "mongodb://two/");
    assert_eq!(vault.reads_of("expiring"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_password_used_after_auth_failure() {
    // The server's password changes and the secret gets a new version; the cached client fails
    // to authenticate, and the next client request reads the secret again.
    let first = mongo_emulator::start(EmulatorOptions {
        user: Some(("miguser".into(), "first-Pass1".into())),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let port = first.port();
    let vault = Vault::start().await;
    vault.set_secret("db-uri", &first.uri());
    let cache = ClientCache::new(vault.resolver(Arc::default(), Duration::from_secs(3600)));
    let reference = vault_ref("db-uri");
    let client = cache.client(&reference).await.unwrap();
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("the first password works");

    first.shutdown().await;
    let second = mongo_emulator::start(EmulatorOptions {
        port,
        user: Some(("miguser".into(), "second-Pass2".into())),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    vault.set_secret("db-uri", &second.uri());

    // Connections to the old server are gone; new ones fail to authenticate.
    let mut auth_failed = false;
    for _ in 0..20 {
        match client
            .database("admin")
            .run_command(doc! { "ping": 1 })
            .await
        {
            Err(e) if is_authentication_failure(&e) => {
                auth_failed = true;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(_) => panic!("the old password must not authenticate"),
        }
    }
    assert!(
        auth_failed,
        "the old client never saw an authentication failure"
    );

    let renewed = cache.client(&reference).await.unwrap();
    renewed
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("the rotated password works");
    assert_eq!(vault.reads_of("db-uri"), 2);
}

// ---------------------------------------------------------------------------------------------
// Field case: a password with reserved characters

fn vault_hook(vault: &Vault) -> EngineHook {
    let resolver = vault.resolver(Arc::default(), Duration::from_secs(3600));
    Arc::new(move |engine| engine.clients = ClientCache::new(resolver.clone()))
}

/// Starts the API without queue consumers, so task messages stay in their queues to be read.
async fn api_only(h: &mut Harness) {
    if let Some(service) = h.service.take() {
        service.shutdown().await;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    h.base_url = format!("http://{}", listener.local_addr().unwrap());
    let app = vcore_migrate::api::router(h.engine.clone(), vcore_migrate::api::Mount::Standalone);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

/// Every row of the harness's tables, in debug form.
async fn table_rows(h: &Harness) -> String {
    let mut rows = String::new();
    for table in ["jobs", "jobnames", "collections", "chunks"] {
        let name = format!("{}{table}", h.prefix);
        for entity in h.engine.account.table(&name).query(None).await.unwrap() {
            rows.push_str(&format!("{entity:?}\n"));
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reserved_password_connects_and_never_shows() {
    let logs = captured_logs();
    let vault = Vault::start().await;
    let mut h = Harness::start_with(HarnessOptions {
        source: EmulatorOptions {
            user: Some(("miguser".into(), PASSWORD.into())),
            ..EmulatorOptions::default()
        },
        engine_hook: Some(vault_hook(&vault)),
        ..HarnessOptions::default()
    })
    .await;
    let source_uri = h.source.uri();
    assert!(
        source_uri.contains("p%40ss%3Aw%2Frd%25%3F%231"),
        "{source_uri}"
    );
    vault.set_secret("source-uri", &source_uri);
    h.insert_source("mig", "c", vec![doc! { "_id": 1 }]).await;
    api_only(&mut h).await;

    let mut request = h.job_request("reserved", &[("mig", "c")], json!({}));
    request["source"] = json!({ "vaultUri": VAULT_URI, "secretName": "source-uri" });
    let (status, validation) = h.post("/api/jobs/validate", Some(&request)).await;
    assert_eq!(status, 200, "{validation}");
    assert_eq!(validation["ok"], true, "{validation:#}");
    let (status, created) = h.post("/api/jobs", Some(&request)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let mut messages = String::new();
    for kind in TaskKind::ALL {
        for message in h.engine.queues.client(kind).peek(32).await.unwrap() {
            messages.push_str(&message.text);
            messages.push('\n');
        }
    }
    assert!(
        messages.contains(&id),
        "the plan message is queued: {messages}"
    );

    h.kill_and_restart().await;
    let job = h.wait_for_state(&id, &["completed", "failed"], LONG).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(h.target_count("mig", "c").await, 1);

    let (_, list) = h.get("/api/jobs").await;
    assert_no_password("POST /api/jobs/validate", &validation.to_string());
    assert_no_password("POST /api/jobs", &created.to_string());
    assert_no_password("GET /api/jobs/{id}", &job.to_string());
    assert_no_password("GET /api/jobs", &list.to_string());
    assert_no_password("queue messages", &messages);
    assert_no_password("Table rows", &table_rows(&h).await);
    let log_text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        log_text.contains("Key Vault secret read"),
        "logs were captured"
    );
    assert_no_password("the log", &log_text);
    assert!(!log_text.contains(TOKEN), "the log shows the access token");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unencoded_password_rejected_without_echo() {
    let logs = captured_logs();
    let vault = Vault::start().await;
    let h = Harness::start_with(HarnessOptions {
        engine_hook: Some(vault_hook(&vault)),
        ..HarnessOptions::default()
    })
    .await;
    let port = h.source.port();
    vault.set_secret(
        "raw-uri",
        &format!("mongodb://miguser:{PASSWORD}@127.0.0.1:{port}/?authSource=admin"),
    );
    h.insert_source("mig", "c", vec![doc! { "_id": 1 }]).await;
    let mut request = h.job_request("unencoded", &[("mig", "c")], json!({}));
    request["source"] = json!({ "vaultUri": VAULT_URI, "secretName": "raw-uri" });

    let (status, body) = h.post("/api/jobs", Some(&request)).await;
    let (validate_status, report) = h.post("/api/jobs/validate", Some(&request)).await;

    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalidSource", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("connection string"), "{message}");
    assert!(message.contains("invalid"), "{message}");
    assert!(message.contains("percent-encoded"), "{message}");
    assert_eq!(validate_status, 200);
    assert_eq!(report["ok"], false);
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "source.connectionString")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(check["status"], "failed", "{report:#}");
    assert_no_password("POST /api/jobs", &body.to_string());
    assert_no_password("POST /api/jobs/validate", &report.to_string());
    let log_text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert_no_password("the log", &log_text);
    h.stop().await;
}
