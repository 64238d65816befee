//! A synthetic 100 m sprint with exact ground truth, seen by pan-tilt cameras, for
//! benchmarking the whole chain (association, triangulation, filtering, biomechanics).
//!
//! The athlete's body (COCO-17) follows a known speed profile `v(t) = vmax·(1 − e^(−t/τ))`;
//! feet land alternately at scheduled touch-downs whose step frequency and contact time
//! change with speed, a foot in contact stays put (its heel rises towards toe-off), a
//! swinging foot follows a smooth arc, and knees come from two-link inverse kinematics.
//! Cameras stand `distance_m` from the lane, alternately on both sides, and pan/tilt to
//! follow the athlete (as 3DAT's did), so each frame has its own [`Calibration`].
//! The 2D detections get Gaussian pixel noise, outlier keypoints, left/right swaps,
//! dropped joints, whole-body occlusions and false detections of people who are not there.

use std::path::Path;

use nalgebra::{Point2, Point3, Vector3};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::biomech::{MassModel, Side};
use crate::camera::{Calibration, Camera, Distortion, Intrinsics};
use crate::error::{Error, Result};
use crate::filter::Motion;
use crate::keypoints::{CameraKeypoints, Frame2D, Keypoint2D, Keypoints2D};
use crate::skeleton::Skeleton;

/// The race and the rig.
#[derive(Debug, Clone, PartialEq)]
pub struct SprintConfig {
    pub fps: f64,
    /// Race distance (m); the sequence runs until the athlete is 0.5 s past it.
    pub distance_m: f64,
    pub top_speed_mps: f64,
    /// Time constant of the acceleration (s).
    pub tau_s: f64,
    /// Lane centre's distance from the world x axis (m).
    pub lane_y_m: f64,
    pub cameras: usize,
    /// Cameras' distance from the lane centre (m).
    pub camera_distance_m: f64,
    /// The cameras zoom to keep the athlete this tall in the 1080-pixel-high image (a
    /// 1.9 m athlete at 285 px is a wide broadcast tracking shot).
    pub athlete_height_px: f64,
    /// Fixed cameras instead of pan-tilt ones: each looks at the middle of the race with a
    /// focal length that keeps the whole run in frame, so one calibration describes every
    /// frame (what [`SyntheticSprint::write_project`] needs).
    pub fixed_cameras: bool,
    pub seed: u64,
    pub noise: NoiseModel,
}

/// What goes wrong in the 2D detections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseModel {
    /// Standard deviation of the pixel noise on each axis.
    pub pixel_sigma: f64,
    /// Fraction of keypoints replaced by a confident detection 30–150 px away.
    pub outlier_rate: f64,
    /// Fraction of camera-frames whose left and right joints are swapped.
    pub swap_rate: f64,
    /// Fraction of keypoints not detected.
    pub dropout_rate: f64,
    /// Fraction of camera-frames in which the athlete is hidden (in spells of ~0.3 s).
    pub occlusion_rate: f64,
    /// Fraction of camera-frames with a false detection of a person elsewhere.
    pub false_detection_rate: f64,
}

impl Default for NoiseModel {
    fn default() -> Self {
        NoiseModel {
            pixel_sigma: 3.0,
            outlier_rate: 0.05,
            swap_rate: 0.02,
            dropout_rate: 0.02,
            occlusion_rate: 0.05,
            false_detection_rate: 0.1,
        }
    }
}

impl Default for SprintConfig {
    fn default() -> Self {
        SprintConfig {
            fps: 50.0,
            distance_m: 100.0,
            top_speed_mps: 11.6,
            tau_s: 1.3,
            lane_y_m: 4.3,
            cameras: 4,
            camera_distance_m: 30.0,
            athlete_height_px: 285.0,
            fixed_cameras: false,
            seed: 1,
            noise: NoiseModel::default(),
        }
    }
}

/// One true ground contact.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrueContact {
    pub side: Side,
    pub touch_down_s: f64,
    pub toe_off_s: f64,
    /// Ankle position along the lane during the contact (m).
    pub position_m: f64,
}

/// A generated race: truth, cameras and 2D detections.
#[derive(Debug, Clone)]
pub struct SyntheticSprint {
    pub config: SprintConfig,
    /// Exact joints, frame by frame.
    pub truth: Motion,
    /// The speed profile at each frame (m/s).
    pub speed_mps: Vec<f64>,
    pub contacts: Vec<TrueContact>,
    /// `(distance, time)` at which the true centre of mass crosses every 10 m.
    pub splits: Vec<(f64, f64)>,
    /// Per frame: the cameras, pointed at the athlete.
    pub calibrations: Vec<Calibration>,
    /// Per frame, per camera: the detections.
    pub views: Vec<Vec<Frame2D>>,
    /// Per frame, per camera: which detection is the athlete (for methods that cannot
    /// associate people themselves).
    pub athlete: Vec<Vec<Option<usize>>>,
}

