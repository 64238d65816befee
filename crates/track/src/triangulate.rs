//! Robust multi-view triangulation of one joint, and of a whole skeleton.
//!
//! Per joint: observations are undistorted to normalised coordinates; a confidence-weighted
//! linear triangulation (DLT, solved in its inhomogeneous 3×3 form, which is exact for points
//! at finite distance and needs no eigen-decomposition) gives a first point; if some view
//! disagrees by more than the inlier threshold, every pair of views is tried as a minimal
//! sample (exhaustive RANSAC: with ≤ 8 cameras there are at most 28 pairs, so enumerating
//! beats random sampling and is deterministic) and the largest consensus wins; the inliers
//! are re-triangulated and refined by Gauss–Newton on the confidence-weighted reprojection
//! error. Everything per joint lives on the stack: no allocation in the hot path.

use nalgebra::{Matrix3, Matrix3x4, Matrix4, Point2, Point3, Vector3, Vector4};

use crate::camera::{Calibration, Camera};
use crate::error::{Error, Result};
use crate::keypoints::{Keypoint2D, Keypoint3D, Keypoints2D};

/// The most cameras a [`Triangulator`] handles (`Keypoint3D::view_mask` is a `u32`).
pub const MAX_CAMERAS: usize = 32;

/// Triangulation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TriangulationConfig {
    /// Keypoints below this confidence are ignored.
    pub min_confidence: f64,
    /// A view whose reprojection error exceeds this (pixels) is an outlier.
    pub inlier_threshold_px: f64,
    /// Fewest agreeing views for a joint to be triangulated (at least 2).
    pub min_views: usize,
    /// Gauss–Newton iterations refining the reprojection error (0 = linear only).
    pub refine_iterations: usize,
}

impl Default for TriangulationConfig {
    fn default() -> Self {
        TriangulationConfig {
            min_confidence: 0.3,
            inlier_threshold_px: 15.0,
            min_views: 2,
            refine_iterations: 3,
        }
    }
}

/// Per-camera data precomputed once: `[R | t]` and the lens model.
#[derive(Debug, Clone)]
struct View {
    rt: Matrix3x4<f64>,
    camera: Camera,
}

/// One usable observation of a joint: undistorted normalised coordinates and weight.
#[derive(Debug, Clone, Copy, Default)]
struct Obs {
    cam: u8,
    x: f64,
    y: f64,
    w: f64,
    px: f64,
    py: f64,
}

/// Triangulates joints seen by the cameras of one [`Calibration`].
#[derive(Debug, Clone)]
pub struct Triangulator {
    views: Vec<View>,
    config: TriangulationConfig,
}

impl Triangulator {
    /// Precomputes the projection matrices; refuses more than [`MAX_CAMERAS`] cameras or
    /// `min_views < 2`.
    pub fn new(calibration: &Calibration, config: TriangulationConfig) -> Result<Self> {
        if calibration.len() > MAX_CAMERAS {
            return Err(Error::Mismatch {
                what: "calibration".into(),
                reason: format!(
                    "{} cameras, at most {MAX_CAMERAS} supported",
                    calibration.len()
                ),
            });
        }
        if config.min_views < 2 {
            return Err(Error::Mismatch {
                what: "triangulation config".into(),
                reason: "min_views must be at least 2".into(),
            });
        }
        let views = calibration
            .cameras
            .iter()
            .map(|c| View {
                rt: c.extrinsic_matrix(),
                camera: c.clone(),
            })
            .collect();
        Ok(Triangulator { views, config })
    }

    pub fn config(&self) -> &TriangulationConfig {
        &self.config
    }

    pub fn camera_count(&self) -> usize {
        self.views.len()
    }

