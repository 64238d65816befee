//! The chain over a whole capture, as the `stadion track` commands run it: find the files
//! of a Pose2Sim-style project, check that they fit together, triangulate every frame,
//! write TRC/CSV/JSON, and the live mode that turns each frame into one JSON line.
//!
//! Project layout (Pose2Sim's): `calibration/` holds one calibration file (`.toml`,
//! `.qca.txt` or `.yml`); `pose/<camera>_json/` (or `pose/<camera>/`) holds one OpenPose
//! JSON per frame; `videos/<camera>.<ext>` the videos.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nalgebra::Vector3;
use serde::Serialize;

use crate::associate::{MultiViewTracker, TrackerConfig};
use crate::camera::Calibration;
use crate::error::{Error, Result};
use crate::filter::{KalmanCa, Motion};
use crate::io::{openpose, points3d, trc};
use crate::keypoints::{CameraKeypoints, Frame2D, Pose3D};
use crate::skeleton::Skeleton;

/// The files of a project folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub root: PathBuf,
    pub calibration: PathBuf,
    /// `(camera, folder)` of the 2D keypoints found, in calibration order.
    pub pose_dirs: Vec<(String, PathBuf)>,
    /// `(camera, file)` of the videos found.
    pub videos: Vec<(String, PathBuf)>,
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    v
}

impl Project {
    /// Finds the calibration (the only file of a known format in `calibration/`, or the
    /// first in name order: `.toml` before `.qca.txt` before `.yml`), then every camera's
    /// keypoint folder and video. A folder or video named after a camera that is not in the
    /// calibration is an error (a typo would silently drop a view otherwise).
    pub fn open(root: &Path) -> Result<(Project, Calibration)> {
        let cal_dir = root.join("calibration");
        let mut candidates: Vec<PathBuf> = list(&cal_dir)
            .into_iter()
            .filter(|p| crate::calib::CalibFormat::from_path(p).is_some())
            .collect();
        candidates.sort_by_key(|p| match crate::calib::CalibFormat::from_path(p) {
            Some(crate::calib::CalibFormat::Toml) => 0,
            Some(crate::calib::CalibFormat::Qualisys) => 1,
            _ => 2,
        });
        let calibration = candidates.into_iter().next().ok_or_else(|| {
            Error::parse(
                &cal_dir.display().to_string(),
                None,
                "calibration file",
                "no .toml, .qca.txt or .yml calibration in the folder",
            )
        })?;
        let cal = crate::calib::read(&calibration, None)?;
        let pose_dirs = find_pose_dirs(&cal, &root.join("pose"))?;
        let mut videos = Vec::new();
        for p in list(&root.join("videos"))
            .into_iter()
            .filter(|p| p.is_file())
        {
            let name = p
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            cal.camera(&name, &p.display().to_string())?;
            videos.push((name, p));
        }
        videos.sort_by_key(|(n, _)| cal.index_of(n));
        Ok((
            Project {
                root: root.to_owned(),
                calibration,
                pose_dirs,
                videos,
            },
            cal,
        ))
    }
}

/// The keypoint folders `<camera>_json/` (or `<camera>/`) in `dir`, in calibration order;
/// none if `dir` does not exist. A folder named after an uncalibrated camera is an error.
pub fn find_pose_dirs(cal: &Calibration, dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let camera_of = |stem: &str| stem.strip_suffix("_json").unwrap_or(stem).to_owned();
    let mut pose_dirs = Vec::new();
    for p in list(dir).into_iter().filter(|p| p.is_dir()) {
        let name = camera_of(&p.file_name().unwrap_or_default().to_string_lossy());
        cal.camera(&name, &p.display().to_string())?;
        pose_dirs.push((name, p));
    }
    pose_dirs.sort_by_key(|(n, _)| cal.index_of(n));
    Ok(pose_dirs)
}

