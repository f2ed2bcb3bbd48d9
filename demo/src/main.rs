//! Runs the end-to-end demo. It seeds an emulated Cosmos DB for MongoDB (RU) account with public
//! datasets and a BSON type corpus, and migrates it with the service to an emulated vCore cluster.
//! By default the job is online: a live workload writes to the source during the copy and
//! replication, then the demo cuts over. It pauses and resumes the job once, and compares every
//! collection byte for byte.
//!
//! Run with `scripts/demo.sh`, which starts Azurite and fetches the datasets first. The exit code
//! is 0 only when the job completed and every target collection is identical to its source.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use vcore_migrate::jobs::Mode;
use vcore_migrate_demo::stack::{AzuritePorts, EmulatorPlan};

/// Names of the environment variables that the job's `{ "setting": NAME }` references point to.
const SOURCE_SETTING: &str = "DEMO_SOURCE_CONNECTION";
const TARGET_SETTING: &str = "DEMO_TARGET_CONNECTION";

/// The kind of job the demo runs.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum DemoMode {
    /// Copy, then replicate a live workload's writes, then cut over.
    Online,
    /// Copy a snapshot; the source stays unchanged.
    Offline,
}

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Migrates public datasets between two MongoDB emulators with vcore-migrate and checks the result"
)]
struct Args {
    /// The kind of job: online (copy, replication under a live workload, cutover) or offline.
    #[arg(long, value_enum, default_value_t = DemoMode::Online)]
    mode: DemoMode,

    /// Writes per second of the online workload on the source (inserts, $set and $inc updates,
    /// replaces and deletes).
    #[arg(long, default_value_t = 300.0)]
    writes_per_second: f64,

    /// Seconds an online job keeps replicating under the workload once cutover is possible.
    #[arg(long, default_value_t = 15)]
    replicate_seconds: u64,

    /// Seed of the workload's random choices; the same seed repeats the same writes.
    #[arg(long, default_value_t = 1)]
    workload_seed: u64,

    /// Folder holding movies.json, flights-200k.json and earthquakes.json from vega-datasets.
    #[arg(
        long,
        env = "VCM_DEMO_DATA_DIR",
        default_value = ".tools/datasets/vega-datasets-3.2.1/data"
    )]
    data_dir: PathBuf,

    /// Azurite's queue service port on 127.0.0.1.
    #[arg(long, env = "AZURITE_QUEUE_PORT", default_value_t = 10001)]
    azurite_queue_port: u16,

    /// Azurite's table service port on 127.0.0.1.
    #[arg(long, env = "AZURITE_TABLE_PORT", default_value_t = 10002)]
    azurite_table_port: u16,

    /// Request units per second of the emulated Cosmos DB (RU) source during the copy.
    // The emulator charges a find for its whole result at once, so at 9,000 RU/s one
    // 5,000-document chunk read fits in each second and further chunk reads are throttled.
    // NOTE: below about 9,000 RU/s the planner's reads are throttled too, and the plan task does
    // not yet retry 16500 itself, so planning fails after five deliveries.
    #[arg(long, default_value_t = 9_000)]
    ru_per_second: u64,

    /// Documents per chunk, the unit of parallel copy work.
    #[arg(long, default_value_t = 5_000)]
    chunk_documents: u64,

    /// Fraction of the documents copied after which the job is paused once (0 to 1).
    #[arg(long, default_value_t = 0.3)]
    pause_at: f64,

    /// Seconds the job stays paused before it is resumed.
    #[arg(long, default_value_t = 5)]
    pause_seconds: u64,

    /// Maximum seconds for the migration before the demo gives up.
    #[arg(long, default_value_t = 900)]
    timeout_seconds: u64,

    /// File that receives the service's and emulators' logs.
    #[arg(long, default_value = ".demo/demo.log")]
    log_file: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = init_logging(&args.log_file) {
        eprintln!("error: {error:#}");
        return ExitCode::from(2);
    }

    let plan = match prepare_environment(&args) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime failed: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(vcore_migrate_demo::run::run(settings(&args), plan)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "demo failed");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn settings(args: &Args) -> vcore_migrate_demo::run::DemoSettings {
    vcore_migrate_demo::run::DemoSettings {
        data_dir: args.data_dir.clone(),
        azurite: AzuritePorts {
            queue: args.azurite_queue_port,
            table: args.azurite_table_port,
        },
        chunk_documents: args.chunk_documents,
        mode: match args.mode {
            DemoMode::Online => Mode::Online,
            DemoMode::Offline => Mode::Offline,
        },
        writes_per_second: args.writes_per_second,
        workload_seed: args.workload_seed,
        replicate_for: Duration::from_secs(args.replicate_seconds),
        source_setting: SOURCE_SETTING.to_string(),
        target_setting: TARGET_SETTING.to_string(),
        pause_at: args.pause_at,
        pause_hold: Duration::from_secs(args.pause_seconds),
        timeout: Duration::from_secs(args.timeout_seconds),
        log_file: args.log_file.clone(),
    }
}

/// Picks the emulators' ports and a password, and puts the two connection strings into the
/// environment, where the service resolves the job's setting references. This runs before the
/// async runtime starts, because changing the environment is unsound while other threads may
/// read it.
fn prepare_environment(args: &Args) -> anyhow::Result<EmulatorPlan> {
    if !(0.0..1.0).contains(&args.pause_at) {
        anyhow::bail!(
            "--pause-at must be at least 0 and below 1, got {}",
            args.pause_at
        );
    }
    if !(args.writes_per_second > 0.0 && args.writes_per_second <= 10_000.0) {
        anyhow::bail!(
            "--writes-per-second must be above 0 and at most 10000, got {}",
            args.writes_per_second
        );
    }
    // Both listeners stay open until both ports are known, so the two ports differ. Another
    // process could take a port between this check and the emulator's bind; the emulator
    // then fails to start with a clear error.
    let first = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let second = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let plan = EmulatorPlan {
        source_port: first.local_addr()?.port(),
        target_port: second.local_addr()?.port(),
        user: (
            "demo".to_string(),
            uuid::Uuid::new_v4().simple().to_string(),
        ),
        source_ru_per_second: args.ru_per_second,
    };
    drop((first, second));

    std::env::set_var(SOURCE_SETTING, plan.uri(plan.source_port));
    std::env::set_var(TARGET_SETTING, plan.uri(plan.target_port));
    Ok(plan)
}

/// Sends log events to `path`, so they do not break the progress bars. `RUST_LOG` overrides the
/// default filter.
fn init_logging(path: &PathBuf) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let file = std::fs::File::create(path)
        .map_err(|e| anyhow::anyhow!("creating the log file {} failed: {e}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,mongodb=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .init();
    Ok(())
}