const THIGH: f64 = 0.5;
const SHANK: f64 = 0.5;
const PELVIS_HEIGHT: f64 = 0.92;
const ANKLE_HEIGHT: f64 = 0.08;
const TOE_OFF_HEIGHT: f64 = 0.2;

/// Left/right pairs of COCO-17 (for swaps).
const COCO_PAIRS: [(usize, usize); 7] =
    [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14)];

struct Kinematics<'a> {
    cfg: &'a SprintConfig,
    contacts: Vec<TrueContact>,
}

impl Kinematics<'_> {
    fn speed(&self, t: f64) -> f64 {
        let t = t.max(0.0);
        self.cfg.top_speed_mps * (1.0 - (-t / self.cfg.tau_s).exp())
    }

    fn distance(&self, t: f64) -> f64 {
        let (v, tau) = (self.cfg.top_speed_mps, self.cfg.tau_s);
        let t = t.max(0.0);
        v * (t - tau * (1.0 - (-t / tau).exp()))
    }

    /// Contact schedule: step frequency 3.4 → 4.6 Hz and contact time 0.20 → 0.09 s as
    /// speed rises; the foot lands ahead of the body by half the contact's travel.
    fn schedule(cfg: &SprintConfig, end_s: f64) -> Vec<TrueContact> {
        let k = Kinematics {
            cfg,
            contacts: Vec::new(),
        };
        let mut out = vec![
            TrueContact {
                side: Side::Left,
                touch_down_s: -1.0,
                toe_off_s: 0.0,
                position_m: 0.0,
            },
            TrueContact {
                side: Side::Right,
                touch_down_s: -1.0,
                toe_off_s: 0.15,
                position_m: 0.0,
            },
        ];
        let mut t = 0.28;
        let mut side = Side::Left;
        while t < end_s + 1.0 {
            let r = k.speed(t) / cfg.top_speed_mps;
            let contact = 0.20 - 0.11 * r;
            let frequency = 3.4 + 1.2 * r;
            out.push(TrueContact {
                side,
                touch_down_s: t,
                toe_off_s: t + contact,
                position_m: k.distance(t + 0.5 * contact),
            });
            side = match side {
                Side::Left => Side::Right,
                Side::Right => Side::Left,
            };
            t += 1.0 / frequency;
        }
        out
    }

    /// Ankle position of one foot at time `t` (x along the lane, z up; y added later).
    fn ankle(&self, side: Side, t: f64) -> (f64, f64) {
        let mine: Vec<&TrueContact> = self.contacts.iter().filter(|c| c.side == side).collect();
        let i = mine.iter().rposition(|c| c.touch_down_s <= t).unwrap_or(0);
        let c = mine[i];
        if t <= c.toe_off_s {
            let s = ((t - c.touch_down_s) / (c.toe_off_s - c.touch_down_s)).clamp(0.0, 1.0);
            let heel = if c.touch_down_s < 0.0 { 0.0 } else { s * s };
            return (
                c.position_m,
                ANKLE_HEIGHT + (TOE_OFF_HEIGHT - ANKLE_HEIGHT) * heel,
            );
        }
        let Some(next) = mine.get(i + 1) else {
            return (c.position_m, TOE_OFF_HEIGHT);
        };
        // The heel flicks up fast after toe-off (square-root rise), then the foot reaches
        // forward; this keeps the hip–ankle distance within the leg's length.
        let s = (t - c.toe_off_s) / (next.touch_down_s - c.toe_off_s);
        let x = c.position_m
            + (next.position_m - c.position_m) * (1.0 - (std::f64::consts::PI * s).cos()) / 2.0;
        let z = TOE_OFF_HEIGHT
            + (ANKLE_HEIGHT - TOE_OFF_HEIGHT) * s
            + 0.5 * (std::f64::consts::PI * s).sin().sqrt();
        (x, z)
    }

    /// The whole body (COCO-17 order) at time `t`.
    fn body(&self, t: f64) -> Vec<Point3<f64>> {
        let d = self.distance(t);
        let y0 = self.cfg.lane_y_m;
        let lean = (5.0 + 25.0 * (-t.max(0.0) / 0.8).exp()).to_radians();
        let pelvis = Point3::new(d, y0, PELVIS_HEIGHT);
        let mut f = vec![pelvis; 17];
        let mut thigh_angle = [0.0; 2];
        for (s, side, y) in [(0, Side::Left, 0.1), (1, Side::Right, -0.1)] {
            let hip = Point3::new(d, y0 + y, PELVIS_HEIGHT);
            let (ax, az) = self.ankle(side, t);
            let ankle = Point3::new(ax, y0 + y, az);
            // Two-link IK in the sagittal plane, knee forward.
            let (dx, dz) = (ax - d, az - PELVIS_HEIGHT);
            let reach = (dx * dx + dz * dz).sqrt().min(THIGH + SHANK - 1e-9);
            let theta = dx.atan2(-dz);
            let cos_a = (THIGH * THIGH + reach * reach - SHANK * SHANK) / (2.0 * THIGH * reach);
            let a = theta + cos_a.clamp(-1.0, 1.0).acos();
            thigh_angle[s] = a;
            f[11 + s] = hip;
            f[13 + s] = hip + Vector3::new(THIGH * a.sin(), 0.0, -THIGH * a.cos());
            f[15 + s] = ankle;
        }
        let neck = pelvis + Vector3::new(0.52 * lean.sin(), 0.0, 0.52 * lean.cos());
        for (s, y) in [(0, 0.19), (1, -0.19)] {
            let shoulder = neck + Vector3::new(0.0, y, -0.03);
            // Arms swing against the opposite leg.
            let phi = -0.9 * thigh_angle[s] + 0.2;
            let elbow = shoulder + Vector3::new(0.3 * phi.sin(), 0.0, -0.3 * phi.cos());
            let fore = phi + 1.4;
            f[5 + s] = shoulder;
            f[7 + s] = elbow;
            f[9 + s] = elbow + Vector3::new(0.27 * fore.sin(), 0.0, -0.27 * fore.cos());
        }
        let head = neck + Vector3::new(0.2 * lean.sin(), 0.0, 0.2 * lean.cos());
        f[0] = head + Vector3::new(0.1, 0.0, 0.0);
        f[1] = head + Vector3::new(0.08, 0.035, 0.03);
        f[2] = head + Vector3::new(0.08, -0.035, 0.03);
        f[3] = head + Vector3::new(0.0, 0.075, 0.0);
        f[4] = head + Vector3::new(0.0, -0.075, 0.0);
        f
    }
}

