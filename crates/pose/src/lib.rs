//! `stadion-pose`: 2D human pose from video on the CPU, in Rust.
//!
//! Frames come from Debian's `ffmpeg` over a pipe ([`video`]); a rotated, letterboxed
//! crop around the person ([`image::crop_into`]) feeds MediaPipe's BlazePose landmark
//! model run by `tract-onnx` ([`model`]); the crop of the next frame follows from the
//! landmarks of this one ([`tracker`]), as MediaPipe does, for each of several people; new
//! people are found in the regions that moved ([`motion`]) and by scanning the frame with
//! the people already followed blacked out (the person detector does not convert to ONNX).
//! Keypoints come out in crates/track's types ([`stadion_track::Keypoints2D`], BlazePose-33
//! or any other layout by joint name, [`joints`]) and as OpenPose-style JSON ([`pipeline`]).
//!
//! The model file is configuration: nothing here downloads it (see `docs/track.md`).

pub mod error;
pub mod image;
pub mod joints;
pub mod model;
pub mod motion;
pub mod pipeline;
pub mod tracker;
pub mod video;

pub use error::{Error, Result};
pub use image::{RgbImage, Roi};
pub use model::LandmarkModel;
pub use pipeline::{PoseOptions, VideoPoses, estimate_video, estimate_videos, write_openpose};
pub use tracker::{Pose, PoseTracker, TrackedPose, TrackerConfig};
