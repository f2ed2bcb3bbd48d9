//! Planning against real servers: the in-process emulator, and a real MongoDB when
//! `MONGODB_TEST_URI` is set.

use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use bson::{doc, Bson, Document};
use mongo_emulator::{EmulatorHandle, EmulatorOptions, Personality};
use mongodb::Client;

use super::*;

/// A server to plan against, kept alive with its emulator.
struct Server {
    name: &'static str,
    client: Client,
    _emulator: Option<EmulatorHandle>,
}

async fn emulator(options: EmulatorOptions) -> Server {
    let emulator = mongo_emulator::start(options)
        .await
        .expect("emulator starts on 127.0.0.1");
    let client = Client::with_uri_str(emulator.uri())
        .await
        .expect("driver parses the emulator URI");
    Server {
        name: "emulator",
        client,
        _emulator: Some(emulator),
    }
}

/// Returns the emulator, plus the real server `MONGODB_TEST_URI` names when it is set.
async fn servers() -> Vec<Server> {
    let mut servers = vec![emulator(EmulatorOptions::default()).await];
    if let Some(uri) = std::env::var("MONGODB_TEST_URI")
        .ok()
        .filter(|u| !u.is_empty())
    {
        let client = Client::with_uri_str(&uri)
            .await
            .expect("MONGODB_TEST_URI is a valid connection string");
        servers.push(Server {
            name: "real server",
            client,
            _emulator: None,
        });
    }
    servers
}

/// `_id`s from most type brackets, with NaN and infinities among the numbers.
fn mixed_ids() -> Vec<Bson> {
    let mut ids = vec![
        Bson::MinKey,
        Bson::Null,
        Bson::Double(f64::NAN),
        Bson::Double(f64::NEG_INFINITY),
        Bson::Double(f64::INFINITY),
        Bson::Double(2.5),
        Bson::Int64(9_007_199_254_740_993),
        Bson::Document(doc! { "region": "eu", "n": 1 }),
        Bson::Document(doc! { "region": "us", "n": 2 }),
        Bson::Boolean(false),
        Bson::Boolean(true),
        Bson::DateTime(bson::DateTime::from_millis(-62_135_596_800_000)),
        Bson::DateTime(bson::DateTime::from_millis(0)),
        Bson::MaxKey,
    ];
    ids.extend((0..10).map(Bson::Int32));
    ids.extend(["", "a", "b", "c", "d", "e", "é"].map(|s| Bson::String(s.into())));
    ids.extend((1..=5u8).map(|n| Bson::ObjectId(ObjectId::from_bytes([n; 12]))));
    ids
}

async fn load(server: &Server, name: &str, ids: &[Bson]) -> Collection<Document> {
    let collection = server
        .client
        .database("vcm_planner_tests")
        .collection::<Document>(name);
    collection.drop().await.expect("drop succeeds");
    if !ids.is_empty() {
        let documents: Vec<Document> = ids
            .iter()
            .map(|id| doc! { "_id": id.clone(), "pad": "x" })
            .collect();
        collection
            .insert_many(documents)
            .await
            .expect("insert succeeds");
    }
    collection
}

/// Plans the whole collection in one pass.
async fn plan_all(collection: &Collection<Document>, chunk_documents: u64) -> Vec<PlannedChunk> {
    let far = Instant::now() + Duration::from_secs(600);
    let mut chunks = Vec::new();
    let progress = plan_chunks(
        collection,
        chunk_documents,
        None,
        far,
        std::future::pending(),
        |chunk| {
            chunks.push(chunk);
            async { Ok::<(), mongodb::error::Error>(()) }
        },
    )
    .await
    .expect("planning succeeds");
    assert!(matches!(progress, PlanProgress::Finished));
    chunks
}

