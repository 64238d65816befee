//! Sprint biomechanics for broadcast, from one athlete's (filtered) 3D motion.
//!
//! * Centre of mass from a segment model with de Leva's (1996) adjusted Zatsiorsky–Seluyanov
//!   mass fractions and centre-of-mass positions ([`centre_of_mass`]).
//! * Distance along the lane, speed and acceleration (along the lane and in 3D), top speed.
//! * Foot events (touch-down, toe-off) from ankle speed and height; ground-contact and flight
//!   times; step and stride length and frequency.
//! * Split times at given distances, interpolated between frames.
//! * Joint angles in the sagittal plane: knee and hip flexion, trunk lean.
//!
//! Geometry: the lane runs along [`TrackGeometry::lane`] from the start line point
//! [`TrackGeometry::start`], with [`TrackGeometry::up`] vertical (defaults: +x, origin, +z).

use std::io::Write;
use std::path::Path;

use nalgebra::{Point3, Vector3};
use serde::Serialize;

use crate::filter::{Butterworth, FilterError, Motion, known};
use crate::skeleton::Skeleton;

/// Why an analysis could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BiomechError {
    /// The keypoint layout lacks a joint the model needs.
    #[error("skeleton {skeleton} has no joint `{joint}`, needed for {purpose}")]
    MissingJoint {
        skeleton: &'static str,
        joint: &'static str,
        purpose: &'static str,
    },
    /// Too little data (frames, known centre-of-mass positions).
    #[error("{0}")]
    TooShort(String),
    /// An option is out of range.
    #[error("option `{field}`: {reason}")]
    Option { field: &'static str, reason: String },
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// Writing a table failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where the lane is in the world frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackGeometry {
    /// A point on the start line (distance 0).
    pub start: Point3<f64>,
    /// Running direction (normalised on use).
    pub lane: Vector3<f64>,
    /// Vertical (normalised on use).
    pub up: Vector3<f64>,
}

impl Default for TrackGeometry {
    fn default() -> Self {
        TrackGeometry {
            start: Point3::origin(),
            lane: Vector3::x(),
            up: Vector3::z(),
        }
    }
}

/// Settings of [`analyse`].
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisConfig {
    pub geometry: TrackGeometry,
    /// Time of frame 0 relative to the start signal, seconds.
    pub time_of_first_frame_s: f64,
    /// Distances (m) at which split times are reported.
    pub splits_m: Vec<f64>,
    /// Low-pass applied to the centre of mass before differentiating: below the stride
    /// frequency (2–2.5 Hz; arms and legs swing the centre of mass back and forth once per
    /// stride) so that speed is the broadcast "running speed", not the intra-stride
    /// oscillation. A sprint's acceleration phase has no content above ~0.5 Hz.
    pub speed_cutoff_hz: f64,
    /// A foot is on the ground while its horizontal speed is below this fraction of the
    /// centre of mass's speed (with a floor of 1 m/s)...
    pub contact_speed_ratio: f64,
    /// ...and its ankle is at most this high above the lowest ankle height seen (m).
    pub contact_height_m: f64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            geometry: TrackGeometry::default(),
            time_of_first_frame_s: 0.0,
            splits_m: (1..=10).map(|i| 10.0 * i as f64).collect(),
            speed_cutoff_hz: 1.0,
            contact_speed_ratio: 0.3,
            contact_height_m: 0.25,
        }
    }
}

/// Which foot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Side {
    Left,
    Right,
}

/// Per-frame metrics (one row of the biomechanics table).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameMetrics {
    pub frame: usize,
    pub time_s: f64,
    /// Centre of mass, world coordinates (m); `NaN` if unknown.
    pub com: [f64; 3],
    /// Distance of the centre of mass along the lane from the start line (m).
    pub distance_m: f64,
    pub speed_lane_mps: f64,
    pub speed_3d_mps: f64,
    pub accel_lane_mps2: f64,
    pub accel_3d_mps2: f64,
    /// Knee flexion (0 = straight), degrees.
    pub knee_left_deg: f64,
    pub knee_right_deg: f64,
    /// Hip flexion in the sagittal plane relative to the trunk (positive: thigh forward).
    pub hip_left_deg: f64,
    pub hip_right_deg: f64,
    /// Trunk lean from vertical in the sagittal plane (positive: forward).
    pub trunk_lean_deg: f64,
    /// Feet on the ground in this frame.
    pub left_contact: bool,
    pub right_contact: bool,
}

