//! 3D keypoints as CSV (one row per frame, person and joint) and JSON lines (one object
//! per frame), the tables people load into pandas or a graphics engine.

use std::io::Write;

use crate::keypoints::Pose3D;

/// CSV header written by [`write_csv_rows`].
pub const CSV_HEADER: &str = "frame,time_s,track_id,joint,x_m,y_m,z_m,reprojection_error_px,views";

/// Writes the rows of one frame (missing joints get empty coordinates).
pub fn write_csv_rows(
    out: &mut impl Write,
    frame: usize,
    time_s: f64,
    joint_names: &[&str],
    poses: &[Pose3D],
) -> std::io::Result<()> {
    for pose in poses {
        for (j, k) in pose.joints.iter().enumerate() {
            let name = joint_names.get(j).copied().unwrap_or("?");
            if k.is_valid() {
                writeln!(
                    out,
                    "{frame},{time_s:.6},{},{name},{:.6},{:.6},{:.6},{:.3},{}",
                    pose.track_id,
                    k.position.x,
                    k.position.y,
                    k.position.z,
                    k.reprojection_error,
                    k.views()
                )?;
            } else {
                writeln!(out, "{frame},{time_s:.6},{},{name},,,,,0", pose.track_id)?;
            }
        }
    }
    Ok(())
}

/// One JSON object for a frame: `{"frame", "time_s", "people": [{"track_id", "joints":
/// {name: [x, y, z, err_px, views] | null}}]}`.
pub fn frame_json(
    frame: usize,
    time_s: f64,
    joint_names: &[&str],
    poses: &[Pose3D],
) -> serde_json::Value {
    let people: Vec<serde_json::Value> = poses
        .iter()
        .map(|p| {
            let joints: serde_json::Map<String, serde_json::Value> = p
                .joints
                .iter()
                .enumerate()
                .map(|(j, k)| {
                    let name = joint_names.get(j).copied().unwrap_or("?").to_owned();
                    let v = if k.is_valid() {
                        serde_json::json!([
                            k.position.x,
                            k.position.y,
                            k.position.z,
                            k.reprojection_error,
                            k.views()
                        ])
                    } else {
                        serde_json::Value::Null
                    };
                    (name, v)
                })
                .collect();
            serde_json::json!({"track_id": p.track_id, "joints": joints})
        })
        .collect();
    serde_json::json!({"frame": frame, "time_s": time_s, "people": people})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keypoints::Keypoint3D;
    use nalgebra::Point3;

    #[test]
    fn csv_and_json() {
        let poses = [Pose3D {
            track_id: 3,
            joints: vec![
                Keypoint3D {
                    position: Point3::new(1.0, 2.0, 3.0),
                    reprojection_error: 1.25,
                    view_mask: 0b101,
                },
                Keypoint3D::MISSING,
            ],
        }];
        let mut buf = Vec::new();
        write_csv_rows(&mut buf, 7, 0.5, &["A", "B"], &poses).unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert_eq!(
            s,
            "7,0.500000,3,A,1.000000,2.000000,3.000000,1.250,2\n7,0.500000,3,B,,,,,0\n"
        );
        let j = frame_json(7, 0.5, &["A", "B"], &poses);
        assert_eq!(j["people"][0]["joints"]["A"][4], 2);
        assert!(j["people"][0]["joints"]["B"].is_null());
    }
}