/// Standard normal sample (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random::<f64>().max(1e-300);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

impl SyntheticSprint {
    /// Generates the race (deterministic for a given seed).
    pub fn generate(config: &SprintConfig) -> SyntheticSprint {
        let cfg = config.clone();
        let mut k = Kinematics {
            cfg: &cfg,
            contacts: Vec::new(),
        };
        // Time at which the athlete is 0.5 s past the finish.
        let mut end = 0.0;
        while k.distance(end) < cfg.distance_m {
            end += 0.01;
        }
        end += 0.5;
        k.contacts = Kinematics::schedule(&cfg, end);
        let n = (end * cfg.fps).ceil() as usize;
        let times: Vec<f64> = (0..n).map(|i| i as f64 / cfg.fps).collect();
        let truth = Motion {
            skeleton: Skeleton::Coco17,
            fps: cfg.fps,
            frames: times.iter().map(|&t| k.body(t)).collect(),
        };
        let speed_mps = times.iter().map(|&t| k.speed(t)).collect();

        let model = MassModel::new(Skeleton::Coco17).expect("COCO-17 has every segment joint");
        let com_x = |t: f64| {
            model
                .centre_of_mass(&k.body(t))
                .expect("synthetic joints are finite")
                .x
        };
        let mut splits = Vec::new();
        let mut d = 10.0;
        while d <= cfg.distance_m + 1e-9 {
            // Bisection on the continuous body: exact to a microsecond.
            let (mut lo, mut hi) = (0.0, end);
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if com_x(mid) < d { lo = mid } else { hi = mid }
            }
            splits.push((d, 0.5 * (lo + hi)));
            d += 10.0;
        }

