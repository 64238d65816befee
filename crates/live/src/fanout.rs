//! One shared ring of TS chunks per flow.
//!
//! `tokio::sync::broadcast` is exactly the structure the fan-out needs: one bounded ring,
//! values cloned out per receiver (a `Bytes` clone is a reference-count bump, never a copy of
//! the payload), and a receiver that falls more than the ring's length behind is told how many
//! chunks it missed instead of holding the writer back. So a slow broadcaster costs itself
//! packets, never the source or the other broadcasters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::broadcast;

/// A run of whole 188-byte TS packets as it arrived from the active source.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Position in the flow, counting from 0 at flow start; gaps never occur on the bus.
    pub seq: u64,
    /// When the chunk entered the node: the receivers' fan-out measures node-added latency from it.
    pub arrival: Instant,
    pub payload: Bytes,
}

/// Counters of what went into a flow's bus.
#[derive(Debug, Default)]
pub struct BusStats {
    pub chunks_in: AtomicU64,
    pub bytes_in: AtomicU64,
}

/// The writer side of a flow's ring; cheap to clone into every source task.
#[derive(Debug, Clone)]
pub struct FlowBus {
    sender: broadcast::Sender<Chunk>,
    next_seq: Arc<AtomicU64>,
    stats: Arc<BusStats>,
}

impl FlowBus {
    /// `capacity` is in chunks: at 7 TS packets a chunk, 4096 chunks hold about 2 s of a
    /// 20 Mb/s feed, which bounds how far any receiver may lag before it loses data.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self {
            sender,
            next_seq: Arc::new(AtomicU64::new(0)),
            stats: Arc::new(BusStats::default()),
        }
    }

    /// Publishes one chunk to every current receiver. Having no receiver is not an error:
    /// a flow runs whether or not a broadcaster is watching.
    pub fn publish(&self, arrival: Instant, payload: Bytes) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        self.stats.chunks_in.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_in
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let _ = self.sender.send(Chunk {
            seq,
            arrival,
            payload,
        });
    }

    /// A new receiver starts at the live edge: it sees chunks published from now on.
    pub fn subscribe(&self) -> BusReceiver {
        BusReceiver {
            receiver: self.sender.subscribe(),
            dropped: 0,
        }
    }

    pub fn receiver_count(&self) -> usize {
        self.sender.receiver_count()
    }

    pub fn stats(&self) -> &BusStats {
        &self.stats
    }
}

/// One output's cursor into the flow's ring.
#[derive(Debug)]
pub struct BusReceiver {
    receiver: broadcast::Receiver<Chunk>,
    dropped: u64,
}

impl BusReceiver {
    /// The next chunk, or `None` once the flow has stopped. Chunks this receiver was too slow
    /// for are skipped and counted in [`BusReceiver::dropped`].
    pub async fn next(&mut self) -> Option<Chunk> {
        loop {
            match self.receiver.recv().await {
                Ok(chunk) => return Some(chunk),
                Err(broadcast::error::RecvError::Lagged(missed)) => self.dropped += missed,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next chunk if one is there already (chunks missed are counted as by `next`).
    pub fn try_next(&mut self) -> Option<Chunk> {
        loop {
            match self.receiver.try_recv() {
                Ok(chunk) => return Some(chunk),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => self.dropped += missed,
                Err(_) => return None,
            }
        }
    }

    /// Chunks lost because this receiver fell more than the ring's length behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u8) -> Bytes {
        Bytes::from(vec![n; 188])
    }

    #[tokio::test]
    async fn every_receiver_sees_every_chunk_in_order() {
        let bus = FlowBus::new(16);
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        for n in 0..10 {
            bus.publish(Instant::now(), chunk(n));
        }
        for receiver in [&mut a, &mut b] {
            for n in 0..10u64 {
                let got = receiver.next().await.unwrap();
                assert_eq!(got.seq, n);
                assert_eq!(got.payload[0], n as u8);
            }
            assert_eq!(receiver.dropped(), 0);
        }
    }

    #[tokio::test]
    async fn payload_is_shared_not_copied() {
        let bus = FlowBus::new(4);
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        bus.publish(Instant::now(), chunk(7));
        let from_a = a.next().await.unwrap().payload;
        let from_b = b.next().await.unwrap().payload;
        assert_eq!(from_a.as_ptr(), from_b.as_ptr());
    }

    #[tokio::test]
    async fn slow_receiver_loses_only_its_own_chunks_and_counts_them() {
        let bus = FlowBus::new(8);
        let mut slow = bus.subscribe();
        let mut fast = bus.subscribe();
        for n in 0..20u8 {
            bus.publish(Instant::now(), chunk(n));
            // The fast receiver keeps up, chunk by chunk.
            assert_eq!(fast.next().await.unwrap().seq, u64::from(n));
        }
        // The slow one gets the newest 8 and is told it missed 12.
        let first = slow.next().await.unwrap();
        assert_eq!(first.seq, 12);
        assert_eq!(slow.dropped(), 12);
        assert_eq!(fast.dropped(), 0);
    }

    #[tokio::test]
    async fn receivers_end_when_the_flow_stops() {
        let bus = FlowBus::new(4);
        let mut receiver = bus.subscribe();
        bus.publish(Instant::now(), chunk(1));
        drop(bus);
        assert!(receiver.next().await.is_some());
        assert!(receiver.next().await.is_none());
    }
}
