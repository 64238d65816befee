//! `stadion track` through the real binary, on a project the repo generates itself
//! (`stadion track synth --project`: a 20 m sprint seen by 4 fixed cameras 15 m from the
//! lane, with pixel noise, outliers, swaps, occlusions and false detections). Checks that the outputs are there and
//! agree with the synthetic truth, and that broken projects are refused with an error that
//! names the file and the field. Needs nothing outside the repo.

mod offline;

use offline::{fails, ok, s};
use std::path::{Path, PathBuf};

const FRAMES_20M: usize = 170;

/// A synthetic 20 m project in `dir/project`; returns its path and the synth scores.
fn synth_project(dir: &Path) -> (PathBuf, serde_json::Value) {
    let project = dir.join("project");
    let out = ok(&[
        "track",
        "synth",
        "--race-m",
        "20",
        "--distance",
        "15",
        "--project",
        s(&project),
    ]);
    let scores: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("synth prints its scores as JSON");
    (project, scores)
}

fn pose_files(project: &Path, camera: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(project.join(format!("pose/{camera}_json")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn synthetic_project_through_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let (project, scores) = synth_project(tmp.path());
    let frames = scores["frames"].as_u64().unwrap() as usize;
    assert_eq!(frames, FRAMES_20M, "{scores}");
    for cam in ["cam01", "cam02", "cam03", "cam04"] {
        assert_eq!(pose_files(&project, cam).len(), frames, "{cam}");
    }
    assert!(project.join("calibration/Calib.toml").is_file());
    // Fixed cameras 15 m from the lane, the athlete ~150 px tall: a few centimetres.
    assert!(
        scores["mpjpe_filtered_mm"].as_f64().unwrap() < 80.0,
        "{scores}"
    );
    assert_eq!(scores["athlete_ids"].as_u64(), Some(1), "{scores}");

    // calibrate: reads the TOML back and converts it.
    let yaml = tmp.path().join("Calib.yml");
    let out = ok(&[
        "track",
        "calibrate",
        s(&project.join("calibration/Calib.toml")),
        "--output",
        s(&yaml),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
    assert!(std::fs::read_to_string(&yaml).unwrap().contains("cam04"));

    // triangulate: 3D tables, TRC and a summary with a small reprojection error.
    let out3d = tmp.path().join("out");
    ok(&[
        "track",
        "triangulate",
        s(&project),
        "--fps",
        "50",
        "--out",
        s(&out3d),
    ]);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out3d.join("summary.json")).unwrap()).unwrap();
    let tri = &summary["triangulation"];
    assert_eq!(tri["frames"].as_u64(), Some(frames as u64));
    let err = tri["mean_reprojection_error_px"].as_f64().unwrap();
    assert!(
        (0.5..6.0).contains(&err),
        "3 px noise, outliers rejected: {summary}"
    );
    assert!(tri["mean_views"].as_f64().unwrap() > 2.5, "{summary}");
    let csv = std::fs::read_to_string(out3d.join("points3d.csv")).unwrap();
    assert!(csv.lines().count() > frames * 10, "a row per joint");
    let trc = std::fs::read_to_string(out3d.join("athlete.trc")).unwrap();
    assert!(trc.starts_with("PathFileType"), "an OpenSim TRC");
    assert!(trc.lines().count() >= frames + 5);

    // analyse: splits at 10 and 20 m at plausible times, a top speed a sprinter reaches.
    let bio = tmp.path().join("bio");
    ok(&[
        "track",
        "analyse",
        s(&out3d.join("athlete.trc")),
        "--out",
        s(&bio),
    ]);
    let analysis: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bio.join("analysis.json")).unwrap()).unwrap();
    let top = analysis["top_speed_mps"].as_f64().unwrap();
    assert!((8.0..12.0).contains(&top), "{top}");
    let splits = std::fs::read_to_string(bio.join("splits.csv")).unwrap();
    assert_eq!(splits.lines().count(), 3, "header, 10 m and 20 m: {splits}");
    for file in ["frames.csv", "steps.csv", "speed.svg", "splits.svg"] {
        assert!(
            std::fs::metadata(bio.join(file)).unwrap().len() > 100,
            "{file}"
        );
    }

    // live: one JSON line per frame; the athlete ends near the finish.
    let out = ok(&["track", "live", s(&project), "--fps", "50"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), frames);
    let last = &lines[frames - 1]["athletes"];
    let distance = last
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["distance_m"].as_f64().unwrap())
        .fold(f64::NAN, f64::max);
    assert!((19.0..27.0).contains(&distance), "{last}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("p99"));

    // run: the whole chain into one folder (no videos here, so no overlay).
    let all = tmp.path().join("all");
    ok(&["track", "run", s(&project), "--fps", "50", "--out", s(&all)]);
    assert!(all.join("athlete.trc").is_file());
    assert!(all.join("biomech/analysis.json").is_file());
}

