//! Multi-person 3D: which detections in which cameras are the same athlete, and which
//! athlete is which over time.
//!
//! Each frame: (1) every live track is predicted (constant velocity), projected into each
//! camera and greedily matched to the detection whose joints lie closest (mean pixel
//! distance under a gate); (2) leftover detections are grouped across cameras by epipolar
//! consistency (mean symmetric point-to-epipolar-line distance over shared joints), greedy
//! in order of increasing distance, never two detections of one camera in a group;
//! (3) every group seen by at least two cameras is triangulated robustly; new groups adopt
//! a lost track whose last position is close, are dropped as duplicates if a track
//! updated this frame is that close, else get a fresh id; tracks unseen for
//! `max_missed_frames` end. Scratch buffers live in the tracker, so a steady-state frame
//! does not allocate.

use nalgebra::{Matrix3, Point2, Point3, Vector3};

use crate::camera::Calibration;
use crate::error::{Error, Result};
use crate::keypoints::{Frame2D, Keypoint3D, Keypoints2D, Pose3D};
use crate::skeleton::Skeleton;
use crate::triangulate::{MAX_CAMERAS, TriangulationConfig, Triangulator};

/// Tracker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerConfig {
    pub triangulation: TriangulationConfig,
    /// Two detections in two cameras may be one person if their mean symmetric epipolar
    /// distance is under this (pixels).
    pub epipolar_threshold_px: f64,
    /// A track claims a detection whose joints are on average this close (pixels) to the
    /// track's predicted projection.
    pub track_gate_px: f64,
    /// A new group adopts a lost track whose last centroid is this close (metres), and is
    /// dropped as a duplicate if a track seen this frame is that close.
    pub reacquire_distance_m: f64,
    /// Tracks unseen for this many frames end.
    pub max_missed_frames: u32,
    /// A person counts only with at least this many triangulated joints.
    pub min_joints: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            triangulation: TriangulationConfig::default(),
            epipolar_threshold_px: 25.0,
            track_gate_px: 60.0,
            reacquire_distance_m: 0.7,
            max_missed_frames: 25,
            min_joints: 4,
        }
    }
}

#[derive(Debug, Clone)]
struct Track {
    id: u32,
    last: Vec<Point3<f64>>,
    velocity: Vec<Vector3<f64>>,
    missed: u32,
    updated: bool,
}

impl Track {
    fn centroid(&self) -> Option<Point3<f64>> {
        centroid(self.last.iter().copied())
    }
}

fn centroid(points: impl Iterator<Item = Point3<f64>>) -> Option<Point3<f64>> {
    let (mut s, mut n) = (Vector3::zeros(), 0);
    for p in points.filter(|p| p.x.is_finite()) {
        s += p.coords;
        n += 1;
    }
    (n > 0).then(|| Point3::from(s / n as f64))
}

/// Essential matrices of every ordered camera pair, `E[i·n + j]`: `x_jᵀ E x_i = 0`.
fn essential_matrices(calibration: &Calibration) -> Vec<Matrix3<f64>> {
    let n = calibration.len();
    let mut essential = Vec::with_capacity(n * n);
    for a in &calibration.cameras {
        for b in &calibration.cameras {
            let r = b.rotation * a.rotation.inverse();
            let t = b.translation - r * a.translation;
            essential.push(t.cross_matrix() * r.matrix());
        }
    }
    essential
}

/// A group of detections believed to be one person: `slots[c]` = detection index in camera c.
type Group = [Option<u16>; MAX_CAMERAS];