    /// Triangulates one joint from its observation in each camera (`observations[c]` is
    /// camera `c`'s; use [`Keypoint2D::MISSING`] where a camera did not see it). Returns
    /// [`Keypoint3D::MISSING`] when fewer than `min_views` views agree.
    pub fn triangulate_point(&self, observations: &[Keypoint2D]) -> Keypoint3D {
        let mut obs = [Obs::default(); MAX_CAMERAS];
        let mut n = 0;
        for (c, (kp, view)) in observations.iter().zip(&self.views).enumerate() {
            if kp.is_valid() && kp.confidence >= self.config.min_confidence {
                let (x, y) = view
                    .camera
                    .undistort_to_normalized(&Point2::new(kp.x, kp.y));
                obs[n] = Obs {
                    cam: c as u8,
                    x,
                    y,
                    w: kp.confidence,
                    px: kp.x,
                    py: kp.y,
                };
                n += 1;
            }
        }
        self.solve(&obs[..n])
    }

    /// Triangulates a whole skeleton: `views[c]` is the person's keypoints in camera `c`
    /// (`None` where that camera does not see them). Writes one [`Keypoint3D`] per joint
    /// into `out` (cleared first; reuse it across frames to avoid allocating).
    pub fn triangulate_pose(
        &self,
        views: &[Option<&Keypoints2D>],
        joints: usize,
        out: &mut Vec<Keypoint3D>,
    ) {
        out.clear();
        let mut column = [Keypoint2D::MISSING; MAX_CAMERAS];
        let n = views.len().min(self.views.len());
        for j in 0..joints {
            for (c, v) in views[..n].iter().enumerate() {
                column[c] = v
                    .and_then(|k| k.points.get(j).copied())
                    .unwrap_or(Keypoint2D::MISSING);
            }
            out.push(self.triangulate_point(&column[..n]));
        }
    }

    fn solve(&self, obs: &[Obs]) -> Keypoint3D {
        let cfg = &self.config;
        if obs.len() < cfg.min_views {
            return Keypoint3D::MISSING;
        }
        let mut inliers = [false; MAX_CAMERAS];
        let all_agree = match self.linear(obs, |_| true) {
            Some(x) => self.mark_inliers(obs, &x, &mut inliers) == obs.len(),
            None => false,
        };
        if !all_agree {
            // Exhaustive minimal samples: every pair of views.
            let mut best = (0usize, f64::INFINITY);
            let mut trial = [false; MAX_CAMERAS];
            for a in 0..obs.len() {
                for b in a + 1..obs.len() {
                    let Some(x) = self.linear(obs, |i| i == a || i == b) else {
                        continue;
                    };
                    let count = self.mark_inliers(obs, &x, &mut trial);
                    if count < 2 {
                        continue;
                    }
                    let cost = self.weighted_error(obs, &x, &trial);
                    if count > best.0 || (count == best.0 && cost < best.1) {
                        best = (count, cost);
                        inliers = trial;
                    }
                }
            }
            if best.0 < cfg.min_views {
                return Keypoint3D::MISSING;
            }
        }
        let Some(mut x) = self.linear(obs, |i| inliers[i]) else {
            return Keypoint3D::MISSING;
        };
        for _ in 0..cfg.refine_iterations {
            match self.gauss_newton_step(obs, &x, &inliers) {
                Some(next) => x = next,
                None => break,
            }
        }
        let (mut sum, mut count, mut mask) = (0.0, 0usize, 0u32);
        for (i, o) in obs.iter().enumerate() {
            if !inliers[i] {
                continue;
            }
            match self.views[o.cam as usize].camera.project(&x) {
                Some(p) => {
                    sum += ((p.x - o.px).powi(2) + (p.y - o.py).powi(2)).sqrt();
                    count += 1;
                    mask |= 1 << o.cam;
                }
                None => return Keypoint3D::MISSING,
            }
        }
        if count < cfg.min_views {
            return Keypoint3D::MISSING;
        }
        Keypoint3D {
            position: x,
            reprojection_error: sum / count as f64,
            view_mask: mask,
        }
    }