        let rig = rig(&cfg);
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let mut occluded = vec![0usize; cfg.cameras];
        let mut calibrations = Vec::with_capacity(n);
        let mut views = Vec::with_capacity(n);
        let mut athlete = Vec::with_capacity(n);
        // Fixed cameras frame the run from 1 m before the start to 1 m past the end.
        let (first_x, last_x) = (-1.0, k.distance(end) + 1.0);
        let fixed_target = Point3::new(0.5 * (first_x + last_x), cfg.lane_y_m, 1.0);
        for (i, &t) in times.iter().enumerate() {
            let target = if cfg.fixed_cameras {
                fixed_target
            } else {
                Point3::new(k.distance(t), cfg.lane_y_m, 1.0)
            };
            let cal = Calibration::new(
                rig.iter()
                    .map(|c| {
                        let mut cam = Camera::look_at(
                            &c.name,
                            c.size,
                            {
                                let range = (target - c.centre()).norm();
                                // Zoom: focal length proportional to the distance; fixed
                                // cameras widen until the whole run is within 90 % of the
                                // half-width.
                                let zoom = cfg.athlete_height_px / 1.9 * range;
                                let half_run = 0.5 * (last_x - first_x);
                                let f = if cfg.fixed_cameras {
                                    zoom.min(0.9 * c.intrinsics.cx * range / half_run)
                                } else {
                                    zoom
                                };
                                Intrinsics {
                                    fx: f,
                                    fy: f,
                                    ..c.intrinsics
                                }
                            },
                            c.centre(),
                            target,
                            Vector3::z(),
                        );
                        cam.distortion = c.distortion;
                        cam
                    })
                    .collect(),
            );
            let mut frame_views = Vec::with_capacity(cfg.cameras);
            let mut frame_athlete = Vec::with_capacity(cfg.cameras);
            for (c, cam) in cal.cameras.iter().enumerate() {
                let mut people = Vec::new();
                let noise = &cfg.noise;
                if occluded[c] > 0 {
                    occluded[c] -= 1;
                } else if rng.random::<f64>() < noise.occlusion_rate / 15.0 {
                    occluded[c] = 15;
                }
                if occluded[c] == 0 {
                    people.push(detect(cam, &truth.frames[i], noise, &mut rng));
                }
                if rng.random::<f64>() < noise.false_detection_rate {
                    // Someone else on the infield, seen by this camera only.
                    let offset = Vector3::new(
                        rng.random_range(-12.0..12.0),
                        rng.random_range(-6.0..10.0),
                        0.0,
                    );
                    let when = rng.random_range(0.0..end);
                    let shift = Vector3::new(target.x - k.distance(when), 0.0, 0.0) + offset;
                    let ghost: Vec<Point3<f64>> = k.body(when).iter().map(|p| p + shift).collect();
                    let mut g = detect(cam, &ghost, noise, &mut rng);
                    g.person_id = None;
                    if g.points.iter().filter(|p| p.is_valid()).count() >= 4 {
                        people.push(g);
                    }
                }
                let mut who = (occluded[c] == 0).then_some(0);
                if people.len() == 2 && rng.random::<bool>() {
                    people.swap(0, 1);
                    who = who.map(|_| 1);
                }
                frame_athlete.push(who);
                frame_views.push(Frame2D { people });
            }
            calibrations.push(cal);
            views.push(frame_views);
            athlete.push(frame_athlete);
        }
        SyntheticSprint {
            truth,
            speed_mps,
            contacts: k
                .contacts
                .iter()
                .filter(|c| c.touch_down_s >= 0.0 && c.toe_off_s <= end)
                .copied()
                .collect(),
            splits,
            calibrations,
            views,
            athlete,
            config: cfg,
        }
    }

    pub fn frame_count(&self) -> usize {
        self.truth.frames.len()
    }

    /// Writes the race as a Pose2Sim-style project that `stadion track` reads:
    /// `calibration/Calib.toml` and `pose/<camera>_json/<camera>_<frame>_keypoints.json`
    /// (every detection of every frame, false ones included). Needs fixed cameras: pan-tilt
    /// ones have a calibration per frame, which no single file describes.
    pub fn write_project(&self, root: &Path) -> Result<()> {
        let Some(cal) = self.calibrations.first() else {
            return Err(Error::Mismatch {
                what: "synthetic project".into(),
                reason: "the race has no frame".into(),
            });
        };
        if !self.config.fixed_cameras {
            return Err(Error::Mismatch {
                what: "synthetic project".into(),
                reason: "pan-tilt cameras have one calibration per frame; generate the race with fixed cameras".into(),
            });
        }
        let dir = root.join("calibration");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        crate::calib::write(&dir.join("Calib.toml"), cal, None)?;
        for (c, camera) in cal.cameras.iter().enumerate() {
            let keypoints = CameraKeypoints {
                camera: camera.name.clone(),
                skeleton: Skeleton::Coco17,
                frames: self.views.iter().map(|v| v[c].clone()).collect(),
            };
            crate::io::openpose::write_dir(
                &keypoints,
                &root.join("pose").join(format!("{}_json", camera.name)),
            )?;
        }
        Ok(())
    }

    /// The race as one JSON document for other tools (the aniposelib side of the benchmark):
    /// per frame, every camera in OpenCV terms (`matrix`, `dist` as `[k1, k2, p1, p2, k3]`,
    /// Rodrigues `rvec`, `tvec` in metres), the athlete's keypoints per camera (`null` for a
    /// camera that does not see them or a joint not detected) and the true joints.
    pub fn exchange_json(&self) -> serde_json::Value {
        use serde_json::json;
        let frames: Vec<serde_json::Value> = (0..self.frame_count())
            .map(|f| {
                let cameras: Vec<serde_json::Value> = self.calibrations[f]
                    .cameras
                    .iter()
                    .map(|c| {
                        let k = c.intrinsics.matrix();
                        json!({
                            "size": [c.size.0, c.size.1],
                            "matrix": (0..3).map(|r| (0..3).map(|q| k[(r, q)]).collect::<Vec<_>>()).collect::<Vec<_>>(),
                            "dist": c.distortion.to_opencv(),
                            "rvec": c.rotation.scaled_axis().as_slice(),
                            "tvec": c.translation.as_slice(),
                        })
                    })
                    .collect();
                let points: Vec<serde_json::Value> = self.athlete[f]
                    .iter()
                    .zip(&self.views[f])
                    .map(|(a, v)| match a {
                        None => serde_json::Value::Null,
                        Some(i) => v.people[*i]
                            .points
                            .iter()
                            .map(|k| k.is_valid().then_some([k.x, k.y, k.confidence]))
                            .collect(),
                    })
                    .collect();
                let truth: Vec<[f64; 3]> =
                    self.truth.frames[f].iter().map(|p| [p.x, p.y, p.z]).collect();
                json!({ "cameras": cameras, "points": points, "truth": truth })
            })
            .collect();
        json!({
            "fps": self.config.fps,
            "skeleton": "COCO_17",
            "camera_names": self.calibrations[0].names(),
            "frames": frames,
        })
    }
}