/// Associates, triangulates and tracks every person seen by a calibrated rig.
#[derive(Debug)]
pub struct MultiViewTracker {
    triangulator: Triangulator,
    calibration: Calibration,
    skeleton: Skeleton,
    config: TrackerConfig,
    /// Essential matrices `E[i][j]`: `x_jᵀ E x_i = 0` for normalised coordinates.
    essential: Vec<Matrix3<f64>>,
    tracks: Vec<Track>,
    next_id: u32,
    // Scratch, reused across frames.
    normalized: Vec<Vec<[f64; 3]>>,
    candidates: Vec<(f64, u32, u16, u16)>,
    claimed: Vec<Vec<bool>>,
    groups: Vec<(Option<usize>, Group)>,
    out: Vec<Pose3D>,
    projected: Vec<Point2<f64>>,
    /// `mirror[j]`: the joint on the other side (`LKnee` ↔ `RKnee`), or `j` itself.
    mirror: Vec<usize>,
    /// Per camera, per detection: claimed by a track as a left/right-swapped detection.
    flipped: Vec<Vec<bool>>,
    /// Per camera: the swapped detection put back in order, for triangulation.
    unflipped: Vec<Keypoints2D>,
}

impl MultiViewTracker {
    pub fn new(
        calibration: &Calibration,
        skeleton: Skeleton,
        config: TrackerConfig,
    ) -> Result<Self> {
        let triangulator = Triangulator::new(calibration, config.triangulation)?;
        let n = calibration.len();
        let essential = essential_matrices(calibration);
        Ok(MultiViewTracker {
            triangulator,
            calibration: calibration.clone(),
            skeleton,
            config,
            essential,
            tracks: Vec::new(),
            next_id: 1,
            normalized: vec![Vec::new(); n],
            candidates: Vec::new(),
            claimed: vec![Vec::new(); n],
            groups: Vec::new(),
            out: Vec::new(),
            projected: Vec::new(),
            mirror: (0..skeleton.joint_count())
                .map(|j| {
                    crate::filter::mirror(skeleton.joint_names()[j])
                        .and_then(|m| skeleton.index_of(&m))
                        .unwrap_or(j)
                })
                .collect(),
            flipped: vec![Vec::new(); n],
            unflipped: vec![
                Keypoints2D {
                    person_id: None,
                    points: Vec::new()
                };
                n
            ],
        })
    }

    /// Replaces the cameras' poses and lenses for the coming frames (pan-tilt-zoom heads
    /// report their angles every frame); tracks are kept. The cameras must be the same ones,
    /// in the same order.
    pub fn set_calibration(&mut self, calibration: &Calibration) -> Result<()> {
        if calibration.names() != self.calibration.names() {
            return Err(Error::Mismatch {
                what: "new calibration".into(),
                reason: format!(
                    "cameras [{}] differ from the tracker's [{}]",
                    calibration.names().join(", "),
                    self.calibration.names().join(", ")
                ),
            });
        }
        self.triangulator = Triangulator::new(calibration, self.config.triangulation)?;
        self.essential = essential_matrices(calibration);
        self.calibration.clone_from(calibration);
        Ok(())
    }

    /// Forgets every track (ids restart at 1).
    pub fn reset(&mut self) {
        self.tracks.clear();
        self.next_id = 1;
    }

    /// Processes one synchronised frame: `frames[c]` holds camera `c`'s detections (in
    /// calibration order). Returns one [`Pose3D`] per person seen by ≥ 2 cameras, with its
    /// stable `track_id`, sorted by id.
    pub fn update(&mut self, frames: &[Frame2D]) -> Result<&[Pose3D]> {
        let cams = self.calibration.len();
        if frames.len() != cams {
            return Err(Error::Mismatch {
                what: "tracker input".into(),
                reason: format!(
                    "{} camera frames for {cams} calibrated cameras",
                    frames.len()
                ),
            });
        }
        let joints = self.skeleton.joint_count();
        for (c, f) in frames.iter().enumerate() {
            if let Some((i, p)) = f
                .people
                .iter()
                .enumerate()
                .find(|(_, p)| p.points.len() != joints)
            {
                return Err(Error::Mismatch {
                    what: format!("camera {} person {i}", self.calibration.cameras[c].name),
                    reason: format!(
                        "{} keypoints, skeleton {} has {joints}",
                        p.points.len(),
                        self.skeleton.name()
                    ),
                });
            }
            if f.people.len() > u16::MAX as usize {
                return Err(Error::Mismatch {
                    what: format!("camera {}", self.calibration.cameras[c].name),
                    reason: "too many detections".into(),
                });
            }
        }
        self.normalize(frames);
        self.groups.clear();
        for (c, f) in frames.iter().enumerate() {
            self.claimed[c].clear();
            self.claimed[c].resize(f.people.len(), false);
            self.flipped[c].clear();
            self.flipped[c].resize(f.people.len(), false);
        }
        self.match_tracks(frames);
        self.group_leftovers(frames);
        self.triangulate_groups(frames);
        Ok(&self.out)
    }

