//! Test content: numbered payloads and a real MPEG-TS feed.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;

use crate::require;

/// Test payload `i`: 1316 bytes (7 TS packets' worth, the usual SRT payload) starting with
/// `i` (big-endian) and filled with bytes that depend on `i`, so a swapped, stale or corrupt
/// payload shows.
pub fn payload(i: u32) -> Bytes {
    let mut v = vec![0u8; 1316];
    v[..4].copy_from_slice(&i.to_be_bytes());
    let mut x = i.wrapping_mul(2_654_435_761).wrapping_add(1);
    for b in &mut v[4..] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    Bytes::from(v)
}

/// The number a [`payload`] carries; `None` for anything shorter than 4 bytes.
pub fn payload_id(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?))
}

/// Writes `source.ts` in `dir`: `secs` seconds of ffmpeg's test pattern as MPEG-2 video at 25
/// frames per second in MPEG-TS (what broadcasters' contribution feeds look like).
pub fn make_ts(dir: &Path, secs: u32) -> PathBuf {
    require("ffmpeg");
    let path = dir.join("source.ts");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args([
            "-i",
            "testsrc=size=640x360:rate=25",
            "-t",
            &secs.to_string(),
        ])
        .args(["-c:v", "mpeg2video", "-b:v", "3M", "-f", "mpegts"])
        .arg(&path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg could not make the test stream");
    path
}

/// (codec name, decoded video frames) of a TS file, as ffprobe reads it.
pub fn probe(path: &Path) -> (String, u64) {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=codec_name,nb_read_frames"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.trim().split(',');
    let codec = fields.next().unwrap_or_default().to_owned();
    let frames = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    (codec, frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_number_and_differ() {
        assert_eq!(payload_id(&payload(7)), Some(7));
        assert_ne!(payload(7)[4..], payload(8)[4..]);
        assert_eq!(payload(7), payload(7));
        assert_eq!(payload_id(b"ab"), None);
    }
}
