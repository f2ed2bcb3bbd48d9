//! The `vcore-migrate` binary: reads settings, starts logging, and runs one mode.

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use vcore_migrate::config::{self, Settings};
use vcore_migrate::runtime::serve::{build_engine, serve_functions, Standalone};

#[derive(Parser)]
#[command(
    name = "vcore-migrate",
    version,
    about = "Migrates MongoDB collections to Azure Cosmos DB for MongoDB (vCore)"
)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Run as an Azure Functions custom handler on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT.
    Serve,
    /// Run the API, the queue consumers and the scheduler in this process.
    Standalone,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let settings = Settings::from_env()?;

    match cli.command {
        Mode::Serve => {
            let port: u16 = std::env::var(config::HANDLER_PORT)
                .ok()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{} is not set to a port; the Functions host sets it, or set it by hand to test",
                        config::HANDLER_PORT
                    )
                })?;
            let engine = build_engine(settings).await?;
            serve_functions(engine, port, shutdown_signal()).await
        }
        Mode::Standalone => {
            let addr = settings.listen_addr;
            let engine = build_engine(settings).await?;
            let listener = TcpListener::bind(addr).await?;
            let service = Standalone::start(engine, listener).await?;
            shutdown_signal().await;
            service.shutdown().await;
            Ok(())
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,mongodb=warn,tower_http=warn")
    });
    let json = std::env::var(config::LOG_FORMAT).is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    // Colour codes only for a person at a terminal: logs sent to a file or a collector stay plain.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