    fn min_conf(&self) -> f64 {
        self.config.triangulation.min_confidence
    }

    fn normalize(&mut self, frames: &[Frame2D]) {
        let min_conf = self.min_conf();
        for (c, f) in frames.iter().enumerate() {
            let cam = &self.calibration.cameras[c];
            let buf = &mut self.normalized[c];
            buf.clear();
            for p in &f.people {
                for k in &p.points {
                    if k.is_valid() && k.confidence >= min_conf {
                        let (x, y) = cam.undistort_to_normalized(&Point2::new(k.x, k.y));
                        buf.push([x, y, k.confidence]);
                    } else {
                        buf.push([f64::NAN; 3]);
                    }
                }
            }
        }
    }

    /// Step 1: existing tracks claim detections near their predicted projection.
    fn match_tracks(&mut self, frames: &[Frame2D]) {
        let joints = self.skeleton.joint_count();
        let min_conf = self.min_conf();
        self.candidates.clear();
        for (ti, t) in self.tracks.iter().enumerate() {
            for (c, f) in frames.iter().enumerate() {
                let cam = &self.calibration.cameras[c];
                self.projected.clear();
                for (p, v) in t.last.iter().zip(&t.velocity) {
                    let pred = p + v;
                    self.projected.push(
                        cam.project(&pred)
                            .unwrap_or(Point2::new(f64::NAN, f64::NAN)),
                    );
                }
                for (d, person) in f.people.iter().enumerate() {
                    // Distance to the prediction as detected and with left and right
                    // swapped (a common 2D detector error): the better one counts.
                    let (mut s, mut s_flip, mut n) = (0.0, 0.0, 0);
                    for (j, k) in person.points.iter().enumerate().take(joints) {
                        let (q, m) = (self.projected[j], self.projected[self.mirror[j]]);
                        if q.x.is_finite()
                            && m.x.is_finite()
                            && k.is_valid()
                            && k.confidence >= min_conf
                        {
                            s += ((q.x - k.x).powi(2) + (q.y - k.y).powi(2)).sqrt();
                            s_flip += ((m.x - k.x).powi(2) + (m.y - k.y).powi(2)).sqrt();
                            n += 1;
                        }
                    }
                    if n >= self.config.min_joints.max(1) {
                        let flip = s_flip < s;
                        let dist = s.min(s_flip) / n as f64;
                        if dist < self.config.track_gate_px {
                            // The swap rides in the top bit of the track index.
                            let tag = ti as u32 | (u32::from(flip) << 31);
                            self.candidates.push((dist, tag, c as u16, d as u16));
                        }
                    }
                }
            }
        }
        self.candidates.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        for t in &mut self.tracks {
            t.updated = false;
        }
        // One group per track, filled greedily (each detection and track-camera slot once).
        let first_group = self.groups.len();
        for &(_, tag, c, d) in &self.candidates {
            let (ti, flip, c) = ((tag & !(1 << 31)) as usize, tag >> 31 == 1, c as usize);
            if self.claimed[c][d as usize] {
                continue;
            }
            let g = match self.groups[first_group..]
                .iter()
                .position(|(t, _)| *t == Some(ti))
            {
                Some(g) => first_group + g,
                None => {
                    self.groups.push((Some(ti), [None; MAX_CAMERAS]));
                    self.groups.len() - 1
                }
            };
            if self.groups[g].1[c].is_none() {
                self.groups[g].1[c] = Some(d);
                self.claimed[c][d as usize] = true;
                self.flipped[c][d as usize] = flip;
            }
        }
    }

