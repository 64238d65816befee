//! 2D keypoints as they come from a pose estimator, and 3D keypoints as they leave the
//! triangulation.

use nalgebra::Point3;

use crate::skeleton::Skeleton;

/// One detected joint in one image. A joint the detector did not find has
/// `confidence == 0` (OpenPose writes `0, 0, 0`); coordinates are distorted pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Keypoint2D {
    pub x: f64,
    pub y: f64,
    pub confidence: f64,
}

impl Keypoint2D {
    pub const MISSING: Keypoint2D = Keypoint2D {
        x: 0.0,
        y: 0.0,
        confidence: 0.0,
    };

    pub fn new(x: f64, y: f64, confidence: f64) -> Self {
        Keypoint2D { x, y, confidence }
    }

    /// Usable: finite coordinates and a positive confidence.
    #[inline]
    pub fn is_valid(&self) -> bool {
        self.confidence > 0.0 && self.x.is_finite() && self.y.is_finite()
    }
}

/// One person's keypoints in one camera's frame (the skeleton's joint order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Keypoints2D {
    /// The detector's own person id if it wrote one (OpenPose `person_id`), else `None`.
    pub person_id: Option<i64>,
    pub points: Vec<Keypoint2D>,
}

impl Keypoints2D {
    /// Mean confidence over all joints (0 for missing ones).
    pub fn mean_confidence(&self) -> f64 {
        if self.points.is_empty() {
            return 0.0;
        }
        self.points
            .iter()
            .map(|p| p.confidence.max(0.0))
            .sum::<f64>()
            / self.points.len() as f64
    }
}

/// Everyone detected in one frame of one camera.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame2D {
    pub people: Vec<Keypoints2D>,
}

/// The 2D keypoints of one camera over time.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraKeypoints {
    /// The camera's name in the calibration.
    pub camera: String,
    pub skeleton: Skeleton,
    /// Frame `i` of the video.
    pub frames: Vec<Frame2D>,
}

/// One triangulated joint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keypoint3D {
    /// World position in metres; `NaN`s when the joint could not be triangulated.
    pub position: Point3<f64>,
    /// Mean reprojection error over the views used, in pixels (`NaN` if not triangulated).
    pub reprojection_error: f64,
    /// Bit `c` set when camera `c` contributed.
    pub view_mask: u32,
}

impl Keypoint3D {
    pub const MISSING: Keypoint3D = Keypoint3D {
        position: Point3::new(f64::NAN, f64::NAN, f64::NAN),
        reprojection_error: f64::NAN,
        view_mask: 0,
    };

    /// How many cameras contributed.
    pub fn views(&self) -> u32 {
        self.view_mask.count_ones()
    }

    pub fn is_valid(&self) -> bool {
        self.view_mask != 0 && self.position.iter().all(|v| v.is_finite())
    }
}

/// One person's skeleton in 3D for one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Pose3D {
    /// Stable id over time (assigned by the tracker; 0 for single-person triangulation).
    pub track_id: u32,
    pub joints: Vec<Keypoint3D>,
}

impl Pose3D {
    /// Mean reprojection error over the triangulated joints (pixels), `NaN` if none.
    pub fn mean_reprojection_error(&self) -> f64 {
        let (s, n) = self
            .joints
            .iter()
            .filter(|j| j.is_valid())
            .fold((0.0, 0usize), |(s, n), j| (s + j.reprojection_error, n + 1));
        if n == 0 { f64::NAN } else { s / n as f64 }
    }
}
