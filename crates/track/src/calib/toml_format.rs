//! Pose2Sim / anipose TOML: one table per camera with `name`, `size = [w, h]`,
//! `matrix` (K, 3×3), `distortions` (`[k1, k2, p1, p2]` or with `k3`), `rotation`
//! (Rodrigues vector, world→camera), `translation` (metres), `fisheye`; Pose2Sim adds a
//! `[metadata]` table, which is skipped.

use nalgebra::{Matrix3, Vector3};
use toml::{Table, Value};

use super::{rotation_from_matrix, rotation_from_rodrigues};
use crate::camera::{Calibration, Camera, Distortion, Intrinsics};
use crate::error::{Error, Result};

/// Parses Pose2Sim / anipose TOML.
pub fn read_toml(text: &str, origin: &str) -> Result<Calibration> {
    let table: Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        Error::parse(origin, line, "toml", e.message().to_owned())
    })?;
    let mut cameras = Vec::new();
    for (key, value) in &table {
        if key == "metadata" {
            continue;
        }
        let Value::Table(t) = value else {
            continue;
        };
        cameras.push(camera_from_table(key, t, origin)?);
    }
    Ok(Calibration::new(cameras))
}

fn camera_from_table(key: &str, t: &Table, origin: &str) -> Result<Camera> {
    let name = match t.get("name") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(field_err(origin, key, "name", "expected a string")),
        None => key.to_owned(),
    };
    let err = |field: &str, reason: String| field_err(origin, &name, field, reason);
    if t.get("fisheye").and_then(Value::as_bool) == Some(true) {
        return Err(err("fisheye", "the fisheye model is not supported".into()));
    }
    let size = numbers(t, "size").map_err(|e| err("size", e))?;
    let [w, h] = size[..] else {
        return Err(err(
            "size",
            format!("expected [width, height], got {size:?}"),
        ));
    };
    if !(w >= 1.0 && h >= 1.0 && w < 1e6 && h < 1e6) {
        return Err(err("size", format!("implausible image size [{w}, {h}]")));
    }
    let k = matrix3(t, "matrix").map_err(|e| err("matrix", e))?;
    let intrinsics = Intrinsics::from_matrix(&k).map_err(|e| err("matrix", e))?;
    let d = numbers(t, "distortions").map_err(|e| err("distortions", e))?;
    let distortion = Distortion::from_opencv(&d).map_err(|e| err("distortions", e))?;
    let rotation = match t.get("rotation") {
        Some(Value::Array(a)) if a.len() == 3 && a.iter().all(|r| r.is_array()) => {
            rotation_from_matrix(&matrix3(t, "rotation").map_err(|e| err("rotation", e))?)
        }
        _ => rotation_from_rodrigues(&numbers(t, "rotation").map_err(|e| err("rotation", e))?),
    }
    .map_err(|e| err("rotation", e))?;
    let tr = numbers(t, "translation").map_err(|e| err("translation", e))?;
    let [x, y, z] = tr[..] else {
        return Err(err(
            "translation",
            format!("expected 3 values, got {}", tr.len()),
        ));
    };
    Ok(Camera {
        name,
        size: (w.round() as u32, h.round() as u32),
        intrinsics,
        distortion,
        rotation,
        translation: Vector3::new(x, y, z),
    })
}