    /// Confidence-weighted DLT over the selected observations, inhomogeneous form.
    fn linear(&self, obs: &[Obs], select: impl Fn(usize) -> bool) -> Option<Point3<f64>> {
        let mut m = Matrix4::<f64>::zeros();
        let mut used = 0;
        for (i, o) in obs.iter().enumerate() {
            if !select(i) {
                continue;
            }
            let p = &self.views[o.cam as usize].rt;
            let r3 = p.row(2);
            let a: Vector4<f64> = ((r3 * o.x - p.row(0)) * o.w).transpose();
            let b: Vector4<f64> = ((r3 * o.y - p.row(1)) * o.w).transpose();
            m += a * a.transpose() + b * b.transpose();
            used += 1;
        }
        if used < 2 {
            return None;
        }
        let lhs: Matrix3<f64> = m.fixed_view::<3, 3>(0, 0).into_owned();
        let rhs: Vector3<f64> = -m.fixed_view::<3, 1>(0, 3).into_owned();
        let x = lhs.cholesky()?.solve(&rhs);
        x.iter().all(|v| v.is_finite()).then(|| Point3::from(x))
    }

    /// Marks views whose reprojection error is under the threshold (and the point in front).
    fn mark_inliers(&self, obs: &[Obs], x: &Point3<f64>, mark: &mut [bool; MAX_CAMERAS]) -> usize {
        let thr2 = self.config.inlier_threshold_px.powi(2);
        let mut count = 0;
        for (i, o) in obs.iter().enumerate() {
            mark[i] = match self.views[o.cam as usize].camera.project(x) {
                Some(p) => (p.x - o.px).powi(2) + (p.y - o.py).powi(2) < thr2,
                None => false,
            };
            count += mark[i] as usize;
        }
        count
    }

    fn weighted_error(&self, obs: &[Obs], x: &Point3<f64>, mark: &[bool; MAX_CAMERAS]) -> f64 {
        obs.iter()
            .enumerate()
            .filter(|(i, _)| mark[*i])
            .filter_map(|(_, o)| {
                let p = self.views[o.cam as usize].camera.project(x)?;
                Some(o.w * ((p.x - o.px).powi(2) + (p.y - o.py).powi(2)).sqrt())
            })
            .sum()
    }

