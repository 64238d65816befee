//! A listener with one established connection (encrypted when the first input byte is 0xE5:
//! the key derivation is slow, so most runs skip it; the comparison is easy for the fuzzer), fed arbitrary datagrams from the
//! connection's peer and from strangers, with time moving on between them: nothing may panic,
//! whatever reaches the handshake responder or the connection's ACK/NAK/KM/data paths.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use stadion_srt::{
    AcceptDecision, ConnectRequest, Connection, ConnectionConfig, Listener, ListenerConfig,
};

const CALLER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5000);
const STRANGER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 6000);
const SERVER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9000);
const PASSPHRASE: &str = "fuzzing-passphrase";

/// Runs the handshake in memory; returns the listener and the caller's socket id there.
fn established(now: Instant, encrypted: bool) -> (Listener, Connection, u32) {
    let mut rng = StdRng::seed_from_u64(1);
    let passphrase = encrypted.then(|| PASSPHRASE.to_owned());
    let config = ConnectionConfig {
        passphrase: passphrase.clone(),
        stream_id: Some("#!::r=cam1,m=request".into()),
        ..ConnectionConfig::default()
    };
    let mut caller = Connection::connect(now, SERVER, config, &mut rng).expect("valid config");
    let hook = move |req: &ConnectRequest<'_>| match req.stream_id.resource() {
        "cam1" => AcceptDecision::Accept {
            passphrase: passphrase.clone(),
            latency: None,
        },
        _ => AcceptDecision::Reject(1404),
    };
    let mut listener = Listener::new(
        now,
        ListenerConfig::default(),
        Box::new(hook),
        Box::new(StdRng::seed_from_u64(2)),
    );
    for _ in 0..4 {
        while let Some(t) = caller.poll_transmit() {
            listener.handle_input(now, CALLER, Bytes::from(t.to_vec()));
        }
        while let Some(t) = listener.poll_transmit() {
            caller.handle_input(now, Bytes::from(t.to_vec()));
        }
    }
    assert!(caller.is_established());
    let id = listener.connection_ids().next().expect("accepted");
    (listener, caller, id)
}

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let (mut listener, _caller, id) = established(start, first == 0xE5);
    let mut now = start;
    // Input: records of [flags, len, bytes...]. Flag bit 0: from the peer (else a stranger);
    // bit 1: aim at the established connection's socket id; bits 2..: milliseconds to wait.
    let mut rest = data;
    while let [flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        let mut datagram = datagram.to_vec();
        if flags & 2 != 0 && datagram.len() >= 16 {
            datagram[12..16].copy_from_slice(&id.to_be_bytes());
        }
        let from = if flags & 1 != 0 { CALLER } else { STRANGER };
        listener.handle_input(now, from, Bytes::from(datagram));
        now += Duration::from_millis(u64::from(flags >> 2));
        listener.handle_timeout(now);
        while listener.poll_transmit().is_some() {}
        while listener.poll_event().is_some() {}
        let _ = listener.send(id, now, Bytes::from_static(&[0x47; 188]));
    }
});
