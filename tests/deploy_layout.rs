//! Deployment checks: the Functions layout (`host.json`, `handlers/`), the consistency of
//! setting names across the code, the Bicep templates and `local.settings.example.json`, the
//! Bicep syntax check, and the deployment zip built by `scripts/package.sh`, whose binary must
//! respond to the host's readiness probe and a queue-trigger envelope.
//!
//! Run with `cargo test --test deploy_layout`. The package tests need Azurite
//! (`scripts/azurite.sh start`, or a storage connection string in `VCM_TEST_STORAGE`) and build
//! the static release binary on first use; set `VCM_PACKAGE_ZIP` to test an existing zip
//! instead. The Bicep test installs two parsers from PyPI into `.tools/` on first use.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Azurite's development account with explicit 127.0.0.1 endpoints. The key is Azurite's
/// published well-known key, not a secret.
const AZURITE_CONNECTION_STRING: &str = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;\
BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;\
TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;";

/// Service settings that `infra/` does not set, and why.
const NOT_SET_BY_BICEP: &[(&str, &str)] = &[
    ("AzureWebJobsStorage", "connection-string form for Azurite and shared-key accounts; the deployed account has shared keys off and uses the identity settings"),
    ("AzureWebJobsStorage__tableServiceUri", "explicit endpoint for other clouds or private endpoints; the account name expands to the public endpoints"),
    ("AzureWebJobsStorage__queueServiceUri", "explicit endpoint for other clouds or private endpoints; the account name expands to the public endpoints"),
    ("FUNCTIONS_CUSTOMHANDLER_PORT", "the Functions host sets it when it starts the handler"),
    ("VCM_API_KEY", "standalone mode only; on Azure, Functions keys authenticate the API"),
    ("VCM_API_KEY_DISABLED", "standalone mode only"),
    ("VCM_LISTEN_ADDR", "standalone mode only; serve listens on the host-assigned port"),
    ("VCM_WORKER_CONCURRENCY", "standalone mode only; on Azure the Functions host pulls the queues"),
    ("VCM_SCHEDULER_INTERVAL_SECONDS", "standalone mode only; on Azure the scheduler function's timer sets the period"),
];

/// Bicep app settings that the service does not read, and who does.
const HOST_SETTINGS_IN_BICEP: &[(&str, &str)] = &[
    (
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "read by the Functions host to send telemetry",
    ),
    (
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "read by the Functions host to authenticate telemetry with the app identity",
    ),
];

/// Service settings missing from `local.settings.example.json`, and why.
const NOT_IN_LOCAL_SETTINGS: &[(&str, &str)] = &[(
    "FUNCTIONS_CUSTOMHANDLER_PORT",
    "Core Tools assigns the port when it starts the handler",
)];

/// Entries of `local.settings.example.json` that the service does not read, and who does.
const HOST_SETTINGS_IN_LOCAL: &[(&str, &str)] = &[(
    "FUNCTIONS_WORKER_RUNTIME",
    "tells Core Tools to start a custom handler; Flex Consumption takes the runtime from functionAppConfig instead",
)];