    /// Mean symmetric epipolar distance (pixels) between detection `a` of camera `i` and
    /// detection `b` of camera `j`, with the number of joints compared.
    fn epipolar_distance(&self, i: usize, a: usize, j: usize, b: usize) -> (f64, usize) {
        let joints = self.skeleton.joint_count();
        let e = &self.essential[i * self.calibration.len() + j];
        let (fi, fj) = (
            self.calibration.cameras[i].intrinsics.fx,
            self.calibration.cameras[j].intrinsics.fx,
        );
        let (pa, pb) = (
            &self.normalized[i][a * joints..(a + 1) * joints],
            &self.normalized[j][b * joints..(b + 1) * joints],
        );
        let (mut s, mut n) = (0.0, 0);
        for (u, v) in pa.iter().zip(pb) {
            if u[0].is_nan() || v[0].is_nan() {
                continue;
            }
            let xi = Vector3::new(u[0], u[1], 1.0);
            let xj = Vector3::new(v[0], v[1], 1.0);
            let lj = e * xi; // line in camera j
            let li = e.transpose() * xj; // line in camera i
            let alg = xj.dot(&lj).abs();
            let dj = alg / (lj.x * lj.x + lj.y * lj.y).sqrt().max(1e-12) * fj;
            let di = alg / (li.x * li.x + li.y * li.y).sqrt().max(1e-12) * fi;
            s += 0.5 * (di + dj);
            n += 1;
        }
        (if n == 0 { f64::INFINITY } else { s / n as f64 }, n)
    }

    /// Step 2: unclaimed detections grouped across cameras by epipolar consistency.
    fn group_leftovers(&mut self, frames: &[Frame2D]) {
        let cams = frames.len();
        self.candidates.clear();
        for i in 0..cams {
            for j in i + 1..cams {
                for a in 0..frames[i].people.len() {
                    if self.claimed[i][a] {
                        continue;
                    }
                    for b in 0..frames[j].people.len() {
                        if self.claimed[j][b] {
                            continue;
                        }
                        let (d, n) = self.epipolar_distance(i, a, j, b);
                        if n >= self.config.min_joints.max(1)
                            && d < self.config.epipolar_threshold_px
                        {
                            // Pack (i, j) into one u32 to keep the candidate tuple small.
                            self.candidates.push((
                                d,
                                (i * MAX_CAMERAS + j) as u32,
                                a as u16,
                                b as u16,
                            ));
                        }
                    }
                }
            }
        }
        self.candidates.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let first = self.groups.len();
        for k in 0..self.candidates.len() {
            let (_, ij, a, b) = self.candidates[k];
            let (i, j) = (ij as usize / MAX_CAMERAS, ij as usize % MAX_CAMERAS);
            let find = |groups: &[(Option<usize>, Group)], c: usize, d: u16| {
                groups[first..]
                    .iter()
                    .position(|(_, g)| g[c] == Some(d))
                    .map(|g| g + first)
            };
            match (find(&self.groups, i, a), find(&self.groups, j, b)) {
                (Some(x), Some(y)) if x == y => {}
                (Some(x), Some(y)) => {
                    let (gx, gy) = (self.groups[x].1, self.groups[y].1);
                    if (0..cams).all(|c| gx[c].is_none() || gy[c].is_none()) {
                        for (slot, d) in self.groups[x].1.iter_mut().zip(gy) {
                            if d.is_some() {
                                *slot = d;
                            }
                        }
                        self.groups.swap_remove(y);
                    }
                }
                (Some(x), None) => {
                    if self.groups[x].1[j].is_none() {
                        self.groups[x].1[j] = Some(b);
                    }
                }
                (None, Some(y)) => {
                    if self.groups[y].1[i].is_none() {
                        self.groups[y].1[i] = Some(a);
                    }
                }
                (None, None) => {
                    let mut g = [None; MAX_CAMERAS];
                    g[i] = Some(a);
                    g[j] = Some(b);
                    self.groups.push((None, g));
                }
            }
        }
    }

