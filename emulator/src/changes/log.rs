//! The server's change log: every write, in cluster-time order, kept up to a bounded size.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bson::{DateTime, RawDocumentBuf, Timestamp};
use tokio::sync::watch;

use crate::store::StoredDocument;

/// The kind of a change event, as `operationType` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Insert,
    Update,
    Replace,
    Delete,
    Drop,
    /// A collection renamed to the given `db.collection`.
    Rename {
        to_db: String,
        to_collection: String,
    },
    DropDatabase,
}

impl EventKind {
    pub fn operation_type(&self) -> &'static str {
        match self {
            EventKind::Insert => "insert",
            EventKind::Update => "update",
            EventKind::Replace => "replace",
            EventKind::Delete => "delete",
            EventKind::Drop => "drop",
            EventKind::Rename { .. } => "rename",
            EventKind::DropDatabase => "dropDatabase",
        }
    }
}

/// A write to record, before the log assigns its position and cluster time.
#[derive(Debug)]
pub struct PendingEvent {
    pub db: String,
    /// Empty for `dropDatabase`.
    pub collection: String,
    pub kind: EventKind,
    pub document_key: Option<RawDocumentBuf>,
    /// The document after the write, for inserts, replacements and updates.
    pub full_document: Option<StoredDocument>,
    /// `{updatedFields, removedFields, truncatedArrays}` for updates.
    pub update_description: Option<RawDocumentBuf>,
}

/// A recorded change.
#[derive(Debug)]
pub struct ChangeEvent {
    /// Position in the log, starting at 1; resume tokens carry it.
    pub sequence: u64,
    pub cluster_time: Timestamp,
    pub wall_time: DateTime,
    pub event: PendingEvent,
}

struct LogState {
    entries: VecDeque<Arc<ChangeEvent>>,
    /// Sequence of the newest entry ever recorded (0 before the first write).
    last_sequence: u64,
    last_time: Timestamp,
    capacity: usize,
    /// Cluster time of the newest entry dropped to respect the capacity, if any was.
    dropped_until: Option<Timestamp>,
}

/// The change log. Writers append under its mutex while still holding their collection's
/// lock, so the log order is the order in which writes were applied.
pub struct ChangeLog {
    state: Mutex<LogState>,
    /// Publishes the newest sequence so waiting change-stream `getMore`s wake up.
    newest: watch::Sender<u64>,
}

impl ChangeLog {
    pub fn new(capacity: usize) -> ChangeLog {
        let (newest, _) = watch::channel(0);
        ChangeLog {
            state: Mutex::new(LogState {
                entries: VecDeque::new(),
                last_sequence: 0,
                last_time: Timestamp {
                    time: unix_seconds(),
                    increment: 0,
                },
                capacity,
                dropped_until: None,
            }),
            newest,
        }
    }

    fn next_time(state: &mut LogState) -> Timestamp {
        let now = unix_seconds();
        state.last_time = if now > state.last_time.time {
            Timestamp {
                time: now,
                increment: 1,
            }
        } else {
            Timestamp {
                time: state.last_time.time,
                increment: state.last_time.increment + 1,
            }
        };
        state.last_time
    }

    /// Records events in order and returns the cluster time of the last one (the current
    /// cluster time when there are none).
    pub fn append(&self, events: Vec<PendingEvent>) -> Timestamp {
        if events.is_empty() {
            return self.now();
        }
        let mut state = self.state.lock().expect("change log lock");
        let wall_time = DateTime::now();
        for event in events {
            let cluster_time = Self::next_time(&mut state);
            state.last_sequence += 1;
            let entry = Arc::new(ChangeEvent {
                sequence: state.last_sequence,
                cluster_time,
                wall_time,
                event,
            });
            state.entries.push_back(entry);
            if state.entries.len() > state.capacity {
                if let Some(dropped) = state.entries.pop_front() {
                    state.dropped_until = Some(dropped.cluster_time);
                }
            }
        }
        let (time, sequence) = (state.last_time, state.last_sequence);
        drop(state);
        self.newest.send_replace(sequence);
        time
    }

    /// Advances the cluster time without recording an event (for writes no stream reports).
    pub fn tick(&self) -> Timestamp {
        let mut state = self.state.lock().expect("change log lock");
        Self::next_time(&mut state)
    }

    /// Returns the newest cluster time, the server's `operationTime`.
    pub fn now(&self) -> Timestamp {
        self.state.lock().expect("change log lock").last_time
    }

    /// Returns the newest sequence and cluster time.
    pub fn position(&self) -> (u64, Timestamp) {
        let state = self.state.lock().expect("change log lock");
        (state.last_sequence, state.last_time)
    }

    /// Returns the sequence of the oldest retained entry, or the next sequence when the log is
    /// empty. Resuming from before it has lost history.
    pub fn oldest_sequence(&self) -> u64 {
        let state = self.state.lock().expect("change log lock");
        state
            .entries
            .front()
            .map(|e| e.sequence)
            .unwrap_or(state.last_sequence + 1)
    }

    /// Returns up to `max` retained entries with a sequence greater than `after`.
    pub fn read_after(&self, after: u64, max: usize) -> Vec<Arc<ChangeEvent>> {
        let state = self.state.lock().expect("change log lock");
        let Some(front) = state.entries.front() else {
            return Vec::new();
        };
        let skip = after.saturating_sub(front.sequence - 1) as usize;
        state.entries.iter().skip(skip).take(max).cloned().collect()
    }

    /// Returns the position to read after so that reading starts with the first event at or
    /// after `time`, and whether events at or after `time` have already been dropped.
    pub fn position_at_time(&self, time: Timestamp) -> (u64, bool) {
        let state = self.state.lock().expect("change log lock");
        let key = |t: Timestamp| (t.time, t.increment);
        let lost = state
            .dropped_until
            .is_some_and(|dropped| key(dropped) >= key(time));
        let position = state
            .entries
            .iter()
            .find(|e| key(e.cluster_time) >= key(time))
            .map(|e| e.sequence - 1)
            .unwrap_or(state.last_sequence);
        (position, lost)
    }

    /// Returns a receiver that changes whenever events are appended.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }
}

fn unix_seconds() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}