/// Function folders the runtime contract expects, with the queue each task function reads.
const QUEUE_FUNCTIONS: &[(&str, &str)] = &[
    ("plan-task", "%VCM_STORAGE_PREFIX%-plan"),
    ("copy-task", "%VCM_STORAGE_PREFIX%-copy"),
    ("stream-task", "%VCM_STORAGE_PREFIX%-stream"),
    ("verify-task", "%VCM_STORAGE_PREFIX%-verify"),
    ("index-task", "%VCM_STORAGE_PREFIX%-index"),
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Parses an `hh:mm:ss` duration as host.json writes it.
fn parse_timespan(text: &str) -> Duration {
    let parts: Vec<u64> = text
        .split(':')
        .map(|part| {
            part.parse()
                .unwrap_or_else(|_| panic!("invalid timespan {text:?}"))
        })
        .collect();
    assert_eq!(parts.len(), 3, "timespan {text:?} is not hh:mm:ss");
    Duration::from_secs(parts[0] * 3600 + parts[1] * 60 + parts[2])
}

// ---------------------------------------------------------------------------------------------
// host.json and handlers/

#[test]
fn host_json_matches_runtime_contract() {
    let host = read_json(&repo_root().join("host.json"));

    assert_eq!(host["version"], "2.0");
    assert_eq!(
        host["extensionBundle"]["id"],
        "Microsoft.Azure.Functions.ExtensionBundle"
    );
    assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
    assert_eq!(host["extensions"]["http"]["routePrefix"], "api");

    let description = &host["customHandler"]["description"];
    let arguments: Vec<&str> = description["arguments"]
        .as_array()
        .expect("customHandler.description.arguments is an array")
        .iter()
        .map(|a| a.as_str().expect("every argument is a string"))
        .collect();
    assert_eq!(description["defaultExecutablePath"], "/bin/sh");
    assert_eq!(arguments, ["start.sh", "serve"]);

    let queues = &host["extensions"]["queues"];
    assert_eq!(queues["maxDequeueCount"], 5);
    assert_eq!(queues["messageEncoding"], "base64");
    let batch_size = queues["batchSize"]
        .as_u64()
        .expect("queues.batchSize is set");
    assert!(
        (1..=32).contains(&batch_size),
        "queues.batchSize {batch_size} is outside 1-32"
    );
    let visibility = parse_timespan(
        queues["visibilityTimeout"]
            .as_str()
            .expect("visibilityTimeout is set"),
    );
    assert!(
        visibility >= Duration::from_secs(10),
        "retries must be spaced out, got {visibility:?}"
    );

    // A task works for VCM_TASK_TIME_BUDGET_SECONDS (default 60, at most 300 in main.bicep)
    // and must finish well inside the host's limit.
    let timeout = parse_timespan(
        host["functionTimeout"]
            .as_str()
            .expect("functionTimeout is set"),
    );
    assert!(
        timeout >= Duration::from_secs(2 * 300),
        "functionTimeout {timeout:?} is too short"
    );
}

#[test]
fn handlers_match_function_contract() {
    let handlers = repo_root().join("handlers");
    let found: BTreeSet<String> = std::fs::read_dir(&handlers)
        .expect("handlers/ exists")
        .map(|entry| entry.expect("readable entry"))
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let mut expected: BTreeSet<String> = QUEUE_FUNCTIONS
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    expected.insert("api".into());
    expected.insert("scheduler".into());
    assert_eq!(found, expected, "function folders under handlers/");

    // Request forwarding applies only to a function whose bindings are exactly one
    // httpTrigger and one http output.
    let api = read_json(&handlers.join("api/function.json"));
    let api_bindings = api["bindings"].as_array().expect("api bindings");
    assert_eq!(api_bindings.len(), 2);
    assert_eq!(api_bindings[0]["type"], "httpTrigger");
    assert_eq!(api_bindings[0]["authLevel"], "function");
    assert_eq!(api_bindings[0]["route"], "{*path}");
    assert_eq!(api_bindings[1]["type"], "http");
    assert_eq!(api_bindings[1]["direction"], "out");

    for (name, queue) in QUEUE_FUNCTIONS {
        let function = read_json(&handlers.join(name).join("function.json"));
        let bindings = function["bindings"]
            .as_array()
            .expect("queue function bindings");
        assert_eq!(bindings.len(), 1, "{name}: only the trigger binding");
        assert_eq!(bindings[0]["type"], "queueTrigger", "{name}: trigger type");
        assert_eq!(bindings[0]["direction"], "in", "{name}: direction");
        assert_eq!(bindings[0]["queueName"], *queue, "{name}: queue name");
        assert_eq!(
            bindings[0]["connection"], "AzureWebJobsStorage",
            "{name}: connection"
        );
    }

    let scheduler = read_json(&handlers.join("scheduler/function.json"));
    let timer = &scheduler["bindings"][0];
    assert_eq!(timer["type"], "timerTrigger");
    assert_eq!(
        timer["schedule"], "*/15 * * * * *",
        "scheduler runs every 15 seconds"
    );
}

// ---------------------------------------------------------------------------------------------
// Setting names

/// Setting names of the runtime contract, used only while `src/config.rs` has no `ALL_SETTINGS`.
const CONTRACT_SETTINGS: &[&str] = &[
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "FUNCTIONS_CUSTOMHANDLER_PORT",
    "VCM_MANAGED_IDENTITY_CLIENT_ID",
    "VCM_API_KEY",
    "VCM_API_KEY_DISABLED",
    "VCM_LISTEN_ADDR",
    "VCM_STORAGE_PREFIX",
    "VCM_TASK_TIME_BUDGET_SECONDS",
    "VCM_LEASE_SECONDS",
    "VCM_WORKER_CONCURRENCY",
    "VCM_SCHEDULER_INTERVAL_SECONDS",
    "VCM_OUTBOUND_IP",
    "VCM_EVENTS_QUEUE",
    "VCM_LOG_FORMAT",
];

/// Reads `ALL_SETTINGS` from `src/config.rs`, resolving `const NAME: &str = "...";` entries.
///
/// NOTE: this reads the source rather than the constant, so the check runs even while the crate
/// does not compile. It understands string literals and `&str` constants of that file only.
fn code_settings() -> BTreeSet<String> {
    let path = repo_root().join("src/config.rs");
    let source = std::fs::read_to_string(&path).unwrap_or_default();
    if !source.contains("ALL_SETTINGS") {
        eprintln!(
            "{} has no ALL_SETTINGS; checking against the runtime contract list",
            path.display()
        );
        return CONTRACT_SETTINGS
            .iter()
            .map(|name| name.to_string())
            .collect();
    }

    let mut constants = BTreeMap::new();
    for line in source.lines() {
        let line = line.trim();
        let Some(rest) = line
            .strip_prefix("pub const ")
            .or_else(|| line.strip_prefix("const "))
        else {
            continue;
        };
        let Some((name, value)) = rest.split_once(": &str = ") else {
            continue;
        };
        let value = value.trim_end_matches(';').trim_matches('"');
        constants.insert(name.trim().to_string(), value.to_string());
    }

    let start = source
        .find("ALL_SETTINGS")
        .expect("src/config.rs defines ALL_SETTINGS");
    let list_start = start
        + source[start..]
            .find("= &[")
            .expect("ALL_SETTINGS is a slice literal")
        + "= &[".len();
    let list_end = list_start
        + source[list_start..]
            .find("];")
            .expect("ALL_SETTINGS ends with ];");

    source[list_start..list_end]
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| match entry.strip_prefix('"') {
            Some(literal) => literal.trim_end_matches('"').to_string(),
            None => constants
                .get(entry)
                .unwrap_or_else(|| {
                    panic!("ALL_SETTINGS entry {entry} is not a &str constant of config.rs")
                })
                .clone(),
        })
        .collect()
}