/// Reads every camera's keypoints and lines them up with the calibration: every camera of
/// the calibration must have keypoints, all with one skeleton and the same frame count.
pub fn load_keypoints(
    calibration: &Calibration,
    dirs: &[(String, PathBuf)],
    skeleton: Option<Skeleton>,
) -> Result<Vec<CameraKeypoints>> {
    let mut out: Vec<Option<(CameraKeypoints, &Path)>> = vec![None; calibration.len()];
    let mut skeleton = skeleton;
    for (camera, dir) in dirs {
        let i = calibration
            .camera(camera, &dir.display().to_string())
            .map(|_| calibration.index_of(camera).unwrap_or(0))?;
        let k = openpose::read_dir(dir, camera, skeleton)?;
        skeleton.get_or_insert(k.skeleton);
        out[i] = Some((k, dir));
    }
    let missing: Vec<&str> = calibration
        .names()
        .into_iter()
        .zip(&out)
        .filter(|(_, k)| k.is_none())
        .map(|(n, _)| n)
        .collect();
    if !missing.is_empty() {
        let place = dirs
            .first()
            .and_then(|(_, d)| d.parent())
            .map(|p| format!(" in {}", p.display()))
            .unwrap_or_default();
        return Err(Error::Mismatch {
            what: "keypoints".into(),
            reason: format!(
                "no keypoint folder <camera>_json{place} for calibrated camera(s) {}",
                missing.join(", ")
            ),
        });
    }
    let out: Vec<(CameraKeypoints, &Path)> = out.into_iter().flatten().collect();
    if out
        .windows(2)
        .any(|w| w[0].0.frames.len() != w[1].0.frames.len())
    {
        let counts: Vec<String> = out
            .iter()
            .map(|(k, dir)| format!("{} has {}", dir.display(), k.frames.len()))
            .collect();
        return Err(Error::Mismatch {
            what: "keypoint frame counts".into(),
            reason: format!(
                "every camera's folder must hold the same number of frame files: {}",
                counts.join(", ")
            ),
        });
    }
    Ok(out.into_iter().map(|(k, _)| k).collect())
}

/// Every frame's people and a summary of how well the views agreed.
#[derive(Debug, Clone)]
pub struct Sequence {
    pub skeleton: Skeleton,
    pub fps: f64,
    pub frames: Vec<Vec<Pose3D>>,
    pub summary: Summary,
}

/// Quality figures of a triangulated sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub frames: usize,
    pub people_ids: usize,
    /// Mean reprojection error over every triangulated joint (pixels).
    pub mean_reprojection_error_px: f64,
    pub median_reprojection_error_px: f64,
    /// Mean number of views a triangulated joint was seen in.
    pub mean_views: f64,
    pub joints_triangulated: usize,
    /// Mean processing time per frame (association + triangulation), µs.
    pub mean_frame_us: f64,
}

