//! The live workload of an online demo: a seeded-random mix of inserts, `$set` and `$inc`
//! updates, whole-document replaces and deletes on the source's dataset collections.
//!
//! [`WorkloadModel`] decides every write and keeps the state the source must have afterwards:
//! which `_id`s exist, and what each document's `workload` field holds. It is pure, so the same
//! seed and the same initial documents give the same writes. [`runner`] sends the writes through
//! the driver at a fixed rate.
//!
//! Every write leaves its trace in a `workload` subdocument: `lastWrite` is the sequence number
//! of the last insert, replace or `$set` of the document, and `increments` counts the `$inc`
//! updates since its last insert or replace. An update that is lost or applied twice therefore
//! shows up in the document itself, not only in a count.

pub mod runner;

use bson::oid::ObjectId;
use bson::{doc, Bson, Document};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::datasets::Dataset;

/// Name of the field that every write sets or changes.
pub const FIELD: &str = "workload";

/// Documents of each collection kept as templates for inserts and replaces.
const TEMPLATES_PER_COLLECTION: usize = 64;

/// The kinds of write, in the order the reports list them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    Insert,
    /// `$set` of `workload.lastWrite`.
    Set,
    /// `$inc` of `workload.increments`.
    Increment,
    /// A whole-document replacement with the same `_id`.
    Replace,
    Delete,
}

impl WriteKind {
    pub const ALL: [WriteKind; 5] = [
        WriteKind::Insert,
        WriteKind::Set,
        WriteKind::Increment,
        WriteKind::Replace,
        WriteKind::Delete,
    ];