/// Returns Bicep source with comments removed and every string literal replaced by `''`.
fn strip_bicep_strings_and_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for next in chars.by_ref() {
                    if next == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for next in chars.by_ref() {
                    if previous == '*' && next == '/' {
                        break;
                    }
                    previous = next;
                }
            }
            '\'' => {
                // Bicep escapes quotes inside strings with a backslash.
                let mut escaped = false;
                for next in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if next == '\\' {
                        escaped = true;
                    } else if next == '\'' {
                        break;
                    }
                }
                out.push_str("''");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Returns the object keys in a Bicep expression: identifiers followed by `:` that start a line
/// or follow `{` or `,`. A ternary's `:` never follows one of those.
fn bicep_object_keys(expression: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut previous_significant = '\n';
    let mut chars = expression.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        if c.is_ascii_alphabetic() || c == '_' {
            let mut end = index + c.len_utf8();
            while let Some(&(next_index, next)) = chars.peek() {
                if next.is_ascii_alphanumeric() || next == '_' {
                    end = next_index + next.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let after = expression[end..].trim_start_matches([' ', '\t']);
            if matches!(previous_significant, '\n' | '{' | ',') && after.starts_with(':') {
                keys.insert(expression[index..end].to_string());
            }
            previous_significant = 'a';
        } else if c == '\n' || !c.is_whitespace() {
            previous_significant = c;
        }
    }
    keys
}

/// Collects the app setting names from `var appSettings = ...` in `infra/**/*.bicep`, and
/// checks that nothing else in `infra/` sets app settings.
fn bicep_app_settings() -> BTreeSet<String> {
    let mut files = Vec::new();
    let mut pending = vec![repo_root().join("infra")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("infra/ is readable") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "bicep") {
                files.push(path);
            }
        }
    }
    assert!(!files.is_empty(), "no .bicep files under infra/");

    let mut settings = None;
    for path in files {
        let source = strip_bicep_strings_and_comments(
            &std::fs::read_to_string(&path).expect("readable .bicep"),
        );
        assert!(
            !source.contains("appSettings:"),
            "{} sets siteConfig.appSettings; set app settings only through var appSettings",
            path.display()
        );
        let Some(start) = source.find("var appSettings =") else {
            continue;
        };
        assert!(
            settings.is_none(),
            "var appSettings is defined in more than one file"
        );

        // The expression ends where its brackets close.
        let expression = &source[start + "var appSettings =".len()..];
        let mut depth = 0i32;
        let mut end = expression.len();
        for (index, c) in expression.char_indices() {
            match c {
                '(' | '{' | '[' => depth += 1,
                ')' | '}' | ']' => depth -= 1,
                '\n' if depth == 0 && !expression[..index].trim().is_empty() => {
                    end = index;
                    break;
                }
                _ => {}
            }
        }
        settings = Some(bicep_object_keys(&expression[..end]));
    }
    settings.expect("no infra/**/*.bicep file defines var appSettings")
}

