//! Server-side cursors for `find`, `aggregate` and change streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::changes::stream::StreamCursor;
use crate::error::CommandResult;
use crate::query::projection::Projection;
use crate::store::StoredDocument;

/// The source of the documents a cursor returns on `getMore`.
pub enum CursorSource {
    /// Documents selected when the cursor was opened, returned in order.
    Documents(DocumentBatches),
    /// A change stream, which reads the change log as it grows.
    ChangeStream(Box<StreamCursor>),
}

/// The documents a query selected, handed out batch by batch. Each document is projected as it
/// goes into a batch, not the whole result up front. The first batch of a large projected query
/// is then as quick as that of an unprojected one.
pub struct DocumentBatches {
    documents: std::vec::IntoIter<StoredDocument>,
    projection: Option<Projection>,
    /// A document, already projected, that did not fit the previous batch.
    overflow: Option<StoredDocument>,
}

impl DocumentBatches {
    pub fn new(documents: Vec<StoredDocument>, projection: Option<Projection>) -> Self {
        DocumentBatches {
            documents: documents.into_iter(),
            projection,
            overflow: None,
        }
    }

    /// Returns the next document, projected.
    pub fn next_document(&mut self) -> CommandResult<Option<StoredDocument>> {
        if let Some(document) = self.overflow.take() {
            return Ok(Some(document));
        }
        let Some(document) = self.documents.next() else {
            return Ok(None);
        };
        match &self.projection {
            None => Ok(Some(document)),
            Some(projection) => Ok(Some(Arc::new(projection.apply(&document)?))),
        }
    }

    /// Keeps a document taken by [`Self::next_document`] for the next batch.
    pub fn put_back(&mut self, document: StoredDocument) {
        debug_assert!(self.overflow.is_none(), "only one document is put back");
        self.overflow = Some(document);
    }

    pub fn is_exhausted(&self) -> bool {
        self.overflow.is_none() && self.documents.len() == 0
    }
}

pub struct Cursor {
    /// `db.collection` the cursor was opened on; `getMore` must name the same one.
    pub namespace: String,
    pub source: CursorSource,
    /// The connection's SCRAM user, so other users cannot read the cursor (unused without auth).
    pub owner: Option<String>,
}

/// How long an unused cursor stays open, as `mongod`'s default `cursorTimeoutMillis`.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// All open cursors, keyed by id, with the time each was last used.
#[derive(Default)]
pub struct CursorTable {
    cursors: HashMap<i64, (Cursor, Instant)>,
    next_id: i64,
}

impl CursorTable {
    /// Registers a cursor and returns its id (never 0, which means "exhausted").
    pub fn insert(&mut self, cursor: Cursor) -> i64 {
        // Ids are random-looking but unique, like mongod's, so tests cannot depend on them.
        self.next_id += 1;
        let id = (self.next_id << 20) ^ (rand::random::<i64>() & 0xfffff);
        let id = id.abs().max(1);
        self.expire_idle();
        self.cursors.insert(id, (cursor, Instant::now()));
        id
    }

    pub fn take(&mut self, id: i64) -> Option<Cursor> {
        self.cursors.remove(&id).map(|(cursor, _)| cursor)
    }

    /// Puts back a cursor taken for a `getMore` that did not exhaust it.
    pub fn restore(&mut self, id: i64, cursor: Cursor) {
        self.cursors.insert(id, (cursor, Instant::now()));
    }

    /// Closes cursors unused for longer than the idle timeout, so abandoned cursors do not
    /// keep their documents alive.
    fn expire_idle(&mut self) {
        let before = self.cursors.len();
        self.cursors
            .retain(|_, (_, used)| used.elapsed() < IDLE_TIMEOUT);
        let expired = before - self.cursors.len();
        if expired > 0 {
            tracing::debug!(expired, "closed idle cursors");
        }
    }

    pub fn contains(&self, id: i64) -> bool {
        self.cursors.contains_key(&id)
    }

    pub fn is_change_stream(&self, id: i64) -> bool {
        matches!(
            self.cursors.get(&id),
            Some((
                Cursor {
                    source: CursorSource::ChangeStream(_),
                    ..
                },
                _
            ))
        )
    }

    /// Removes cursors on a namespace (after drop or rename) except change streams, which
    /// report the drop themselves.
    pub fn remove_namespace(&mut self, namespace: &str) {
        self.cursors.retain(|_, (c, _)| {
            c.namespace != namespace || matches!(c.source, CursorSource::ChangeStream(_))
        });
    }

    pub fn len(&self) -> usize {
        self.cursors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cursors.is_empty()
    }
}
