//! Video in, per-frame keypoints out: decode with ffmpeg, track the people with the
//! landmark model, lay the points out in the requested skeleton, and write them as
//! OpenPose-style JSON (Pose2Sim's `cam01_json/cam01_000000000000_keypoints.json`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stadion_track::{CameraKeypoints, Frame2D, Skeleton};

use crate::error::{Error, Result};
use crate::joints::from_blazepose;
use crate::model::LandmarkModel;
use crate::tracker::{PoseTracker, TrackerConfig};
use crate::video::{FrameReader, VideoInfo};

/// How to turn a video into keypoints.
#[derive(Debug, Clone, PartialEq)]
pub struct PoseOptions {
    pub tracker: TrackerConfig,
    /// Layout of the keypoints written (BlazePose-33 keeps every landmark).
    pub skeleton: Skeleton,
    /// Stop after this many frames.
    pub max_frames: Option<usize>,
}

impl Default for PoseOptions {
    fn default() -> Self {
        PoseOptions {
            tracker: TrackerConfig::default(),
            skeleton: Skeleton::Blazepose33,
            max_frames: None,
        }
    }
}

/// One video's keypoints and what it took to get them.
#[derive(Debug, Clone)]
pub struct VideoPoses {
    /// Frame `i` holds the people followed in it, with the tracker's ids as `person_id`.
    pub keypoints: CameraKeypoints,
    pub info: VideoInfo,
    /// Frames with at least one person.
    pub detected: usize,
    /// Distinct people followed over the video (a person lost and found again counts twice).
    pub people: usize,
    /// Model runs (one per tracked frame, more on (re-)acquisition).
    pub crops: usize,
    pub elapsed: Duration,
}

/// Runs the whole video; `on_frame` is called after each frame (for progress bars).
pub fn estimate_video(
    model: &LandmarkModel,
    path: &Path,
    camera: &str,
    options: &PoseOptions,
    on_frame: &mut dyn FnMut(usize),
) -> Result<VideoPoses> {
    let start = Instant::now();
    let mut reader = FrameReader::open(path, options.max_frames)?;
    let info = reader.info().clone();
    let mut tracker = PoseTracker::new(model, options.tracker.clone());
    let mut frames = Vec::with_capacity(info.frames.unwrap_or(0));
    let (mut detected, mut people) = (0, 0);
    let mut buffer = None;
    while let Some(image) = reader.next_frame(buffer.take())? {
        let mut frame = Frame2D::default();
        for t in tracker.track(&image)? {
            let mut kp = from_blazepose(
                &t.pose.keypoints(image.width(), image.height()),
                options.skeleton,
            );
            kp.person_id = Some(t.id);
            people = people.max(t.id as usize + 1);
            frame.people.push(kp);
        }
        detected += usize::from(!frame.people.is_empty());
        frames.push(frame);
        on_frame(frames.len());
        buffer = Some(image);
    }
    Ok(VideoPoses {
        keypoints: CameraKeypoints {
            camera: camera.to_owned(),
            skeleton: options.skeleton,
            frames,
        },
        info,
        detected,
        people,
        crops: tracker.crops(),
        elapsed: start.elapsed(),
    })
}

/// Runs several videos (`(camera, path)`) on `threads` worker threads sharing one model;
/// results come back in the input's order. `on_frame(video, frame)` reports progress.
pub fn estimate_videos(
    model: &LandmarkModel,
    videos: &[(String, PathBuf)],
    options: &PoseOptions,
    threads: usize,
    on_frame: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<VideoPoses>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<VideoPoses>>>> =
        Mutex::new(videos.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, videos.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((camera, path)) = videos.get(i) else {
                        break;
                    };
                    let r = estimate_video(model, path, camera, options, &mut |f| on_frame(i, f));
                    let failed = r.is_err();
                    if let Ok(mut slots) = results.lock() {
                        slots[i] = Some(r);
                    }
                    if failed {
                        // Skip what is left: the caller gets the first error anyway.
                        next.store(videos.len(), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let slots = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(videos.len());
    for (slot, (_, path)) in slots.into_iter().zip(videos) {
        match slot {
            Some(r) => out.push(r?),
            None => {
                return Err(Error::Decode {
                    path: path.clone(),
                    frames: 0,
                    message: "not processed: an earlier video failed".into(),
                });
            }
        }
    }
    Ok(out)
}

/// Writes one JSON file per frame into `dir` (created if needed), named like Pose2Sim's
/// (`<camera>_<frame:012>_keypoints.json`) so crates/track reads it back.
pub fn write_openpose(keypoints: &CameraKeypoints, dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(stadion_track::io::openpose::write_dir(keypoints, dir)?)
}