/// One ground contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contact {
    pub side: Side,
    pub touch_down_s: f64,
    pub toe_off_s: f64,
    pub contact_time_s: f64,
    /// Distance along the lane of the ankle during the contact (median), m.
    pub position_m: f64,
}

/// One step: from one contact to the next (normally the other foot).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// The contact that ends the step.
    pub side: Side,
    pub touch_down_s: f64,
    pub length_m: f64,
    pub time_s: f64,
    pub frequency_hz: f64,
    /// Flight from the previous toe-off to this touch-down (s).
    pub flight_time_s: f64,
    /// Contact time of the step's landing contact (s).
    pub contact_time_s: f64,
    /// Stride (two steps, same foot to same foot) ending here, if there was a step before.
    pub stride_length_m: Option<f64>,
    pub stride_frequency_hz: Option<f64>,
}

/// Time at which the centre of mass crossed a distance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    pub distance_m: f64,
    /// Since the start signal.
    pub time_s: f64,
    /// Since the previous split (or the start).
    pub interval_s: f64,
    /// Mean speed over the interval.
    pub mean_speed_mps: f64,
}

/// Everything [`analyse`] finds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub fps: f64,
    pub frames: Vec<FrameMetrics>,
    pub top_speed_mps: f64,
    pub top_speed_time_s: f64,
    pub top_speed_distance_m: f64,
    pub splits: Vec<Split>,
    pub contacts: Vec<Contact>,
    pub steps: Vec<Step>,
    /// Means over the steps.
    pub mean_step_length_m: f64,
    pub mean_step_frequency_hz: f64,
    pub mean_contact_time_s: f64,
    pub mean_flight_time_s: f64,
}

/// A body segment of the mass model: mass fraction and centre of mass as a fraction of the
/// way from its proximal to its distal end.
struct Segment {
    mass: f64,
    com: f64,
    proximal: Landmark,
    distal: Landmark,
}

