//! OpenPose-style JSON, one file per frame per camera, as written by OpenPose, MMPose /
//! RTMPose (through Pose2Sim) and Pose2Sim itself:
//! `{"people": [{"person_id": [-1], "pose_keypoints_2d": [x0, y0, c0, x1, ...]}]}`.
//! Folders follow Pose2Sim's layout (`pose/cam01_json/cam01_000000000000_keypoints.json`);
//! frames are ordered by the last number in the file name.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::keypoints::{CameraKeypoints, Frame2D, Keypoint2D, Keypoints2D};
use crate::skeleton::Skeleton;

/// Parses one frame; every person must have the same number of joints (returned too, `0`
/// when nobody was detected). Bad numbers become missing keypoints only when OpenPose
/// itself would write them (`0, 0, 0`); NaN or non-numbers are refused.
pub fn parse_frame(text: &str, origin: &str) -> Result<(Frame2D, usize)> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::parse(origin, Some(e.line()), "json", e.to_string()))?;
    let Some(people) = v.get("people").and_then(Value::as_array) else {
        return Err(Error::parse(
            origin,
            None,
            "people",
            "missing or not an array",
        ));
    };
    let mut frame = Frame2D::default();
    let mut joints = None;
    for (i, p) in people.iter().enumerate() {
        let field = format!("people[{i}].pose_keypoints_2d");
        let Some(raw) = p.get("pose_keypoints_2d").and_then(Value::as_array) else {
            return Err(Error::parse(origin, None, field, "missing or not an array"));
        };
        if raw.len() % 3 != 0 {
            return Err(Error::parse(
                origin,
                None,
                field,
                format!("{} values, not a multiple of 3", raw.len()),
            ));
        }
        let n = raw.len() / 3;
        if *joints.get_or_insert(n) != n {
            return Err(Error::parse(
                origin,
                None,
                field,
                format!("{n} joints, earlier people have {}", joints.unwrap_or(0)),
            ));
        }
        let mut points = Vec::with_capacity(n);
        for (j, c) in raw.chunks_exact(3).enumerate() {
            let num = |k: usize| {
                c[k].as_f64().filter(|v| v.is_finite()).ok_or_else(|| {
                    Error::parse(
                        origin,
                        None,
                        format!("{field}[{}]", 3 * j + k),
                        format!("not a finite number: {}", c[k]),
                    )
                })
            };
            points.push(Keypoint2D::new(num(0)?, num(1)?, num(2)?));
        }
        let person_id = match p.get("person_id") {
            Some(Value::Array(a)) => a.first().and_then(Value::as_i64),
            Some(v) => v.as_i64(),
            None => None,
        }
        .filter(|id| *id >= 0);
        frame.people.push(Keypoints2D { person_id, points });
    }
    Ok((frame, joints.unwrap_or(0)))
}

/// Writes one frame in OpenPose's layout (`version` 1.3, `person_id` as `[id]` or `[-1]`).
pub fn render_frame(frame: &Frame2D) -> String {
    let people: Vec<Value> = frame
        .people
        .iter()
        .map(|p| {
            let kp: Vec<f64> = p.points.iter().flat_map(|k| [k.x, k.y, k.confidence]).collect();
            serde_json::json!({
                "person_id": [p.person_id.unwrap_or(-1)],
                "pose_keypoints_2d": kp,
                "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
                "pose_keypoints_3d": [], "face_keypoints_3d": [],
                "hand_left_keypoints_3d": [], "hand_right_keypoints_3d": [],
            })
        })
        .collect();
    serde_json::json!({"version": 1.3, "people": people}).to_string()
}

/// The last run of digits in a file name (the frame number), for ordering.
fn frame_number(path: &Path) -> Option<u64> {
    let stem = path.file_name()?.to_str()?;
    let end = stem.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = stem[..end]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    stem[start..end].parse().ok()
}

/// Writes one JSON file per frame into `dir` (created if needed), named like Pose2Sim's
/// (`<camera>_<frame:012>_keypoints.json`) so [`read_dir`] reads them back in order.
pub fn write_dir(keypoints: &CameraKeypoints, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    keypoints
        .frames
        .iter()
        .enumerate()
        .map(|(i, frame)| {
            let file = dir.join(format!("{}_{i:012}_keypoints.json", keypoints.camera));
            std::fs::write(&file, render_frame(frame)).map_err(|e| Error::io(&file, e))?;
            Ok(file)
        })
        .collect()
}

