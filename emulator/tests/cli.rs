//! The `mongo-emulator` binary: starts from the command line, prints its address, serves the
//! driver, and rejects invalid options.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use bson::doc;

/// Kills the child process when the test ends, even on failure.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_with_credentials() {
    let child = Command::new(env!("CARGO_BIN_EXE_mongo-emulator"))
        .args([
            "--port",
            "0",
            "--personality",
            "vcore",
            "--user",
            "admin",
            "--history-size",
            "10",
        ])
        .env("MONGO_EMULATOR_PASSWORD", "pw")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Child(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    assert!(!line.contains("pw"), "the password is never printed");

    let uri = format!("mongodb://admin:pw@127.0.0.1:{port}/?directConnection=true");
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let hello = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .unwrap();
    assert_eq!(
        hello.get_i32("maxWriteBatchSize"),
        Ok(25_000),
        "vcore personality"
    );
}

#[test]
fn unknown_personality_is_rejected() {
    let output = Command::new(env!("CARGO_BIN_EXE_mongo-emulator"))
        .args(["--port", "0", "--personality", "oracle"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown personality 'oracle'"), "{stderr}");
}