fn names(table: &[(&str, &str)]) -> BTreeSet<String> {
    table.iter().map(|(name, _)| name.to_string()).collect()
}

#[test]
fn bicep_object_keys_skip_ternaries_and_values() {
    let source = "union({\n  A_B: x\n  C__d: cond ? y : z\n}, empty(q) ? {} : { E: q }, f(g) ? { H: 1, I: 2 } : {})";
    let keys = bicep_object_keys(source);
    let expected: BTreeSet<String> = ["A_B", "C__d", "E", "H", "I"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(keys, expected);
}

#[test]
fn setting_names_match_everywhere() {
    let code = code_settings();
    let bicep = bicep_app_settings();
    let local: BTreeSet<String> = read_json(&repo_root().join("local.settings.example.json"))
        ["Values"]
        .as_object()
        .expect("local.settings.example.json has a Values object")
        .keys()
        .cloned()
        .collect();

    // Every exemption must name a real setting, so a renamed setting cannot hide behind it.
    for name in names(NOT_SET_BY_BICEP)
        .iter()
        .chain(&names(NOT_IN_LOCAL_SETTINGS))
    {
        assert!(
            code.contains(name),
            "exemption {name} is not in ALL_SETTINGS"
        );
    }
    for name in names(HOST_SETTINGS_IN_BICEP)
        .iter()
        .chain(&names(HOST_SETTINGS_IN_LOCAL))
    {
        assert!(
            !code.contains(name),
            "{name} is in ALL_SETTINGS, so it must not be listed as host-only"
        );
    }

    let bicep_expected = expected_names(&code, NOT_SET_BY_BICEP, HOST_SETTINGS_IN_BICEP);
    assert_eq!(
        unexpected(&bicep, &bicep_expected),
        Vec::<&String>::new(),
        "Bicep sets app settings the service does not read"
    );
    assert_eq!(
        unexpected(&bicep_expected, &bicep),
        Vec::<&String>::new(),
        "the service reads settings that Bicep does not set and that have no exemption"
    );

    let local_expected = expected_names(&code, NOT_IN_LOCAL_SETTINGS, HOST_SETTINGS_IN_LOCAL);
    assert_eq!(
        unexpected(&local, &local_expected),
        Vec::<&String>::new(),
        "local.settings.example.json has settings the service does not read"
    );
    assert_eq!(
        unexpected(&local_expected, &local),
        Vec::<&String>::new(),
        "local.settings.example.json lacks settings the service reads"
    );
}

/// Returns the service settings minus the exemptions, plus the host's own settings.
fn expected_names(
    code: &BTreeSet<String>,
    exempt: &[(&str, &str)],
    host: &[(&str, &str)],
) -> BTreeSet<String> {
    code.difference(&names(exempt))
        .cloned()
        .chain(names(host))
        .collect()
}

/// Returns the names in `actual` that `allowed` does not contain.
fn unexpected<'a>(actual: &'a BTreeSet<String>, allowed: &'a BTreeSet<String>) -> Vec<&'a String> {
    actual.difference(allowed).collect()
}

// ---------------------------------------------------------------------------------------------
// Bicep syntax

#[test]
fn bicep_templates_pass_checker() {
    let output = Command::new(repo_root().join("scripts/check-bicep.sh"))
        .output()
        .expect("failed to run scripts/check-bicep.sh (needs bash and python3)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "scripts/check-bicep.sh failed:\n{report}"
    );
    assert!(
        report.contains(" 0 failed"),
        "unexpected checker output:\n{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Deployment package

/// Returns the deployment zip: `VCM_PACKAGE_ZIP` when set, otherwise what `scripts/package.sh`
/// builds (cargo reuses the release build when nothing changed).
fn package_zip() -> PathBuf {
    if let Ok(path) = std::env::var("VCM_PACKAGE_ZIP") {
        return PathBuf::from(path);
    }
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let output = Command::new(repo_root().join("scripts/package.sh"))
                .stderr(Stdio::inherit())
                .output()
                .expect("failed to run scripts/package.sh");
            assert!(output.status.success(), "scripts/package.sh failed");
            let stdout = String::from_utf8(output.stdout).expect("package.sh prints a UTF-8 path");
            PathBuf::from(
                stdout
                    .lines()
                    .last()
                    .expect("package.sh prints the zip path")
                    .trim(),
            )
        })
        .clone()
}

/// Unpacks the zip into a new temporary directory with `unzip`, which restores Unix modes.
fn unpack(zip: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let status = Command::new("unzip")
        .arg("-q")
        .arg(zip)
        .arg("-d")
        .arg(dir.path())
        .status()
        .expect("failed to run unzip (Debian: apt-get install unzip)");
    assert!(status.success(), "unzip {} failed", zip.display());
    dir
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 == 0o111)
}

