//! The TCP listener and the per-connection request loop.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::commands::{self, Connection, Outcome};
use crate::options::EmulatorOptions;
use crate::state::ServerState;
use crate::wire::{self, WireError, OP_QUERY};

/// A running emulator. Dropping it stops the server too, without waiting.
pub struct EmulatorHandle {
    port: u16,
    user: Option<(String, String)>,
    shutdown: watch::Sender<bool>,
    accept_task: Option<tokio::task::JoinHandle<()>>,
}

/// Binds `127.0.0.1:port` (any free port when 0) and starts serving in the current runtime.
pub async fn start(options: EmulatorOptions) -> std::io::Result<EmulatorHandle> {
    let listener = TcpListener::bind(("127.0.0.1", options.port)).await?;
    let port = listener.local_addr()?.port();
    let user = options.user.clone();
    tracing::info!(port, personality = %options.personality, auth = user.is_some(), "emulator listening");
    let state = Arc::new(ServerState::new(options, port));
    let (shutdown, signal) = watch::channel(false);
    let accept_task = tokio::spawn(accept_loop(listener, state, signal));
    Ok(EmulatorHandle {
        port,
        user,
        shutdown,
        accept_task: Some(accept_task),
    })
}

impl EmulatorHandle {
    /// Returns a connection string for the driver, with credentials when a user is configured.
    pub fn uri(&self) -> String {
        match &self.user {
            None => format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port),
            Some((user, password)) => format!(
                "mongodb://{}:{}@127.0.0.1:{}/?directConnection=true&authSource=admin",
                percent_encode(user),
                percent_encode(password),
                self.port
            ),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes the listener and every connection, and waits until they are closed.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.accept_task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Percent-encodes user names and passwords for a connection string (RFC 3986 unreserved
/// characters pass through).
fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    mut signal: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = signal.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let state = state.clone();
                    let signal = signal.clone();
                    let span = tracing::debug_span!("connection", %peer);
                    connections.spawn(serve_connection(socket, state, signal).instrument(span));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
    tracing::info!(port = state.port, "emulator stopped");
}

async fn serve_connection(
    socket: TcpStream,
    state: Arc<ServerState>,
    mut signal: watch::Receiver<bool>,
) {
    let (mut reader, mut writer) = socket.into_split();
    let mut connection = Connection::default();
    loop {
        let request = tokio::select! {
            _ = signal.changed() => return,
            request = wire::read_request(&mut reader) => request,
        };
        let request = match request {
            Ok(request) => request,
            Err(WireError::Closed) => return,
            Err(error) => {
                tracing::warn!(%error, "closing connection after an invalid message");
                return;
            }
        };
        let outcome = tokio::select! {
            _ = signal.changed() => return,
            outcome = commands::handle(&state, &mut connection, &request) => outcome,
        };
        let reply = match outcome {
            Outcome::Close => return,
            Outcome::Reply(reply) => reply,
        };
        if request.more_to_come() {
            continue;
        }
        let bytes = if request.op_code == OP_QUERY {
            let message = reply.finish();
            wire::frame_op_reply(&message[wire::OP_MSG_PREFIX_LEN..], request.request_id)
        } else {
            wire::frame_op_msg(
                reply.finish(),
                request.request_id,
                request.checksum_present(),
            )
        };
        if let Err(error) = writer.write_all(&bytes).await {
            tracing::debug!(%error, "write failed; closing connection");
            return;
        }
    }
}
