//! Time-domain processing of 3D keypoint trajectories.
//!
//! * Offline: a zero-phase Butterworth low-pass ([`Butterworth`]) designed by the bilinear
//!   transform with frequency pre-warping and run forwards and backwards (`filtfilt`) with
//!   odd-reflection edge padding and steady-state initial conditions, so the ends of a
//!   sequence are not pulled towards zero. Gaps up to `max_gap` frames are bridged by linear
//!   interpolation; longer gaps split the series into runs filtered separately.
//! * Live: causal filters that see each sample once — the one-euro filter ([`OneEuro`],
//!   Casiez et al. 2012) for keypoint display and a constant-acceleration Kalman filter
//!   ([`KalmanCa`]) that also estimates velocity and acceleration. Their added latency is
//!   measured by [`lag_frames`] in the tests and stated in `docs/track.md`.
//! * Bone-length consistency ([`BoneLengths`]): robust per-bone length over a sequence,
//!   flags frames whose bones disagree, and pulls limb joints back onto the estimated length.
//!
//! The biquad cascade is written here rather than taken from a DSP crate because what is
//! needed (design + filtfilt with scipy-compatible edge handling + gaps) is ~100 lines and no
//! well-kept crate offers zero-phase filtering with gap handling.

use nalgebra::{Matrix3, Point3, Vector3};

use crate::keypoints::{Keypoint3D, Pose3D};
use crate::skeleton::Skeleton;

/// Why a filter could not be built or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    /// Only even orders are realised (as cascades of second-order sections).
    #[error("Butterworth order must be 2, 4, 6 or 8, got {0}")]
    Order(usize),
    /// The cutoff must lie strictly between 0 and the Nyquist frequency.
    #[error(
        "cutoff {cutoff_hz} Hz is outside (0, {nyquist_hz} Hz) for {sample_rate_hz} Hz sampling"
    )]
    Cutoff {
        cutoff_hz: f64,
        sample_rate_hz: f64,
        nyquist_hz: f64,
    },
    /// A parameter is NaN, infinite, zero or negative.
    #[error("{name} must be finite and positive, got {value}")]
    Parameter { name: &'static str, value: f64 },
}

fn positive(name: &'static str, value: f64) -> Result<f64, FilterError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(FilterError::Parameter { name, value })
    }
}

/// One second-order section, transposed direct form II (`a0 = 1`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
}

impl Biquad {
    /// Runs the section over `x` in place, starting in the steady state of a constant input
    /// equal to `x[0]` (the DC gain of a low-pass section is 1, so input = output there).
    fn run(&self, x: &mut [f64]) {
        let Some(&x0) = x.first() else { return };
        let [b0, b1, b2] = self.b;
        let [a1, a2] = self.a;
        let mut z2 = (b2 - a2) * x0;
        let mut z1 = (b1 - a1) * x0 + z2;
        for v in x.iter_mut() {
            let input = *v;
            let y = b0 * input + z1;
            z1 = b1 * input - a1 * y + z2;
            z2 = b2 * input - a2 * y;
            *v = y;
        }
    }
}

/// A Butterworth low-pass as a cascade of biquads.
#[derive(Debug, Clone, PartialEq)]
pub struct Butterworth {
    sections: Vec<Biquad>,
    pub order: usize,
    pub cutoff_hz: f64,
    pub sample_rate_hz: f64,
}

