//! Sending one storage request: common headers, authorization, retries and request logging.

use std::time::{Duration, Instant, SystemTime};

use rand::Rng as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use url::Url;

use super::auth::{Authorizer, Service};
use super::StorageError;

/// REST API versions sent in `x-ms-version`. 2019-02-02 is the newest Table service version, and
/// 2021-12-02 is a Queue service version that supports `messagettl=-1`.
const TABLE_API_VERSION: &str = "2019-02-02";
const QUEUE_API_VERSION: &str = "2021-12-02";

/// The longest `Retry-After` hint that is honoured, so a confused server cannot park a worker.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Retry policy for transient failures (see [`StorageError::is_transient`]).
///
/// The delay before retry `n` (from 0) is a random value between zero and
/// `min(max_delay, initial_delay * 2^n)`, or the server's `Retry-After` hint when it sent one.
#[derive(Debug, Clone)]
pub struct RetryOptions {
    /// Retries after the first attempt. Zero disables retries.
    pub max_retries: u32,
    /// Upper bound of the first retry's delay.
    pub initial_delay: Duration,
    /// Upper bound of any computed delay.
    pub max_delay: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            max_retries: 4,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryOptions {
    fn delay(&self, retry: u32, error: &StorageError) -> Duration {
        if let Some(hint) = error.retry_after() {
            return hint.min(MAX_RETRY_AFTER);
        }
        let ceiling = self
            .initial_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }
}

/// One request as the table and queue clients describe it.
pub(crate) struct StorageRequest<'a> {
    pub service: Service,
    /// Operation name for logs, such as `insert_entity`.
    pub operation: &'static str,
    /// Table or queue name for logs.
    pub resource: &'a str,
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
}

/// A successful (2xx) response with its body read.
pub(crate) struct StorageResponse {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl StorageResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// The HTTP client, authorizer and retry policy shared by every client of one account.
pub(crate) struct Pipeline {
    pub(crate) http: reqwest::Client,
    pub(crate) authorizer: Authorizer,
    pub(crate) retry: RetryOptions,
}

impl Pipeline {
    /// Sends the request, retrying transient failures, and returns the 2xx response or the error.
    pub(crate) async fn send(
        &self,
        request: &StorageRequest<'_>,
    ) -> Result<StorageResponse, StorageError> {
        let mut retry = 0;
        loop {
            let error = match self.send_once(request, retry).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };

            if !error.is_transient() {
                return Err(error);
            }
            if retry >= self.retry.max_retries {
                if retry > 0 {
                    tracing::error!(
                        service = request.service.name(),
                        operation = request.operation,
                        resource = request.resource,
                        attempts = retry + 1,
                        error = %error,
                        "storage request failed after retries; giving up"
                    );
                }
                return Err(error);
            }

            let delay = self.retry.delay(retry, &error);
            tracing::warn!(
                service = request.service.name(),
                operation = request.operation,
                resource = request.resource,
                status = error.status(),
                retry = retry + 1,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "retrying transient storage failure"
            );
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    async fn send_once(
        &self,
        request: &StorageRequest<'_>,
        retry: u32,
    ) -> Result<StorageResponse, StorageError> {
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let version = match request.service {
            Service::Table => TABLE_API_VERSION,
            Service::Queue => QUEUE_API_VERSION,
        };

        let mut builder = self
            .http
            .request(request.method.clone(), request.url.clone())
            .header("x-ms-date", httpdate::fmt_http_date(SystemTime::now()))
            .header("x-ms-version", version)
            .header("x-ms-client-request-id", &client_request_id);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        // PUT and POST always carry a body, even an empty one, so that `Content-Length: 0` is
        // sent: the services reject a PUT without it (411 Length Required).
        if request.method == Method::PUT
            || request.method == Method::POST
            || !request.body.is_empty()
        {
            builder = builder.body(request.body.clone());
        }
        let mut http_request = builder
            .build()
            .map_err(|error| transport_error(request, &error))?;
        self.authorizer
            .authorize(request.service, &mut http_request)
            .await?;

        let started = Instant::now();
        let result = self.http.execute(http_request).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(
                    method = %request.method,
                    service = request.service.name(),
                    operation = request.operation,
                    resource = request.resource,
                    elapsed_ms,
                    retry,
                    client_request_id,
                    "storage request failed before a response"
                );
                return Err(transport_error(request, &error));
            }
        };

        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|error| transport_error(request, &error))?
            .to_vec();
        tracing::debug!(
            method = %request.method,
            service = request.service.name(),
            operation = request.operation,
            resource = request.resource,
            status = status.as_u16(),
            elapsed_ms,
            retry,
            client_request_id,
            "storage request"
        );

        if status.is_success() {
            Ok(StorageResponse { headers, body })
        } else {
            Err(StorageError::from_response(status, &headers, &body))
        }
    }
}

/// Describes a reqwest failure with its cause chain but without the URL, which may carry a pop
/// receipt or a filter with key values.
fn transport_error(request: &StorageRequest<'_>, error: &reqwest::Error) -> StorageError {
    let mut text = format!(
        "{} {} on {} {}",
        request.operation,
        request.resource,
        request.url.host_str().unwrap_or(""),
        describe_reqwest_error(error)
    );
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    StorageError::Transport(text)
}

fn describe_reqwest_error(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "failed to connect"
    } else if error.is_body() || error.is_decode() {
        "failed while reading the response"
    } else {
        "failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_respects_ceiling_and_hint() {
        let options = RetryOptions {
            max_retries: 5,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let transport = StorageError::Transport("reset".into());
        for retry in 0..10 {
            let delay = options.delay(retry, &transport);
            let ceiling =
                Duration::from_millis(100 * 2u64.pow(retry.min(10))).min(options.max_delay);
            assert!(delay <= ceiling, "retry {retry}: {delay:?} > {ceiling:?}");
        }

        let throttled = StorageError::Throttled {
            status: 503,
            code: "ServerBusy".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(options.delay(0, &throttled), Duration::from_secs(2));

        let long_hint = StorageError::Throttled {
            status: 429,
            code: String::new(),
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(options.delay(0, &long_hint), MAX_RETRY_AFTER);
    }
}
