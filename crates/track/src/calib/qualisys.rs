//! Qualisys QTM calibration export (`.qca.txt`), read only.
//!
//! Units and conventions, as Pose2Sim's `calib_qca_to_toml` converts them (its demo data was
//! calibrated this way, so its 3D results are the reference):
//! - intrinsics are in 1/64 sensor sub-pixels: `fx = focalLengthU / 64`,
//!   `cx = centerPointU / 64 − fov_video.left` (likewise V/top);
//! - distortion coefficients are divided by 64 as well;
//! - `transform` gives the camera centre `(x, y, z)` in millimetres and a matrix `M` whose
//!   rows are `r1*`, `r2*`, `r3*`, mapping world to Qualisys camera axes (looking down −z);
//!   OpenCV's world→camera rotation is `Rx(π)·M` and `t = −R·centre`.
//!
//! The file is a flat list of XML elements with attributes; the scanner below reads just
//! that (start tags and their attributes, with line numbers for errors) instead of pulling in
//! an XML library.

use std::collections::HashMap;

use nalgebra::{Matrix3, Point3, Vector3};

use super::rotation_from_matrix;
use crate::camera::{Calibration, Camera, Distortion, Intrinsics};
use crate::error::{Error, Result};

/// One start (or empty) tag: name, attributes, line.
struct Tag<'a> {
    name: &'a str,
    attrs: HashMap<&'a str, &'a str>,
    line: usize,
}

fn scan_tags<'a>(text: &'a str, origin: &str) -> Result<Vec<Tag<'a>>> {
    let mut tags = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    let line_at = |off: usize| text[..off].matches('\n').count() + 1;
    while let Some(lt) = rest.find('<') {
        let start = offset + lt;
        let body_start = &rest[lt + 1..];
        let Some(gt) = body_start.find('>') else {
            return Err(Error::parse(
                origin,
                Some(line_at(start)),
                "<",
                "unterminated tag",
            ));
        };
        let body = &body_start[..gt];
        offset = start + 1 + gt + 1;
        rest = &text[offset..];
        if body.starts_with(['?', '!', '/']) {
            continue;
        }
        let body = body.strip_suffix('/').unwrap_or(body);
        let (name, mut attrs_text) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        let mut attrs = HashMap::new();
        loop {
            attrs_text = attrs_text.trim_start();
            if attrs_text.is_empty() {
                break;
            }
            let bad = || Error::parse(origin, Some(line_at(start)), name, "malformed attribute");
            let (key, after) = attrs_text.split_once('=').ok_or_else(bad)?;
            let after = after.trim_start();
            let quote = after
                .chars()
                .next()
                .filter(|q| *q == '"' || *q == '\'')
                .ok_or_else(bad)?;
            let value_end = after[1..].find(quote).ok_or_else(bad)?;
            attrs.insert(key.trim(), &after[1..1 + value_end]);
            attrs_text = &after[value_end + 2..];
        }
        tags.push(Tag {
            name,
            attrs,
            line: line_at(start),
        });
    }
    Ok(tags)
}