impl Butterworth {
    /// Designs an `order`-pole low-pass with its −3 dB point at `cutoff_hz` (for one pass; the
    /// forward-backward [`Butterworth::filtfilt`] doubles the order and puts −6 dB there, as
    /// `scipy.signal.filtfilt(*butter(order, ...))` and Pose2Sim do).
    ///
    /// Analogue prototype poles at angles `θₖ = π(2k+1)/(2N)` give sections with
    /// `Q = 1/(2 cos θₖ)`; each is mapped by the bilinear transform with the cutoff
    /// pre-warped, `K = tan(π·fc/fs)`.
    pub fn low_pass(
        order: usize,
        cutoff_hz: f64,
        sample_rate_hz: f64,
    ) -> Result<Self, FilterError> {
        if !matches!(order, 2 | 4 | 6 | 8) {
            return Err(FilterError::Order(order));
        }
        let fs = positive("sample rate", sample_rate_hz)?;
        let fc = positive("cutoff", cutoff_hz)?;
        if fc >= fs / 2.0 {
            return Err(FilterError::Cutoff {
                cutoff_hz,
                sample_rate_hz,
                nyquist_hz: fs / 2.0,
            });
        }
        let k = (std::f64::consts::PI * fc / fs).tan();
        let sections = (0..order / 2)
            .map(|i| {
                let theta = std::f64::consts::PI * (2 * i + 1) as f64 / (2 * order) as f64;
                let q = 1.0 / (2.0 * theta.cos());
                let norm = 1.0 / (1.0 + k / q + k * k);
                let b0 = k * k * norm;
                Biquad {
                    b: [b0, 2.0 * b0, b0],
                    a: [2.0 * (k * k - 1.0) * norm, (1.0 - k / q + k * k) * norm],
                }
            })
            .collect();
        Ok(Butterworth {
            sections,
            order,
            cutoff_hz,
            sample_rate_hz,
        })
    }

    /// Magnitude of the single-pass frequency response at `f_hz`.
    pub fn gain(&self, f_hz: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * f_hz / self.sample_rate_hz;
        // z⁻¹ = e^{-jw}; evaluate each section as complex numbers.
        let (c1, s1) = (w.cos(), -w.sin());
        let (c2, s2) = ((2.0 * w).cos(), -(2.0 * w).sin());
        self.sections
            .iter()
            .map(|s| {
                let num = (
                    s.b[0] + s.b[1] * c1 + s.b[2] * c2,
                    s.b[1] * s1 + s.b[2] * s2,
                );
                let den = (1.0 + s.a[0] * c1 + s.a[1] * c2, s.a[0] * s1 + s.a[1] * s2);
                (num.0.hypot(num.1)) / (den.0.hypot(den.1))
            })
            .product()
    }

    /// Edge padding: long enough for the transient of a low cutoff to die out.
    fn pad_len(&self, n: usize) -> usize {
        let transient = (1.5 * self.sample_rate_hz / self.cutoff_hz).ceil() as usize;
        (3 * (self.order + 1))
            .max(transient)
            .min(n.saturating_sub(1))
    }

    /// Zero-phase filtering of a gap-free series (forward, then backward over the result).
    /// The straight line through the first and last samples is taken out before filtering
    /// and put back after (the filter passes a line unchanged, so this is exact), and the
    /// remainder, zero at both ends, is extended by odd reflection: a running athlete's
    /// position is then neither bent nor delayed at the ends of the sequence.
    /// Series shorter than 3 samples are returned unchanged.
    pub fn filtfilt(&self, x: &[f64]) -> Vec<f64> {
        let n = x.len();
        if n < 3 {
            return x.to_vec();
        }
        let slope = (x[n - 1] - x[0]) / (n - 1) as f64;
        let line = |i: usize| x[0] + slope * i as f64;
        let r: Vec<f64> = x.iter().enumerate().map(|(i, v)| v - line(i)).collect();
        let pad = self.pad_len(n);
        let mut ext = Vec::with_capacity(n + 2 * pad);
        ext.extend((1..=pad).rev().map(|i| -r[i]));
        ext.extend_from_slice(&r);
        ext.extend((1..=pad).map(|i| -r[n - 1 - i]));
        for s in &self.sections {
            s.run(&mut ext);
        }
        ext.reverse();
        for s in &self.sections {
            s.run(&mut ext);
        }
        ext.reverse();
        ext[pad..pad + n]
            .iter()
            .enumerate()
            .map(|(i, v)| v + line(i))
            .collect()
    }

    /// Zero-phase filtering of a series with missing samples (`NaN`). Interior gaps of at
    /// most `max_gap` samples are bridged by linear interpolation and filtered with their
    /// neighbours; longer gaps stay `NaN` and split the series into independently filtered
    /// runs.
    pub fn filtfilt_gaps(&self, x: &[f64], max_gap: usize) -> Vec<f64> {
        let mut out = vec![f64::NAN; x.len()];
        for (start, end) in runs(x, max_gap) {
            let filled = fill_linear(&x[start..end]);
            out[start..end].copy_from_slice(&self.filtfilt(&filled));
        }
        out
    }
}

