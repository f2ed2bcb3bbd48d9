//! Conformance: the `failCommand` fail point, one check per field.

mod common;

use bson::{doc, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::Client;

async fn configure(client: &Client, command: Document) -> Document {
    client.database("admin").run_command(command).await.unwrap()
}

async fn turn_off(client: &Client) -> i64 {
    let reply = configure(
        client,
        doc! { "configureFailPoint": "failCommand", "mode": "off" },
    )
    .await;
    reply
        .get("count")
        .and_then(|c| c.as_i64().or(c.as_i32().map(i64::from)))
        .unwrap_or(-1)
}

#[tokio::test]
async fn error_code_fires_for_listed_commands_only() {
    let _serial = common::fail_point_lock().await;
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("fperr"));
        let collection = db.collection::<Document>("c");
        collection.insert_one(doc! { "_id": 1 }).await.unwrap();
        configure(&target.client, doc! {
            "configureFailPoint": "failCommand",
            "mode": { "times": 2 },
            "data": { "failCommands": ["count"], "errorCode": 2, "errorLabels": ["CustomLabel"] },
        })
        .await;
        let listed = db.run_command(doc! { "count": "c" }).await.unwrap_err();
        assert_eq!(common::error_code(&listed), Some(2), "{}", target.name);
        assert!(listed.contains_label("CustomLabel"), "{}", target.name);
        let other = db.run_command(doc! { "find": "c" }).await;
        assert!(other.is_ok(), "{}: unlisted commands run", target.name);
        assert!(
            db.run_command(doc! { "count": "c" }).await.is_err(),
            "{}: second time",
            target.name
        );
        let third = db.run_command(doc! { "count": "c" }).await;
        assert!(third.is_ok(), "{}: times counts down to off", target.name);
        turn_off(&target.client).await;
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn always_on_until_off_and_count_reports_activations() {
    let _serial = common::fail_point_lock().await;
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("fpalways"));
        configure(
            &target.client,
            doc! {
                "configureFailPoint": "failCommand",
                "mode": "alwaysOn",
                "data": { "failCommands": ["count"], "errorCode": 50 },
            },
        )
        .await;
        for _ in 0..3 {
            let error = db.run_command(doc! { "count": "c" }).await.unwrap_err();
            assert_eq!(common::error_code(&error), Some(50), "{}", target.name);
        }
        let activations = turn_off(&target.client).await;
        assert_eq!(activations, 3, "{}", target.name);
        assert!(
            db.run_command(doc! { "count": "c" }).await.is_ok(),
            "{}",
            target.name
        );
    }
}

#[tokio::test]
async fn retryable_code_gets_default_label_and_driver_retries() {
    let _serial = common::fail_point_lock().await;
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("fpretry"));
        let collection = db.collection::<Document>("c");
        configure(
            &target.client,
            doc! {
                "configureFailPoint": "failCommand",
                "mode": { "times": 1 },
                "data": { "failCommands": ["insert"], "errorCode": 91 },
            },
        )
        .await;
        collection.insert_one(doc! { "_id": 1 }).await.unwrap();
        assert_eq!(
            collection.count_documents(doc! {}).await.unwrap(),
            1,
            "{}",
            target.name
        );
        turn_off(&target.client).await;
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn close_connection_drops_the_socket() {
    let _serial = common::fail_point_lock().await;
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("fpclose"));
        configure(
            &target.client,
            doc! {
                "configureFailPoint": "failCommand",
                "mode": { "times": 1 },
                "data": { "failCommands": ["count"], "closeConnection": true, "errorCode": 2 },
            },
        )
        .await;
        let error = db.run_command(doc! { "count": "c" }).await.unwrap_err();
        assert!(
            matches!(
                error.kind.as_ref(),
                ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. }
            ),
            "{}: closeConnection wins over errorCode: {error:?}",
            target.name
        );
        assert!(
            db.run_command(doc! { "count": "c" }).await.is_ok(),
            "{}",
            target.name
        );
        turn_off(&target.client).await;
    }
}

