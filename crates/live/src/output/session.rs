//! One accepted receiver's connection handle, kept alive by a small task.
//!
//! The listener's driver closes a connection whose handle is dropped, and reports its end by
//! closing the handle's receive queue; so each receiver gets a task that holds the handle,
//! answers statistics requests and tells the node when the connection is gone.

use stadion_srt::{CloseReason, ConnectionId, Stats};
use stadion_srt_io::SrtConnection;
use tokio::sync::{mpsc, oneshot};

/// Asks a session for its SRT statistics.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle {
    stats: mpsc::Sender<oneshot::Sender<Option<Stats>>>,
}

impl SessionHandle {
    /// The connection's statistics; `None` once it has ended.
    pub async fn stats(&self) -> Option<Stats> {
        let (tx, rx) = oneshot::channel();
        self.stats.send(tx).await.ok()?;
        rx.await.ok().flatten()
    }
}

/// The task side.
pub(crate) struct Session;

impl Session {
    /// Starts the task; `gone` receives the connection id and why it ended.
    pub fn spawn(
        mut conn: SrtConnection,
        gone: mpsc::UnboundedSender<(ConnectionId, Option<CloseReason>)>,
    ) -> SessionHandle {
        let (stats, mut requests) = mpsc::channel::<oneshot::Sender<Option<Stats>>>(4);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    // A receiver sends nothing but control packets, so anything here is noise;
                    // `None` is the end of the connection.
                    received = conn.recv() => if received.is_none() { break },
                    request = requests.recv() => match request {
                        Some(reply) => { let _ = reply.send(conn.stats().await); }
                        // The node dropped the handle: it no longer wants this receiver.
                        None => break,
                    },
                }
            }
            let _ = gone.send((conn.id(), conn.close_reason()));
        });
        SessionHandle { stats }
    }
}