/// The cameras' fixed part: positions alternate sides of the lane and spread along it;
/// 1920×1080 with a little barrel distortion. Orientation and zoom are set per frame.
fn rig(cfg: &SprintConfig) -> Vec<Camera> {
    let per_side = cfg.cameras.div_ceil(2);
    (0..cfg.cameras)
        .map(|i| {
            // Pan-tilt cameras stand in facing pairs; fixed ones are staggered along the
            // lane: the rays of a facing pair are nearly parallel for a runner between them.
            let x = if cfg.fixed_cameras {
                cfg.distance_m * (i as f64 + 0.5) / cfg.cameras as f64
            } else {
                cfg.distance_m * ((i / 2) as f64 + 0.5) / per_side as f64
            };
            let y = if i % 2 == 0 {
                cfg.lane_y_m - cfg.camera_distance_m
            } else {
                cfg.lane_y_m + cfg.camera_distance_m
            };
            let k = Intrinsics {
                fx: 1000.0,
                fy: 1000.0,
                cx: 960.0,
                cy: 540.0,
                skew: 0.0,
            };
            let mut cam = Camera::look_at(
                &format!("cam{:02}", i + 1),
                (1920, 1080),
                k,
                Point3::new(x, y, 6.0),
                Point3::new(x, cfg.lane_y_m, 1.0),
                Vector3::z(),
            );
            cam.distortion = Distortion {
                k1: -0.05,
                k2: 0.01,
                ..Distortion::default()
            };
            cam
        })
        .collect()
}

/// One camera's detection of a body, with the noise model applied.
fn detect(cam: &Camera, body: &[Point3<f64>], noise: &NoiseModel, rng: &mut StdRng) -> Keypoints2D {
    let (w, h) = (cam.size.0 as f64, cam.size.1 as f64);
    let mut points: Vec<Keypoint2D> = body
        .iter()
        .map(|p| {
            let Some(q) = cam.project(p) else {
                return Keypoint2D::MISSING;
            };
            if !(0.0..w).contains(&q.x)
                || !(0.0..h).contains(&q.y)
                || rng.random::<f64>() < noise.dropout_rate
            {
                return Keypoint2D::MISSING;
            }
            let q = if rng.random::<f64>() < noise.outlier_rate {
                let (r, a) = (
                    rng.random_range(30.0..150.0),
                    rng.random_range(0.0..std::f64::consts::TAU),
                );
                Point2::new(q.x + r * a.cos(), q.y + r * a.sin())
            } else {
                Point2::new(
                    q.x + noise.pixel_sigma * gaussian(rng),
                    q.y + noise.pixel_sigma * gaussian(rng),
                )
            };
            Keypoint2D::new(q.x, q.y, rng.random_range(0.6..1.0))
        })
        .collect();
    if rng.random::<f64>() < noise.swap_rate {
        for (a, b) in COCO_PAIRS {
            points.swap(a, b);
        }
    }
    Keypoints2D {
        person_id: None,
        points,
    }
}

/// How the chain did against the truth: the figures of `docs/benchmarks.md`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SprintScores {
    pub frames: usize,
    /// Frames in which the athlete's track produced a pose.
    pub tracked_frames: usize,
    /// Distinct track ids given to the athlete (1 = never lost).
    pub athlete_ids: usize,
    /// Poses of tracks other than the athlete's (false people), summed over frames.
    pub false_poses: usize,
    /// Mean per-joint position error of the triangulated joints, mm.
    pub mpjpe_raw_mm: f64,
    /// The same after the zero-phase low-pass.
    pub mpjpe_filtered_mm: f64,
    /// Share of truth joints with no estimate after filtering (%).
    pub joints_missing_pct: f64,
    /// MPJPE of plain triangulation given the athlete's detections (no association), mm.
    pub mpjpe_known_association_mm: f64,
    pub speed_rmse_mps: f64,
    pub top_speed_true_mps: f64,
    pub top_speed_error_mps: f64,
    pub splits_found: usize,
    pub split_error_mean_ms: f64,
    pub split_error_max_ms: f64,
    pub contacts_true: usize,
    pub contacts_matched: usize,
    pub contact_time_error_ms: f64,
    pub flight_time_error_ms: f64,
    pub step_length_error_cm: f64,
    pub step_frequency_error_hz: f64,
    /// Time per frame, one core: triangulation given the association (best of 5 runs of
    /// each frame).
    pub triangulate_us_per_frame: f64,
    /// Wall time per frame: association + triangulation + track ids.
    pub track_us_per_frame: f64,
}