/// Copies a project so that each bad-input case breaks its own copy.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn bad_projects_are_refused_with_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, _) = synth_project(tmp.path());
    let case = |name: &str| {
        let p = tmp.path().join(name);
        copy_dir(&good, &p);
        p
    };
    let triangulate = |p: &Path| {
        let out = p.join("out");
        fails(&["track", "triangulate", s(p), "--out", s(&out)])
    };

    // A keypoint folder for a camera the calibration does not have.
    let p = case("unknown-camera");
    std::fs::rename(p.join("pose/cam04_json"), p.join("pose/cam09_json")).unwrap();
    let e = triangulate(&p);
    assert!(
        e.contains("cam09_json") && e.contains("`cam09` is not in the calibration"),
        "{e}"
    );

    // A calibrated camera without keypoints.
    let p = case("missing-camera");
    std::fs::remove_dir_all(p.join("pose/cam03_json")).unwrap();
    let e = triangulate(&p);
    assert!(e.contains("cam03") && e.contains("pose"), "{e}");

    // Keypoints for a camera missing from the calibration file.
    let p = case("camera-not-calibrated");
    let toml = std::fs::read_to_string(p.join("calibration/Calib.toml")).unwrap();
    let cut = toml.find("[cam02]").expect("a table per camera");
    let end = toml[cut + 1..]
        .find("\n[")
        .map_or(toml.len(), |i| cut + 1 + i + 1);
    std::fs::write(
        p.join("calibration/Calib.toml"),
        format!("{}{}", &toml[..cut], &toml[end..]),
    )
    .unwrap();
    let e = triangulate(&p);
    assert!(
        e.contains("cam02_json") && e.contains("`cam02` is not in the calibration"),
        "{e}"
    );

    // One camera has a frame less.
    let p = case("frame-counts");
    let last = pose_files(&p, "cam02").pop().unwrap();
    std::fs::remove_file(last).unwrap();
    let e = triangulate(&p);
    assert!(
        e.contains(&format!("cam02_json has {}", FRAMES_20M - 1))
            && e.contains(&format!("cam01_json has {FRAMES_20M}")),
        "{e}"
    );

    // NaN in the calibration.
    let p = case("nan-calibration");
    let toml = std::fs::read_to_string(p.join("calibration/Calib.toml")).unwrap();
    let line = toml
        .lines()
        .find(|l| l.starts_with("translation"))
        .unwrap()
        .to_owned();
    std::fs::write(
        p.join("calibration/Calib.toml"),
        toml.replacen(&line, "translation = [nan, 0.0, 1.0]", 1),
    )
    .unwrap();
    let e = triangulate(&p);
    assert!(
        e.contains("Calib.toml") && e.contains("cam01") && e.contains("translation"),
        "{e}"
    );

    // A singular camera matrix.
    let p = case("singular");
    let toml = std::fs::read_to_string(p.join("calibration/Calib.toml")).unwrap();
    let start = toml.find("matrix").unwrap();
    let end = start + toml[start..].find("]]").unwrap() + 2;
    std::fs::write(
        p.join("calibration/Calib.toml"),
        format!(
            "{}matrix = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]{}",
            &toml[..start],
            &toml[end..]
        ),
    )
    .unwrap();
    let e = triangulate(&p);
    assert!(
        e.contains("Calib.toml") && e.contains("cam01") && e.contains("matrix"),
        "{e}"
    );

    // NaN in a keypoint file (not JSON, so the file and its line are named).
    let p = case("nan-keypoints");
    let file = pose_files(&p, "cam01")[5].clone();
    let text = std::fs::read_to_string(&file).unwrap();
    let i = text.find("pose_keypoints_2d\":[").unwrap() + "pose_keypoints_2d\":[".len();
    std::fs::write(&file, format!("{}NaN{}", &text[..i], &text[i + 1..])).unwrap();
    let e = triangulate(&p);
    assert!(
        e.contains(file.file_name().unwrap().to_str().unwrap()),
        "{e}"
    );

    // A keypoint file whose joint count fits no skeleton.
    let p = case("joint-count");
    let file = pose_files(&p, "cam02")[7].clone();
    std::fs::write(
        &file,
        r#"{"people":[{"person_id":[-1],"pose_keypoints_2d":[1,2,0.9,3,4,0.9]}]}"#,
    )
    .unwrap();
    let e = triangulate(&p);
    assert!(
        e.contains(file.file_name().unwrap().to_str().unwrap()),
        "{e}"
    );

    // No calibration at all.
    let p = case("no-calibration");
    std::fs::remove_file(p.join("calibration/Calib.toml")).unwrap();
    let e = triangulate(&p);
    assert!(e.contains("calibration"), "{e}");

    // The pose command without videos says where it looked.
    let e = fails(&[
        "track",
        "pose",
        s(&good),
        "--model",
        s(&tmp.path().join("none.onnx")),
    ]);
    assert!(e.contains("videos"), "{e}");
}