    /// Returns the column heading of this kind in the reports.
    pub fn label(self) -> &'static str {
        match self {
            WriteKind::Insert => "inserts",
            WriteKind::Set => "$set",
            WriteKind::Increment => "$inc",
            WriteKind::Replace => "replaces",
            WriteKind::Delete => "deletes",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Relative weights of the kinds. Inserts and deletes are equally likely, so each collection
/// keeps about its size however long the workload runs.
const MIX: [(WriteKind, u32); 5] = [
    (WriteKind::Insert, 20),
    (WriteKind::Set, 25),
    (WriteKind::Increment, 20),
    (WriteKind::Replace, 15),
    (WriteKind::Delete, 20),
];

/// Counts of writes per kind, indexed in [`WriteKind::ALL`] order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindCounts(pub [u64; 5]);

impl KindCounts {
    pub fn add(&mut self, kind: WriteKind) {
        self.0[kind.index()] += 1;
    }

    pub fn get(&self, kind: WriteKind) -> u64 {
        self.0[kind.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// One write the workload sends.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// Index of the collection in the model.
    pub collection: usize,
    /// Position of the write in the workload, from 1.
    pub sequence: u64,
    pub kind: WriteKind,
    /// `_id` of the document written.
    pub id: Bson,
    /// The new document (insert), the replacement (replace) or the update document (`$set`,
    /// `$inc`); `None` for a delete.
    pub body: Option<Document>,
}

/// A document the model expects on the source, and what its `workload` field holds.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveDocument {
    pub id: Bson,
    /// `workload.lastWrite`: the last insert, replace or `$set`; `None` when none touched it.
    pub last_write: Option<i64>,
    /// `workload.increments`; a document that no `$inc` reached has no such field.
    pub increments: i32,
}

/// Source of new `_id`s for inserts, of the same type as the collection's `_id`s.
#[derive(Clone, Debug)]
enum IdSource {
    /// The next Int32 after the largest existing one.
    Int32 { next: i32 },
    /// An ObjectId of random bytes from the model's generator.
    ObjectId,
    /// `workload-N` strings, for strings and every other type.
    Text { next: u64 },
}

impl IdSource {
    fn for_documents(documents: &[Document]) -> IdSource {
        let ids = || documents.iter().filter_map(|d| d.get("_id"));
        match ids().next() {
            Some(Bson::Int32(_)) => {
                let max = ids()
                    .filter_map(|id| match id {
                        Bson::Int32(n) => Some(*n),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(0);
                IdSource::Int32 {
                    next: max.saturating_add(1),
                }
            }
            Some(Bson::ObjectId(_)) => IdSource::ObjectId,
            _ => IdSource::Text { next: 1 },
        }
    }

    fn next_id(&mut self, rng: &mut StdRng) -> Bson {
        match self {
            IdSource::Int32 { next } => {
                let id = *next;
                *next = next.saturating_add(1);
                Bson::Int32(id)
            }
            IdSource::ObjectId => Bson::ObjectId(ObjectId::from_bytes(rng.gen())),
            IdSource::Text { next } => {
                let id = format!("workload-{next}");
                *next += 1;
                Bson::String(id)
            }
        }
    }
}

/// One collection of the workload.
#[derive(Clone, Debug)]
pub struct CollectionModel {
    pub database: String,
    pub collection: String,
    /// Documents whose shape inserts and replaces copy.
    templates: Vec<Document>,
    /// Every document the source holds, in an order that only the model's writes change.
    live: Vec<LiveDocument>,
    ids: IdSource,
}

impl CollectionModel {
    pub fn namespace(&self) -> String {
        format!("{}.{}", self.database, self.collection)
    }

    /// The documents the source must hold once every write so far is applied.
    pub fn live(&self) -> &[LiveDocument] {
        &self.live
    }
}

/// The workload's decisions and the state they lead to.
#[derive(Clone, Debug)]
pub struct WorkloadModel {
    rng: StdRng,
    collections: Vec<CollectionModel>,
    sequence: u64,
}

impl WorkloadModel {
    /// Builds the model over `datasets` as they were seeded, with a generator seeded by `seed`.
    pub fn new(datasets: &[Dataset], seed: u64) -> WorkloadModel {
        let collections = datasets
            .iter()
            .map(|dataset| CollectionModel {
                database: dataset.database.to_string(),
                collection: dataset.collection.to_string(),
                templates: spread_sample(&dataset.documents, TEMPLATES_PER_COLLECTION),
                live: dataset
                    .documents
                    .iter()
                    .filter_map(|d| d.get("_id").cloned())
                    .map(|id| LiveDocument {
                        id,
                        last_write: None,
                        increments: 0,
                    })
                    .collect(),
                ids: IdSource::for_documents(&dataset.documents),
            })
            .collect();
        WorkloadModel {
            rng: StdRng::seed_from_u64(seed),
            collections,
            sequence: 0,
        }
    }

    pub fn collections(&self) -> &[CollectionModel] {
        &self.collections
    }

    /// Decides the next write and records its effect in the model, as if the source applied it.
    pub fn next_write(&mut self) -> Write {
        self.sequence += 1;
        let sequence = self.sequence;
        let collection = self.rng.gen_range(0..self.collections.len());
        let mut kind = self.pick_kind();
        if self.collections[collection].live.is_empty() {
            // Only an insert has a document to work on in an empty collection.
            kind = WriteKind::Insert;
        }

        let rng = &mut self.rng;
        let model = &mut self.collections[collection];
        let marker = doc! { "lastWrite": sequence as i64, "increments": 0 };
        let (id, body) = match kind {
            WriteKind::Insert => {
                let id = model.ids.next_id(rng);
                let document = from_template(model, rng, &id, marker);
                model.live.push(LiveDocument {
                    id: id.clone(),
                    last_write: Some(sequence as i64),
                    increments: 0,
                });
                (id, Some(document))
            }
            WriteKind::Set => {
                let position = rng.gen_range(0..model.live.len());
                let target = &mut model.live[position];
                target.last_write = Some(sequence as i64);
                let update = doc! { "$set": { format!("{FIELD}.lastWrite"): sequence as i64 } };
                (target.id.clone(), Some(update))
            }
            WriteKind::Increment => {
                let position = rng.gen_range(0..model.live.len());
                let target = &mut model.live[position];
                target.increments += 1;
                let update = doc! { "$inc": { format!("{FIELD}.increments"): 1 } };
                (target.id.clone(), Some(update))
            }
            WriteKind::Replace => {
                let position = rng.gen_range(0..model.live.len());
                let id = model.live[position].id.clone();
                let document = from_template(model, rng, &id, marker);
                model.live[position] = LiveDocument {
                    id: id.clone(),
                    last_write: Some(sequence as i64),
                    increments: 0,
                };
                (id, Some(document))
            }
            WriteKind::Delete => {
                let position = rng.gen_range(0..model.live.len());
                (model.live.swap_remove(position).id, None)
            }
        };
        Write {
            collection,
            sequence,
            kind,
            id,
            body,
        }
    }

    fn pick_kind(&mut self) -> WriteKind {
        let total: u32 = MIX.iter().map(|(_, weight)| weight).sum();
        let mut roll = self.rng.gen_range(0..total);
        for (kind, weight) in MIX {
            if roll < weight {
                return kind;
            }
            roll -= weight;
        }
        unreachable!("the roll is below the sum of the weights")
    }
}

/// Builds a new document shaped like a random template, with `id` and the workload marker.
fn from_template(
    model: &CollectionModel,
    rng: &mut StdRng,
    id: &Bson,
    marker: Document,
) -> Document {
    let mut document = if model.templates.is_empty() {
        Document::new()
    } else {
        model.templates[rng.gen_range(0..model.templates.len())].clone()
    };
    // Replacing the value of an existing key keeps its position, so `_id` stays first.
    document.insert("_id", id.clone());
    document.insert(FIELD, marker);
    document
}

/// Takes up to `count` documents spread evenly over `documents`.
fn spread_sample(documents: &[Document], count: usize) -> Vec<Document> {
    if documents.len() <= count {
        return documents.to_vec();
    }
    let step = documents.len() / count;
    documents
        .iter()
        .step_by(step)
        .take(count)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(database: &'static str, documents: Vec<Document>) -> Dataset {
        Dataset {
            database,
            collection: "c",
            origin: "test".into(),
            documents,
        }
    }

    fn sample() -> Vec<Dataset> {
        vec![
            dataset(
                "numbers",
                (0..50).map(|n| doc! { "_id": n, "value": n * 2 }).collect(),
            ),
            dataset(
                "objects",
                (0..20)
                    .map(|n| doc! { "_id": ObjectId::new(), "title": format!("t{n}") })
                    .collect(),
            ),
            dataset(
                "strings",
                (0..5)
                    .map(|n| doc! { "_id": format!("s{n}"), "v": n })
                    .collect(),
            ),
        ]
    }

    #[test]
    fn same_seed_same_writes() {
        let datasets = sample();
        let mut first = WorkloadModel::new(&datasets, 7);
        let mut second = WorkloadModel::new(&datasets, 7);
        for _ in 0..2_000 {
            assert_eq!(first.next_write(), second.next_write());
        }
    }

    #[test]
    fn other_seed_other_writes() {
        let datasets = sample();
        let mut first = WorkloadModel::new(&datasets, 7);
        let mut second = WorkloadModel::new(&datasets, 8);
        let differ = (0..100).any(|_| first.next_write() != second.next_write());
        assert!(differ);
    }

    #[test]
    fn mix_covers_every_kind_and_collection() {
        let mut model = WorkloadModel::new(&sample(), 1);
        let mut kinds = KindCounts::default();
        let mut per_collection = [0u64; 3];
        for _ in 0..5_000 {
            let write = model.next_write();
            kinds.add(write.kind);
            per_collection[write.collection] += 1;
        }
        for kind in WriteKind::ALL {
            assert!(kinds.get(kind) > 0, "no {} in 5,000 writes", kind.label());
        }
        for (index, count) in per_collection.iter().enumerate() {
            assert!(*count > 0, "collection {index} got no write");
        }
        assert_eq!(kinds.total(), 5_000);
    }

    #[test]
    fn new_ids_follow_the_id_type() {
        let mut model = WorkloadModel::new(&sample(), 3);
        let mut seen = [false; 3];
        for _ in 0..3_000 {
            let write = model.next_write();
            if write.kind != WriteKind::Insert {
                continue;
            }
            seen[write.collection] = true;
            match (write.collection, &write.id) {
                (0, Bson::Int32(n)) => assert!(*n >= 50, "insert reused _id {n}"),
                (1, Bson::ObjectId(_)) => {}
                (2, Bson::String(s)) => assert!(s.starts_with("workload-"), "{s}"),
                (collection, id) => panic!("collection {collection} got _id {id:?}"),
            }
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn live_ids_stay_unique() {
        let mut model = WorkloadModel::new(&sample(), 11);
        for _ in 0..3_000 {
            model.next_write();
        }
        for collection in model.collections() {
            let mut ids: Vec<String> = collection.live().iter().map(|d| d.id.to_string()).collect();
            let count = ids.len();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), count, "{}", collection.namespace());
        }
    }

    #[test]
    fn insert_keeps_template_shape() {
        let mut model = WorkloadModel::new(&sample(), 5);
        let insert = std::iter::repeat_with(|| model.next_write())
            .find(|w| w.kind == WriteKind::Insert && w.collection == 0)
            .unwrap();
        let body = insert.body.unwrap();
        let keys: Vec<&str> = body.keys().map(String::as_str).collect();
        assert_eq!(keys, ["_id", "value", FIELD]);
        assert_eq!(body.get("_id"), Some(&insert.id));
        let marker = body.get_document(FIELD).unwrap();
        assert_eq!(marker.get_i64("lastWrite").unwrap(), insert.sequence as i64);
    }
}
