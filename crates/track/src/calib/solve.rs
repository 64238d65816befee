//! Calibration from correspondences: one camera from 2D–3D landmarks (known track
//! markings: DLT, then Levenberg–Marquardt on the reprojection error with distortion), and
//! all cameras refined together from multi-view correspondences of unknown 3D points
//! (bundle adjustment by resection–intersection: triangulate the points with the current
//! cameras, refine each camera's pose on them, repeat; camera 0 stays fixed to hold the
//! world frame). Both report the RMS reprojection error.

use nalgebra::{DMatrix, DVector, Matrix3, Matrix3x4, Point2, Point3, Rotation3, Vector3};

use crate::camera::{Calibration, Camera, Distortion, Intrinsics};
use crate::error::{Error, Result};
use crate::keypoints::Keypoint2D;
use crate::triangulate::{TriangulationConfig, Triangulator};

/// A solved camera and how well it fits.
#[derive(Debug, Clone)]
pub struct CameraFit {
    pub camera: Camera,
    /// RMS reprojection error over the correspondences (pixels).
    pub rms_px: f64,
    pub iterations: usize,
}

fn solver(what: &str, reason: impl Into<String>) -> Error {
    Error::Solver {
        what: what.to_owned(),
        reason: reason.into(),
    }
}

/// Hartley normalisation: centroid to the origin, mean distance √dim.
fn normaliser2(p: &[Point2<f64>]) -> Matrix3<f64> {
    let n = p.len() as f64;
    let c = p
        .iter()
        .fold(Vector3::zeros(), |s, q| s + Vector3::new(q.x, q.y, 0.0))
        / n;
    let d = p.iter().map(|q| (q.x - c.x).hypot(q.y - c.y)).sum::<f64>() / n;
    let s = std::f64::consts::SQRT_2 / d.max(1e-12);
    Matrix3::new(s, 0.0, -s * c.x, 0.0, s, -s * c.y, 0.0, 0.0, 1.0)
}

fn normaliser3(p: &[Point3<f64>]) -> nalgebra::Matrix4<f64> {
    let n = p.len() as f64;
    let c = p.iter().fold(Vector3::zeros(), |s, q| s + q.coords) / n;
    let d = p.iter().map(|q| (q.coords - c).norm()).sum::<f64>() / n;
    let s = 3f64.sqrt() / d.max(1e-12);
    let mut t = nalgebra::Matrix4::identity() * s;
    t[(3, 3)] = 1.0;
    t.fixed_view_mut::<3, 1>(0, 3).copy_from(&(-c * s));
    t
}

/// The direct linear transform: the 3×4 projection matrix from ≥ 6 correspondences.
pub fn dlt(world: &[Point3<f64>], image: &[Point2<f64>]) -> Result<Matrix3x4<f64>> {
    if world.len() != image.len() || world.len() < 6 {
        return Err(solver(
            "DLT",
            format!(
                "needs at least 6 matching 2D–3D points, got {} 3D and {} 2D",
                world.len(),
                image.len()
            ),
        ));
    }
    if world
        .iter()
        .any(|p| !p.coords.iter().all(|v| v.is_finite()))
        || image.iter().any(|p| !(p.x.is_finite() && p.y.is_finite()))
    {
        return Err(solver("DLT", "a correspondence is not finite"));
    }
    let (t2, t3) = (normaliser2(image), normaliser3(world));
    let mut a = DMatrix::zeros(2 * world.len(), 12);
    for (i, (x, u)) in world.iter().zip(image).enumerate() {
        let xh = t3 * x.to_homogeneous();
        let uh = t2 * u.to_homogeneous();
        for k in 0..4 {
            a[(2 * i, 4 + k)] = -uh.z * xh[k];
            a[(2 * i, 8 + k)] = uh.y * xh[k];
            a[(2 * i + 1, k)] = uh.z * xh[k];
            a[(2 * i + 1, 8 + k)] = -uh.x * xh[k];
        }
    }
    let svd = a.svd(false, true);
    let vt = svd
        .v_t
        .ok_or_else(|| solver("DLT", "singular value decomposition failed"))?;
    let (min_i, min_s) = svd
        .singular_values
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, s)| (i, *s))
        .unwrap_or((11, 0.0));
    let second = svd
        .singular_values
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != min_i)
        .map(|(_, s)| *s)
        .fold(f64::INFINITY, f64::min);
    if second < 1e-9 * svd.singular_values.max() || !min_s.is_finite() {
        return Err(solver(
            "DLT",
            "degenerate geometry (points coplanar or collinear with too little spread)",
        ));
    }
    let h: Vec<f64> = vt.row(min_i).iter().copied().collect();
    let pn = Matrix3x4::from_row_slice(&h);
    let t2_inv = t2
        .try_inverse()
        .ok_or_else(|| solver("DLT", "image points all coincide"))?;
    Ok(t2_inv * pn * t3)
}

