//! `stadion-track`: the geometric core of athlete tracking.
//!
//! Cameras ([`Camera`], [`Calibration`]) with OpenCV's distortion model; calibration files
//! (Pose2Sim/anipose TOML, OpenCV YAML, Qualisys `.qca.txt`); 2D keypoints in
//! ([`Keypoints2D`], [`Skeleton`], OpenPose-style JSON); robust multi-view triangulation
//! into [`Pose3D`]; calibration from correspondences and bundle adjustment; TRC output.

pub mod associate;
pub mod biomech;
pub mod calib;
pub mod camera;
pub mod error;
pub mod filter;
pub mod io;
pub mod keypoints;
pub mod pipeline;
pub mod plot;
pub mod skeleton;
pub mod synth;
pub mod triangulate;

pub use associate::{MultiViewTracker, TrackerConfig};
pub use calib::CalibFormat;
pub use camera::{Calibration, Camera, Distortion, Intrinsics};
pub use error::{Error, Result};
pub use keypoints::{CameraKeypoints, Frame2D, Keypoint2D, Keypoint3D, Keypoints2D, Pose3D};
pub use skeleton::Skeleton;
pub use triangulate::{TriangulationConfig, Triangulator};
