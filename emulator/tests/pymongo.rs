//! Runs `scripts/pymongo_smoke.py` against the binary when Python and pymongo are installed, and
//! prints why it skips otherwise; pymongo is never required.

use std::path::Path;
use std::process::Command;

#[test]
fn pymongo_insert_find_aggregate_watch() {
    let has_pymongo = Command::new("python3")
        .args(["-c", "import pymongo"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has_pymongo {
        eprintln!("pymongo smoke test skipped: python3 with pymongo is not installed");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pymongo_smoke.py");
    let output = Command::new("python3")
        .arg(&script)
        .args(["--binary", env!("CARGO_BIN_EXE_mongo-emulator")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("pymongo smoke test passed"), "{stdout}");
}