/// Half-open index ranges `[start, end)` of runs of finite samples whose internal gaps are
/// at most `max_gap` long; runs start and end on a finite sample.
fn runs(x: &[f64], max_gap: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None; // (start, last finite index)
    for (i, v) in x.iter().enumerate() {
        if !v.is_finite() {
            continue;
        }
        current = match current {
            Some((s, last)) if i - last - 1 <= max_gap => Some((s, i)),
            Some((s, last)) => {
                out.push((s, last + 1));
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some((s, last)) = current {
        out.push((s, last + 1));
    }
    out
}

/// Linear interpolation over the non-finite samples of a run that starts and ends finite.
fn fill_linear(x: &[f64]) -> Vec<f64> {
    let mut y = x.to_vec();
    let mut last = 0;
    for i in 1..y.len() {
        if y[i].is_finite() {
            if i > last + 1 {
                let (a, b) = (y[last], y[i]);
                for (k, v) in y.iter_mut().enumerate().take(i).skip(last + 1) {
                    *v = a + (b - a) * (k - last) as f64 / (i - last) as f64;
                }
            }
            last = i;
        }
    }
    y
}

/// One athlete's 3D joints over time at a fixed frame rate: `frames[t][j]`, with `NaN`
/// coordinates where joint `j` is unknown in frame `t`. This is the type the time-domain
/// and biomechanics code works on; [`Motion::from_poses`] converts triangulation output.
#[derive(Debug, Clone, PartialEq)]
pub struct Motion {
    pub skeleton: Skeleton,
    pub fps: f64,
    pub frames: Vec<Vec<Point3<f64>>>,
}

/// A point with `NaN` coordinates, the "unknown" marker of [`Motion`].
pub const UNKNOWN: Point3<f64> = Point3::new(f64::NAN, f64::NAN, f64::NAN);

/// Is every coordinate finite?
#[inline]
pub fn known(p: &Point3<f64>) -> bool {
    p.x.is_finite() && p.y.is_finite() && p.z.is_finite()
}

impl Motion {
    /// One track's poses (one per frame, in order) as a motion; invalid joints become unknown.
    pub fn from_poses(skeleton: Skeleton, fps: f64, poses: &[Pose3D]) -> Self {
        let frames = poses
            .iter()
            .map(|p| {
                (0..skeleton.joint_count())
                    .map(|j| match p.joints.get(j) {
                        Some(k) if k.is_valid() => k.position,
                        _ => UNKNOWN,
                    })
                    .collect()
            })
            .collect();
        Motion {
            skeleton,
            fps,
            frames,
        }
    }

    /// Back to poses (for the TRC writer): known joints get `view_mask` bit 0 set so that
    /// they count as valid, with the reprojection error unknown.
    pub fn to_poses(&self, track_id: u32) -> Vec<Pose3D> {
        self.frames
            .iter()
            .map(|f| Pose3D {
                track_id,
                joints: f
                    .iter()
                    .map(|p| {
                        if known(p) {
                            Keypoint3D {
                                position: *p,
                                reprojection_error: f64::NAN,
                                view_mask: 1,
                            }
                        } else {
                            Keypoint3D::MISSING
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn joint_count(&self) -> usize {
        self.skeleton.joint_count()
    }

    /// Joint `j`'s coordinate `axis` over time.
    fn series(&self, j: usize, axis: usize) -> Vec<f64> {
        self.frames.iter().map(|f| f[j][axis]).collect()
    }

    /// Zero-phase low-pass of every joint coordinate (see [`Butterworth::filtfilt_gaps`]).
    pub fn butterworth(&self, filter: &Butterworth, max_gap: usize) -> Motion {
        let mut out = self.clone();
        for j in 0..self.joint_count() {
            for axis in 0..3 {
                let y = filter.filtfilt_gaps(&self.series(j, axis), max_gap);
                for (f, v) in out.frames.iter_mut().zip(y) {
                    f[j][axis] = v;
                }
            }
        }
        // A joint is known only if all three coordinates are.
        for f in &mut out.frames {
            for p in f.iter_mut() {
                if !known(p) {
                    *p = UNKNOWN;
                }
            }
        }
        out
    }
}

/// The one-euro filter (Casiez, Roussel, Vogel, CHI 2012) on an `N`-vector: an exponential
/// smoother whose cutoff rises with speed, `fc = min_cutoff + beta·|ẋ|`, so slow motion is
/// smoothed hard (little jitter) and fast motion little (little lag).
#[derive(Debug, Clone, PartialEq)]
pub struct OneEuro<const N: usize> {
    pub min_cutoff_hz: f64,
    pub beta: f64,
    pub derivative_cutoff_hz: f64,
    state: Option<([f64; N], [f64; N])>,
}

fn smoothing_factor(dt: f64, cutoff_hz: f64) -> f64 {
    let tau = 1.0 / (2.0 * std::f64::consts::PI * cutoff_hz);
    1.0 / (1.0 + tau / dt)
}

impl<const N: usize> OneEuro<N> {
    pub fn new(min_cutoff_hz: f64, beta: f64, derivative_cutoff_hz: f64) -> Self {
        OneEuro {
            min_cutoff_hz,
            beta,
            derivative_cutoff_hz,
            state: None,
        }
    }

    /// Forgets the past (after a long occlusion).
    pub fn reset(&mut self) {
        self.state = None;
    }

    /// Filters one sample taken `dt` seconds after the previous one.
    pub fn update(&mut self, x: [f64; N], dt: f64) -> [f64; N] {
        let Some((prev, prev_dx)) = self.state else {
            self.state = Some((x, [0.0; N]));
            return x;
        };
        let a_d = smoothing_factor(dt, self.derivative_cutoff_hz);
        let mut dx = [0.0; N];
        for i in 0..N {
            dx[i] = prev_dx[i] + a_d * ((x[i] - prev[i]) / dt - prev_dx[i]);
        }
        let speed = dx.iter().map(|v| v * v).sum::<f64>().sqrt();
        let a = smoothing_factor(dt, self.min_cutoff_hz + self.beta * speed);
        let mut y = [0.0; N];
        for i in 0..N {
            y[i] = prev[i] + a * (x[i] - prev[i]);
        }
        self.state = Some((y, dx));
        y
    }
}

/// A constant-acceleration Kalman filter on one coordinate: state `[p, v, a]`, white-jerk
/// process noise of spectral density `jerk_psd` (m²/s⁵), measurement noise `sigma` (m).
/// Missing measurements only predict. It tracks a quadratic trajectory without bias, and
/// its velocity and acceleration are the live speed and acceleration.
#[derive(Debug, Clone, PartialEq)]
pub struct KalmanCa {
    pub jerk_psd: f64,
    pub sigma: f64,
    x: Vector3<f64>,
    p: Matrix3<f64>,
    initialised: bool,
}

impl KalmanCa {
    pub fn new(jerk_psd: f64, sigma: f64) -> Self {
        KalmanCa {
            jerk_psd,
            sigma,
            x: Vector3::zeros(),
            p: Matrix3::zeros(),
            initialised: false,
        }
    }

    /// `[position, velocity, acceleration]` now.
    pub fn state(&self) -> [f64; 3] {
        [self.x[0], self.x[1], self.x[2]]
    }

    pub fn is_initialised(&self) -> bool {
        self.initialised
    }

    /// Advances `dt` seconds and folds in the measurement `z` if there is one (finite).
    pub fn update(&mut self, z: Option<f64>, dt: f64) -> [f64; 3] {
        let z = z.filter(|v| v.is_finite());
        if !self.initialised {
            if let Some(z) = z {
                self.x = Vector3::new(z, 0.0, 0.0);
                // Unknown velocity and acceleration: wide priors (12 m/s, 10 m/s²).
                self.p =
                    Matrix3::from_diagonal(&Vector3::new(self.sigma * self.sigma, 144.0, 100.0));
                self.initialised = true;
            }
            return self.state();
        }
        let f = Matrix3::new(1.0, dt, 0.5 * dt * dt, 0.0, 1.0, dt, 0.0, 0.0, 1.0);
        let (d2, d3) = (dt * dt, dt * dt * dt);
        let q = self.jerk_psd
            * Matrix3::new(
                d3 * d2 / 20.0,
                d2 * d2 / 8.0,
                d3 / 6.0,
                d2 * d2 / 8.0,
                d3 / 3.0,
                d2 / 2.0,
                d3 / 6.0,
                d2 / 2.0,
                dt,
            );
        self.x = f * self.x;
        self.p = f * self.p * f.transpose() + q;
        if let Some(z) = z {
            // H = [1 0 0]: the gain is the first column of P over the innovation variance.
            let s = self.p[(0, 0)] + self.sigma * self.sigma;
            let k = self.p.column(0) / s;
            let innovation = z - self.x[0];
            self.x += k * innovation;
            self.p -= k * self.p.row(0);
        }
        self.state()
    }
}

/// The delay, in frames (fractional, by parabolic refinement), that best aligns `filtered`
/// with `truth`: the `d` minimising the mean squared difference between `filtered[t]` and
/// `truth[t − d]`, searched over `0..=max_lag`. This is how the causal filters' added latency
/// is measured.
pub fn lag_frames(truth: &[f64], filtered: &[f64], max_lag: usize) -> f64 {
    let n = truth.len().min(filtered.len());
    let cost = |d: usize| -> f64 {
        let (s, c) = (d..n)
            .map(|t| (filtered[t] - truth[t - d]).powi(2))
            .fold((0.0, 0usize), |(s, c), e| (s + e, c + 1));
        s / c.max(1) as f64
    };
    let costs: Vec<f64> = (0..=max_lag).map(cost).collect();
    let best = costs
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    if best == 0 || best == max_lag {
        return best as f64;
    }
    let (a, b, c) = (costs[best - 1], costs[best], costs[best + 1]);
    let denom = a - 2.0 * b + c;
    if denom.abs() < 1e-300 {
        best as f64
    } else {
        best as f64 + 0.5 * (a - c) / denom
    }
}

/// The limb bones whose length is enforced, proximal → distal, by joint name.
const LIMB_CHAINS: &[[&str; 3]] = &[
    ["LShoulder", "LElbow", "LWrist"],
    ["RShoulder", "RElbow", "RWrist"],
    ["LHip", "LKnee", "LAnkle"],
    ["RHip", "RKnee", "RAnkle"],
];

/// Robust per-bone lengths of one athlete over a sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct BoneLengths {
    /// `(proximal, distal, length in metres)` for each bone of the skeleton that was seen.
    pub bones: Vec<(usize, usize, f64)>,
}

/// A frame where a bone's length disagrees with the sequence's estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoneViolation {
    pub frame: usize,
    pub bone: (usize, usize),
    pub length: f64,
    pub expected: f64,
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

/// The mirror name of a joint (`LKnee` ↔ `RKnee`), if the name is sided.
pub(crate) fn mirror(name: &str) -> Option<String> {
    let mut c = name.chars();
    match c.next()? {
        'L' if name.len() > 1 => Some(format!("R{}", c.as_str())),
        'R' if name.len() > 1 => Some(format!("L{}", c.as_str())),
        _ => None,
    }
}

impl BoneLengths {
    /// The median length of each bone over all frames where both ends are known, pooled
    /// with its mirror bone (left and right limbs have the same length; pooling halves the
    /// effect of a left/right swap). The median ignores up to half the frames being wrong.
    pub fn estimate(motion: &Motion) -> Self {
        let names = motion.skeleton.joint_names();
        let samples = |a: usize, b: usize| {
            motion.frames.iter().filter_map(move |f| {
                let (p, q) = (f[a], f[b]);
                (known(&p) && known(&q)).then(|| (p - q).norm())
            })
        };
        let bones = motion
            .skeleton
            .bones()
            .iter()
            .filter_map(|&(a, b)| {
                let (a, b) = (a as usize, b as usize);
                let mut all: Vec<f64> = samples(a, b).collect();
                let mirrored = mirror(names[a])
                    .zip(mirror(names[b]))
                    .and_then(|(ma, mb)| {
                        Some((
                            motion.skeleton.index_of(&ma)?,
                            motion.skeleton.index_of(&mb)?,
                        ))
                    })
                    .filter(|&(ma, mb)| (ma, mb) != (a, b) && (mb, ma) != (a, b));
                if let Some((ma, mb)) = mirrored {
                    all.extend(samples(ma, mb));
                }
                median(&mut all).map(|l| (a, b, l))
            })
            .collect();
        BoneLengths { bones }
    }

    /// The estimated length of the bone between joints `a` and `b` (either order).
    pub fn length(&self, a: usize, b: usize) -> Option<f64> {
        self.bones
            .iter()
            .find(|&&(p, q, _)| (p, q) == (a, b) || (p, q) == (b, a))
            .map(|&(_, _, l)| l)
    }

    /// Every frame and bone whose length differs from the estimate by more than
    /// `tolerance` (relative, e.g. 0.15 for 15 %).
    pub fn violations(&self, motion: &Motion, tolerance: f64) -> Vec<BoneViolation> {
        let mut out = Vec::new();
        for (t, f) in motion.frames.iter().enumerate() {
            for &(a, b, expected) in &self.bones {
                let (p, q) = (f[a], f[b]);
                if !(known(&p) && known(&q)) {
                    continue;
                }
                let length = (p - q).norm();
                if (length - expected).abs() > tolerance * expected {
                    out.push(BoneViolation {
                        frame: t,
                        bone: (a, b),
                        length,
                        expected,
                    });
                }
            }
        }
        out
    }

    /// Pulls limb joints (elbow, wrist, knee, ankle) back onto the estimated bone lengths
    /// where a bone is off by more than `tolerance`: the distal joint moves along the bone's
    /// direction, carrying the rest of the chain with it, so the limb's direction is kept.
    /// Trunk bones are only reported by [`BoneLengths::violations`], never moved. Returns the
    /// number of corrections made.
    pub fn enforce(&self, motion: &mut Motion, tolerance: f64) -> usize {
        let sk = motion.skeleton;
        let chains: Vec<[usize; 3]> = LIMB_CHAINS
            .iter()
            .filter_map(|c| Some([sk.index_of(c[0])?, sk.index_of(c[1])?, sk.index_of(c[2])?]))
            .collect();
        let mut fixed = 0;
        for f in &mut motion.frames {
            for chain in &chains {
                for k in 0..2 {
                    let (a, b) = (chain[k], chain[k + 1]);
                    let Some(expected) = self.length(a, b) else {
                        continue;
                    };
                    let (p, q) = (f[a], f[b]);
                    if !(known(&p) && known(&q)) {
                        continue;
                    }
                    let d = q - p;
                    let len = d.norm();
                    if len < 1e-9 || (len - expected).abs() <= tolerance * expected {
                        continue;
                    }
                    let shift = d * (expected / len - 1.0);
                    for &j in &chain[k + 1..] {
                        f[j] += shift;
                    }
                    fixed += 1;
                }
            }
        }
        fixed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn butterworth_has_its_cutoff_where_designed() {
        for order in [2, 4, 6, 8] {
            let f = Butterworth::low_pass(order, 6.0, 100.0).unwrap();
            assert!((f.gain(0.0) - 1.0).abs() < 1e-12, "DC gain, order {order}");
            let g = f.gain(6.0);
            assert!((g - 0.5f64.sqrt()).abs() < 1e-9, "order {order}: {g}");
            // Roll-off of N×20 dB/decade well above the cutoff (bilinear: even faster).
            assert!(f.gain(30.0) < (6.0f64 / 30.0).powi(order as i32) * 1.01);
        }
        // scipy.signal.butter(2, 10/50) = b [0.0674553, 0.1349105, 0.0674553],
        // a [1, -1.1429805, 0.4128016].
        let f = Butterworth::low_pass(2, 10.0, 100.0).unwrap();
        let s = f.sections[0];
        assert!((s.b[0] - 0.067_455_27).abs() < 1e-7);
        assert!((s.a[0] + 1.142_980_5).abs() < 1e-7);
        assert!((s.a[1] - 0.412_801_6).abs() < 1e-7);
    }

    #[test]
    fn bad_designs_are_refused() {
        assert_eq!(
            Butterworth::low_pass(3, 5.0, 100.0),
            Err(FilterError::Order(3))
        );
        assert!(matches!(
            Butterworth::low_pass(4, 60.0, 100.0),
            Err(FilterError::Cutoff { .. })
        ));
        assert!(matches!(
            Butterworth::low_pass(4, f64::NAN, 100.0),
            Err(FilterError::Parameter { name: "cutoff", .. })
        ));
        assert!(Butterworth::low_pass(4, 5.0, 0.0).is_err());
    }

    #[test]
    fn filtfilt_is_zero_phase_and_keeps_trends_at_the_edges() {
        let fs = 100.0;
        let f = Butterworth::low_pass(4, 8.0, fs).unwrap();
        // A ramp (running athlete) plus a 2 Hz swing: both pass untouched, ends included.
        let x: Vec<f64> = (0..300)
            .map(|i| {
                let t = i as f64 / fs;
                10.0 * t + 0.3 * (2.0 * std::f64::consts::PI * 2.0 * t).sin()
            })
            .collect();
        let y = f.filtfilt(&x);
        let worst = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        // |H(2 Hz)|² = 0.99997 for 4 poles at 8 Hz: amplitude error ≈ 1e-5·0.3.
        assert!(worst < 2e-3, "worst deviation {worst}");
        // A 30 Hz component is removed.
        let noisy: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v + 0.1 * (2.0 * std::f64::consts::PI * 30.0 * i as f64 / fs).sin())
            .collect();
        let y2 = f.filtfilt(&noisy);
        let worst = x[20..280]
            .iter()
            .zip(&y2[20..280])
            .map(|(a, b)| (a - b).abs());
        assert!(worst.fold(0.0, f64::max) < 2e-3);
    }

    #[test]
    fn gaps_are_bridged_or_split() {
        let f = Butterworth::low_pass(2, 5.0, 50.0).unwrap();
        let mut x: Vec<f64> = (0..100).map(|i| i as f64 * 0.1).collect();
        for v in &mut x[20..24] {
            *v = f64::NAN;
        }
        for v in &mut x[50..70] {
            *v = f64::NAN;
        }
        let y = f.filtfilt_gaps(&x, 5);
        assert!((y[22] - 2.2).abs() < 1e-6, "bridged: {}", y[22]);
        assert!(
            y[50..70].iter().all(|v| v.is_nan()),
            "long gap stays unknown"
        );
        assert!((y[49] - 4.9).abs() < 1e-6 && (y[70] - 7.0).abs() < 1e-6);
        assert!(
            f.filtfilt_gaps(&[f64::NAN; 4], 2)
                .iter()
                .all(|v| v.is_nan())
        );
        assert_eq!(f.filtfilt(&[1.0, 2.0]), vec![1.0, 2.0]);
        assert!(f.filtfilt(&[]).is_empty());
    }

    /// A noisy sprint-like position signal: the latency figures of the docs come from here.
    fn sprint_x(fs: f64, n: usize) -> (Vec<f64>, Vec<f64>) {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut noise = || {
            // xorshift + Box–Muller: deterministic and dependency-free for the test.
            let mut u = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 11) as f64 / (1u64 << 53) as f64
            };
            let (a, b) = (u().max(1e-12), u());
            (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
        };
        let truth: Vec<f64> = (0..n)
            .map(|i| {
                let t = i as f64 / fs;
                11.5 * (t - 1.3 * (1.0 - (-t / 1.3).exp()))
            })
            .collect();
        let measured = truth.iter().map(|v| v + 0.03 * noise()).collect();
        (truth, measured)
    }

    #[test]
    fn causal_filter_latency_is_bounded() {
        let fs = 50.0;
        let (truth, measured) = sprint_x(fs, 500);
        let mut euro = OneEuro::<1>::new(1.0, 0.5, 1.0);
        let euro_out: Vec<f64> = measured
            .iter()
            .map(|&z| euro.update([z], 1.0 / fs)[0])
            .collect();
        let mut kf = KalmanCa::new(50.0, 0.03);
        let kf_states: Vec<[f64; 3]> = measured
            .iter()
            .map(|&z| kf.update(Some(z), 1.0 / fs))
            .collect();
        let kf_out: Vec<f64> = kf_states.iter().map(|s| s[0]).collect();
        let lag_euro = lag_frames(&truth[50..], &euro_out[50..], 10);
        let lag_kf = lag_frames(&truth[50..], &kf_out[50..], 10);
        // Stated in docs/track.md: one-euro ≈ 1 frame, Kalman CA ≈ 0 frames at 50 fps.
        eprintln!("lag at 50 fps: one-euro {lag_euro:.2} frames, Kalman CA {lag_kf:.2} frames");
        assert!(lag_euro < 1.5, "one-euro lag {lag_euro} frames");
        assert!(lag_kf < 0.5, "Kalman lag {lag_kf} frames");
        // And both actually smooth: less noise than the raw measurement.
        let rms = |y: &[f64]| {
            (y[50..]
                .iter()
                .zip(&truth[50..])
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                / (y.len() - 50) as f64)
                .sqrt()
        };
        assert!(
            rms(&kf_out) < 0.6 * rms(&measured),
            "{} vs {}",
            rms(&kf_out),
            rms(&measured)
        );
        // Velocity from the Kalman filter follows the true speed (RMS over the last 8 s).
        let v_rms = (kf_states[100..]
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let t = (i + 100) as f64 / fs;
                (s[1] - 11.5 * (1.0 - (-t / 1.3f64).exp())).powi(2)
            })
            .sum::<f64>()
            / 400.0)
            .sqrt();
        assert!(v_rms < 0.3, "Kalman speed RMS error {v_rms} m/s");
    }

    #[test]
    fn kalman_predicts_through_missing_samples() {
        let mut kf = KalmanCa::new(10.0, 0.01);
        for i in 0..100 {
            kf.update(Some(2.0 * i as f64 / 50.0), 0.02);
        }
        for _ in 0..10 {
            kf.update(None, 0.02);
        }
        let [p, v, _] = kf.state();
        assert!(
            (p - 2.0 * 109.0 / 50.0).abs() < 0.02 && (v - 2.0).abs() < 0.05,
            "{p} {v}"
        );
        assert!(!KalmanCa::new(1.0, 1.0).is_initialised());
    }

    fn leg_motion(n: usize) -> Motion {
        let sk = Skeleton::Coco17;
        let frames = (0..n)
            .map(|t| {
                let mut f = vec![Point3::new(t as f64 * 0.2, 0.0, 1.0); 17];
                let phase = t as f64 * 0.1;
                for (hip, knee, ankle, y) in [(11, 13, 15, 0.1), (12, 14, 16, -0.1)] {
                    f[hip] = Point3::new(t as f64 * 0.2, y, 0.9);
                    let k = f[hip] + Vector3::new(0.45 * phase.sin(), 0.0, -0.45 * phase.cos());
                    f[knee] = k;
                    f[ankle] = k + Vector3::new(0.0, 0.0, -0.44);
                }
                f
            })
            .collect();
        Motion {
            skeleton: sk,
            fps: 50.0,
            frames,
        }
    }

    #[test]
    fn bone_lengths_are_estimated_flagged_and_enforced() {
        let mut m = leg_motion(60);
        // Frame 10: the left ankle is detected 20 cm low; frame 20: the right knee is missing.
        m.frames[10][15].z -= 0.2;
        m.frames[20][14] = UNKNOWN;
        let bones = BoneLengths::estimate(&m);
        assert!((bones.length(11, 13).unwrap() - 0.45).abs() < 1e-9);
        assert!((bones.length(15, 13).unwrap() - 0.44).abs() < 1e-9);
        let v = bones.violations(&m, 0.1);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!((v[0].frame, v[0].bone), (10, (13, 15)));
        assert_eq!(bones.enforce(&mut m, 0.1), 1);
        assert!(((m.frames[10][15] - m.frames[10][13]).norm() - 0.44).abs() < 1e-9);
        assert!(bones.violations(&m, 0.1).is_empty());
    }

    #[test]
    fn motion_round_trips_through_poses() {
        let mut m = leg_motion(5);
        m.frames[2][3] = UNKNOWN;
        let back = Motion::from_poses(m.skeleton, m.fps, &m.to_poses(7));
        assert_eq!(back.frames[1], m.frames[1]);
        assert!(!known(&back.frames[2][3]));
        let smooth = m.butterworth(&Butterworth::low_pass(2, 5.0, 50.0).unwrap(), 0);
        assert!(!known(&smooth.frames[2][3]) && known(&smooth.frames[2][4]));
    }
}