/// Checks that the chunks cover every document once, in order, with the counts they report.
async fn assert_partition(
    server: &str,
    collection: &Collection<Document>,
    chunks: &[PlannedChunk],
    total: u64,
) {
    let mut covered = 0;
    for (index, chunk) in chunks.iter().enumerate() {
        let found = collection
            .count_documents(chunk.range.filter(None))
            .await
            .expect("count succeeds");
        assert_eq!(found, chunk.documents, "{server}: chunk {index} {chunk:?}");
        covered += found;
        assert!(
            !chunk.range.lower.as_ref().is_some_and(is_nan),
            "{server}: NaN bounds chunk {index}"
        );
        if let Some(next) = chunks.get(index + 1) {
            let expected = PlanCursor {
                bracket: next.range.bracket,
                lower: next.range.lower.clone(),
            };
            assert_eq!(
                chunk.next.as_ref(),
                Some(&expected),
                "{server}: chunk {index}"
            );
            assert!(next.range.bracket >= chunk.range.bracket);
        }
    }
    assert_eq!(covered, total, "{server}: documents covered");
    assert_eq!(chunks.last().map(|c| c.next.clone()), Some(None));
}

#[tokio::test]
async fn mixed_ids_cover_every_document_once() {
    for server in servers().await {
        let ids = mixed_ids();
        let collection = load(&server, "mixed", &ids).await;
        let chunks = plan_all(&collection, 3).await;
        assert_partition(server.name, &collection, &chunks, ids.len() as u64).await;

        let brackets: Vec<TypeBracket> = chunks.iter().map(|c| c.range.bracket).collect();
        let mut distinct = brackets.clone();
        distinct.dedup();
        assert_eq!(
            distinct,
            [
                TypeBracket::MinKey,
                TypeBracket::Null,
                TypeBracket::Number,
                TypeBracket::String,
                TypeBracket::Object,
                TypeBracket::ObjectId,
                TypeBracket::Bool,
                TypeBracket::Date,
                TypeBracket::MaxKey,
            ],
            "{}",
            server.name
        );
        // 15 numbers make five chunks of three. The last one has no upper bound.
        let numbers: Vec<u64> = chunks
            .iter()
            .filter(|c| c.range.bracket == TypeBracket::Number)
            .map(|c| c.documents)
            .collect();
        assert_eq!(numbers, [3, 3, 3, 3, 3], "{}", server.name);
    }
}

#[tokio::test]
async fn single_bracket_chunks_fill_up() {
    for server in servers().await {
        let ids: Vec<Bson> = (0..1_000).map(Bson::Int64).collect();
        let collection = load(&server, "numbers", &ids).await;
        let chunks = plan_all(&collection, 300).await;
        let sizes: Vec<u64> = chunks.iter().map(|c| c.documents).collect();
        assert_eq!(sizes, [300, 300, 300, 100], "{}", server.name);
        assert_eq!(chunks[0].range.lower, None);
        assert_eq!(chunks[1].range.lower, Some(Bson::Int64(300)));
        assert_eq!(chunks[3].range.upper, None);
        assert_partition(server.name, &collection, &chunks, 1_000).await;
    }
}

#[tokio::test]
async fn empty_collection_has_no_chunks() {
    for server in servers().await {
        let collection = load(&server, "empty", &[]).await;
        assert!(
            plan_all(&collection, 10).await.is_empty(),
            "{}",
            server.name
        );
    }
}

#[tokio::test]
async fn suspended_plan_resumes_identically() {
    for server in servers().await {
        let ids = mixed_ids();
        let collection = load(&server, "resumed", &ids).await;
        let whole = plan_all(&collection, 4).await;

        // A deadline in the past suspends after every chunk.
        let mut pieces = Vec::new();
        let mut resume = None;
        let mut passes = 0;
        loop {
            passes += 1;
            assert!(
                passes <= whole.len() + 2,
                "{}: planning never ends",
                server.name
            );
            let progress = plan_chunks(
                &collection,
                4,
                resume.take(),
                Instant::now(),
                std::future::pending(),
                |chunk| {
                    pieces.push(chunk);
                    async { Ok::<(), mongodb::error::Error>(()) }
                },
            )
            .await
            .expect("planning succeeds");
            match progress {
                PlanProgress::Finished => break,
                PlanProgress::Suspended(cursor) => {
                    let saved = PlanCursor::decode(&cursor.encode());
                    assert_eq!(saved.as_ref(), Some(&cursor));
                    resume = saved;
                }
            }
        }
        assert_eq!(pieces, whole, "{}", server.name);
    }
}

