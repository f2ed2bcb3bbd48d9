//! The HTTP transport for Azure SDK clients (Key Vault and the identity credentials).
//!
//! Written by hand because azure_core 1.x ships a transport only for reqwest 0.13, whose `rustls`
//! feature builds aws-lc-rs from C sources. The service already uses reqwest 0.12 with rustls on
//! ring, so this adapter sends SDK requests through that client and the binary keeps one TLS stack.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::{Error, ErrorKind};
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::{AsyncRawResponse, Body, HttpClient, Method, Request, Transport};

/// Timeout for establishing a TCP and TLS connection to an Azure endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout for one whole request; secrets and tokens are small.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An [`HttpClient`] over a reqwest 0.12 client.
#[derive(Clone, Debug)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// Wraps `client`, for example one that trusts an extra root certificate.
    pub fn new(client: reqwest::Client) -> Self {
        ReqwestTransport { client }
    }

    /// Builds a client with the service's timeouts; redirects are not followed, because the Azure
    /// REST guidelines do not use them and following one could carry a request elsewhere.
    pub fn with_defaults() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self::new(client))
    }

    /// Returns the SDK transport that sends through this client.
    pub fn into_transport(self) -> Transport {
        Transport::new(Arc::new(self))
    }
}

#[async_trait]
impl HttpClient for ReqwestTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let method = match request.method() {
            Method::Delete => reqwest::Method::DELETE,
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Patch => reqwest::Method::PATCH,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            other => {
                return Err(Error::with_message(
                    ErrorKind::Other,
                    format!("HTTP method {other:?} is not supported by this transport"),
                ))
            }
        };
        let mut builder = self.client.request(method, request.url().as_str());
        for (name, value) in request.headers().iter() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        match request.body() {
            Body::Bytes(bytes) => builder = builder.body(bytes.to_vec()),
            #[allow(unreachable_patterns)]
            _ => {
                return Err(Error::with_message(
                    ErrorKind::Other,
                    "streaming request bodies are not supported by this transport",
                ))
            }
        }

        let response = builder.send().await.map_err(|error| {
            let kind = if error.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            Error::with_error(kind, error.without_url(), "the HTTP request failed")
        })?;

        let status = response.status().as_u16();
        let headers: HashMap<HeaderName, HeaderValue> = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                let value = value.to_str().ok()?;
                Some((
                    HeaderName::from(name.as_str().to_owned()),
                    HeaderValue::from(value.to_owned()),
                ))
            })
            .collect();
        let body = response.bytes().await.map_err(|error| {
            Error::with_error(
                ErrorKind::Io,
                error.without_url(),
                "reading the HTTP response failed",
            )
        })?;
        Ok(AsyncRawResponse::from_bytes(
            status.into(),
            Headers::from(headers),
            body,
        ))
    }
}
