//! Preflight: the checks that find bad credentials, a blocking firewall, an unsupported server or
//! missing collections before a job starts, each with a message that says what to fix.
//!
//! `POST /api/jobs/validate` returns the report; `POST /api/jobs` runs the same checks and
//! rejects a request whose report has a failed check. Checks that depend on a failed one are
//! reported as skipped, so the first failure is the one to fix.
//!
//! Layout:
//! - `server`: secret, connection string, reachability, authentication and server version of
//!   one side (source or target).
//! - `namespaces`: source collections, target namespaces and the size estimate.

mod namespaces;
mod server;

use std::time::Duration;

use serde::Serialize;

use crate::jobs::JobRequest;
use crate::runtime::engine::Engine;
use crate::secrets::SecretResolver;

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum CheckStatus {
    Passed,
    /// The job can run, but the message names something to look at.
    Warning,
    /// The job cannot succeed until this is fixed.
    Failed,
    /// Not run because a check it depends on failed.
    Skipped,
}

/// One check of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// A stable dotted name such as `source.authentication`.
    pub name: String,
    pub status: CheckStatus,
    pub message: String,
}

impl Check {
    pub fn new(name: impl Into<String>, status: CheckStatus, message: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status,
            message: message.into(),
        }
    }
}

/// Size estimate of one source collection, from collection statistics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectionEstimate {
    pub namespace: String,
    pub documents: u64,
    pub bytes: u64,
}

/// Documents and bytes the job is expected to copy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    pub collections: Vec<CollectionEstimate>,
    pub total_documents: u64,
    pub total_bytes: u64,
}

/// The preflight report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreflightReport {
    /// True when no check failed; warnings do not block a job.
    pub ok: bool,
    pub checks: Vec<Check>,
    /// Present when the source collections could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
}

impl PreflightReport {
    /// The checks that failed, in order.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| c.status == CheckStatus::Failed)
    }
}

/// What the checks need from the service.
#[derive(Clone)]
pub struct PreflightContext {
    pub secrets: SecretResolver,
    /// How long to wait for a server before reporting a timeout.
    pub timeout: Duration,
    /// The service's outbound IP address, named in firewall advice when known.
    pub outbound_ip: Option<String>,
}

impl PreflightContext {
    pub fn from_engine(engine: &Engine) -> Self {
        PreflightContext {
            secrets: engine.clients.secrets().clone(),
            timeout: engine.settings.preflight_timeout,
            outbound_ip: engine.settings.outbound_ip.clone(),
        }
    }
}

/// Runs every check for `request`, which must already have passed shape validation. Source and
/// target are checked at the same time.
pub async fn run_preflight(context: &PreflightContext, request: &JobRequest) -> PreflightReport {
    let (source, target) = tokio::join!(
        server::connect(context, server::Side::Source, &request.source),
        server::connect(context, server::Side::Target, &request.target),
    );
    let mut checks = source.checks;
    checks.extend(target.checks);

    let source_collections = namespaces::check_source(source.client.as_ref(), request).await;
    checks.push(source_collections.check);
    checks.push(namespaces::check_target(target.client.as_ref(), request).await);
    let estimate = source_collections.estimate;
    checks.push(namespaces::estimate_check(estimate.as_ref()));

    for client in [source.client, target.client].into_iter().flatten() {
        client.shutdown().await;
    }
    let ok = checks.iter().all(|c| c.status != CheckStatus::Failed);
    PreflightReport {
        ok,
        checks,
        estimate,
    }
}