/// Associates and triangulates every frame. `on_frame` is called after each frame.
pub fn triangulate_sequence(
    calibration: &Calibration,
    keypoints: &[CameraKeypoints],
    fps: f64,
    config: TrackerConfig,
    on_frame: &mut dyn FnMut(usize),
) -> Result<Sequence> {
    let skeleton = keypoints
        .first()
        .map(|k| k.skeleton)
        .ok_or(Error::Mismatch {
            what: "keypoints".into(),
            reason: "no camera".into(),
        })?;
    let n = keypoints[0].frames.len();
    let mut tracker = MultiViewTracker::new(calibration, skeleton, config)?;
    let mut frames = Vec::with_capacity(n);
    let mut views: Vec<Frame2D> = Vec::with_capacity(keypoints.len());
    let (mut errors, mut view_sum) = (Vec::new(), 0u64);
    let mut ids = std::collections::BTreeSet::new();
    let start = Instant::now();
    for f in 0..n {
        views.clear();
        views.extend(keypoints.iter().map(|k| k.frames[f].clone()));
        let poses = tracker.update(&views)?.to_vec();
        for p in &poses {
            ids.insert(p.track_id);
            for k in p.joints.iter().filter(|k| k.is_valid()) {
                errors.push(k.reprojection_error);
                view_sum += u64::from(k.views());
            }
        }
        frames.push(poses);
        on_frame(f + 1);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let count = errors.len();
    let mean = errors.iter().sum::<f64>() / count.max(1) as f64;
    errors.sort_by(f64::total_cmp);
    Ok(Sequence {
        skeleton,
        fps,
        summary: Summary {
            frames: n,
            people_ids: ids.len(),
            mean_reprojection_error_px: if count == 0 { f64::NAN } else { mean },
            median_reprojection_error_px: errors.get(count / 2).copied().unwrap_or(f64::NAN),
            mean_views: view_sum as f64 / count.max(1) as f64,
            joints_triangulated: count,
            mean_frame_us: 1e6 * elapsed / n.max(1) as f64,
        },
        frames,
    })
}

impl Sequence {
    /// The track seen in the most frames (the athlete, for a single-person capture), as a
    /// motion with unknown joints where it was not seen; `None` if nobody was seen.
    pub fn main_track(&self) -> Option<(u32, Motion)> {
        let mut counts = std::collections::BTreeMap::new();
        for p in self.frames.iter().flatten() {
            *counts.entry(p.track_id).or_insert(0usize) += 1;
        }
        let (&id, _) = counts
            .iter()
            .max_by_key(|(id, c)| (**c, std::cmp::Reverse(**id)))?;
        let empty = Pose3D {
            track_id: id,
            joints: vec![crate::keypoints::Keypoint3D::MISSING; self.skeleton.joint_count()],
        };
        let poses: Vec<Pose3D> = self
            .frames
            .iter()
            .map(|f| {
                f.iter()
                    .find(|p| p.track_id == id)
                    .cloned()
                    .unwrap_or_else(|| empty.clone())
            })
            .collect();
        Some((id, Motion::from_poses(self.skeleton, self.fps, &poses)))
    }

    /// Writes `points3d.csv` and `points3d.jsonl` (every person, every frame) into `dir`.
    pub fn write_tables(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let names = self.skeleton.joint_names();
        let csv = dir.join("points3d.csv");
        let jsonl = dir.join("points3d.jsonl");
        let mut c =
            std::io::BufWriter::new(std::fs::File::create(&csv).map_err(|e| Error::io(&csv, e))?);
        let mut j = std::io::BufWriter::new(
            std::fs::File::create(&jsonl).map_err(|e| Error::io(&jsonl, e))?,
        );
        writeln!(c, "{}", points3d::CSV_HEADER).map_err(|e| Error::io(&csv, e))?;
        for (f, poses) in self.frames.iter().enumerate() {
            let t = f as f64 / self.fps;
            points3d::write_csv_rows(&mut c, f, t, names, poses).map_err(|e| Error::io(&csv, e))?;
            writeln!(j, "{}", points3d::frame_json(f, t, names, poses))
                .map_err(|e| Error::io(&jsonl, e))?;
        }
        c.flush().map_err(|e| Error::io(&csv, e))?;
        j.flush().map_err(|e| Error::io(&jsonl, e))
    }
}

/// Writes a motion as a TRC file (OpenSim's y-up, metres).
pub fn write_trc(motion: &Motion, path: &Path) -> Result<()> {
    let data = trc::TrcData {
        rate_hz: motion.fps,
        units: "m".into(),
        markers: motion
            .skeleton
            .joint_names()
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        first_frame: 1,
        frames: motion
            .frames
            .iter()
            .map(|f| f.iter().map(trc::z_up_to_y_up).collect())
            .collect(),
    };
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| Error::io(path, e))?);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    trc::write_trc(&mut out, &name, &data).map_err(|e| Error::io(path, e))?;
    out.flush().map_err(|e| Error::io(path, e))
}

/// Reads a TRC file back into a motion (z up again); the skeleton is the one whose joint
/// names are the file's markers.
pub fn read_trc(path: &Path) -> Result<Motion> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let data = trc::read_trc(&text, &origin)?;
    let skeleton = [
        Skeleton::Coco17,
        Skeleton::Halpe26,
        Skeleton::Body25,
        Skeleton::Coco18,
        Skeleton::Blazepose33,
    ]
    .into_iter()
    .find(|s| s.joint_names().iter().eq(data.markers.iter()))
    .ok_or_else(|| {
        Error::parse(
            &origin,
            Some(4),
            "markers",
            format!(
                "marker names [{}] are no known skeleton's joints in order",
                data.markers.join(", ")
            ),
        )
    })?;
    let scale = if data.units == "mm" { 0.001 } else { 1.0 };
    Ok(Motion {
        skeleton,
        fps: data.rate_hz,
        frames: data
            .frames
            .iter()
            .map(|f| {
                f.iter()
                    .map(|p| nalgebra::Point3::new(p.z, p.x, p.y) * scale)
                    .collect()
            })
            .collect(),
    })
}

