//! From BlazePose's 33 landmarks to the other layouts crates/track reads, by joint name.
//! Joints BlazePose lacks are derived where the usual definition is a midpoint (`Neck`
//! between the shoulders, `MidHip`/`Hip` between the hips) and missing otherwise
//! (`Head` top, small toes).

use stadion_track::{Keypoint2D, Keypoints2D, Skeleton};

/// Joints defined as the midpoint of two BlazePose joints.
const MIDPOINTS: &[(&str, &str, &str)] = &[
    ("Neck", "LShoulder", "RShoulder"),
    ("MidHip", "LHip", "RHip"),
    ("Hip", "LHip", "RHip"),
];

/// Re-lays BlazePose-33 keypoints out as `to`. A derived midpoint takes the lower of its
/// two confidences and is missing if either end is.
pub fn from_blazepose(kp: &Keypoints2D, to: Skeleton) -> Keypoints2D {
    let get = |name: &str| {
        Skeleton::Blazepose33
            .index_of(name)
            .and_then(|i| kp.points.get(i))
            .copied()
            .filter(Keypoint2D::is_valid)
    };
    let points = to
        .joint_names()
        .iter()
        .map(|name| {
            if let Some(p) = get(name) {
                return p;
            }
            MIDPOINTS
                .iter()
                .find(|(n, _, _)| n == name)
                .and_then(|(_, a, b)| {
                    let (a, b) = (get(a)?, get(b)?);
                    Some(Keypoint2D::new(
                        (a.x + b.x) / 2.0,
                        (a.y + b.y) / 2.0,
                        a.confidence.min(b.confidence),
                    ))
                })
                .unwrap_or(Keypoint2D::MISSING)
        })
        .collect();
    Keypoints2D {
        person_id: kp.person_id,
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blazepose() -> Keypoints2D {
        Keypoints2D {
            person_id: Some(3),
            points: (0..33)
                .map(|i| Keypoint2D::new(i as f64 * 10.0, i as f64, 0.5 + i as f64 / 100.0))
                .collect(),
        }
    }

    #[test]
    fn blazepose_to_itself_is_identity() {
        let kp = blazepose();
        assert_eq!(from_blazepose(&kp, Skeleton::Blazepose33), kp);
    }

    #[test]
    fn body25_gets_named_and_derived_joints() {
        let kp = blazepose();
        let out = from_blazepose(&kp, Skeleton::Body25);
        let s = Skeleton::Body25;
        assert_eq!(out.points.len(), 25);
        assert_eq!(out.person_id, Some(3));
        let at = |n: &str| out.points[s.index_of(n).unwrap()];
        let bp = |n: &str| kp.points[Skeleton::Blazepose33.index_of(n).unwrap()];
        assert_eq!(at("RKnee"), bp("RKnee"));
        assert_eq!(at("LBigToe"), bp("LBigToe"));
        let neck = at("Neck");
        assert_eq!(neck.x, (bp("LShoulder").x + bp("RShoulder").x) / 2.0);
        assert_eq!(neck.confidence, bp("LShoulder").confidence);
        assert_eq!(at("LSmallToe"), Keypoint2D::MISSING);
    }

    #[test]
    fn a_missing_end_makes_the_midpoint_missing() {
        let mut kp = blazepose();
        kp.points[Skeleton::Blazepose33.index_of("LHip").unwrap()] = Keypoint2D::MISSING;
        let out = from_blazepose(&kp, Skeleton::Halpe26);
        assert_eq!(
            out.points[Skeleton::Halpe26.index_of("Hip").unwrap()],
            Keypoint2D::MISSING
        );
        assert!(out.points[Skeleton::Halpe26.index_of("Neck").unwrap()].is_valid());
        // Too few input points: everything missing, no panic.
        let short = Keypoints2D::default();
        assert!(
            from_blazepose(&short, Skeleton::Coco17)
                .points
                .iter()
                .all(|p| !p.is_valid())
        );
    }
}