/// A point of the body computed from keypoints.
#[derive(Clone, Copy)]
enum Landmark {
    Joint(&'static str),
    Mid(&'static str, &'static str),
    /// The hand's end: beyond the wrist along the forearm by `0.32 × forearm` (de Leva:
    /// wrist→3rd metacarpale 86 mm for a 269 mm forearm), since COCO has no hand points.
    HandEnd(&'static str, &'static str),
}

/// de Leva (1996) table 4, male. Keypoint proxies (COCO has no vertex, C7, hands or feet):
/// the head's centre of mass is taken at the mid-ears (de Leva's lies half way from the
/// vertex to C7, at ear level), the suprasternale at the mid-shoulders and the foot's at the
/// ankle (4–5 cm away, 1.4 % of the mass: under 1 mm of whole-body error).
#[rustfmt::skip]
const DE_LEVA: &[Segment] = &[
    Segment { mass: 0.0694, com: 0.0, proximal: Landmark::Mid("LEar", "REar"), distal: Landmark::Mid("LEar", "REar") },
    Segment { mass: 0.4346, com: 0.4486, proximal: Landmark::Mid("LShoulder", "RShoulder"), distal: Landmark::Mid("LHip", "RHip") },
    Segment { mass: 0.0271, com: 0.5772, proximal: Landmark::Joint("LShoulder"), distal: Landmark::Joint("LElbow") },
    Segment { mass: 0.0271, com: 0.5772, proximal: Landmark::Joint("RShoulder"), distal: Landmark::Joint("RElbow") },
    Segment { mass: 0.0162, com: 0.4574, proximal: Landmark::Joint("LElbow"), distal: Landmark::Joint("LWrist") },
    Segment { mass: 0.0162, com: 0.4574, proximal: Landmark::Joint("RElbow"), distal: Landmark::Joint("RWrist") },
    Segment { mass: 0.0061, com: 0.79, proximal: Landmark::Joint("LWrist"), distal: Landmark::HandEnd("LElbow", "LWrist") },
    Segment { mass: 0.0061, com: 0.79, proximal: Landmark::Joint("RWrist"), distal: Landmark::HandEnd("RElbow", "RWrist") },
    Segment { mass: 0.1416, com: 0.4095, proximal: Landmark::Joint("LHip"), distal: Landmark::Joint("LKnee") },
    Segment { mass: 0.1416, com: 0.4095, proximal: Landmark::Joint("RHip"), distal: Landmark::Joint("RKnee") },
    Segment { mass: 0.0433, com: 0.4459, proximal: Landmark::Joint("LKnee"), distal: Landmark::Joint("LAnkle") },
    Segment { mass: 0.0433, com: 0.4459, proximal: Landmark::Joint("RKnee"), distal: Landmark::Joint("RAnkle") },
    Segment { mass: 0.0137, com: 0.0, proximal: Landmark::Joint("LAnkle"), distal: Landmark::Joint("LAnkle") },
    Segment { mass: 0.0137, com: 0.0, proximal: Landmark::Joint("RAnkle"), distal: Landmark::Joint("RAnkle") },
];

/// The segment model resolved to joint indices of one skeleton.
#[derive(Debug, Clone)]
pub struct MassModel {
    /// (mass fraction, com fraction, proximal, distal) with landmarks as index lists.
    segments: Vec<(f64, f64, Resolved, Resolved)>,
}

#[derive(Debug, Clone, Copy)]
enum Resolved {
    Joint(usize),
    Mid(usize, usize),
    HandEnd(usize, usize),
}

fn joint(sk: Skeleton, name: &'static str, purpose: &'static str) -> Result<usize, BiomechError> {
    sk.index_of(name).ok_or(BiomechError::MissingJoint {
        skeleton: sk.name(),
        joint: name,
        purpose,
    })
}

impl Resolved {
    fn point(self, f: &[Point3<f64>]) -> Point3<f64> {
        match self {
            Resolved::Joint(a) => f[a],
            Resolved::Mid(a, b) => nalgebra::center(&f[a], &f[b]),
            Resolved::HandEnd(elbow, wrist) => f[wrist] + (f[wrist] - f[elbow]) * 0.32,
        }
    }
}

impl MassModel {
    pub fn new(sk: Skeleton) -> Result<Self, BiomechError> {
        let resolve = |l: Landmark| -> Result<Resolved, BiomechError> {
            let p = "the centre of mass";
            Ok(match l {
                Landmark::Joint(a) => Resolved::Joint(joint(sk, a, p)?),
                Landmark::Mid(a, b) => Resolved::Mid(joint(sk, a, p)?, joint(sk, b, p)?),
                Landmark::HandEnd(a, b) => Resolved::HandEnd(joint(sk, a, p)?, joint(sk, b, p)?),
            })
        };
        let segments = DE_LEVA
            .iter()
            .map(|s| Ok((s.mass, s.com, resolve(s.proximal)?, resolve(s.distal)?)))
            .collect::<Result<_, BiomechError>>()?;
        Ok(MassModel { segments })
    }