/// Parses a Qualisys `.qca.txt` calibration (cameras with `active="0"` are skipped).
pub fn read_qualisys(text: &str, origin: &str) -> Result<Calibration> {
    let tags = scan_tags(text, origin)?;
    let mut cameras = Vec::new();
    let mut i = 0;
    while i < tags.len() {
        if tags[i].name != "camera" {
            i += 1;
            continue;
        }
        let cam = &tags[i];
        let end = tags[i + 1..]
            .iter()
            .position(|t| t.name == "camera")
            .map_or(tags.len(), |p| i + 1 + p);
        let children = &tags[i + 1..end];
        i = end;
        let name = cam.attrs.get("serial").copied().unwrap_or("").to_owned();
        if name.is_empty() {
            return Err(Error::parse(
                origin,
                Some(cam.line),
                "camera.serial",
                "missing",
            ));
        }
        if cam.attrs.get("active") == Some(&"0") {
            continue;
        }
        let child = |tag: &str| {
            children
                .iter()
                .find(|t| t.name == tag)
                .ok_or_else(|| Error::Camera {
                    file: origin.to_owned(),
                    camera: name.clone(),
                    field: tag.to_owned(),
                    reason: format!("missing <{tag}> element (camera at line {})", cam.line),
                })
        };
        let num = |t: &Tag, attr: &str| -> Result<f64> {
            let field = format!("{}.{attr}", t.name);
            let s = t.attrs.get(attr).ok_or_else(|| {
                Error::parse(
                    origin,
                    Some(t.line),
                    &field,
                    format!("missing (camera {name})"),
                )
            })?;
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    Error::parse(
                        origin,
                        Some(t.line),
                        &field,
                        format!("not a finite number: {s:?}"),
                    )
                })
        };
        let fov = child("fov_video")?;
        let (left, top) = (num(fov, "left")?, num(fov, "top")?);
        let (right, bottom) = (num(fov, "right")?, num(fov, "bottom")?);
        let (w, h) = (right - left + 1.0, bottom - top + 1.0);
        if !(1.0..1e6).contains(&w) || !(1.0..1e6).contains(&h) {
            return Err(Error::parse(
                origin,
                Some(fov.line),
                "fov_video",
                format!("implausible size {w}×{h} (camera {name})"),
            ));
        }
        let intr = child("intrinsic")?;
        const SUBPIXELS: f64 = 64.0;
        let intrinsics = Intrinsics {
            fx: num(intr, "focalLengthU")? / SUBPIXELS,
            fy: num(intr, "focalLengthV")? / SUBPIXELS,
            cx: num(intr, "centerPointU")? / SUBPIXELS - left,
            cy: num(intr, "centerPointV")? / SUBPIXELS - top,
            skew: 0.0,
        };
        let distortion = Distortion {
            k1: num(intr, "radialDistortion1")? / SUBPIXELS,
            k2: num(intr, "radialDistortion2")? / SUBPIXELS,
            k3: num(intr, "radialDistortion3")? / SUBPIXELS,
            p1: num(intr, "tangentalDistortion1")? / SUBPIXELS,
            p2: num(intr, "tangentalDistortion2")? / SUBPIXELS,
        };
        let tr = child("transform")?;
        let mut m = Matrix3::zeros();
        for r in 0..3 {
            for c in 0..3 {
                m[(r, c)] = num(tr, &format!("r{}{}", r + 1, c + 1))?;
            }
        }
        let m = rotation_from_matrix(&m).map_err(|e| Error::Camera {
            file: origin.to_owned(),
            camera: name.clone(),
            field: "transform.r11..r33".into(),
            reason: e,
        })?;
        let centre = Point3::new(num(tr, "x")?, num(tr, "y")?, num(tr, "z")?) / 1000.0;
        // Qualisys cameras look down −z with y up; OpenCV's look down +z with y down.
        let flip = nalgebra::Rotation3::from_axis_angle(&Vector3::x_axis(), std::f64::consts::PI);
        let rotation = flip * m;
        let translation = -(rotation * centre.coords);
        cameras.push(Camera {
            name,
            size: (w as u32, h as u32),
            intrinsics,
            distortion,
            rotation,
            translation,
        });
    }
    if cameras.is_empty() {
        return Err(Error::parse(
            origin,
            None,
            "cameras",
            "no active <camera> element",
        ));
    }
    Ok(Calibration::new(cameras))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"<?xml version='1.0' encoding='ASCII'?>
<calibration><cameras>
<camera active="1" serial="c1">
  <fov_video bottom="1919" left="0" right="1087" top="0"/>
  <transform r11="1" r12="0" r13="0" r21="0" r22="1" r23="0" r31="0" r32="0" r33="1" x="0" y="0" z="3000"/>
  <intrinsic centerPointU="34816" centerPointV="61440" focalLengthU="107520" focalLengthV="107520" radialDistortion1="0" radialDistortion2="0" radialDistortion3="0" tangentalDistortion1="0" tangentalDistortion2="0"/>
</camera>
</cameras></calibration>"#;

    #[test]
    fn units_and_axes() {
        let cal = read_qualisys(ONE, "x.qca.txt").unwrap();
        let c = &cal.cameras[0];
        assert_eq!(c.size, (1088, 1920));
        assert_eq!(
            (c.intrinsics.fx, c.intrinsics.cx, c.intrinsics.cy),
            (1680.0, 544.0, 960.0)
        );
        assert!((c.centre() - Point3::new(0.0, 0.0, 3.0)).norm() < 1e-12);
        // An identity Qualisys camera at z = 3 m looks down at the origin.
        let p = c.project(&Point3::origin()).unwrap();
        assert!((p.x - 544.0).abs() < 1e-9 && (p.y - 960.0).abs() < 1e-9);
        // World +x stays image right; world +y is image up (rows decrease).
        assert!(c.project(&Point3::new(0.1, 0.0, 0.0)).unwrap().x > 544.0);
        assert!(c.project(&Point3::new(0.0, 0.1, 0.0)).unwrap().y < 960.0);
    }

    #[test]
    fn errors_name_line_and_field() {
        // (edit of the file, what the error must name)
        let cases: [(&str, &str, &[&str]); 3] = [
            ("r22=\"1\"", "r22=\"nan\"", &["q:5", "transform.r22"]),
            ("r22=\"1\"", "r22=\"5\"", &["not a rotation"]),
            ("<intrinsic", "<intrinsicX", &["missing <intrinsic>"]),
        ];
        for (from, to, names) in cases {
            let e = read_qualisys(&ONE.replace(from, to), "q")
                .unwrap_err()
                .to_string();
            assert!(names.iter().all(|n| e.contains(n)), "{from:?}: {e}");
        }
        assert!(read_qualisys("<a b=>", "q").is_err());
        assert!(read_qualisys("", "q").is_err());
    }
}
