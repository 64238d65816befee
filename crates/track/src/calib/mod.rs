//! Calibration files: Pose2Sim/anipose TOML, OpenCV FileStorage YAML and Qualisys `.qca.txt`.
//!
//! Every reader validates the cameras it builds ([`Calibration::validate`]), so a NaN, a
//! singular `K` or a non-rotation matrix is refused with the file, camera and field named.

mod opencv_yaml;
mod qualisys;
pub mod solve;
mod toml_format;

use std::path::Path;

use nalgebra::{Matrix3, Rotation3};

use crate::camera::Calibration;
use crate::error::{Error, Result};

pub use opencv_yaml::{read_opencv_yaml, write_opencv_yaml};
pub use qualisys::read_qualisys;
pub use toml_format::{read_toml, write_toml};

/// A calibration file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalibFormat {
    /// Pose2Sim / anipose TOML (`[cam_01] name, size, matrix, distortions, rotation, translation`).
    Toml,
    /// OpenCV FileStorage YAML (`%YAML:1.0`, `!!opencv-matrix`), EasyMocap's key layout.
    OpencvYaml,
    /// Qualisys QTM export (`.qca.txt`); read only.
    Qualisys,
}

impl CalibFormat {
    /// Guesses the format from a file name: `.toml`, `.yml`/`.yaml`, `.qca.txt`/`.qca`.
    pub fn from_path(path: &Path) -> Option<CalibFormat> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".toml") {
            Some(CalibFormat::Toml)
        } else if name.ends_with(".yml") || name.ends_with(".yaml") {
            Some(CalibFormat::OpencvYaml)
        } else if name.ends_with(".qca.txt") || name.ends_with(".qca") {
            Some(CalibFormat::Qualisys)
        } else {
            None
        }
    }
}

/// Reads a calibration text in `format`; `origin` names the source in errors.
pub fn parse(text: &str, format: CalibFormat, origin: &str) -> Result<Calibration> {
    let cal = match format {
        CalibFormat::Toml => read_toml(text, origin)?,
        CalibFormat::OpencvYaml => read_opencv_yaml(text, origin)?,
        CalibFormat::Qualisys => read_qualisys(text, origin)?,
    };
    cal.validate(origin)?;
    Ok(cal)
}

/// Writes a calibration as text in `format` (Qualisys is read-only).
pub fn render(cal: &Calibration, format: CalibFormat) -> Result<String> {
    match format {
        CalibFormat::Toml => Ok(write_toml(cal)),
        CalibFormat::OpencvYaml => Ok(write_opencv_yaml(cal)),
        CalibFormat::Qualisys => Err(Error::Mismatch {
            what: "calibration output".into(),
            reason: "writing Qualisys .qca.txt is not supported; use TOML or YAML".into(),
        }),
    }
}

/// `format`, or else the one the file name says; `expected` lists the extensions allowed.
fn format_of(path: &Path, format: Option<CalibFormat>, expected: &str) -> Result<CalibFormat> {
    format
        .or_else(|| CalibFormat::from_path(path))
        .ok_or_else(|| {
            Error::parse(
                &path.display().to_string(),
                None,
                "file name",
                format!("unknown calibration format (expected {expected})"),
            )
        })
}

/// Reads a calibration file; the format comes from `format` or else the file name.
pub fn read(path: &Path, format: Option<CalibFormat>) -> Result<Calibration> {
    let format = format_of(path, format, ".toml, .yml/.yaml or .qca.txt")?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, format, &path.display().to_string())
}