    /// Step 3: triangulate every group, update or create tracks, age the rest.
    fn triangulate_groups(&mut self, frames: &[Frame2D]) {
        let joints = self.skeleton.joint_count();
        let cams = frames.len();
        let mut used = 0;
        let mut joints_buf: Vec<Keypoint3D> = Vec::new();
        for gi in 0..self.groups.len() {
            let (track, slots) = self.groups[gi];
            for c in 0..cams {
                if let Some(d) = slots[c].filter(|&d| self.flipped[c][d as usize]) {
                    let src = &frames[c].people[d as usize].points;
                    let dst = &mut self.unflipped[c].points;
                    dst.clear();
                    dst.extend(self.mirror.iter().map(|&m| src[m]));
                }
            }
            let mut views: [Option<&Keypoints2D>; MAX_CAMERAS] = [None; MAX_CAMERAS];
            for c in 0..cams {
                views[c] = slots[c].map(|d| {
                    if self.flipped[c][d as usize] {
                        &self.unflipped[c]
                    } else {
                        &frames[c].people[d as usize]
                    }
                });
            }
            if views[..cams].iter().filter(|v| v.is_some()).count() < 2 {
                continue;
            }
            if used == self.out.len() {
                self.out.push(Pose3D {
                    track_id: 0,
                    joints: Vec::with_capacity(joints),
                });
            }
            std::mem::swap(&mut joints_buf, &mut self.out[used].joints);
            self.triangulator
                .triangulate_pose(&views[..cams], joints, &mut joints_buf);
            std::mem::swap(&mut joints_buf, &mut self.out[used].joints);
            if self.out[used]
                .joints
                .iter()
                .filter(|k| k.is_valid())
                .count()
                < self.config.min_joints
            {
                continue;
            }
            let id = match track {
                Some(t) => self.tracks[t].id,
                None => match self.adopt_or_create(used) {
                    Some(id) => id,
                    None => continue,
                },
            };
            self.out[used].track_id = id;
            let t = self
                .tracks
                .iter_mut()
                .find(|t| t.id == id)
                .expect("track just matched or created");
            for (j, k) in self.out[used].joints.iter().enumerate() {
                if k.is_valid() {
                    let prev = t.last[j];
                    t.velocity[j] = if prev.x.is_finite() && t.missed == 0 {
                        k.position - prev
                    } else {
                        Vector3::zeros()
                    };
                    t.last[j] = k.position;
                }
            }
            t.missed = 0;
            t.updated = true;
            used += 1;
        }
        self.out.truncate(used);
        self.out.sort_unstable_by_key(|p| p.track_id);
        let max_missed = self.config.max_missed_frames;
        for t in &mut self.tracks {
            if !t.updated {
                t.missed += 1;
                t.velocity.iter_mut().for_each(|v| *v = Vector3::zeros());
            }
        }
        self.tracks.retain(|t| t.missed <= max_missed);
    }