/// Splits `P = K [R | t]` (RQ decomposition of the left 3×3 block, signs fixed so that the
/// focal lengths are positive and `R` is a rotation).
pub fn decompose(p: &Matrix3x4<f64>) -> Result<(Intrinsics, Rotation3<f64>, Vector3<f64>)> {
    let mut p = *p;
    if p.fixed_view::<3, 3>(0, 0).determinant() < 0.0 {
        p = -p;
    }
    let m: Matrix3<f64> = p.fixed_view::<3, 3>(0, 0).into();
    // RQ via QR of the row-reversed transpose.
    let e = Matrix3::new(0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0);
    let qr = (e * m).transpose().qr();
    let (q, r) = (qr.q(), qr.r());
    let mut k = e * r.transpose() * e;
    let mut rot = e * q.transpose();
    // Make K's diagonal positive.
    let d = Matrix3::from_diagonal(&Vector3::new(
        k[(0, 0)].signum(),
        k[(1, 1)].signum(),
        k[(2, 2)].signum(),
    ));
    k *= d;
    rot = d * rot;
    if rot.determinant() < 0.0 {
        return Err(solver(
            "decomposition",
            "projection matrix has a reflection",
        ));
    }
    let scale = k[(2, 2)];
    if scale.abs() < 1e-12 {
        return Err(solver("decomposition", "singular camera matrix"));
    }
    let t = k
        .try_inverse()
        .ok_or_else(|| solver("decomposition", "singular camera matrix"))?
        * p.column(3);
    let mut k = k / scale;
    // Upper-triangular by construction; clear the rounding below the diagonal.
    (k[(1, 0)], k[(2, 0)], k[(2, 1)], k[(2, 2)]) = (0.0, 0.0, 0.0, 1.0);
    let intrinsics = Intrinsics::from_matrix(&k).map_err(|e| solver("decomposition", e))?;
    Ok((intrinsics, Rotation3::from_matrix(&rot), t))
}

/// Parameters of one camera as a vector for the solver.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Block {
    /// fx, fy, cx, cy, k1, k2, p1, p2, rotation (3), translation (3).
    Full,
    /// rotation (3), translation (3).
    Pose,
}

fn pack(c: &Camera, block: Block) -> DVector<f64> {
    let r = c.rotation.scaled_axis();
    let t = c.translation;
    match block {
        Block::Full => {
            let (k, d) = (&c.intrinsics, &c.distortion);
            DVector::from_vec(vec![
                k.fx, k.fy, k.cx, k.cy, d.k1, d.k2, d.p1, d.p2, r.x, r.y, r.z, t.x, t.y, t.z,
            ])
        }
        Block::Pose => DVector::from_vec(vec![r.x, r.y, r.z, t.x, t.y, t.z]),
    }
}

