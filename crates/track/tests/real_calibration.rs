//! The real Qualisys calibration of Pose2Sim's demo (`../shared/data/track/...` beside the
//! repository): values must be physically sane and survive conversion to every format.

use std::path::PathBuf;

use nalgebra::{Matrix3, Point3, Vector3};
use stadion_track::{CalibFormat, calib};

fn demo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/track/pose2sim-demo-single/calibration/Calib.qca.txt")
}

#[test]
fn qualisys_demo_calibration_is_sane() {
    let cal =
        calib::read(&demo(), None).expect("the demo calibration (../shared/data) must be present");
    assert_eq!(cal.names(), ["cam01", "cam02", "cam03", "cam04"]);
    for c in &cal.cameras {
        assert_eq!(c.size, (1088, 1920), "{}", c.name);
        // 9.3 mm lens on a portrait 1088×1920 sensor: about 1680 px.
        assert!(
            (1600.0..1760.0).contains(&c.intrinsics.fx),
            "{} fx {}",
            c.name,
            c.intrinsics.fx
        );
        assert!((c.intrinsics.fx / c.intrinsics.fy - 1.0).abs() < 1e-3);
        assert!((c.intrinsics.cx - 544.0).abs() < 60.0 && (c.intrinsics.cy - 960.0).abs() < 60.0);
        // Mounted about 1.7–2.1 m high, 2.5–4.5 m from the capture volume's centre.
        let o = c.centre();
        assert!((1.5..2.3).contains(&o.z), "{} height {}", c.name, o.z);
        let d = (o.x * o.x + o.y * o.y).sqrt();
        assert!((2.0..5.0).contains(&d), "{} distance {d}", c.name);
    }
    for (i, a) in cal.cameras.iter().enumerate() {
        for b in &cal.cameras[i + 1..] {
            let d = (a.centre() - b.centre()).norm();
            assert!((1.5..8.0).contains(&d), "{}–{}: {d} m", a.name, b.name);
        }
    }
    // The rotation convention is right when the optical axes meet: the point closest to
    // all four axes is in front of every camera and images near every image's centre.
    let (mut m, mut v) = (Matrix3::zeros(), Vector3::zeros());
    for c in &cal.cameras {
        let axis = c.rotation.inverse() * Vector3::z();
        let p = Matrix3::identity() - axis * axis.transpose();
        m += p;
        v += p * c.centre().coords;
    }
    let meet = Point3::from(m.try_inverse().unwrap() * v);
    assert!(
        meet.coords.norm() < 1.5,
        "axes meet at {meet:?}, far from the origin"
    );
    for c in &cal.cameras {
        assert!(c.world_to_camera(&meet).z > 1.5, "{} looks away", c.name);
        let p = c.project(&meet).unwrap();
        assert!(
            (p.x - 544.0).abs() < 250.0 && (p.y - 960.0).abs() < 400.0,
            "{}: {p:?}",
            c.name
        );
        // A standing person (feet at the floor, head at 1.8 m) is in every image.
        for z in [0.0, 1.8] {
            let q = c.project(&Point3::new(meet.x, meet.y, z)).unwrap();
            assert!(
                q.x > 0.0 && q.x < 1088.0 && q.y > 0.0 && q.y < 1920.0,
                "{} z={z}: {q:?}",
                c.name
            );
        }
        // Feet lower in the image than the head: world z is up.
        let feet = c.project(&Point3::new(meet.x, meet.y, 0.0)).unwrap();
        let head = c.project(&Point3::new(meet.x, meet.y, 1.8)).unwrap();
        assert!(feet.y > head.y, "{}: image upside down", c.name);
    }
}

#[test]
fn qualisys_demo_converts_to_every_format_and_back() {
    let cal = calib::read(&demo(), Some(CalibFormat::Qualisys)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["Calib.toml", "Calib.yml"] {
        let path = dir.path().join(name);
        calib::write(&path, &cal, None).unwrap();
        let back = calib::read(&path, None).unwrap();
        for (a, b) in cal.cameras.iter().zip(&back.cameras) {
            assert_eq!(a.name, b.name);
            let p = Point3::new(0.3, -0.2, 1.1);
            let (pa, pb) = (a.project(&p).unwrap(), b.project(&p).unwrap());
            assert!(
                (pa - pb).norm() < 1e-9,
                "{name} {}: {pa:?} vs {pb:?}",
                a.name
            );
        }
    }
}

#[test]
fn missing_file_and_unknown_extension_are_named() {
    let e = calib::read(std::path::Path::new("/nonexistent/c.toml"), None).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/c.toml"), "{e}");
    let e = calib::read(std::path::Path::new("c.txt"), None).unwrap_err();
    assert!(e.to_string().contains("unknown calibration format"), "{e}");
}