#[test]
fn package_zip_has_functions_layout() {
    let unpacked = unpack(&package_zip());
    let root = unpacked.path();

    assert_eq!(
        read_json(&root.join("host.json")),
        read_json(&repo_root().join("host.json")),
        "packaged host.json"
    );
    for entry in std::fs::read_dir(repo_root().join("handlers")).expect("handlers/") {
        let name = entry.expect("entry").file_name();
        let packaged = root.join(&name).join("function.json");
        assert!(
            packaged.is_file(),
            "{} is missing from the package",
            packaged.display()
        );
    }

    let binary = root.join("vcore-migrate");
    assert!(
        is_executable(&binary),
        "vcore-migrate has no executable bits in the zip"
    );
    assert!(
        is_executable(&root.join("start.sh")),
        "start.sh has no executable bits in the zip"
    );

    let description = Command::new("file")
        .arg("-b")
        .arg(&binary)
        .output()
        .expect("failed to run file");
    let description = String::from_utf8_lossy(&description.stdout);
    assert!(
        description.contains("x86-64"),
        "binary is not x86-64: {description}"
    );
    assert!(
        description.contains("statically linked") || description.contains("static-pie linked"),
        "binary is not static: {description}"
    );
}

/// Returns the storage connection string for the package tests and fails with instructions
/// when its queue endpoint does not accept connections.
fn test_storage() -> String {
    let connection =
        std::env::var("VCM_TEST_STORAGE").unwrap_or_else(|_| AZURITE_CONNECTION_STRING.to_string());
    for part in connection.split(';') {
        let Some(endpoint) = part.strip_prefix("QueueEndpoint=") else {
            continue;
        };
        let url = reqwest::Url::parse(endpoint).expect("QueueEndpoint is a URL");
        let host = url.host_str().expect("QueueEndpoint has a host");
        let port = url
            .port_or_known_default()
            .expect("QueueEndpoint has a port");
        let reachable = (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addresses| addresses.next())
            .is_some_and(|address| {
                TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok()
            });
        assert!(
            reachable,
            "storage queue endpoint {host}:{port} is not reachable: run scripts/azurite.sh start or set VCM_TEST_STORAGE"
        );
    }
    connection
}