fn unpack(base: &Camera, v: &DVector<f64>, block: Block) -> Camera {
    let mut c = base.clone();
    let o = match block {
        Block::Full => {
            c.intrinsics.fx = v[0];
            c.intrinsics.fy = v[1];
            c.intrinsics.cx = v[2];
            c.intrinsics.cy = v[3];
            c.distortion = Distortion {
                k1: v[4],
                k2: v[5],
                p1: v[6],
                p2: v[7],
                k3: 0.0,
            };
            8
        }
        Block::Pose => 0,
    };
    c.rotation = Rotation3::new(Vector3::new(v[o], v[o + 1], v[o + 2]));
    c.translation = Vector3::new(v[o + 3], v[o + 4], v[o + 5]);
    c
}

/// Reprojection residuals (2 per point; a point behind the camera costs 1e4 px).
fn residuals(c: &Camera, world: &[Point3<f64>], image: &[Point2<f64>]) -> DVector<f64> {
    let mut r = DVector::zeros(2 * world.len());
    for (i, (x, u)) in world.iter().zip(image).enumerate() {
        match c.project(x) {
            Some(p) => {
                r[2 * i] = p.x - u.x;
                r[2 * i + 1] = p.y - u.y;
            }
            None => {
                r[2 * i] = 1e4;
                r[2 * i + 1] = 1e4;
            }
        }
    }
    r
}