/// Writes a calibration file; the format comes from `format` or else the file name.
pub fn write(path: &Path, cal: &Calibration, format: Option<CalibFormat>) -> Result<()> {
    let format = format_of(path, format, ".toml or .yml/.yaml")?;
    let text = render(cal, format)?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// A rotation from a 3×3 matrix that should be one: refuses NaNs, reflections and matrices
/// far from orthonormal, and polishes small rounding (files often keep 6 digits).
pub(crate) fn rotation_from_matrix(m: &Matrix3<f64>) -> Result<Rotation3<f64>, String> {
    if m.iter().any(|v| !v.is_finite()) {
        return Err(format!("not finite: {m:?}"));
    }
    let ortho = (m.transpose() * m - Matrix3::identity()).abs().max();
    let det = m.determinant();
    if ortho > 1e-3 || det <= 0.0 {
        return Err(format!(
            "not a rotation matrix (|RᵀR − I| = {ortho:.2e}, det = {det:.4})"
        ));
    }
    Ok(Rotation3::from_matrix_eps(
        m,
        1e-15,
        100,
        Rotation3::from_matrix_unchecked(*m),
    ))
}

/// A Rodrigues vector (axis × angle, radians) as a rotation, refusing NaNs.
pub(crate) fn rotation_from_rodrigues(v: &[f64]) -> Result<Rotation3<f64>, String> {
    match v {
        [x, y, z] if v.iter().all(|c| c.is_finite()) => Ok(Rotation3::from_scaled_axis(
            nalgebra::Vector3::new(*x, *y, *z),
        )),
        [_, _, _] => Err(format!("not finite: {v:?}")),
        _ => Err(format!(
            "expected 3 values (Rodrigues vector), got {}",
            v.len()
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::camera::{Camera, Distortion, Intrinsics};
    use nalgebra::{Point3, Vector3};

    /// Four cameras around the origin with distinct, non-trivial parameters.
    pub(crate) fn rig() -> Calibration {
        let cams = (0..4)
            .map(|i| {
                let a = i as f64 * std::f64::consts::FRAC_PI_2 + 0.3;
                let mut c = Camera::look_at(
                    &format!("cam{:02}", i + 1),
                    (1088, 1920),
                    Intrinsics {
                        fx: 1681.2 + i as f64,
                        fy: 1680.1 - i as f64,
                        cx: 532.9 + 0.5 * i as f64,
                        cy: 948.1 - 0.25 * i as f64,
                        skew: 0.0,
                    },
                    Point3::new(3.0 * a.cos(), 3.0 * a.sin(), 1.9 + 0.1 * i as f64),
                    Point3::new(0.0, 0.0, 1.0),
                    Vector3::z(),
                );
                c.distortion = Distortion {
                    k1: -0.05 + 0.01 * i as f64,
                    k2: 0.13,
                    k3: if i == 2 { 0.01 } else { 0.0 },
                    p1: 6e-4,
                    p2: -3e-4,
                };
                c
            })
            .collect();
        Calibration::new(cams)
    }

    pub(crate) fn assert_same(a: &Calibration, b: &Calibration) {
        assert_eq!(a.names(), b.names());
        for (x, y) in a.cameras.iter().zip(&b.cameras) {
            assert_eq!(x.size, y.size);
            assert!((x.intrinsics.matrix() - y.intrinsics.matrix()).abs().max() < 1e-9);
            let (dx, dy) = (x.distortion.to_opencv(), y.distortion.to_opencv());
            assert!(dx.iter().zip(&dy).all(|(p, q)| (p - q).abs() < 1e-12));
            assert!((x.rotation.matrix() - y.rotation.matrix()).abs().max() < 1e-9);
            assert!((x.translation - y.translation).abs().max() < 1e-9);
        }
    }

    #[test]
    fn format_from_path() {
        assert_eq!(
            CalibFormat::from_path(Path::new("a/Calib.qca.txt")),
            Some(CalibFormat::Qualisys)
        );
        assert_eq!(
            CalibFormat::from_path(Path::new("x.TOML")),
            Some(CalibFormat::Toml)
        );
        assert_eq!(
            CalibFormat::from_path(Path::new("x.yml")),
            Some(CalibFormat::OpencvYaml)
        );
        assert_eq!(CalibFormat::from_path(Path::new("x.txt")), None);
    }

    #[test]
    fn round_trip_every_writable_format() {
        let cal = rig();
        for f in [CalibFormat::Toml, CalibFormat::OpencvYaml] {
            let text = render(&cal, f).unwrap();
            let back = parse(&text, f, "mem").unwrap();
            assert_same(&cal, &back);
        }
        assert!(render(&cal, CalibFormat::Qualisys).is_err());
    }
}