/// The JSON files of a folder in frame order.
pub fn frame_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<(Option<u64>, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("json"))
        })
        .map(|p| (frame_number(&p), p))
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// Reads a folder of per-frame JSON files for `camera`. The skeleton is `skeleton` or, if
/// `None`, guessed from the joint count (BODY_25 = 25, COCO = 17/18, HALPE = 26, BlazePose
/// = 33); a file whose joint count disagrees is refused with its name.
pub fn read_dir(dir: &Path, camera: &str, skeleton: Option<Skeleton>) -> Result<CameraKeypoints> {
    let files = frame_files(dir)?;
    if files.is_empty() {
        return Err(Error::parse(
            &dir.display().to_string(),
            None,
            "*.json",
            "no keypoint file in folder",
        ));
    }
    let mut skeleton = skeleton;
    let mut frames = Vec::with_capacity(files.len());
    for f in &files {
        let origin = f.display().to_string();
        let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
        let (frame, n) = parse_frame(&text, &origin)?;
        if n > 0 {
            let s = match skeleton {
                Some(s) => s,
                None => *skeleton.insert(Skeleton::from_joint_count(n).ok_or_else(|| {
                    Error::parse(
                        &origin,
                        None,
                        "pose_keypoints_2d",
                        format!("{n} joints match no known skeleton"),
                    )
                })?),
            };
            if s.joint_count() != n {
                return Err(Error::parse(
                    &origin,
                    None,
                    "pose_keypoints_2d",
                    format!(
                        "{n} joints, but the skeleton {} has {}",
                        s.name(),
                        s.joint_count()
                    ),
                ));
            }
        }
        frames.push(frame);
    }
    let skeleton = skeleton.ok_or_else(|| {
        Error::parse(
            &dir.display().to_string(),
            None,
            "people",
            "nobody detected in any frame and no skeleton given",
        )
    })?;
    Ok(CameraKeypoints {
        camera: camera.to_owned(),
        skeleton,
        frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_openpose_output() {
        let text = r#"{"version":1.3,"people":[{"person_id":[-1],"pose_keypoints_2d":[531.5,230.1,0.91,0,0,0],"face_keypoints_2d":[]},
                       {"person_id":[4],"pose_keypoints_2d":[1,2,0.5,3,4,0.25]}]}"#;
        let (f, n) = parse_frame(text, "a.json").unwrap();
        assert_eq!(n, 2);
        assert_eq!(f.people[0].person_id, None);
        assert_eq!(f.people[1].person_id, Some(4));
        assert!(!f.people[0].points[1].is_valid());
        let (back, _) = parse_frame(&render_frame(&f), "b").unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn bad_frames_name_the_field() {
        let e = parse_frame(r#"{"people":[{"pose_keypoints_2d":[1,2]}]}"#, "f.json").unwrap_err();
        assert!(e.to_string().contains("people[0].pose_keypoints_2d"), "{e}");
        let e =
            parse_frame(r#"{"people":[{"pose_keypoints_2d":[1,"x",3]}]}"#, "f.json").unwrap_err();
        assert!(e.to_string().contains("pose_keypoints_2d[1]"), "{e}");
        assert!(
            parse_frame("{", "f.json")
                .unwrap_err()
                .to_string()
                .starts_with("f.json:1")
        );
    }

    #[test]
    fn frame_order_is_numeric() {
        assert_eq!(
            frame_number(Path::new("cam01_000000000012_keypoints.json")),
            Some(12)
        );
        assert_eq!(frame_number(Path::new("x/9.json")), Some(9));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(s in ".{0,200}") {
            let _ = parse_frame(&s, "p");
        }

        #[test]
        fn round_trip(people in prop::collection::vec(prop::collection::vec((-1e4f64..1e4, -1e4f64..1e4, 0f64..1.0), 17), 0..4)) {
            let f = Frame2D { people: people.into_iter().map(|pts| Keypoints2D {
                person_id: None,
                points: pts.into_iter().map(|(x, y, c)| Keypoint2D::new(x, y, c)).collect(),
            }).collect() };
            let (back, _) = parse_frame(&render_frame(&f), "p").unwrap();
            // serde_json parses floats to within one ulp, not always exactly.
            prop_assert_eq!(back.people.len(), f.people.len());
            for (a, b) in back.people.iter().zip(&f.people) {
                for (p, q) in a.points.iter().zip(&b.points) {
                    prop_assert!((p.x - q.x).abs() <= 1e-9 * q.x.abs().max(1.0));
                    prop_assert!((p.y - q.y).abs() <= 1e-9 * q.y.abs().max(1.0));
                    prop_assert!((p.confidence - q.confidence).abs() <= 1e-12);
                }
            }
        }
    }
}