/// Levenberg–Marquardt on one camera's parameters (numerical Jacobian, central differences).
fn refine(
    camera: &Camera,
    world: &[Point3<f64>],
    image: &[Point2<f64>],
    block: Block,
    max_iterations: usize,
) -> (Camera, usize) {
    let mut x = pack(camera, block);
    let mut cam = camera.clone();
    let mut r = residuals(&cam, world, image);
    let mut cost = r.norm_squared();
    let mut lambda = 1e-3;
    let mut it = 0;
    while it < max_iterations {
        it += 1;
        let mut j = DMatrix::zeros(r.len(), x.len());
        for k in 0..x.len() {
            let h = 1e-6 * x[k].abs().max(1e-3);
            let (mut a, mut b) = (x.clone(), x.clone());
            a[k] += h;
            b[k] -= h;
            let d = (residuals(&unpack(camera, &a, block), world, image)
                - residuals(&unpack(camera, &b, block), world, image))
                / (2.0 * h);
            j.set_column(k, &d);
        }
        let jtj = j.transpose() * &j;
        let g = j.transpose() * &r;
        let mut improved = false;
        for _ in 0..10 {
            let mut a = jtj.clone();
            for d in 0..a.nrows() {
                a[(d, d)] += lambda * jtj[(d, d)].max(1e-9);
            }
            let Some(step) = a.lu().solve(&-&g) else {
                lambda *= 10.0;
                continue;
            };
            let trial = &x + &step;
            let c = unpack(camera, &trial, block);
            let rt = residuals(&c, world, image);
            let ct = rt.norm_squared();
            if ct < cost {
                let done = (cost - ct) < 1e-12 * cost.max(1e-30) || step.norm() < 1e-12;
                (x, cam, r, cost) = (trial, c, rt, ct);
                lambda = (lambda / 10.0).max(1e-12);
                improved = true;
                if done {
                    return (cam, it);
                }
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    (cam, it)
}

fn rms(c: &Camera, world: &[Point3<f64>], image: &[Point2<f64>]) -> f64 {
    (residuals(c, world, image).norm_squared() / world.len().max(1) as f64).sqrt()
}

/// Calibrates one camera from landmarks of known position (≥ 6, not all coplanar): DLT
/// for a start, then Levenberg–Marquardt on focal lengths, principal point, distortion
/// (`k1 k2 p1 p2`, when `with_distortion` and there are ≥ 12 points) and pose.
pub fn calibrate_camera(
    name: &str,
    size: (u32, u32),
    world: &[Point3<f64>],
    image: &[Point2<f64>],
    with_distortion: bool,
) -> Result<CameraFit> {
    let p = dlt(world, image)?;
    let (intrinsics, rotation, translation) = decompose(&p)?;
    let start = Camera {
        name: name.to_owned(),
        size,
        intrinsics: Intrinsics {
            skew: 0.0,
            ..intrinsics
        },
        distortion: Distortion::default(),
        rotation,
        translation,
    };
    let (mut camera, mut iterations) = refine(&start, world, image, Block::Full, 100);
    if !with_distortion || world.len() < 12 {
        camera.distortion = Distortion::default();
        let (c, i) = refine(&camera, world, image, Block::Pose, 50);
        (camera, iterations) = (c, iterations + i);
    }
    camera
        .validate()
        .map_err(|(field, e)| solver(&format!("camera {name}"), format!("{field}: {e}")))?;
    Ok(CameraFit {
        rms_px: rms(&camera, world, image),
        camera,
        iterations,
    })
}

/// The outcome of [`bundle_adjust`].
#[derive(Debug, Clone)]
pub struct BundleFit {
    pub calibration: Calibration,
    /// The correspondences' 3D points (NaN where fewer than 2 views).
    pub points: Vec<Point3<f64>>,
    pub rms_before_px: f64,
    pub rms_after_px: f64,
    pub rounds: usize,
}

/// Refines every camera's pose but the first from points seen in several views
/// (`observations[p][c]`: point `p` in camera `c`, e.g. a wand or a person's joints over a
/// sequence). Rounds of: triangulate the points with the current cameras, then re-solve each
/// camera's pose on them by Levenberg–Marquardt; until the RMS error stops improving.
pub fn bundle_adjust(
    calibration: &Calibration,
    observations: &[Vec<Option<Point2<f64>>>],
    max_rounds: usize,
) -> Result<BundleFit> {
    let n = calibration.len();
    if let Some((p, o)) = observations.iter().enumerate().find(|(_, o)| o.len() != n) {
        return Err(Error::Mismatch {
            what: format!("bundle adjustment point {p}"),
            reason: format!("{} observations for {n} cameras", o.len()),
        });
    }
    let config = TriangulationConfig {
        inlier_threshold_px: f64::INFINITY,
        ..TriangulationConfig::default()
    };
    let triangulate = |cal: &Calibration| -> Result<Vec<Point3<f64>>> {
        let tri = Triangulator::new(cal, config)?;
        Ok(observations
            .iter()
            .map(|o| {
                let obs: Vec<Keypoint2D> = o
                    .iter()
                    .map(|p| p.map_or(Keypoint2D::MISSING, |p| Keypoint2D::new(p.x, p.y, 1.0)))
                    .collect();
                let k = tri.triangulate_point(&obs);
                if k.is_valid() {
                    k.position
                } else {
                    Point3::new(f64::NAN, f64::NAN, f64::NAN)
                }
            })
            .collect())
    };
    let total_rms = |cal: &Calibration, pts: &[Point3<f64>]| {
        let (mut s, mut m) = (0.0, 0usize);
        for (c, cam) in cal.cameras.iter().enumerate() {
            let (w, i) = pairs(pts, observations, c);
            s += residuals(cam, &w, &i).norm_squared();
            m += w.len();
        }
        (s / m.max(1) as f64).sqrt()
    };
    let mut cal = calibration.clone();
    let mut points = triangulate(&cal)?;
    let rms_before_px = total_rms(&cal, &points);
    let mut best = rms_before_px;
    let mut rounds = 0;
    while rounds < max_rounds {
        rounds += 1;
        let mut next = cal.clone();
        for c in 1..n {
            let (w, i) = pairs(&points, observations, c);
            if w.len() >= 4 {
                next.cameras[c] = refine(&cal.cameras[c], &w, &i, Block::Pose, 30).0;
            }
        }
        let next_points = triangulate(&next)?;
        let e = total_rms(&next, &next_points);
        if e.is_nan() || e >= best {
            break;
        }
        let done = best - e < 1e-4 * best;
        (cal, points, best) = (next, next_points, e);
        if done {
            break;
        }
    }
    Ok(BundleFit {
        calibration: cal,
        points,
        rms_before_px,
        rms_after_px: best,
        rounds,
    })
}

/// The (3D point, observation) pairs of camera `c` where both are known.
fn pairs(
    points: &[Point3<f64>],
    observations: &[Vec<Option<Point2<f64>>>],
    c: usize,
) -> (Vec<Point3<f64>>, Vec<Point2<f64>>) {
    points
        .iter()
        .zip(observations)
        .filter_map(|(p, o)| Some((*p, o[c]?)).filter(|(p, _)| p.x.is_finite()))
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn landmarks(rng: &mut StdRng, n: usize) -> Vec<Point3<f64>> {
        (0..n)
            .map(|_| {
                Point3::new(
                    rng.random_range(-2.0..2.0),
                    rng.random_range(-2.0..2.0),
                    rng.random_range(0.0..2.0),
                )
            })
            .collect()
    }

    #[test]
    fn dlt_and_lm_recover_a_camera() {
        let truth = {
            let mut c = crate::calib::tests::rig().cameras[1].clone();
            c.distortion = Distortion {
                k1: -0.08,
                k2: 0.02,
                ..Distortion::default()
            };
            c
        };
        let mut rng = StdRng::seed_from_u64(3);
        let world = landmarks(&mut rng, 40);
        let image: Vec<Point2<f64>> = world
            .iter()
            .map(|p| {
                let q = truth.project(p).unwrap();
                Point2::new(
                    q.x + rng.random_range(-0.5..0.5),
                    q.y + rng.random_range(-0.5..0.5),
                )
            })
            .collect();
        let fit = calibrate_camera("cam", truth.size, &world, &image, true).unwrap();
        assert!(fit.rms_px < 0.5, "rms {}", fit.rms_px);
        let c = &fit.camera;
        assert!(
            (c.intrinsics.fx / truth.intrinsics.fx - 1.0).abs() < 0.01,
            "{c:?}"
        );
        assert!((c.centre() - truth.centre()).norm() < 0.03, "{c:?}");
        assert!(
            (c.distortion.k1 - truth.distortion.k1).abs() < 0.02,
            "{c:?}"
        );
        // Too few or degenerate points are refused.
        assert!(calibrate_camera("cam", truth.size, &world[..5], &image[..5], false).is_err());
        let flat: Vec<Point3<f64>> = (0..10).map(|i| Point3::new(i as f64, 0.0, 0.0)).collect();
        let e = dlt(&flat, &image[..10]).unwrap_err().to_string();
        assert!(e.contains("degenerate"), "{e}");
    }

    #[test]
    fn bundle_adjustment_repairs_perturbed_cameras() {
        let truth = crate::calib::tests::rig();
        let mut rng = StdRng::seed_from_u64(5);
        let world = landmarks(&mut rng, 60);
        let obs: Vec<Vec<Option<Point2<f64>>>> = world
            .iter()
            .map(|p| {
                truth
                    .cameras
                    .iter()
                    .map(|c| {
                        let q = c.project(p)?;
                        Some(Point2::new(
                            q.x + rng.random_range(-0.3..0.3),
                            q.y + rng.random_range(-0.3..0.3),
                        ))
                    })
                    .collect()
            })
            .collect();
        let mut start = truth.clone();
        for c in &mut start.cameras[1..] {
            c.rotation = Rotation3::new(Vector3::new(0.01, -0.008, 0.005)) * c.rotation;
            c.translation += Vector3::new(0.04, -0.03, 0.02);
        }
        let fit = bundle_adjust(&start, &obs, 50).unwrap();
        assert!(fit.rms_before_px > 5.0, "{}", fit.rms_before_px);
        assert!(
            fit.rms_after_px < 0.5,
            "{} after {} rounds",
            fit.rms_after_px,
            fit.rounds
        );
        for (a, b) in fit.calibration.cameras.iter().zip(&truth.cameras) {
            assert!((a.centre() - b.centre()).norm() < 0.02, "{}", a.name);
        }
        let bad = vec![vec![None; 2]];
        assert!(bundle_adjust(&start, &bad, 5).is_err());
    }
}
