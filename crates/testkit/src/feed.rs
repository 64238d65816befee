//! Test content: numbered payloads and a real MPEG-TS feed.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;

use crate::{Peer, require};

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

/// Runs `ffmpeg -hide_banner <input_opts> -i <input> -map 0 -c copy <output_opts> <output>`:
/// every stream of `input` copied to `output` as it is, no re-encoding (e.g. a TS file pushed
/// to an SRT URL with `-f mpegts`, or SRT payloads stored byte for byte with `-f data` on
/// both sides).
pub fn ffmpeg_copy(input_opts: &[&str], input: &str, output_opts: &[&str], output: &str) -> Peer {
    let mut args = vec!["-hide_banner"];
    args.extend(input_opts);
    args.extend(["-i", input, "-map", "0", "-c", "copy"]);
    args.extend(output_opts);
    args.push(output);
    Peer::spawn("ffmpeg", args)
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
    fn a_copy_keeps_every_frame() {
        let dir = tempfile::tempdir().unwrap();
        let source = make_ts(dir.path(), 1);
        let copy = dir.path().join("copy.ts");
        let mut ffmpeg = ffmpeg_copy(
            &[],
            source.to_str().unwrap(),
            &["-f", "mpegts"],
            copy.to_str().unwrap(),
        );
        let status = ffmpeg.wait(std::time::Duration::from_secs(20));
        assert!(status.is_some_and(|s| s.success()), "{}", ffmpeg.stderr());
        assert_eq!(probe(&copy), ("mpeg2video".to_owned(), 25));
    }

    #[test]
    fn payloads_carry_their_number_and_differ() {
        assert_eq!(payload_id(&payload(7)), Some(7));
        assert_ne!(payload(7)[4..], payload(8)[4..]);
        assert_eq!(payload(7), payload(7));
        assert_eq!(payload_id(b"ab"), None);
    }
}
