//! Turns the change events of one round trip into target writes.
//!
//! Events are not applied one by one: only the last event of each document key in a round trip
//! matters, because every write is the whole document (or its deletion). Applying the last state
//! per key gives the same target as applying every event in order, and a replayed page (Cosmos DB
//! RU returns one resume token per page) changes nothing.

use std::collections::HashMap;

use bson::{RawBson, RawBsonRef, RawDocument, RawDocumentBuf, Timestamp};

/// The reason a stream ended for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    Dropped,
    /// Renamed to the given `db.collection`.
    Renamed(String),
    DatabaseDropped,
    /// The server invalidated the stream without a drop or rename event before it.
    Invalidated,
}

impl StreamEnd {
    /// Returns a sentence for the collection's `lastError`.
    pub fn describe(&self, namespace: &str) -> String {
        match self {
            StreamEnd::Dropped => format!("the source collection {namespace} was dropped"),
            StreamEnd::Renamed(to) => {
                format!("the source collection {namespace} was renamed to {to}")
            }
            StreamEnd::DatabaseDropped => {
                format!("the source database of {namespace} was dropped")
            }
            StreamEnd::Invalidated => {
                format!("the source invalidated the change stream of {namespace}")
            }
        }
    }
}

/// The write the target needs for one document.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Replace the document with this one, inserting it when absent.
    Upsert(RawDocumentBuf),
    Delete,
}

/// The final write for one document key.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The document's `_id`, exactly as the source sent it.
    pub id: RawBson,
    pub write: Write,
}

/// The writes of one round trip, one per document, in the order of each document's last event.
#[derive(Debug, Default)]
pub struct Planned {
    pub changes: Vec<Change>,
    /// Insert, update, replace and delete events read (before keeping one per document).
    pub events: u64,
    /// Set when the batch contains a drop, rename or invalidate; events after it are ignored.
    pub end: Option<StreamEnd>,
    /// Cluster time of the last event that carried one (Cosmos DB RU events carry none).
    pub last_cluster_time: Option<Timestamp>,
}

/// An event the service cannot interpret.
#[derive(Debug, thiserror::Error)]
#[error("a change event could not be read: {0}")]
pub struct EventError(String);

enum Action {
    Write(Write),
    End(StreamEnd),
    Ignore,
}

/// Plans the writes for a round trip's events, in stream order.
pub fn plan(events: &[RawDocumentBuf]) -> Result<Planned, EventError> {
    let mut planned = Planned::default();
    let mut slots: Vec<Option<Change>> = Vec::with_capacity(events.len());
    let mut by_key: HashMap<Vec<u8>, usize> = HashMap::with_capacity(events.len());

    for event in events {
        if let Ok(Some(RawBsonRef::Timestamp(time))) = event.get("clusterTime") {
            planned.last_cluster_time = Some(time);
        }
        let write = match classify(event)? {
            Action::Write(write) => write,
            Action::End(end) => {
                planned.end = Some(end);
                break;
            }
            Action::Ignore => continue,
        };
        planned.events += 1;
        let id = document_id(event)?;
        let key = id_key(&id);
        if let Some(previous) = by_key.get(&key) {
            slots[*previous] = None;
        }
        by_key.insert(key, slots.len());
        slots.push(Some(Change { id, write }));
    }
    planned.changes = slots.into_iter().flatten().collect();
    Ok(planned)
}

/// Decides an event's write without trusting `operationType` for data events: Cosmos DB (RU)
/// omits it, so any event with a full document upserts it, and an update whose full document is
/// gone (the document was deleted later) deletes.
fn classify(event: &RawDocument) -> Result<Action, EventError> {
    let operation = match event.get("operationType") {
        Ok(Some(RawBsonRef::String(kind))) => Some(kind),
        Ok(None) => None,
        Ok(Some(other)) => {
            return Err(EventError(format!(
                "operationType has type {:?}",
                other.element_type()
            )))
        }
        Err(e) => return Err(EventError(e.to_string())),
    };
    let action = match operation {
        None | Some("insert" | "update" | "replace") => match event.get("fullDocument") {
            Ok(Some(RawBsonRef::Document(document))) => {
                Action::Write(Write::Upsert(document.to_raw_document_buf()))
            }
            _ => Action::Write(Write::Delete),
        },
        Some("delete") => Action::Write(Write::Delete),
        Some("drop") => Action::End(StreamEnd::Dropped),
        Some("rename") => Action::End(StreamEnd::Renamed(rename_target(event))),
        Some("dropDatabase") => Action::End(StreamEnd::DatabaseDropped),
        Some("invalidate") => Action::End(StreamEnd::Invalidated),
        // Index and collection option events appear only with showExpandedEvents, which the
        // service does not request; anything else changes no document.
        Some(_) => Action::Ignore,
    };
    Ok(action)
}