    /// One Gauss–Newton step on the weighted reprojection error in undistorted
    /// normalised coordinates, scaled by each camera's focal length (≈ pixels).
    fn gauss_newton_step(
        &self,
        obs: &[Obs],
        x: &Point3<f64>,
        mark: &[bool; MAX_CAMERAS],
    ) -> Option<Point3<f64>> {
        let mut jtj = Matrix3::<f64>::zeros();
        let mut jtr = Vector3::<f64>::zeros();
        for (i, o) in obs.iter().enumerate() {
            if !mark[i] {
                continue;
            }
            let cam = &self.views[o.cam as usize].camera;
            let c = cam.world_to_camera(x);
            if c.z <= 1e-9 {
                return None;
            }
            let f = 0.5 * (cam.intrinsics.fx + cam.intrinsics.fy) * o.w;
            let iz = 1.0 / c.z;
            let r = Vector3::new(c.x * iz - o.x, c.y * iz - o.y, 0.0) * f;
            let rot = cam.rotation.matrix();
            let ju = (rot.row(0) - rot.row(2) * (c.x * iz)) * (iz * f);
            let jv = (rot.row(1) - rot.row(2) * (c.y * iz)) * (iz * f);
            jtj += ju.transpose() * ju + jv.transpose() * jv;
            jtr += ju.transpose() * r.x + jv.transpose() * r.y;
        }
        let dx = jtj.cholesky()?.solve(&jtr);
        let next = x - dx;
        next.iter().all(|v| v.is_finite()).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calib::tests::rig;

    fn observe(cal: &Calibration, p: &Point3<f64>) -> Vec<Keypoint2D> {
        cal.cameras
            .iter()
            .map(|c| {
                let q = c.project(p).unwrap();
                Keypoint2D::new(q.x, q.y, 0.9)
            })
            .collect()
    }

    #[test]
    fn exact_observations_give_the_point_back() {
        let cal = rig();
        let t = Triangulator::new(&cal, TriangulationConfig::default()).unwrap();
        let p = Point3::new(0.2, -0.1, 1.3);
        let k = t.triangulate_point(&observe(&cal, &p));
        assert!((k.position - p).norm() < 1e-9, "{k:?}");
        assert_eq!(k.views(), 4);
        assert!(k.reprojection_error < 1e-6);
    }

    #[test]
    fn ransac_rejects_an_outlier_view() {
        let cal = rig();
        let t = Triangulator::new(&cal, TriangulationConfig::default()).unwrap();
        let p = Point3::new(-0.3, 0.25, 0.9);
        let mut obs = observe(&cal, &p);
        obs[2].x += 120.0; // a left/right swap or a false detection in camera 2
        obs[2].confidence = 1.0;
        let k = t.triangulate_point(&obs);
        assert_eq!(k.view_mask, 0b1011, "camera 2 must be dropped");
        assert!((k.position - p).norm() < 1e-6);
        // Plain weighted DLT over all views would be pulled far off.
        let all = t.linear(
            &obs.iter()
                .enumerate()
                .map(|(c, o)| {
                    let (x, y) = cal.cameras[c].undistort_to_normalized(&Point2::new(o.x, o.y));
                    Obs {
                        cam: c as u8,
                        x,
                        y,
                        w: o.confidence,
                        px: o.x,
                        py: o.y,
                    }
                })
                .collect::<Vec<_>>(),
            |_| true,
        );
        assert!((all.unwrap() - p).norm() > 0.01);
    }

    #[test]
    fn missing_views_and_low_confidence() {
        let cal = rig();
        let t = Triangulator::new(&cal, TriangulationConfig::default()).unwrap();
        let p = Point3::new(0.0, 0.0, 1.0);
        let mut obs = observe(&cal, &p);
        obs[0] = Keypoint2D::MISSING;
        obs[1].confidence = 0.1;
        let k = t.triangulate_point(&obs);
        assert_eq!(k.view_mask, 0b1100);
        obs[2].x = f64::NAN;
        assert!(!t.triangulate_point(&obs).is_valid());
        assert!(!t.triangulate_point(&[]).is_valid());
    }

    #[test]
    fn noisy_views_are_refined_towards_the_truth() {
        let cal = rig();
        let t = Triangulator::new(&cal, TriangulationConfig::default()).unwrap();
        let p = Point3::new(0.1, 0.3, 1.5);
        let mut obs = observe(&cal, &p);
        let noise = [(1.5, -2.0), (-1.0, 0.5), (2.0, 1.0), (-0.5, -1.5)];
        for (o, (dx, dy)) in obs.iter_mut().zip(noise) {
            o.x += dx;
            o.y += dy;
        }
        let k = t.triangulate_point(&obs);
        assert_eq!(k.views(), 4);
        assert!((k.position - p).norm() < 0.01, "{:?}", k.position - p);
        assert!(k.reprojection_error > 0.3 && k.reprojection_error < 3.0);
    }

    #[test]
    fn whole_pose() {
        let cal = rig();
        let t = Triangulator::new(&cal, TriangulationConfig::default()).unwrap();
        let joints: Vec<Point3<f64>> = (0..17)
            .map(|j| Point3::new(0.01 * j as f64, 0.0, 0.1 * j as f64))
            .collect();
        let per_cam: Vec<Keypoints2D> = cal
            .cameras
            .iter()
            .map(|c| Keypoints2D {
                person_id: None,
                points: joints
                    .iter()
                    .map(|p| {
                        let q = c.project(p).unwrap();
                        Keypoint2D::new(q.x, q.y, 0.8)
                    })
                    .collect(),
            })
            .collect();
        let views: Vec<Option<&Keypoints2D>> = vec![
            Some(&per_cam[0]),
            None,
            Some(&per_cam[2]),
            Some(&per_cam[3]),
        ];
        let mut out = Vec::new();
        t.triangulate_pose(&views, 17, &mut out);
        assert_eq!(out.len(), 17);
        for (k, p) in out.iter().zip(&joints) {
            assert!((k.position - p).norm() < 1e-8);
            assert_eq!(k.view_mask, 0b1101);
        }
    }
}
