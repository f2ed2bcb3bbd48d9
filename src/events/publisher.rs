//! Background delivery of job events with bounded retries.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing::{debug, error, warn};

use super::callback::{check_url, resolve_checked, signature, AddressPolicy, CallbackError};
use super::cloud_event::{CloudEvent, EventType};
use crate::jobs::JobState;
use crate::secrets::Redacted;
use crate::state::{JobRecord, Store, StoreError};
use crate::storage::{QueueClient, StorageAccount, StorageError};

/// Attempts per destination before a delivery is recorded as failed.
const MAX_ATTEMPTS: u32 = 4;
/// Wait before the second attempt; it doubles before each later one (0.5 s, 1 s, 2 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Time limit of one callback request, connection included.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes job events. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    /// The CloudEvents `source` of this deployment.
    source: String,
    queue: Option<QueueClient>,
    store: Store,
    signing_key: Option<Redacted<String>>,
    policy: AddressPolicy,
}

/// The reason one delivery attempt failed, and whether another attempt may succeed.
struct AttemptError {
    message: String,
    retriable: bool,
}

impl Events {
    /// Builds the publisher; events go to `queue_name` when set, and to each job's callback URL.
    pub fn new(
        account: &StorageAccount,
        store: Store,
        storage_prefix: &str,
        queue_name: Option<&str>,
        signing_key: Option<Redacted<String>>,
        policy: AddressPolicy,
    ) -> Self {
        Events {
            inner: Arc::new(Inner {
                source: format!("/vcore-migrate/{storage_prefix}"),
                queue: queue_name.map(|name| account.queue(name)),
                store,
                signing_key,
                policy,
            }),
        }
    }

    /// Creates the events queue if one is configured and missing.
    pub async fn ensure_queue(&self) -> Result<(), StorageError> {
        match &self.inner.queue {
            Some(queue) => queue.create_if_not_exists().await,
            None => Ok(()),
        }
    }

    /// The callback address rules in force.
    pub fn address_policy(&self) -> AddressPolicy {
        self.inner.policy
    }

    /// Checks a job's callback URL at creation: its form, its resolved addresses, and that a
    /// signing key is configured.
    pub async fn check_callback(&self, url: &str) -> Result<(), CallbackError> {
        if self.inner.signing_key.is_none() {
            return Err(CallbackError::Invalid(format!(
                "callbacks are signed, but {} is not set; set it to a random key shared with \
                 the receiver, or leave callbackUrl out",
                crate::config::CALLBACK_SIGNING_KEY
            )));
        }
        let url = check_url(url, self.inner.policy)?;
        resolve_checked(&url, self.inner.policy).await?;
        Ok(())
    }

    /// Announces a stored state change of `job` from `previous`; a change into `failed` also
    /// sends a `failed` event.
    pub fn state_changed(&self, job: &JobRecord, previous: JobState) {
        if job.state == previous {
            return;
        }
        self.publish(EventType::StateChanged, job, Some(previous), None);
        if job.state == JobState::Failed {
            self.publish(EventType::Failed, job, Some(previous), None);
        }
    }

    /// Sends one event about `job` in the background. Returns at once; with no Tokio runtime
    /// the event is dropped with a warning.
    pub fn publish(
        &self,
        event_type: EventType,
        job: &JobRecord,
        previous: Option<JobState>,
        details: Option<Value>,
    ) {
        let event = CloudEvent::for_job(event_type, &self.inner.source, job, previous, details);
        let callback_url = job.request.options.callback_url.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            warn!(job_id = %job.id, event_type = event_type.as_str(), "no async runtime; event dropped");
            return;
        };
        let inner = self.inner.clone();
        runtime.spawn(async move { inner.deliver(event, callback_url).await });
    }
}