fn rename_target(event: &RawDocument) -> String {
    let Ok(to) = event.get_document("to") else {
        return "another namespace".into();
    };
    match (to.get_str("db"), to.get_str("coll")) {
        (Ok(db), Ok(coll)) => format!("{db}.{coll}"),
        _ => "another namespace".into(),
    }
}

/// Returns the `_id` from `documentKey` (which may also contain shard key fields), or from the
/// full document.
fn document_id(event: &RawDocument) -> Result<RawBson, EventError> {
    let from = |field: &str| -> Option<RawBson> {
        let document = event.get_document(field).ok()?;
        document
            .get("_id")
            .ok()
            .flatten()
            .map(|id| id.to_raw_bson())
    };
    from("documentKey")
        .or_else(|| from("fullDocument"))
        .ok_or_else(|| EventError("the event has no documentKey._id".into()))
}

/// Returns a map key for an `_id`: its exact BSON bytes, so Int32 1 and Int64 1 stay distinct.
pub fn id_key(id: &RawBson) -> Vec<u8> {
    let mut holder = RawDocumentBuf::new();
    holder.append("v", id.clone());
    holder.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn event(kind: Option<&str>, id: i32, full: Option<RawDocumentBuf>) -> RawDocumentBuf {
        let mut e = rawdoc! { "_id": { "_data": "t" } };
        if let Some(kind) = kind {
            e.append("operationType", kind);
        }
        if let Some(full) = full {
            e.append("fullDocument", full);
        }
        e.append("documentKey", rawdoc! { "_id": id });
        e
    }

    #[test]
    fn last_event_per_document_wins() {
        let events = vec![
            event(Some("insert"), 1, Some(rawdoc! { "_id": 1, "v": 1 })),
            event(Some("insert"), 2, Some(rawdoc! { "_id": 2 })),
            event(Some("update"), 1, Some(rawdoc! { "_id": 1, "v": 2 })),
            event(Some("delete"), 2, None),
        ];
        let planned = plan(&events).unwrap();
        assert_eq!(planned.events, 4);
        assert_eq!(
            planned.changes,
            vec![
                Change {
                    id: RawBson::Int32(1),
                    write: Write::Upsert(rawdoc! { "_id": 1, "v": 2 })
                },
                Change {
                    id: RawBson::Int32(2),
                    write: Write::Delete
                },
            ]
        );
    }

    #[test]
    fn events_without_operation_type_upsert() {
        // The Cosmos DB (RU) shape: no operationType, the whole current document.
        let events = vec![event(None, 7, Some(rawdoc! { "_id": 7, "name": "n1b" }))];
        let planned = plan(&events).unwrap();
        assert_eq!(
            planned.changes[0].write,
            Write::Upsert(rawdoc! { "_id": 7, "name": "n1b" })
        );
    }

    #[test]
    fn update_without_full_document_deletes() {
        let mut update = event(Some("update"), 3, None);
        update.append("fullDocument", RawBson::Null);
        let planned = plan(&[update]).unwrap();
        assert_eq!(planned.changes[0].write, Write::Delete);
    }

    #[test]
    fn drop_ends_the_batch() {
        let events = vec![
            event(Some("insert"), 1, Some(rawdoc! { "_id": 1 })),
            rawdoc! { "_id": { "_data": "t" }, "operationType": "drop" },
            event(Some("insert"), 2, Some(rawdoc! { "_id": 2 })),
        ];
        let planned = plan(&events).unwrap();
        assert_eq!(planned.end, Some(StreamEnd::Dropped));
        assert_eq!(planned.changes.len(), 1);
    }

    #[test]
    fn rename_names_the_new_namespace() {
        let rename = rawdoc! {
            "_id": { "_data": "t" },
            "operationType": "rename",
            "to": { "db": "mig", "coll": "renamed" },
        };
        let planned = plan(&[rename]).unwrap();
        assert_eq!(planned.end, Some(StreamEnd::Renamed("mig.renamed".into())));
    }

    #[test]
    fn ids_of_other_types_stay_apart() {
        let events = vec![
            event(Some("insert"), 1, Some(rawdoc! { "_id": 1 })),
            rawdoc! {
                "_id": { "_data": "t" },
                "operationType": "insert",
                "fullDocument": { "_id": 1_i64 },
                "documentKey": { "_id": 1_i64 },
            },
        ];
        assert_eq!(plan(&events).unwrap().changes.len(), 2);
    }

    #[test]
    fn cluster_time_is_kept() {
        let mut e = event(Some("insert"), 1, Some(rawdoc! { "_id": 1 }));
        let time = Timestamp {
            time: 9,
            increment: 2,
        };
        e.append("clusterTime", time);
        assert_eq!(plan(&[e]).unwrap().last_cluster_time, Some(time));
    }

    #[test]
    fn event_without_key_is_an_error() {
        let bad = rawdoc! { "_id": { "_data": "t" }, "operationType": "delete" };
        assert!(plan(&[bad]).is_err());
    }
}