fn field_err(origin: &str, camera: &str, field: &str, reason: impl Into<String>) -> Error {
    Error::Camera {
        file: origin.to_owned(),
        camera: camera.to_owned(),
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

fn numbers(t: &Table, key: &str) -> Result<Vec<f64>, String> {
    let Some(v) = t.get(key) else {
        return Err("missing".into());
    };
    let Value::Array(a) = v else {
        return Err("expected an array of numbers".into());
    };
    a.iter()
        .map(|x| number(x).ok_or_else(|| format!("not a number: {x}")))
        .collect()
}

fn matrix3(t: &Table, key: &str) -> Result<Matrix3<f64>, String> {
    let Some(Value::Array(rows)) = t.get(key) else {
        return Err("missing or not an array of 3 rows".into());
    };
    if rows.len() != 3 {
        return Err(format!("expected 3 rows, got {}", rows.len()));
    }
    let mut m = Matrix3::zeros();
    for (i, row) in rows.iter().enumerate() {
        let Value::Array(r) = row else {
            return Err(format!("row {i} is not an array"));
        };
        if r.len() != 3 {
            return Err(format!("row {i} has {} values, expected 3", r.len()));
        }
        for (j, x) in r.iter().enumerate() {
            m[(i, j)] = number(x).ok_or_else(|| format!("row {i}: not a number: {x}"))?;
        }
    }
    Ok(m)
}

/// Writes Pose2Sim's layout (readable by anipose too): distortion as 4 values when `k3`
/// is zero, else 5.
pub fn write_toml(cal: &Calibration) -> String {
    let arr = |v: &[f64]| Value::Array(v.iter().map(|x| Value::Float(*x)).collect());
    let mut root = Table::new();
    for c in &cal.cameras {
        let mut t = Table::new();
        t.insert("name".into(), Value::String(c.name.clone()));
        t.insert("size".into(), arr(&[c.size.0 as f64, c.size.1 as f64]));
        let k = c.intrinsics.matrix();
        t.insert(
            "matrix".into(),
            Value::Array(
                (0..3)
                    .map(|i| arr(&[k[(i, 0)], k[(i, 1)], k[(i, 2)]]))
                    .collect(),
            ),
        );
        let d = c.distortion.to_opencv();
        t.insert(
            "distortions".into(),
            arr(if c.distortion.k3 == 0.0 { &d[..4] } else { &d }),
        );
        t.insert("rotation".into(), arr(c.rotation.scaled_axis().as_slice()));
        t.insert("translation".into(), arr(c.translation.as_slice()));
        t.insert("fisheye".into(), Value::Boolean(false));
        root.insert(c.name.clone(), Value::Table(t));
    }
    let mut meta = Table::new();
    meta.insert("adjusted".into(), Value::Boolean(false));
    meta.insert("error".into(), Value::Float(0.0));
    root.insert("metadata".into(), Value::Table(meta));
    toml::to_string(&root).expect("a TOML table of strings, numbers and arrays serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by Pose2Sim 0.10 (`calibration.py`, toml_write) for its demo.
    const POSE2SIM: &str = r#"
[cam_01]
name = "cam01"
size = [ 1088.0, 1920.0,]
matrix = [ [ 1681.244, 0.0, 532.974,], [ 0.0, 1681.074, 948.137,], [ 0.0, 0.0, 1.0,],]
distortions = [ -0.000721, 0.002187, 9.5e-6, 1.078e-5,]
rotation = [ 1.6814, 1.0795, -0.9104,]
translation = [ 0.7498, 0.8587, 2.6117,]
fisheye = false

[metadata]
adjusted = false
error = 0.0
"#;

    #[test]
    fn reads_pose2sim_layout() {
        let cal = read_toml(POSE2SIM, "Calib.toml").unwrap();
        cal.validate("Calib.toml").unwrap();
        let c = &cal.cameras[0];
        assert_eq!((c.name.as_str(), c.size), ("cam01", (1088, 1920)));
        assert_eq!(c.intrinsics.fx, 1681.244);
        assert_eq!(c.distortion.p2, 1.078e-5);
        assert!((c.rotation.scaled_axis().x - 1.6814).abs() < 1e-12);
    }

    #[test]
    fn reads_anipose_integers_and_k3() {
        let text = r#"
[cam_0]
name = "A"
size = [1920, 1080]
matrix = [[1000, 0, 960], [0, 1000, 540], [0, 0, 1]]
distortions = [0.1, 0.01, 0.0, 0.0, 0.001]
rotation = [0, 0, 0]
translation = [0, 0, 5]
"#;
        let c = &read_toml(text, "a.toml").unwrap().cameras[0];
        assert_eq!(c.distortion.k3, 0.001);
        assert_eq!(c.translation.z, 5.0);
    }

    #[test]
    fn errors_name_camera_and_field() {
        let bad = POSE2SIM.replace("1681.244", "nan");
        let e = read_toml(&bad, "Calib.toml").unwrap_err().to_string();
        assert!(e.contains("cam01") && e.contains("matrix"), "{e}");
        let bad = POSE2SIM.replace("translation = [ 0.7498, 0.8587, 2.6117,]", "");
        let e = read_toml(&bad, "Calib.toml").unwrap_err().to_string();
        assert!(e.contains("translation") && e.contains("missing"), "{e}");
        let bad = POSE2SIM.replace("[ 0.0, 1681.074", "[ 0.0, 0.0");
        let e = read_toml(&bad, "Calib.toml").unwrap_err().to_string();
        assert!(e.contains("singular"), "{e}");
        let e = read_toml("[a\nb=1", "x.toml").unwrap_err().to_string();
        assert!(e.starts_with("x.toml:1"), "{e}");
    }
}