/// One athlete in a live frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveAthlete {
    pub track_id: u32,
    /// Mid-hip position (m), Kalman-filtered.
    pub position: [f64; 3],
    /// Distance along the lane from the start line (m).
    pub distance_m: f64,
    pub speed_mps: f64,
    pub accel_mps2: f64,
    pub joints_seen: usize,
    pub mean_reprojection_error_px: f64,
}

/// What the live mode emits per frame (one JSON line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveFrame {
    pub frame: u64,
    pub time_s: f64,
    pub athletes: Vec<LiveAthlete>,
    /// Time spent on this frame inside stadion (association, triangulation, filters), µs.
    pub latency_us: f64,
}

/// Frame-by-frame processing for live graphics: each call takes one synchronised frame of
/// detections and returns the athletes' metrics at once. Speed and acceleration come from a
/// constant-acceleration Kalman filter per athlete and axis on the mid-hip point, which adds
/// no lag on a steadily accelerating runner (see `docs/track.md`); nothing looks ahead.
#[derive(Debug)]
pub struct LiveTracker {
    tracker: MultiViewTracker,
    hips: (usize, usize),
    fps: f64,
    lane: Vector3<f64>,
    start: nalgebra::Point3<f64>,
    filters: Vec<(u32, [KalmanCa; 3], u64)>,
    frame: u64,
}

impl LiveTracker {
    pub fn new(
        calibration: &Calibration,
        skeleton: Skeleton,
        fps: f64,
        geometry: &crate::biomech::TrackGeometry,
        config: TrackerConfig,
    ) -> Result<Self> {
        let hips = skeleton
            .index_of("LHip")
            .zip(skeleton.index_of("RHip"))
            .ok_or_else(|| Error::Mismatch {
                what: format!("skeleton {}", skeleton.name()),
                reason: "live metrics need LHip and RHip".into(),
            })?;
        if !(fps.is_finite() && fps > 0.0) {
            return Err(Error::Mismatch {
                what: "fps".into(),
                reason: format!("must be positive, got {fps}"),
            });
        }
        Ok(LiveTracker {
            tracker: MultiViewTracker::new(calibration, skeleton, config)?,
            hips,
            fps,
            lane: geometry
                .lane
                .try_normalize(1e-12)
                .unwrap_or_else(Vector3::x),
            start: geometry.start,
            filters: Vec::new(),
            frame: 0,
        })
    }

    /// New camera poses for the coming frames (pan-tilt heads); see
    /// [`MultiViewTracker::set_calibration`].
    pub fn set_calibration(&mut self, calibration: &Calibration) -> Result<()> {
        self.tracker.set_calibration(calibration)
    }