    /// A new group takes over a lost track nearby (a person reappearing) or starts one.
    /// `None` when the group duplicates a person already seen this frame (some of their
    /// detections escaped the track's gate): the duplicate is dropped.
    fn adopt_or_create(&mut self, pose: usize) -> Option<u32> {
        let c = centroid(
            self.out[pose]
                .joints
                .iter()
                .filter(|k| k.is_valid())
                .map(|k| k.position),
        );
        let best = c.and_then(|c| {
            self.tracks
                .iter()
                .filter_map(|t| Some((t.id, t.updated, (t.centroid()? - c).norm())))
                .filter(|(_, _, d)| *d < self.config.reacquire_distance_m)
                .min_by(|a, b| a.2.total_cmp(&b.2))
        });
        match best {
            Some((_, true, _)) => return None,
            Some((id, false, _)) => return Some(id),
            None => {}
        }
        let id = self.next_id;
        self.next_id += 1;
        let joints = self.skeleton.joint_count();
        self.tracks.push(Track {
            id,
            last: vec![Point3::new(f64::NAN, f64::NAN, f64::NAN); joints],
            velocity: vec![Vector3::zeros(); joints],
            missed: 0,
            updated: false,
        });
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calib::tests::rig;
    use crate::keypoints::Keypoint2D;

    fn body(x: f64, y: f64) -> Vec<Point3<f64>> {
        (0..17)
            .map(|j| {
                Point3::new(
                    x + 0.03 * (j % 3) as f64,
                    y + 0.02 * (j % 5) as f64,
                    0.1 * j as f64,
                )
            })
            .collect()
    }

    fn see(cal: &Calibration, people: &[Vec<Point3<f64>>], order: &[Vec<usize>]) -> Vec<Frame2D> {
        cal.cameras
            .iter()
            .zip(order)
            .map(|(c, ord)| Frame2D {
                people: ord
                    .iter()
                    .map(|&p| Keypoints2D {
                        person_id: None,
                        points: people[p]
                            .iter()
                            .map(|q| {
                                let px = c.project(q).unwrap();
                                Keypoint2D::new(px.x, px.y, 0.9)
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn three_people_in_shuffled_views_keep_their_ids() {
        let cal = rig();
        let mut t =
            MultiViewTracker::new(&cal, Skeleton::Coco17, TrackerConfig::default()).unwrap();
        let orders = vec![vec![0, 1, 2], vec![2, 0, 1], vec![1, 2, 0], vec![0, 2, 1]];
        let mut ids_by_x = Vec::new();
        for f in 0..10 {
            let dx = 0.05 * f as f64;
            let people = vec![
                body(-0.8 + dx, 0.0),
                body(0.0 + dx, 0.6),
                body(0.7 + dx, -0.5),
            ];
            // Camera 3 misses person 1 on frame 4 (occlusion).
            let mut ord = orders.clone();
            if f == 4 {
                ord[3] = vec![0, 2];
            }
            let out = t.update(&see(&cal, &people, &ord)).unwrap();
            assert_eq!(out.len(), 3, "frame {f}");
            let mut ids: Vec<(u32, usize)> = out
                .iter()
                .map(|p| {
                    let c = centroid(p.joints.iter().map(|k| k.position)).unwrap();
                    let who = (0..3).min_by(|a, b| {
                        let d =
                            |i: usize| (centroid(people[i].iter().copied()).unwrap() - c).norm();
                        d(*a).total_cmp(&d(*b))
                    });
                    for (k, truth) in p.joints.iter().zip(&people[who.unwrap()]) {
                        assert!((k.position - truth).norm() < 1e-6);
                    }
                    (p.track_id, who.unwrap())
                })
                .collect();
            ids.sort();
            if f == 0 {
                ids_by_x = ids.clone();
            }
            assert_eq!(ids, ids_by_x, "frame {f}: ids must be stable");
        }
    }

    #[test]
    fn wrong_camera_count_or_joint_count_is_refused() {
        let cal = rig();
        let mut t =
            MultiViewTracker::new(&cal, Skeleton::Coco17, TrackerConfig::default()).unwrap();
        assert!(t.update(&[Frame2D::default()]).is_err());
        let mut frames = vec![Frame2D::default(); 4];
        frames[1].people.push(Keypoints2D {
            person_id: None,
            points: vec![Keypoint2D::MISSING; 3],
        });
        let e = t.update(&frames).unwrap_err().to_string();
        assert!(e.contains("cam02") && e.contains("COCO_17"), "{e}");
    }
}
