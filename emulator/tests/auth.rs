//! SCRAM-SHA-256 authentication against an emulator started with a user.

mod common;

use bson::doc;
use mongo_emulator::EmulatorOptions;
use mongodb::Client;

fn with_user() -> EmulatorOptions {
    EmulatorOptions {
        user: Some(("migrator".into(), "s3cret:pass".into())),
        ..EmulatorOptions::default()
    }
}

#[tokio::test]
async fn right_password_authenticates() {
    let (emulator, client) = common::start(with_user()).await;
    assert!(emulator.uri().contains("migrator:s3cret%3Apass@"));
    let names = client.list_database_names().await.unwrap();
    assert!(names.contains(&"admin".to_string()));
    let status = client
        .database("admin")
        .run_command(doc! { "connectionStatus": 1 })
        .await
        .unwrap();
    let users = status
        .get_document("authInfo")
        .unwrap()
        .get_array("authenticatedUsers")
        .unwrap();
    assert_eq!(users.len(), 1);
}

#[tokio::test]
async fn wrong_password_fails_with_18() {
    let (emulator, _client) = common::start(with_user()).await;
    let uri = format!(
        "mongodb://migrator:wrong@127.0.0.1:{}/?directConnection=true&authSource=admin",
        emulator.port()
    );
    let client = Client::with_uri_str(uri).await.unwrap();
    let error = client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .unwrap_err();
    let mongodb::error::ErrorKind::Authentication { message, .. } = error.kind.as_ref() else {
        panic!("expected an authentication error, got {error:?}");
    };
    assert!(
        message.contains("18") || message.contains("Authentication failed"),
        "{message}"
    );
}

#[tokio::test]
async fn unauthenticated_commands_are_rejected_with_13() {
    let (emulator, _client) = common::start(with_user()).await;
    let anonymous = Client::with_uri_str(format!(
        "mongodb://127.0.0.1:{}/?directConnection=true",
        emulator.port()
    ))
    .await
    .unwrap();
    let error = anonymous
        .database("db")
        .run_command(doc! { "find": "c" })
        .await
        .unwrap_err();
    assert_eq!(common::error_code(&error), Some(13));
    let ping = anonymous
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await;
    assert!(ping.is_ok(), "ping needs no authentication");
}
