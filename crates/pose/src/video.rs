//! Video frames through Debian's `ffmpeg`: `ffprobe` for the stream's size and rate, then
//! `ffmpeg ... -f rawvideo -pix_fmt rgb24 -` piped frame by frame. No C bindings, and the
//! decoder runs in its own process, in parallel with the model.

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::image::RgbImage;

/// What `ffprobe` says about a video's first video stream (dimensions as displayed,
/// after the container's rotation, which `ffmpeg` applies when decoding).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub width: usize,
    pub height: usize,
    /// Frames per second (`r_frame_rate`), `None` if the container does not say.
    pub fps: Option<f64>,
    /// Frame count if the container records it.
    pub frames: Option<usize>,
}

/// Runs `ffprobe` on `path`.
pub fn probe(path: &Path) -> Result<VideoInfo> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=width,height,r_frame_rate,nb_frames:stream_side_data=rotation")
        .args(["-of", "json"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: "ffprobe",
            path: path.to_owned(),
            source,
        })?;
    let fail = |message: String| Error::Probe {
        path: path.to_owned(),
        message,
    };
    if !out.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("bad JSON: {e}")))?;
    parse_probe(&v).map_err(fail)
}

fn parse_probe(v: &Value) -> std::result::Result<VideoInfo, String> {
    let s = v
        .get("streams")
        .and_then(|s| s.get(0))
        .ok_or("no video stream")?;
    let dim = |k: &str| {
        s.get(k)
            .and_then(Value::as_u64)
            .filter(|d| *d > 0 && *d <= 1 << 15)
            .map(|d| d as usize)
            .ok_or(format!("stream has no usable {k}"))
    };
    let (mut width, mut height) = (dim("width")?, dim("height")?);
    let rotation = s
        .get("side_data_list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|d| d.get("rotation").and_then(Value::as_i64))
        .unwrap_or(0);
    if rotation.rem_euclid(180) == 90 {
        std::mem::swap(&mut width, &mut height);
    }
    let fps = s.get("r_frame_rate").and_then(Value::as_str).and_then(|r| {
        let (n, d) = r.split_once('/')?;
        let (n, d) = (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?);
        (n > 0.0 && d > 0.0).then(|| n / d)
    });
    let frames = s
        .get("nb_frames")
        .and_then(Value::as_str)
        .and_then(|n| n.parse().ok());
    Ok(VideoInfo {
        width,
        height,
        fps,
        frames,
    })
}

/// Decoded frames of one video, in order. Dropping it stops `ffmpeg`.
#[derive(Debug)]
pub struct FrameReader {
    path: PathBuf,
    info: VideoInfo,
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<String>>,
    decoded: usize,
    done: bool,
}

impl FrameReader {
    /// Starts decoding `path`; `max_frames` stops after that many frames.
    pub fn open(path: &Path, max_frames: Option<usize>) -> Result<Self> {
        let info = probe(path)?;
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-v", "error", "-i"]).arg(path);
        if let Some(n) = max_frames {
            cmd.arg("-frames:v").arg(n.to_string());
        }
        cmd.args(["-an", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            program: "ffmpeg",
            path: path.to_owned(),
            source,
        })?;
        let (Some(stdout), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Error::Spawn {
                program: "ffmpeg",
                path: path.to_owned(),
                source: std::io::Error::other("no output pipe"),
            });
        };
        // Drained on its own thread so a chatty ffmpeg never blocks on a full pipe.
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Ok(FrameReader {
            path: path.to_owned(),
            info,
            child,
            stdout,
            stderr: Some(stderr),
            decoded: 0,
            done: false,
        })
    }

    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// The next frame, reusing `buffer`'s allocation if given; `None` at the end.
    pub fn next_frame(&mut self, buffer: Option<RgbImage>) -> Result<Option<RgbImage>> {
        if self.done {
            return Ok(None);
        }
        let size = self.info.width * self.info.height * 3;
        let mut data = buffer.map(RgbImage::into_data).unwrap_or_default();
        data.resize(size, 0);
        let mut filled = 0;
        while filled < size {
            match self.stdout.read(&mut data[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        if filled == size {
            self.decoded += 1;
            return RgbImage::new(self.info.width, self.info.height, data).map(Some);
        }
        self.done = true;
        let status = self.child.wait().map_err(|e| Error::io(&self.path, e))?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let message = if !status.success() {
            format!("{status}: {}", stderr.trim())
        } else if filled != 0 {
            format!("truncated frame ({filled} of {size} bytes)")
        } else {
            return Ok(None);
        };
        Err(Error::Decode {
            path: self.path.clone(),
            frames: self.decoded,
            message,
        })
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_json_handles_rotation_and_rates() {
        let v: Value = serde_json::from_str(
            r#"{"streams":[{"width":1920,"height":1080,"r_frame_rate":"60000/1001",
                "nb_frames":"100","side_data_list":[{"rotation":-90}]}]}"#,
        )
        .unwrap();
        let info = parse_probe(&v).unwrap();
        assert_eq!(
            (info.width, info.height, info.frames),
            (1080, 1920, Some(100))
        );
        assert!((info.fps.unwrap() - 59.94).abs() < 0.01);
        let v: Value = serde_json::from_str(r#"{"streams":[{"width":0,"height":10}]}"#).unwrap();
        assert!(parse_probe(&v).unwrap_err().contains("width"));
        assert!(parse_probe(&serde_json::json!({"streams": []})).is_err());
    }

    /// A real ffmpeg round trip: a generated test pattern comes back frame by frame.
    #[test]
    fn decodes_a_generated_video() {
        let dir = std::env::temp_dir().join(format!("stadion-pose-video-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bars.mkv");
        let made = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc=size=64x48:rate=10:duration=0.5")
            .args(["-c:v", "ffv1"])
            .arg(&file)
            .status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: ffmpeg is not available");
            return;
        }
        let mut reader = FrameReader::open(&file, None).unwrap();
        assert_eq!((reader.info().width, reader.info().height), (64, 48));
        let mut frames = 0;
        let mut buf = None;
        while let Some(f) = reader.next_frame(buf.take()).unwrap() {
            assert_eq!(f.data().len(), 64 * 48 * 3);
            frames += 1;
            buf = Some(f);
        }
        assert_eq!(frames, 5);
        assert!(reader.next_frame(None).unwrap().is_none());
        let mut limited = FrameReader::open(&file, Some(2)).unwrap();
        assert!(limited.next_frame(None).unwrap().is_some());
        drop(limited); // stops ffmpeg mid-stream without error
        let missing = FrameReader::open(&dir.join("absent.mp4"), None).unwrap_err();
        assert!(missing.to_string().contains("absent.mp4"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