/// The handler process, started the way host.json tells the Functions host to start it, and
/// killed on drop.
struct Handler {
    child: Child,
    base: String,
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Starts the unpacked package as the Functions host does: `defaultExecutablePath` with
/// `arguments`, in the package root, with `FUNCTIONS_CUSTOMHANDLER_PORT` set.
fn start_handler(root: &Path) -> Handler {
    let host = read_json(&root.join("host.json"));
    let description = &host["customHandler"]["description"];
    let program = description["defaultExecutablePath"]
        .as_str()
        .expect("defaultExecutablePath");
    let arguments: Vec<&str> = description["arguments"]
        .as_array()
        .expect("arguments")
        .iter()
        .map(|a| a.as_str().expect("string argument"))
        .collect();

    let port = free_port();
    // A unique prefix keeps this run's tables and queues apart from other tests.
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple())
        .chars()
        .take(12)
        .collect::<String>();
    let child = Command::new(program)
        .args(&arguments)
        .current_dir(root)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("AzureWebJobsStorage", test_storage())
        .env("VCM_STORAGE_PREFIX", prefix)
        .env("VCM_LOG_FORMAT", "text")
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {program}: {e}"));
    let mut handler = Handler {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };

    // The Functions host gives a custom handler 60 seconds to start listening.
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if let Some(status) = handler.child.try_wait().expect("poll the handler process") {
            panic!("the handler exited with {status} before listening on {address}");
        }
        assert!(
            Instant::now() < deadline,
            "the handler did not listen on {address} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    handler
}

/// A queue-trigger envelope in the shape the host sends, with `message` as the binding name.
fn queue_envelope(message: Value) -> Value {
    json!({
        "Data": { "message": message },
        "Metadata": {
            "DequeueCount": "1",
            "Id": format!("\"{}\"", uuid::Uuid::new_v4()),
            "InsertionTime": "2025-01-01T00:00:00+00:00",
            "sys": { "MethodName": "copy-task", "UtcNow": "2025-01-01T00:00:01Z", "RandGuid": uuid::Uuid::new_v4().to_string() }
        }
    })
}

#[tokio::test]
async fn packaged_binary_serves_probe_and_queue_envelope() {
    let unpacked = unpack(&package_zip());
    let handler = start_handler(unpacked.path());
    let client = reqwest::Client::new();

    let probe = client
        .get(format!("{}/", handler.base))
        .send()
        .await
        .expect("GET /");
    assert_eq!(probe.status(), 200, "readiness probe GET /");

    let health = client
        .get(format!("{}/api/health", handler.base))
        .send()
        .await
        .expect("GET /api/health");
    assert_eq!(health.status(), 200, "GET /api/health");

    // The host may hand the message text over as a JSON string or with one more layer of
    // string quoting; both must reach the task and be dropped because the job does not exist.
    let job_id = uuid::Uuid::new_v4().to_string();
    let message_text = json!({ "jobId": job_id, "collection": 0, "chunk": 0 }).to_string();
    let double_encoded = serde_json::to_string(&message_text).expect("encode");
    for data in [
        Value::String(message_text.clone()),
        Value::String(double_encoded),
    ] {
        let response = client
            .post(format!("{}/copy-task", handler.base))
            .json(&queue_envelope(data.clone()))
            .send()
            .await
            .expect("POST /copy-task");
        assert_eq!(
            response.status(),
            200,
            "a message for a missing job is completed, not retried ({data})"
        );

        let body: Value = response.json().await.expect("invocation result is JSON");
        assert!(body.get("Outputs").is_some(), "result has Outputs: {body}");
        assert!(
            body.get("ReturnValue").is_some(),
            "result has ReturnValue: {body}"
        );
        let logs = body["Logs"]
            .as_array()
            .expect("result has a Logs array")
            .iter();
        let logs: String = logs
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n")
            .to_lowercase();
        assert!(
            logs.contains("not found"),
            "Logs say the job was not found: {logs}"
        );
        assert!(logs.contains(&job_id), "Logs name the job: {logs}");
        assert!(
            logs.contains("drop"),
            "Logs say the message was dropped: {logs}"
        );
    }
}

#[tokio::test]
async fn wrapper_runs_binary_without_exec_bit() {
    use std::os::unix::fs::PermissionsExt;

    let unpacked = unpack(&package_zip());
    let binary = unpacked.path().join("vcore-migrate");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o644))
        .expect("clear the executable bits");
    assert!(!is_executable(&binary));

    let handler = start_handler(unpacked.path());
    let probe = reqwest::get(format!("{}/", handler.base))
        .await
        .expect("GET /");
    assert_eq!(
        probe.status(),
        200,
        "readiness probe through the start.sh copy"
    );
}