    /// Whole-body centre of mass of one frame; `None` if a joint it needs is unknown.
    pub fn centre_of_mass(&self, frame: &[Point3<f64>]) -> Option<Point3<f64>> {
        let mut sum = Vector3::zeros();
        for &(mass, com, prox, dist) in &self.segments {
            let (a, b) = (prox.point(frame), dist.point(frame));
            if !(known(&a) && known(&b)) {
                return None;
            }
            sum += (a.coords + (b - a) * com) * mass;
        }
        Some(Point3::from(sum))
    }
}

/// Whole-body centre of mass of one frame of `skeleton` keypoints (de Leva 1996 model).
pub fn centre_of_mass(
    skeleton: Skeleton,
    frame: &[Point3<f64>],
) -> Result<Option<Point3<f64>>, BiomechError> {
    Ok(MassModel::new(skeleton)?.centre_of_mass(frame))
}

/// Central differences (one-sided at the ends); `NaN` propagates.
fn derivative(x: &[f64], dt: f64) -> Vec<f64> {
    let n = x.len();
    (0..n)
        .map(|i| match (i, n) {
            (_, 0 | 1) => f64::NAN,
            (0, _) => (x[1] - x[0]) / dt,
            (i, n) if i == n - 1 => (x[i] - x[i - 1]) / dt,
            (i, _) => (x[i + 1] - x[i - 1]) / (2.0 * dt),
        })
        .collect()
}

/// Time at which a (mostly increasing) series first reaches `level`, interpolated linearly
/// between samples; `None` if it never does.
fn crossing(x: &[f64], level: f64, time: impl Fn(f64) -> f64) -> Option<f64> {
    x.windows(2).enumerate().find_map(|(i, w)| {
        (w[0].is_finite() && w[1].is_finite() && w[0] < level && w[1] >= level)
            .then(|| time(i as f64 + (level - w[0]) / (w[1] - w[0])))
    })
}

/// Where a foot's speed ramp meets `level` (its speed on the ground): the line through the
/// speeds at frames `a` and `b` (`b` next to the contact, `a` one frame further from it),
/// extrapolated towards the contact, as a fractional frame index. `None` unless the speed
/// falls towards the contact and the meeting point is at most three frames past `b`.
fn ramp_meets(speed: &[f64], a: usize, b: usize, level: f64) -> Option<f64> {
    let (sa, sb) = (*speed.get(a)?, *speed.get(b)?);
    if !(sa.is_finite() && sb.is_finite() && level.is_finite() && sa > sb && sb >= level) {
        return None;
    }
    let frames = (sb - level) / (sa - sb);
    (frames <= 3.0).then_some(b as f64 + (b as f64 - a as f64) * frames)
}

/// Signed angle (degrees) of `v` in the sagittal plane measured from `reference_down`-ish:
/// `atan2(v·lane, −v·up)`, so a vector pointing straight down is 0 and forward is positive.
fn sagittal_from_down(v: Vector3<f64>, lane: &Vector3<f64>, up: &Vector3<f64>) -> f64 {
    v.dot(lane).atan2(-v.dot(up)).to_degrees()
}

/// Included angle at `b` of the chain a–b–c, as flexion (180° − angle), degrees.
fn flexion(a: Point3<f64>, b: Point3<f64>, c: Point3<f64>) -> f64 {
    let (u, v) = (a - b, c - b);
    let cos = u.dot(&v) / (u.norm() * v.norm());
    180.0 - cos.clamp(-1.0, 1.0).acos().to_degrees()
}

/// Joint indices the analysis needs.
struct Joints {
    hips: [usize; 2],
    knees: [usize; 2],
    ankles: [usize; 2],
    shoulders: [usize; 2],
}

impl Joints {
    fn new(sk: Skeleton) -> Result<Self, BiomechError> {
        let j = |n| joint(sk, n, "joint angles and foot events");
        Ok(Joints {
            hips: [j("LHip")?, j("RHip")?],
            knees: [j("LKnee")?, j("RKnee")?],
            ankles: [j("LAnkle")?, j("RAnkle")?],
            shoulders: [j("LShoulder")?, j("RShoulder")?],
        })
    }
}

/// Runs the whole analysis on a motion (ideally already smoothed with
/// [`Motion::butterworth`]: foot events and joint angles use it as given).
pub fn analyse(motion: &Motion, config: &AnalysisConfig) -> Result<Analysis, BiomechError> {
    if !(motion.fps.is_finite() && motion.fps > 0.0) {
        return Err(BiomechError::Option {
            field: "fps",
            reason: format!("must be positive, got {}", motion.fps),
        });
    }
    let lane = config.geometry.lane.try_normalize(1e-12);
    let up = config.geometry.up.try_normalize(1e-12);
    let (Some(lane), Some(up)) = (lane, up) else {
        return Err(BiomechError::Option {
            field: "geometry",
            reason: "lane and up directions must be non-zero".into(),
        });
    };
    // Only the horizontal part of the lane direction counts as distance.
    let lane = (lane - up * lane.dot(&up))
        .try_normalize(1e-9)
        .ok_or_else(|| BiomechError::Option {
            field: "geometry.lane",
            reason: "the lane direction is vertical".into(),
        })?;
    let n = motion.len();
    if n < 8 {
        return Err(BiomechError::TooShort(format!(
            "{n} frames: at least 8 are needed for speeds and events"
        )));
    }
    let model = MassModel::new(motion.skeleton)?;
    let joints = Joints::new(motion.skeleton)?;
    let dt = 1.0 / motion.fps;
    let time = |i: f64| config.time_of_first_frame_s + i * dt;

    let com: Vec<Point3<f64>> = motion
        .frames
        .iter()
        .map(|f| model.centre_of_mass(f).unwrap_or(crate::filter::UNKNOWN))
        .collect();
    if com.iter().filter(|p| known(p)).count() < 8 {
        return Err(BiomechError::TooShort(
            "fewer than 8 frames with a known centre of mass".into(),
        ));
    }
    // Smooth the centre of mass below the step frequency, bridging gaps of up to 0.5 s.
    let smooth = Butterworth::low_pass(4, config.speed_cutoff_hz, motion.fps)?;
    let max_gap = (0.5 * motion.fps) as usize;
    let axis = |k: usize| -> Vec<f64> {
        smooth.filtfilt_gaps(&com.iter().map(|p| p[k]).collect::<Vec<_>>(), max_gap)
    };
    let smoothed: [Vec<f64>; 3] = [axis(0), axis(1), axis(2)];
    let smoothed_point = |i: usize| Vector3::new(smoothed[0][i], smoothed[1][i], smoothed[2][i]);
    let start = config.geometry.start.coords;
    let distance: Vec<f64> = (0..n)
        .map(|i| (smoothed_point(i) - start).dot(&lane))
        .collect();
    let velocity: [Vec<f64>; 3] = std::array::from_fn(|k| derivative(&smoothed[k], dt));
    let vel = |i: usize| Vector3::new(velocity[0][i], velocity[1][i], velocity[2][i]);
    let speed_lane: Vec<f64> = (0..n).map(|i| vel(i).dot(&lane)).collect();
    let speed_3d: Vec<f64> = (0..n).map(|i| vel(i).norm()).collect();
    let accel: [Vec<f64>; 3] = std::array::from_fn(|k| derivative(&velocity[k], dt));
    let acc = |i: usize| Vector3::new(accel[0][i], accel[1][i], accel[2][i]);

    // Top speed.
    let (top_i, top_speed) = speed_lane
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, f64::NAN));

    // Splits.
    let mut splits = Vec::new();
    let (mut prev_t, mut prev_d) = (0.0, 0.0);
    for &d in &config.splits_m {
        if let Some(t) = crossing(&distance, d, time) {
            let interval = t - prev_t;
            splits.push(Split {
                distance_m: d,
                time_s: t,
                interval_s: interval,
                mean_speed_mps: (d - prev_d) / interval,
            });
            (prev_t, prev_d) = (t, d);
        }
    }

    // Foot contacts.
    let mut contacts = Vec::new();
    let mut in_contact = [vec![false; n], vec![false; n]];
    for (s, side) in [Side::Left, Side::Right].into_iter().enumerate() {
        let a = joints.ankles[s];
        let pos: [Vec<f64>; 3] =
            std::array::from_fn(|k| motion.frames.iter().map(|f| f[a][k]).collect());
        let v: [Vec<f64>; 3] = std::array::from_fn(|k| derivative(&pos[k], dt));
        let p = |i: usize| Vector3::new(pos[0][i], pos[1][i], pos[2][i]);
        let height: Vec<f64> = (0..n).map(|i| p(i).dot(&up)).collect();
        let mut sorted: Vec<f64> = height.iter().copied().filter(|h| h.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let Some(&ground) = sorted.get(sorted.len() / 50) else {
            continue;
        };
        let horizontal: Vec<f64> = (0..n)
            .map(|i| {
                let vi = Vector3::new(v[0][i], v[1][i], v[2][i]);
                (vi - up * vi.dot(&up)).norm()
            })
            .collect();
        // Margin below the threshold: positive while on the ground.
        let margin: Vec<f64> = (0..n)
            .map(|i| {
                let limit = (config.contact_speed_ratio * speed_lane[i].abs()).max(1.0);
                if height[i] - ground > config.contact_height_m {
                    -1.0
                } else {
                    limit - horizontal[i]
                }
            })
            .collect();
        let mut i = 0;
        while i < n {
            if margin[i].is_nan() || margin[i] <= 0.0 {
                i += 1;
                continue;
            }
            let begin = i;
            while i < n && margin[i] > 0.0 {
                in_contact[s][i] = true;
                i += 1;
            }
            // A contact cut by the start or end of the data has no known duration.
            if begin == 0 || i == n || !margin[begin - 1].is_finite() || !margin[i].is_finite() {
                continue;
            }
            // The threshold is crossed while the foot is still slowing down (and the
            // low-pass spreads the stop over a few frames), which made contacts ~25 ms too
            // long; the event is where the foot's speed ramp, extrapolated, meets its speed
            // on the ground. The threshold crossing is the fallback.
            let frac = |a: usize, b: usize| a as f64 + margin[a] / (margin[a] - margin[b]);
            let mut still: Vec<f64> = horizontal[begin..i]
                .iter()
                .copied()
                .filter(|h| h.is_finite())
                .collect();
            let level = median(&mut still);
            let td = begin
                .checked_sub(2)
                .and_then(|a| ramp_meets(&horizontal, a, begin - 1, level))
                .unwrap_or_else(|| frac(begin - 1, begin));
            let to = ramp_meets(&horizontal, i + 1, i, level).unwrap_or_else(|| frac(i - 1, i));
            let (td, to) = (time(td), time(to));
            let mut along: Vec<f64> = (begin..i).map(|k| (p(k) - start).dot(&lane)).collect();
            contacts.push(Contact {
                side,
                touch_down_s: td,
                toe_off_s: to,
                contact_time_s: to - td,
                position_m: median(&mut along),
            });
        }
    }
    contacts.sort_by(|a, b| a.touch_down_s.total_cmp(&b.touch_down_s));

    let mut steps: Vec<Step> = Vec::new();
    for (k, w) in contacts.windows(2).enumerate() {
        let (prev, c) = (&w[0], &w[1]);
        let time_s = c.touch_down_s - prev.touch_down_s;
        let stride = (k >= 1).then(|| &contacts[k - 1]);
        steps.push(Step {
            side: c.side,
            touch_down_s: c.touch_down_s,
            length_m: c.position_m - prev.position_m,
            time_s,
            frequency_hz: 1.0 / time_s,
            flight_time_s: c.touch_down_s - prev.toe_off_s,
            contact_time_s: c.contact_time_s,
            stride_length_m: stride.map(|s| c.position_m - s.position_m),
            stride_frequency_hz: stride.map(|s| 1.0 / (c.touch_down_s - s.touch_down_s)),
        });
    }
    let mean = |v: &mut dyn Iterator<Item = f64>| {
        let (s, c) = v.fold((0.0, 0usize), |(s, c), x| (s + x, c + 1));
        if c == 0 { f64::NAN } else { s / c as f64 }
    };

    // Per-frame table with joint angles.
    let frames = (0..n)
        .map(|i| {
            let f = &motion.frames[i];
            let mid_hip = nalgebra::center(&f[joints.hips[0]], &f[joints.hips[1]]);
            let mid_sh = nalgebra::center(&f[joints.shoulders[0]], &f[joints.shoulders[1]]);
            let trunk_down = sagittal_from_down(mid_hip - mid_sh, &lane, &up);
            let trunk_lean = -trunk_down;
            let knee =
                |s: usize| flexion(f[joints.hips[s]], f[joints.knees[s]], f[joints.ankles[s]]);
            let hip = |s: usize| {
                sagittal_from_down(f[joints.knees[s]] - f[joints.hips[s]], &lane, &up) - trunk_down
            };
            FrameMetrics {
                frame: i,
                time_s: time(i as f64),
                com: [com[i].x, com[i].y, com[i].z],
                distance_m: distance[i],
                speed_lane_mps: speed_lane[i],
                speed_3d_mps: speed_3d[i],
                accel_lane_mps2: acc(i).dot(&lane),
                accel_3d_mps2: acc(i).norm(),
                knee_left_deg: knee(0),
                knee_right_deg: knee(1),
                hip_left_deg: hip(0),
                hip_right_deg: hip(1),
                trunk_lean_deg: trunk_lean,
                left_contact: in_contact[0][i],
                right_contact: in_contact[1][i],
            }
        })
        .collect();

    Ok(Analysis {
        fps: motion.fps,
        frames,
        top_speed_mps: top_speed,
        top_speed_time_s: time(top_i as f64),
        top_speed_distance_m: distance[top_i],
        splits,
        mean_step_length_m: mean(&mut steps.iter().map(|s| s.length_m)),
        mean_step_frequency_hz: mean(&mut steps.iter().map(|s| s.frequency_hz)),
        mean_contact_time_s: mean(&mut contacts.iter().map(|c| c.contact_time_s)),
        mean_flight_time_s: mean(&mut steps.iter().map(|s| s.flight_time_s)),
        contacts,
        steps,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

impl Analysis {
    /// Writes `frames.csv`, `steps.csv`, `splits.csv` and `analysis.json` into `dir`.
    pub fn write_tables(&self, dir: &Path) -> Result<(), BiomechError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| BiomechError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let p = dir.join("frames.csv");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&p).map_err(io(&p))?);
        writeln!(
            w,
            "frame,time_s,com_x,com_y,com_z,distance_m,speed_lane_mps,speed_3d_mps,accel_lane_mps2,accel_3d_mps2,knee_left_deg,knee_right_deg,hip_left_deg,hip_right_deg,trunk_lean_deg,left_contact,right_contact"
        )
        .map_err(io(&p))?;
        for f in &self.frames {
            writeln!(
                w,
                "{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.3},{:.3},{:.3},{:.3},{:.1},{:.1},{:.1},{:.1},{:.1},{},{}",
                f.frame, f.time_s, f.com[0], f.com[1], f.com[2], f.distance_m, f.speed_lane_mps,
                f.speed_3d_mps, f.accel_lane_mps2, f.accel_3d_mps2, f.knee_left_deg, f.knee_right_deg,
                f.hip_left_deg, f.hip_right_deg, f.trunk_lean_deg, u8::from(f.left_contact),
                u8::from(f.right_contact)
            )
            .map_err(io(&p))?;
        }
        w.flush().map_err(io(&p))?;
        let p = dir.join("steps.csv");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&p).map_err(io(&p))?);
        writeln!(w, "side,touch_down_s,length_m,time_s,frequency_hz,contact_time_s,flight_time_s,stride_length_m")
            .map_err(io(&p))?;
        for s in &self.steps {
            writeln!(
                w,
                "{:?},{:.4},{:.3},{:.4},{:.3},{:.4},{:.4},{}",
                s.side,
                s.touch_down_s,
                s.length_m,
                s.time_s,
                s.frequency_hz,
                s.contact_time_s,
                s.flight_time_s,
                s.stride_length_m
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_default()
            )
            .map_err(io(&p))?;
        }
        w.flush().map_err(io(&p))?;
        let p = dir.join("splits.csv");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&p).map_err(io(&p))?);
        writeln!(w, "distance_m,time_s,interval_s,mean_speed_mps").map_err(io(&p))?;
        for s in &self.splits {
            writeln!(
                w,
                "{},{:.4},{:.4},{:.3}",
                s.distance_m, s.time_s, s.interval_s, s.mean_speed_mps
            )
            .map_err(io(&p))?;
        }
        w.flush().map_err(io(&p))?;
        let p = dir.join("analysis.json");
        let json = serde_json::to_vec_pretty(self).map_err(|e| BiomechError::Io {
            path: p.display().to_string(),
            source: e.into(),
        })?;
        std::fs::write(&p, json).map_err(io(&p))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A standing figure (COCO-17) with its feet on the ground at x = `x`.
    fn standing(x: f64) -> Vec<Point3<f64>> {
        // (forward, sideways to the left, height) of the left-hand joint of each COCO-17
        // pair, eyes to ankles; the right one mirrors it.
        #[rustfmt::skip]
        let left = [
            (0.06, 0.03, 1.73), (0.0, 0.08, 1.70), (0.0, 0.2, 1.45), (0.0, 0.22, 1.15),
            (0.0, 0.22, 0.88), (0.0, 0.09, 0.95), (0.0, 0.09, 0.5), (0.0, 0.09, 0.08),
        ];
        let nose = Point3::new(x + 0.08, 0.0, 1.70);
        std::iter::once(nose)
            .chain(
                left.into_iter()
                    .flat_map(|(dx, y, z)| [Point3::new(x + dx, y, z), Point3::new(x + dx, -y, z)]),
            )
            .collect()
    }

    #[test]
    fn centre_of_mass_of_a_standing_body_is_near_the_pelvis() {
        let f = standing(0.0);
        let com = centre_of_mass(Skeleton::Coco17, &f).unwrap().unwrap();
        // About 55–57 % of stature for men standing.
        assert!(com.z > 0.95 && com.z < 1.05, "{com}");
        assert!(com.y.abs() < 1e-12);
        let mut g = f.clone();
        g[13] = crate::filter::UNKNOWN;
        assert!(centre_of_mass(Skeleton::Coco17, &g).unwrap().is_none());
        // The mass fractions sum to 1.
        let total: f64 = DE_LEVA.iter().map(|s| s.mass).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
    }

    #[test]
    fn angles_of_a_known_pose() {
        let mut f = standing(0.0);
        // Left thigh horizontal forward, shank vertical: hip 90°, knee 90°.
        f[13] = Point3::new(0.45, 0.09, 0.95);
        f[15] = Point3::new(0.45, 0.09, 0.5);
        let m = Motion {
            skeleton: Skeleton::Coco17,
            fps: 50.0,
            frames: vec![f; 10],
        };
        let a = analyse(&m, &AnalysisConfig::default()).unwrap();
        let r = &a.frames[5];
        assert!((r.knee_left_deg - 90.0).abs() < 1e-6, "{r:?}");
        assert!((r.hip_left_deg - 90.0).abs() < 1e-6, "{r:?}");
        assert!(r.knee_right_deg.abs() < 1e-6 && r.trunk_lean_deg.abs() < 1e-6);
        assert!(r.speed_lane_mps.abs() < 1e-9);
    }

    #[test]
    fn constant_speed_gives_exact_splits() {
        // A rigid body gliding at 10 m/s from x = −1: crosses 10 m at 1.1 s.
        let frames = (0..200)
            .map(|i| standing(-1.0 + 10.0 * i as f64 / 100.0))
            .collect();
        let m = Motion {
            skeleton: Skeleton::Coco17,
            fps: 100.0,
            frames,
        };
        let a = analyse(&m, &AnalysisConfig::default()).unwrap();
        let s = &a.splits[0];
        assert_eq!(s.distance_m, 10.0);
        assert!((s.time_s - 1.1).abs() < 1e-6, "{s:?}");
        assert!((a.top_speed_mps - 10.0).abs() < 1e-6);
        assert!(a.frames[50].accel_lane_mps2.abs() < 1e-6);
        assert_eq!(a.splits.len(), 1);
    }

    #[test]
    fn bad_input_is_refused() {
        let m = Motion {
            skeleton: Skeleton::Coco17,
            fps: 50.0,
            frames: vec![standing(0.0); 3],
        };
        assert!(matches!(
            analyse(&m, &AnalysisConfig::default()),
            Err(BiomechError::TooShort(_))
        ));
        let mut cfg = AnalysisConfig::default();
        cfg.geometry.lane = Vector3::z();
        let m = Motion {
            frames: vec![standing(0.0); 10],
            ..m
        };
        assert!(matches!(
            analyse(&m, &cfg),
            Err(BiomechError::Option { .. })
        ));
        cfg = AnalysisConfig {
            speed_cutoff_hz: 40.0,
            ..AnalysisConfig::default()
        };
        assert!(matches!(analyse(&m, &cfg), Err(BiomechError::Filter(_))));
    }
}