fn mean_of(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn mpjpe_mm(estimate: &Motion, truth: &Motion) -> (f64, usize) {
    let mut errors = Vec::new();
    for (e, t) in estimate.frames.iter().zip(&truth.frames) {
        for (p, q) in e.iter().zip(t) {
            if crate::filter::known(p) {
                errors.push((p - q).norm() * 1000.0);
            }
        }
    }
    (mean_of(&errors), errors.len())
}

/// Runs the chain on the race: per-frame association and triangulation with the
/// [`MultiViewTracker`](crate::associate::MultiViewTracker) (cameras updated every frame),
/// Butterworth low-pass at `cutoff_hz`, then [`analyse`](crate::biomech::analyse); and
/// scores every output against the truth.
pub fn evaluate(
    race: &SyntheticSprint,
    tracker: crate::associate::TrackerConfig,
    cutoff_hz: f64,
) -> Result<SprintScores, crate::biomech::BiomechError> {
    use crate::associate::MultiViewTracker;
    use crate::triangulate::Triangulator;
    use std::collections::HashMap;
    use std::time::Instant;

    let n = race.frame_count();
    let sk = Skeleton::Coco17;
    let joints = sk.joint_count();
    let mut mvt = MultiViewTracker::new(&race.calibrations[0], sk, tracker)
        .expect("the synthetic rig is valid");
    let mut per_id: HashMap<u32, Vec<Option<crate::keypoints::Pose3D>>> = HashMap::new();
    let mut track_time = 0.0;
    for (f, (cal, frame)) in race.calibrations.iter().zip(&race.views).enumerate() {
        let start = Instant::now();
        mvt.set_calibration(cal).expect("same cameras every frame");
        let poses = mvt.update(frame).expect("synthetic frames match the rig");
        track_time += start.elapsed().as_secs_f64();
        for p in poses {
            per_id.entry(p.track_id).or_insert_with(|| vec![None; n])[f] = Some(p.clone());
        }
    }
    // The athlete: the id nearest to the truth, frame by frame (ids may change after a loss).
    let mut athlete_poses: Vec<Option<crate::keypoints::Pose3D>> = vec![None; n];
    let mut athlete_ids = std::collections::BTreeSet::new();
    let mut false_poses = 0;
    // Longest tracks first: a short duplicate of the athlete counts as a false pose.
    let mut per_id: Vec<_> = per_id.into_iter().collect();
    per_id.sort_by_key(|(id, poses)| (std::cmp::Reverse(poses.iter().flatten().count()), *id));
    for (f, truth) in race.truth.frames.iter().enumerate() {
        let pelvis = nalgebra::center(&truth[11], &truth[12]);
        for (id, poses) in &per_id {
            let Some(p) = &poses[f] else { continue };
            let near = p
                .joints
                .iter()
                .filter(|k| k.is_valid())
                .map(|k| (k.position - pelvis).norm())
                .fold(f64::INFINITY, f64::min);
            if near < 1.5 && athlete_poses[f].is_none() {
                athlete_poses[f] = Some(p.clone());
                athlete_ids.insert(*id);
            } else {
                false_poses += 1;
            }
        }
    }
    let tracked_frames = athlete_poses.iter().filter(|p| p.is_some()).count();
    let empty = crate::keypoints::Pose3D {
        track_id: 0,
        joints: vec![crate::keypoints::Keypoint3D::MISSING; joints],
    };
    let poses: Vec<_> = athlete_poses
        .into_iter()
        .map(|p| p.unwrap_or_else(|| empty.clone()))
        .collect();
    let raw = Motion::from_poses(sk, race.config.fps, &poses);
    let (mpjpe_raw_mm, _) = mpjpe_mm(&raw, &race.truth);
    let filter = crate::filter::Butterworth::low_pass(4, cutoff_hz, race.config.fps)?;
    let smooth = raw.butterworth(&filter, (0.2 * race.config.fps) as usize);
    let (mpjpe_filtered_mm, known_joints) = mpjpe_mm(&smooth, &race.truth);

    // Triangulation alone, given which detection is the athlete.
    let mut known = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(joints);
    let mut tri_time = 0.0;
    for f in 0..n {
        let tri =
            Triangulator::new(&race.calibrations[f], tracker.triangulation).expect("valid rig");
        let views: Vec<Option<&Keypoints2D>> = race.athlete[f]
            .iter()
            .zip(&race.views[f])
            .map(|(a, v)| a.map(|i| &v.people[i]))
            .collect();
        // Best of 5: preemption by other load on a shared machine does not count.
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let start = Instant::now();
            tri.triangulate_pose(&views, joints, &mut out);
            best = best.min(start.elapsed().as_secs_f64());
        }
        tri_time += best;
        known.push(crate::keypoints::Pose3D {
            track_id: 1,
            joints: out.clone(),
        });
    }
    let (mpjpe_known_association_mm, _) = mpjpe_mm(
        &Motion::from_poses(sk, race.config.fps, &known),
        &race.truth,
    );

    let analysis = crate::biomech::analyse(&smooth, &crate::biomech::AnalysisConfig::default())?;
    let mut speed_err = Vec::new();
    for (m, v) in analysis.frames.iter().zip(&race.speed_mps) {
        if m.speed_lane_mps.is_finite() {
            speed_err.push((m.speed_lane_mps - v).powi(2));
        }
    }
    let top_speed_true_mps = race.speed_mps.iter().copied().fold(0.0, f64::max);
    let split_err: Vec<f64> = analysis
        .splits
        .iter()
        .filter_map(|s| {
            let (_, t) = race.splits.iter().find(|(d, _)| *d == s.distance_m)?;
            Some((s.time_s - t).abs() * 1000.0)
        })
        .collect();
    // Match each true contact to a detected one of the same foot within 60 ms.
    let matched: Vec<Option<&crate::biomech::Contact>> = race
        .contacts
        .iter()
        .map(|c| {
            analysis
                .contacts
                .iter()
                .filter(|d| d.side == c.side)
                .min_by(|a, b| {
                    (a.touch_down_s - c.touch_down_s)
                        .abs()
                        .total_cmp(&(b.touch_down_s - c.touch_down_s).abs())
                })
                .filter(|d| (d.touch_down_s - c.touch_down_s).abs() < 0.06)
        })
        .collect();
    let (mut ct, mut ft, mut sl, mut sf) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (k, (c, m)) in race.contacts.iter().zip(&matched).enumerate() {
        let Some(m) = m else { continue };
        ct.push((m.contact_time_s - (c.toe_off_s - c.touch_down_s)).abs() * 1000.0);
        if k == 0 {
            continue;
        }
        let (p, Some(pm)) = (&race.contacts[k - 1], matched[k - 1]) else {
            continue;
        };
        ft.push(((m.touch_down_s - pm.toe_off_s) - (c.touch_down_s - p.toe_off_s)).abs() * 1000.0);
        sl.push(((m.position_m - pm.position_m) - (c.position_m - p.position_m)).abs() * 100.0);
        sf.push(
            (1.0 / (m.touch_down_s - pm.touch_down_s) - 1.0 / (c.touch_down_s - p.touch_down_s))
                .abs(),
        );
    }
    Ok(SprintScores {
        frames: n,
        tracked_frames,
        athlete_ids: athlete_ids.len(),
        false_poses,
        mpjpe_raw_mm,
        mpjpe_filtered_mm,
        joints_missing_pct: 100.0 * (1.0 - known_joints as f64 / (n * joints) as f64),
        mpjpe_known_association_mm,
        speed_rmse_mps: mean_of(&speed_err).sqrt(),
        top_speed_true_mps,
        top_speed_error_mps: (analysis.top_speed_mps - top_speed_true_mps).abs(),
        splits_found: split_err.len(),
        split_error_mean_ms: mean_of(&split_err),
        split_error_max_ms: split_err.iter().copied().fold(f64::NAN, f64::max),
        contacts_true: race.contacts.len(),
        contacts_matched: matched.iter().filter(|m| m.is_some()).count(),
        contact_time_error_ms: mean_of(&ct),
        flight_time_error_ms: mean_of(&ft),
        step_length_error_cm: mean_of(&sl),
        step_frequency_error_hz: mean_of(&sf),
        triangulate_us_per_frame: 1e6 * tri_time / n as f64,
        track_us_per_frame: 1e6 * track_time / n as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_race_is_consistent() {
        let race = SyntheticSprint::generate(&SprintConfig::default());
        let n = race.frame_count();
        assert!(n > 400 && n < 700, "{n} frames");
        // 100 m in roughly 10 s, splits increasing.
        let (d, t) = *race.splits.last().unwrap();
        assert_eq!(d, 100.0);
        assert!(t > 9.0 && t < 11.0, "100 m in {t} s");
        assert!(race.splits.windows(2).all(|w| w[1].1 > w[0].1));
        // Bone lengths hold (thigh and shank never stretched by more than 1 mm).
        for f in &race.truth.frames {
            assert!(((f[11] - f[13]).norm() - THIGH).abs() < 1e-9);
            let stretch = (f[13] - f[15]).norm() - SHANK;
            // At full extension the IK clamps: the shank then stretches by a few mm.
            assert!(stretch.abs() < 0.01, "shank off by {stretch}");
        }
        // Steps alternate and lengthen to ~2.5 m at top speed.
        let last = race.contacts.windows(2).last().unwrap();
        assert_ne!(last[0].side, last[1].side);
        let step = last[1].position_m - last[0].position_m;
        assert!(step > 2.3 && step < 2.7, "{step}");
        // The athlete is seen: every camera detects him in most frames.
        let seen = race
            .athlete
            .iter()
            .flatten()
            .filter(|a| a.is_some())
            .count();
        assert!(seen as f64 > 0.85 * (n * 4) as f64, "{seen}");
    }

    /// The goals, on the default race (4 cameras 30 m from the lane, 3 px noise,
    /// 5 % outliers); `stadion track synth` prints the same figures (docs/benchmarks.md).
    #[test]
    fn the_chain_meets_the_goals() {
        let race = SyntheticSprint::generate(&SprintConfig::default());
        let s = evaluate(&race, crate::associate::TrackerConfig::default(), 8.0).unwrap();
        eprintln!("{s:#?}");
        assert_eq!(s.athlete_ids, 1, "{s:?}");
        assert!(s.mpjpe_filtered_mm < 30.0, "{s:?}");
        assert!(s.top_speed_error_mps < 0.1, "{s:?}");
        assert!(s.split_error_max_ms < 10.0, "{s:?}");
        assert!(s.step_length_error_cm < 5.0, "{s:?}");
        // Foot events from the extrapolated speed ramps (27 ms with threshold crossings).
        assert!(s.contact_time_error_ms < 10.0, "{s:?}");
        assert!(s.flight_time_error_ms < 10.0, "{s:?}");
    }

    #[test]
    fn a_fixed_camera_race_is_a_project_the_pipeline_reads() {
        let config = SprintConfig {
            distance_m: 10.0,
            fixed_cameras: true,
            ..SprintConfig::default()
        };
        let race = SyntheticSprint::generate(&config);
        let dir = tempfile::tempdir().unwrap();
        race.write_project(dir.path()).unwrap();
        let (project, cal) = crate::pipeline::Project::open(dir.path()).unwrap();
        let truth = &race.calibrations[race.frame_count() / 2];
        assert_eq!(cal.names(), truth.names());
        let p = race.truth.frames[0][0];
        for (a, b) in cal.cameras.iter().zip(&truth.cameras) {
            assert!((a.project(&p).unwrap() - b.project(&p).unwrap()).norm() < 1e-6);
        }
        let keypoints = crate::pipeline::load_keypoints(&cal, &project.pose_dirs, None).unwrap();
        assert_eq!(keypoints.len(), 4);
        for (read, written) in keypoints[2].frames.iter().zip(&race.views) {
            assert_eq!(read.people.len(), written[2].people.len());
            for (a, b) in read.people.iter().zip(&written[2].people) {
                for (p, q) in a.points.iter().zip(&b.points) {
                    assert_eq!(p.is_valid(), q.is_valid());
                    assert!(!p.is_valid() || (p.x - q.x).abs() + (p.y - q.y).abs() < 1e-9);
                }
            }
        }
        // Every joint of the truth is in frame for every fixed camera.
        for frame in &race.truth.frames {
            for cam in &cal.cameras {
                for p in frame {
                    let q = cam.project(p).unwrap();
                    assert!((0.0..1920.0).contains(&q.x) && (0.0..1080.0).contains(&q.y));
                }
            }
        }
        let moving = SyntheticSprint::generate(&SprintConfig {
            distance_m: 10.0,
            ..SprintConfig::default()
        });
        let e = moving.write_project(dir.path()).unwrap_err().to_string();
        assert!(e.contains("fixed cameras"), "{e}");
    }

    #[test]
    fn foot_events_of_the_true_motion_are_within_a_few_ms() {
        let race = SyntheticSprint::generate(&SprintConfig {
            distance_m: 60.0,
            ..SprintConfig::default()
        });
        let a = crate::biomech::analyse(&race.truth, &crate::biomech::AnalysisConfig::default())
            .unwrap();
        let mut errors = Vec::new();
        for c in &race.contacts {
            let Some(d) = a
                .contacts
                .iter()
                .filter(|d| d.side == c.side)
                .find(|d| (d.touch_down_s - c.touch_down_s).abs() < 0.06)
            else {
                continue;
            };
            errors.push((d.touch_down_s - c.touch_down_s) * 1000.0);
            errors.push((d.toe_off_s - c.toe_off_s) * 1000.0);
        }
        assert!(errors.len() >= 2 * (race.contacts.len() - 2), "{errors:?}");
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        let worst = errors.iter().map(|e| e.abs()).fold(0.0, f64::max);
        eprintln!("event error mean {mean:.2} ms, worst {worst:.2} ms: {errors:.1?}");
        assert!(mean.abs() < 3.0 && worst < 10.0, "{errors:?}");
    }
}