impl Inner {
    async fn deliver(&self, event: CloudEvent, callback_url: Option<String>) {
        // Serializing this plain struct cannot fail.
        let body = serde_json::to_string(&event).unwrap_or_default();
        if let Some(queue) = &self.queue {
            let outcome = with_retries(&event, "queue", || async {
                queue.send(&body, None).await.map_err(|e| AttemptError {
                    retriable: !matches!(e, StorageError::InvalidInput(_)),
                    message: e.to_string(),
                })
            })
            .await;
            if let Err(message) = outcome {
                self.record_failure(&event, &format!("events queue {}: {message}", queue.name()))
                    .await;
            }
        }
        if let Some(url) = callback_url {
            let outcome = with_retries(&event, "callback", || self.post(&url, &body)).await;
            if let Err(message) = outcome {
                self.record_failure(&event, &format!("callback: {message}"))
                    .await;
            }
        }
    }

    /// POSTs the event to the callback after checking the URL and its addresses again.
    async fn post(&self, url: &str, body: &str) -> Result<(), AttemptError> {
        let permanent = |e: CallbackError| AttemptError {
            message: e.to_string(),
            retriable: matches!(e, CallbackError::Unresolved { .. }),
        };
        let parsed = check_url(url, self.policy).map_err(permanent)?;
        let addresses = resolve_checked(&parsed, self.policy)
            .await
            .map_err(permanent)?;
        let host = parsed.host_str().unwrap_or_default().to_string();
        // Connect only to the addresses just checked, and follow no redirect.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(CALLBACK_TIMEOUT)
            .resolve_to_addrs(&host, &addresses)
            .build()
            .map_err(|e| AttemptError {
                message: format!("building the HTTP client failed: {e}"),
                retriable: false,
            })?;
        let key = self
            .signing_key
            .as_ref()
            .map(|k| k.expose().as_bytes().to_vec())
            .unwrap_or_default();
        let response = client
            .post(parsed)
            .header(
                "content-type",
                "application/cloudevents+json; charset=utf-8",
            )
            .header(super::SIGNATURE_HEADER, signature(&key, body.as_bytes()))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| AttemptError {
                // The URL may carry a token in its query, so only the host is named.
                message: format!("request to {host} failed: {}", e.without_url()),
                retriable: true,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(AttemptError {
            message: format!("{host} returned HTTP {}", status.as_u16()),
            retriable: status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT,
        })
    }

    /// Records a delivery that failed for good on the job, so the API shows it.
    async fn record_failure(&self, event: &CloudEvent, message: &str) {
        let job_id = &event.subject;
        error!(job_id = %job_id, event_id = %event.id, event_type = %event.event_type, error = %message, "event delivery failed; giving up");
        // Conflicts mean the job changed meanwhile; a few re-reads settle it.
        for _ in 0..10 {
            let job = match self.store.job(job_id).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(e) => {
                    warn!(job_id = %job_id, error = %e, "could not record an event delivery failure");
                    return;
                }
            };
            let mut job = job;
            job.value.event_delivery_error =
                Some(format!("{} {}: {message}", event.event_type, event.id));
            job.value.event_delivery_failures += 1;
            match self.store.replace_job(&job).await {
                Ok(_) => return,
                Err(StoreError::Conflict) => continue,
                Err(e) => {
                    warn!(job_id = %job_id, error = %e, "could not record an event delivery failure");
                    return;
                }
            }
        }
    }
}

/// Runs `attempt` up to [`MAX_ATTEMPTS`] times with doubling backoff while it fails with a
/// retriable error; returns the last error's message.
async fn with_retries<F, Fut>(event: &CloudEvent, channel: &str, attempt: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), AttemptError>>,
{
    let mut backoff = FIRST_BACKOFF;
    for number in 1..=MAX_ATTEMPTS {
        match attempt().await {
            Ok(()) => {
                debug!(job_id = %event.subject, event_id = %event.id, channel, attempt = number, "event delivered");
                return Ok(());
            }
            Err(e) if e.retriable && number < MAX_ATTEMPTS => {
                warn!(job_id = %event.subject, event_id = %event.id, channel, attempt = number, error = %e.message, "event delivery failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(e) => return Err(format!("{} (after {number} attempt(s))", e.message)),
        }
    }
    Err("no attempt was made".into())
}
