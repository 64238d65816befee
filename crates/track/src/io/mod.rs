//! File formats for keypoints: OpenPose-style 2D JSON in, TRC and CSV/JSON 3D out.

pub mod openpose;
pub mod points3d;
pub mod trc;
