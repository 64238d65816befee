//! libsrt's `srt-live-transmit` as a peer.

use crate::Peer;

/// Where [`LiveTransmit::stats`] has srt-live-transmit write its statistics, in the peer's
/// directory.
const STATS_FILE: &str = "stats.json";

/// An `srt-live-transmit <input> <output>` command line (Debian's srt-tools): no auto
/// reconnect (`-a:no`), as the tests want one connection.
#[derive(Debug, Clone)]
pub struct LiveTransmit {
    args: Vec<String>,
    input: String,
    output: String,
}

impl LiveTransmit {
    /// `input` and `output` are srt-live-transmit URIs, e.g. `udp://127.0.0.1:5000` and
    /// `srt://127.0.0.1:9000?mode=listener&latency=120`.
    pub fn new(input: impl Into<String>, output: impl Into<String>) -> LiveTransmit {
        LiveTransmit {
            args: vec!["-a:no".into()],
            input: input.into(),
            output: output.into(),
        }
    }

    /// Exits after `secs` seconds (`-t`), so a test that fails early leaves no process behind
    /// even if the [`Peer`] is leaked.
    pub fn timeout(mut self, secs: u32) -> LiveTransmit {
        self.args.push(format!("-t:{secs}"));
        self
    }

    /// Writes JSON statistics every `every_packets` packets, and a last record at the end
    /// (read them with [`libsrt_stats`]).
    pub fn stats(mut self, every_packets: u32) -> LiveTransmit {
        self.args.extend([
            format!("-s:{every_packets}"),
            "-f".into(),
            "-pf:json".into(),
            format!("-statsout:{STATS_FILE}"),
        ]);
        self
    }

    pub fn spawn(self) -> Peer {
        let mut args = self.args;
        args.extend([self.input, self.output]);
        Peer::spawn("srt-live-transmit", &args)
    }
}

/// The last statistics record of an srt-live-transmit started with [`LiveTransmit::stats`]
/// (libsrt's `SRT_TRACEBSTATS` as JSON: `send`/`recv` objects with `packetsLost` etc.).
pub fn libsrt_stats(peer: &Peer) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(peer.dir().join(STATS_FILE)).ok()?;
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim().trim_end_matches(',')).ok())
}
