//! The `mongo-emulator` binary: an in-memory MongoDB-compatible server for demos and manual tests.
//!
//! Run with: `mongo-emulator --port 27017 --personality cosmos-ru`

use std::io::IsTerminal;

use clap::Parser;
use mongo_emulator::{EmulatorOptions, Personality};

/// In-memory MongoDB-wire-compatible server listening on 127.0.0.1.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// TCP port on 127.0.0.1; 0 picks a free port.
    #[arg(long, default_value_t = 27017)]
    port: u16,
    /// Server to imitate: mongodb, cosmos-ru or vcore.
    #[arg(long, default_value = "mongodb")]
    personality: Personality,
    /// User name for SCRAM-SHA-256 authentication; requires --password.
    #[arg(long, requires = "password")]
    user: Option<String>,
    /// Password of --user.
    #[arg(
        long,
        env = "MONGO_EMULATOR_PASSWORD",
        requires = "user",
        hide_env_values = true
    )]
    password: Option<String>,
    /// Number of change-log entries kept for change streams.
    #[arg(long, default_value_t = 100_000)]
    history_size: usize,
    /// Request units per second for the cosmos-ru personality; unlimited when absent.
    #[arg(long)]
    ru_per_second: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let options = EmulatorOptions {
        personality: cli.personality,
        port: cli.port,
        user: cli.user.zip(cli.password),
        history_size: cli.history_size,
        ru_per_second: cli.ru_per_second,
    };
    let handle = mongo_emulator::start(options).await?;
    // The URI is printed without credentials so they never reach logs.
    println!(
        "mongo-emulator listening on mongodb://127.0.0.1:{}/?directConnection=true",
        handle.port()
    );
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}