    /// Processes one frame (`frames[c]`: camera `c`'s detections).
    pub fn push(&mut self, frames: &[Frame2D]) -> Result<LiveFrame> {
        let t0 = Instant::now();
        let dt = 1.0 / self.fps;
        let frame = self.frame;
        self.frame += 1;
        let poses = self.tracker.update(frames)?;
        let mut athletes = Vec::with_capacity(poses.len());
        for p in poses {
            let (l, r) = (p.joints[self.hips.0], p.joints[self.hips.1]);
            let hip = match (l.is_valid(), r.is_valid()) {
                (true, true) => Some(nalgebra::center(&l.position, &r.position)),
                (true, false) => Some(l.position),
                (false, true) => Some(r.position),
                _ => None,
            };
            let slot = match self.filters.iter().position(|f| f.0 == p.track_id) {
                Some(i) => i,
                None => {
                    self.filters.push((
                        p.track_id,
                        std::array::from_fn(|_| KalmanCa::new(50.0, 0.03)),
                        frame,
                    ));
                    self.filters.len() - 1
                }
            };
            let (_, kf, seen) = &mut self.filters[slot];
            *seen = frame;
            let s: [[f64; 3]; 3] = std::array::from_fn(|k| kf[k].update(hip.map(|h| h[k]), dt));
            let pos = Vector3::new(s[0][0], s[1][0], s[2][0]);
            let vel = Vector3::new(s[0][1], s[1][1], s[2][1]);
            let acc = Vector3::new(s[0][2], s[1][2], s[2][2]);
            athletes.push(LiveAthlete {
                track_id: p.track_id,
                position: [pos.x, pos.y, pos.z],
                distance_m: (pos - self.start.coords).dot(&self.lane),
                speed_mps: vel.dot(&self.lane),
                accel_mps2: acc.dot(&self.lane),
                joints_seen: p.joints.iter().filter(|k| k.is_valid()).count(),
                mean_reprojection_error_px: p.mean_reprojection_error(),
            });
        }
        // Filters of athletes gone for 2 s are dropped.
        let horizon = (2.0 * self.fps) as u64;
        self.filters.retain(|f| frame - f.2 <= horizon);
        Ok(LiveFrame {
            frame,
            time_s: frame as f64 * dt,
            athletes,
            latency_us: t0.elapsed().as_secs_f64() * 1e6,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{SprintConfig, SyntheticSprint};

    #[test]
    fn live_mode_follows_the_sprinter() {
        let race = SyntheticSprint::generate(&SprintConfig {
            distance_m: 30.0,
            ..SprintConfig::default()
        });
        let mut live = LiveTracker::new(
            &race.calibrations[0],
            Skeleton::Coco17,
            race.config.fps,
            &crate::biomech::TrackGeometry::default(),
            TrackerConfig::default(),
        )
        .unwrap();
        let mut last = None;
        for (cal, views) in race.calibrations.iter().zip(&race.views) {
            live.set_calibration(cal).unwrap();
            last = Some(live.push(views).unwrap());
        }
        let last = last.unwrap();
        let a = &last.athletes[0];
        let n = race.frame_count() - 1;
        assert!((a.speed_mps - race.speed_mps[n]).abs() < 0.5, "{a:?}");
        assert!(
            (a.distance_m - race.truth.frames[n][11].x).abs() < 0.1,
            "{a:?}"
        );
        let line = serde_json::to_string(&last).unwrap();
        assert!(line.contains("\"speed_mps\"") && !line.contains('\n'));
    }

    #[test]
    fn trc_round_trips_to_the_same_motion() {
        let race = SyntheticSprint::generate(&SprintConfig {
            distance_m: 10.0,
            ..SprintConfig::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("athlete.trc");
        write_trc(&race.truth, &path).unwrap();
        let back = read_trc(&path).unwrap();
        assert_eq!(back.skeleton, Skeleton::Coco17);
        assert_eq!(back.frames.len(), race.truth.frames.len());
        assert!((back.frames[7][15] - race.truth.frames[7][15]).norm() < 1e-4);
    }

    #[test]
    fn project_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = Project::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("calibration"), "{e}");
        std::fs::create_dir_all(dir.path().join("calibration")).unwrap();
        let cal = crate::calib::tests::rig();
        crate::calib::write(&dir.path().join("calibration/Calib.toml"), &cal, None).unwrap();
        std::fs::create_dir_all(dir.path().join("pose/cam09_json")).unwrap();
        let e = Project::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("cam09") && e.contains("pose"), "{e}");
        std::fs::remove_dir(dir.path().join("pose/cam09_json")).unwrap();
        // Two cameras with keypoints of different lengths.
        for (cam, n) in [("cam01", 3), ("cam02", 2), ("cam03", 3), ("cam04", 3)] {
            let d = dir.path().join(format!("pose/{cam}_json"));
            std::fs::create_dir_all(&d).unwrap();
            for f in 0..n {
                let k = vec![crate::keypoints::Keypoint2D::new(1.0, 2.0, 0.9); 17];
                let frame = Frame2D {
                    people: vec![crate::keypoints::Keypoints2D {
                        person_id: None,
                        points: k,
                    }],
                };
                std::fs::write(
                    d.join(format!("{cam}_{f:06}.json")),
                    openpose::render_frame(&frame),
                )
                .unwrap();
            }
        }
        let (p, cal) = Project::open(dir.path()).unwrap();
        let e = load_keypoints(&cal, &p.pose_dirs, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cam02_json has 2") && e.contains("cam01_json has 3"),
            "{e}"
        );
        let e = load_keypoints(&cal, &p.pose_dirs[..2], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cam03, cam04"), "{e}");
    }
}
