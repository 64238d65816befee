//! Keypoint layouts of the common 2D pose estimators, with joint names and bones.
//!
//! Joint names follow Pose2Sim's spelling (`RHip`, `LAnkle`, `RBigToe`...) in every layout,
//! so code that needs "the right knee" asks [`Skeleton::index_of`] and works whatever model
//! produced the keypoints.

use serde::{Deserialize, Serialize};

/// A keypoint layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Skeleton {
    /// OpenPose BODY_25 (25 joints, with feet).
    Body25,
    /// COCO 17 keypoints as written by MMPose / RTMPose / Pose2Sim (`Body` model).
    Coco17,
    /// OpenPose's COCO model (18 joints: COCO with a `Neck`, OpenPose order).
    Coco18,
    /// Halpe 26 (COCO-17 + head, neck, hip and six foot points), RTMPose `Body_with_feet`.
    Halpe26,
    /// MediaPipe BlazePose 33 landmarks (`foot_index` is named `LBigToe` / `RBigToe`).
    Blazepose33,
}

// The tables are grouped a line per body part (head, trunk, arms, legs, feet) for reading;
// rustfmt would put one entry per line.
#[rustfmt::skip]
const BODY_25: &[&str] = &[
    "Nose", "Neck",
    "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle",
    "REye", "LEye", "REar", "LEar",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
];
#[rustfmt::skip]
const BODY_25_BONES: &[(u8, u8)] = &[
    (1, 0), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7),
    (1, 8), (8, 9), (9, 10), (10, 11), (8, 12), (12, 13), (13, 14),
    (0, 15), (15, 17), (0, 16), (16, 18),
    (14, 19), (19, 20), (14, 21), (11, 22), (22, 23), (11, 24),
];
#[rustfmt::skip]
const COCO_18: &[&str] = &[
    "Nose", "Neck",
    "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle",
    "REye", "LEye", "REar", "LEar",
];
#[rustfmt::skip]
const COCO_18_BONES: &[(u8, u8)] = &[
    (1, 0), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7),
    (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (0, 14), (14, 16), (0, 15), (15, 17),
];
#[rustfmt::skip]
const COCO_17_ARRAY: [&str; 17] = [
    "Nose", "LEye", "REye", "LEar", "REar",
    "LShoulder", "RShoulder", "LElbow", "RElbow", "LWrist", "RWrist",
    "LHip", "RHip", "LKnee", "RKnee", "LAnkle", "RAnkle",
];
const COCO_17: &[&str] = &COCO_17_ARRAY;
#[rustfmt::skip]
const COCO_17_BONES: &[(u8, u8)] = &[
    (0, 1), (0, 2), (1, 3), (2, 4),
    (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
    (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
];
/// Halpe 26 is COCO-17 followed by these.
#[rustfmt::skip]
const HALPE_26_ARRAY: [&str; 26] = concat(COCO_17_ARRAY, [
    "Head", "Neck", "Hip",
    "LBigToe", "RBigToe", "LSmallToe", "RSmallToe", "LHeel", "RHeel",
]);
#[rustfmt::skip]
const HALPE_26: &[&str] = &HALPE_26_ARRAY;
#[rustfmt::skip]
const HALPE_26_BONES: &[(u8, u8)] = &[
    (18, 17), (17, 0), (0, 1), (0, 2), (1, 3), (2, 4),
    (18, 5), (18, 6), (5, 7), (7, 9), (6, 8), (8, 10),
    (18, 19), (19, 11), (19, 12), (11, 13), (13, 15), (12, 14), (14, 16),
    (15, 20), (15, 22), (15, 24), (16, 21), (16, 23), (16, 25),
];
#[rustfmt::skip]
const BLAZEPOSE_33: &[&str] = &[
    "Nose", "LEyeInner", "LEye", "LEyeOuter", "REyeInner", "REye", "REyeOuter",
    "LEar", "REar", "MouthL", "MouthR",
    "LShoulder", "RShoulder", "LElbow", "RElbow", "LWrist", "RWrist",
    "LPinky", "RPinky", "LIndex", "RIndex", "LThumb", "RThumb",
    "LHip", "RHip", "LKnee", "RKnee", "LAnkle", "RAnkle",
    "LHeel", "RHeel", "LBigToe", "RBigToe",
];
#[rustfmt::skip]
const BLAZEPOSE_33_BONES: &[(u8, u8)] = &[
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10),
    (11, 12), (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19),
    (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
    (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28),
    (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
];

/// `a` then `b`, at compile time (the caller spells out `L = N + M`).
const fn concat<const N: usize, const M: usize, const L: usize>(
    a: [&'static str; N],
    b: [&'static str; M],
) -> [&'static str; L] {
    assert!(N + M == L, "concat: wrong length");
    let mut out = [""; L];
    let mut i = 0;
    while i < N {
        out[i] = a[i];
        i += 1;
    }
    while i < L {
        out[i] = b[i - N];
        i += 1;
    }
    out
}

impl Skeleton {
    /// Every layout, for lookups by name or joint count.
    pub const ALL: [Skeleton; 5] = [
        Skeleton::Body25,
        Skeleton::Coco17,
        Skeleton::Coco18,
        Skeleton::Halpe26,
        Skeleton::Blazepose33,
    ];

    /// Joint names in keypoint order.
    pub fn joint_names(self) -> &'static [&'static str] {
        match self {
            Skeleton::Body25 => BODY_25,
            Skeleton::Coco17 => COCO_17,
            Skeleton::Coco18 => COCO_18,
            Skeleton::Halpe26 => HALPE_26,
            Skeleton::Blazepose33 => BLAZEPOSE_33,
        }
    }

    /// Bones as pairs of joint indices (for drawing and bone-length checks).
    pub fn bones(self) -> &'static [(u8, u8)] {
        match self {
            Skeleton::Body25 => BODY_25_BONES,
            Skeleton::Coco17 => COCO_17_BONES,
            Skeleton::Coco18 => COCO_18_BONES,
            Skeleton::Halpe26 => HALPE_26_BONES,
            Skeleton::Blazepose33 => BLAZEPOSE_33_BONES,
        }
    }

    pub fn joint_count(self) -> usize {
        self.joint_names().len()
    }

    /// Index of the joint called `name` (Pose2Sim spelling, case-insensitive).
    pub fn index_of(self, name: &str) -> Option<usize> {
        self.joint_names()
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
    }

    /// The layout with this many joints (every layout here has a distinct count).
    pub fn from_joint_count(n: usize) -> Option<Skeleton> {
        Skeleton::ALL.into_iter().find(|s| s.joint_count() == n)
    }

    /// Parses the usual names: `BODY_25`, `COCO_17`, `COCO`/`COCO_18`, `HALPE_26`,
    /// `BLAZEPOSE` (case and `_`/`-` insensitive).
    pub fn from_name(name: &str) -> Option<Skeleton> {
        let n: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_uppercase();
        Some(match n.as_str() {
            "BODY25" => Skeleton::Body25,
            "COCO17" | "BODY" => Skeleton::Coco17,
            "COCO" | "COCO18" => Skeleton::Coco18,
            "HALPE26" | "BODYWITHFEET" => Skeleton::Halpe26,
            "BLAZEPOSE" | "BLAZEPOSE33" => Skeleton::Blazepose33,
            _ => return None,
        })
    }

    /// The canonical name (`BODY_25`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Skeleton::Body25 => "BODY_25",
            Skeleton::Coco17 => "COCO_17",
            Skeleton::Coco18 => "COCO_18",
            Skeleton::Halpe26 => "HALPE_26",
            Skeleton::Blazepose33 => "BLAZEPOSE_33",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_consistent() {
        for s in Skeleton::ALL {
            let n = s.joint_count();
            assert_eq!(Skeleton::from_joint_count(n), Some(s));
            assert_eq!(Skeleton::from_name(s.name()), Some(s));
            for &(a, b) in s.bones() {
                assert!(
                    (a as usize) < n && (b as usize) < n && a != b,
                    "{s:?} {a}-{b}"
                );
            }
            for (i, name) in s.joint_names().iter().enumerate() {
                assert_eq!(s.index_of(name), Some(i), "{s:?} duplicate {name}");
            }
            // Every layout has the joints the biomechanics needs.
            for j in [
                "LHip",
                "RHip",
                "LKnee",
                "RKnee",
                "LAnkle",
                "RAnkle",
                "LShoulder",
            ] {
                assert!(s.index_of(j).is_some(), "{s:?} lacks {j}");
            }
        }
    }
}