#[tokio::test]
async fn block_connection_delays_then_runs() {
    let _serial = common::fail_point_lock().await;
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("fpblock"));
        configure(
            &target.client,
            doc! {
                "configureFailPoint": "failCommand",
                "mode": { "times": 1 },
                "data": { "failCommands": ["count"], "blockConnection": true, "blockTimeMS": 50 },
            },
        )
        .await;
        let reply = db.run_command(doc! { "count": "c" }).await.unwrap();
        assert_eq!(reply.get_i32("n"), Ok(0), "{}", target.name);
        let missing_time = target
            .client
            .database("admin")
            .run_command(doc! {
                "configureFailPoint": "failCommand",
                "mode": "alwaysOn",
                "data": { "failCommands": ["count"], "blockConnection": true },
            })
            .await;
        if target.is_emulator() {
            assert!(missing_time.is_err(), "blockConnection needs blockTimeMS");
        }
        turn_off(&target.client).await;
    }
}

#[tokio::test]
async fn write_concern_error_follows_a_successful_write() {
    let _serial = common::fail_point_lock().await;
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("fpwce"));
        let collection = db.collection::<Document>("c");
        configure(
            &target.client,
            doc! {
                "configureFailPoint": "failCommand",
                "mode": { "times": 1 },
                "data": {
                    "failCommands": ["insert"],
                    "writeConcernError": { "code": 100, "errmsg": "injected write concern error" },
                },
            },
        )
        .await;
        let error = collection.insert_one(doc! { "_id": 1 }).await.unwrap_err();
        let ErrorKind::Write(WriteFailure::WriteConcernError(wce)) = error.kind.as_ref() else {
            panic!(
                "{}: expected a write concern error, got {error:?}",
                target.name
            );
        };
        assert_eq!(wce.code, 100, "{}", target.name);
        assert_eq!(
            collection.count_documents(doc! {}).await.unwrap(),
            1,
            "{}: the write ran",
            target.name
        );
        turn_off(&target.client).await;
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn app_name_limits_the_fail_point() {
    let _serial = common::fail_point_lock().await;
    for target in common::targets().await {
        let uri = match &target.emulator {
            Some(emulator) => emulator.uri(),
            None => std::env::var("MONGODB_TEST_URI").unwrap(),
        };
        let mut options = mongodb::options::ClientOptions::parse(&uri).await.unwrap();
        options.app_name = Some("chosen-app".into());
        let chosen = Client::with_options(options).unwrap();
        let db_name = common::unique_db("fpapp");
        configure(
            &target.client,
            doc! {
                "configureFailPoint": "failCommand",
                "mode": "alwaysOn",
                "data": { "failCommands": ["count"], "errorCode": 2, "appName": "chosen-app" },
            },
        )
        .await;
        let other = target
            .client
            .database(&db_name)
            .run_command(doc! { "count": "c" })
            .await;
        assert!(
            other.is_ok(),
            "{}: other applications are not affected",
            target.name
        );
        let error = chosen
            .database(&db_name)
            .run_command(doc! { "count": "c" })
            .await
            .unwrap_err();
        assert_eq!(common::error_code(&error), Some(2), "{}", target.name);
        turn_off(&target.client).await;
    }
}

#[tokio::test]
async fn skip_lets_the_first_commands_through() {
    let _serial = common::fail_point_lock().await;
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("fpskip"));
        configure(
            &target.client,
            doc! {
                "configureFailPoint": "failCommand",
                "mode": { "skip": 1 },
                "data": { "failCommands": ["count"], "errorCode": 2 },
            },
        )
        .await;
        assert!(
            db.run_command(doc! { "count": "c" }).await.is_ok(),
            "{}",
            target.name
        );
        assert!(
            db.run_command(doc! { "count": "c" }).await.is_err(),
            "{}",
            target.name
        );
        turn_off(&target.client).await;
    }
}
