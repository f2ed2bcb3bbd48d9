use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jobs::{JobState, Mode};
use crate::state::JobRecord;

/// The CloudEvents version of every event.
pub const SPEC_VERSION: &str = "1.0";

/// The kind of change an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The job was accepted by `POST /api/jobs`.
    Created,
    /// The job moved from one lifecycle state to another.
    StateChanged,
    /// An online job can be cut over for the first time (`canCutover` turned true); sent once
    /// per job, see `replication::cutover::announce_ready`.
    CutoverReady,
    /// A verification run finished, whatever its trigger (copy, request or cutover); `details`
    /// carry its result.
    VerificationCompleted,
    /// The job entered the `failed` state; `data.lastError` gives the reason.
    Failed,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::Created,
        EventType::StateChanged,
        EventType::CutoverReady,
        EventType::VerificationCompleted,
        EventType::Failed,
    ];

    /// The CloudEvents `type` attribute, in reverse-DNS form.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "com.vcoremigrate.job.created",
            EventType::StateChanged => "com.vcoremigrate.job.stateChanged",
            EventType::CutoverReady => "com.vcoremigrate.job.cutoverReady",
            EventType::VerificationCompleted => "com.vcoremigrate.job.verificationCompleted",
            EventType::Failed => "com.vcoremigrate.job.failed",
        }
    }
}

/// A CloudEvents 1.0 event in structured JSON mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// A UUID, unique per event; consumers use it to drop duplicates.
    pub id: String,
    /// `/vcore-migrate/<storage prefix>`, which distinguishes deployments.
    pub source: String,
    /// One of the `com.vcoremigrate.job.*` types.
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: DateTime<Utc>,
    /// The job id.
    pub subject: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    pub data: JobEventData,
}

/// The `data` of every job event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobEventData {
    pub job_id: String,
    pub name: String,
    pub mode: Mode,
    /// The state after the change.
    pub state: JobState,
    /// The state before the change, for `stateChanged` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<JobState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Event-specific facts, such as a verification's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

impl CloudEvent {
    /// Builds an event about `job` as stored after the change.
    pub fn for_job(
        event_type: EventType,
        source: &str,
        job: &JobRecord,
        previous_state: Option<JobState>,
        details: Option<Value>,
    ) -> CloudEvent {
        CloudEvent {
            specversion: SPEC_VERSION.to_string(),
            id: uuid::Uuid::new_v4().to_string(),
            source: source.to_string(),
            event_type: event_type.as_str().to_string(),
            time: Utc::now(),
            subject: job.id.clone(),
            datacontenttype: "application/json".to_string(),
            data: JobEventData {
                job_id: job.id.clone(),
                name: job.name.clone(),
                mode: job.mode,
                state: job.state,
                previous_state,
                last_error: job.last_error.clone(),
                details,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_distinct() {
        let names: std::collections::HashSet<&str> =
            EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names.len(), EventType::ALL.len());
        for name in names {
            assert!(name.starts_with("com.vcoremigrate.job."), "{name}");
        }
    }
}