#[tokio::test]
async fn empty_bracket_resume_moves_on() {
    for server in servers().await {
        let ids: Vec<Bson> = (0..10).map(Bson::Int32).collect();
        let collection = load(&server, "gap", &ids).await;
        let resume = PlanCursor {
            bracket: TypeBracket::MinKey,
            lower: None,
        };
        let far = Instant::now() + Duration::from_secs(600);
        let mut chunks = Vec::new();
        plan_chunks(
            &collection,
            4,
            Some(resume),
            far,
            std::future::pending(),
            |chunk| {
                chunks.push(chunk);
                async { Ok::<(), mongodb::error::Error>(()) }
            },
        )
        .await
        .expect("planning succeeds");
        assert_eq!(chunks.len(), 3, "{}", server.name);
        assert_partition(server.name, &collection, &chunks, 10).await;
    }
}

#[tokio::test]
async fn throttled_reads_are_retried() {
    let server = emulator(EmulatorOptions {
        personality: Personality::CosmosRu,
        ..EmulatorOptions::default()
    })
    .await;
    let ids: Vec<Bson> = (0..400).map(Bson::Int32).collect();
    let collection = load(&server, "throttled", &ids).await;
    // Each boundary read charges about 100 request units against a budget of 150 a second.
    server
        .client
        .database("admin")
        .run_command(doc! { "emulatorSetRuPerSecond": 150 })
        .await
        .expect("the emulator takes a new budget");
    let chunks = plan_all(&collection, 100).await;
    let sizes: Vec<u64> = chunks.iter().map(|c| c.documents).collect();
    assert_eq!(sizes, [100, 100, 100, 100]);
    // The checks below count documents too, so the budget is lifted first.
    server
        .client
        .database("admin")
        .run_command(doc! { "emulatorSetRuPerSecond": 0 })
        .await
        .expect("the emulator lifts the budget");
    assert_partition(server.name, &collection, &chunks, 400).await;
}

/// Builds the error a Cosmos DB (RU) server returns when it throttles a request.
fn throttled_error() -> mongodb::error::Error {
    let reply: mongodb::error::CommandError = bson::from_document(doc! {
        "code": 16500,
        "codeName": "TooManyRequests",
        "errmsg": "Error=16500, RetryAfterMs=1, Details='TooManyRequests (429)'",
    })
    .expect("a command error document");
    mongodb::error::ErrorKind::Command(reply).into()
}

#[tokio::test]
async fn transient_error_after_throttles_is_retried() {
    let far = Instant::now() + Duration::from_secs(600);
    let mut calls = 0u32;
    let result = retried(far, || {
        calls += 1;
        let call = calls;
        async move {
            match call {
                1..=9 => Err(throttled_error()),
                10 => Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset").into()),
                _ => Ok(call),
            }
        }
    })
    .await;
    assert_eq!(result.expect("the read is retried"), Some(11));
}

#[tokio::test]
async fn endless_throttling_suspends_at_the_deadline() {
    let server = emulator(EmulatorOptions::default()).await;
    let ids: Vec<Bson> = (0..10).map(Bson::Int32).collect();
    let collection = load(&server, "always_throttled", &ids).await;
    server
        .client
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": {
                "failCommands": ["find"],
                "errorCode": 16500,
                "errmsg": "Error=16500, RetryAfterMs=1, Details='TooManyRequests (429)'",
            },
        })
        .await
        .expect("the fail point is set");
    let deadline = Instant::now() + Duration::from_secs(2);
    let progress = plan_chunks(
        &collection,
        4,
        None,
        deadline,
        std::future::pending(),
        |_| async { Ok::<(), mongodb::error::Error>(()) },
    )
    .await
    .expect("throttling never fails the plan");
    assert!(
        matches!(progress, PlanProgress::Suspended(ref c) if *c == PlanCursor::start()),
        "{progress:?}"
    );
}
