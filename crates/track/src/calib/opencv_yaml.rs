//! OpenCV FileStorage YAML (`%YAML:1.0`, matrices tagged `!!opencv-matrix`), with
//! EasyMocap's multi-camera key layout: `names` (the camera list), then per camera `K_<name>`
//! (3×3), `dist_<name>` (1×5 or 5×1, OpenCV order), `R_<name>` (Rodrigues 3×1) and/or
//! `Rot_<name>` (3×3), `T_<name>` (3×1, metres), `W_<name>` / `H_<name>` (image size).
//!
//! Hand-written because FileStorage's dialect (a `%YAML:1.0` directive, `!!opencv-matrix`
//! tags, bare `.Nan`) is refused by general YAML parsers; the subset OpenCV writes is small.

use std::collections::HashMap;
use std::fmt::Write;

use nalgebra::{Matrix3, Vector3};

use super::{rotation_from_matrix, rotation_from_rodrigues};
use crate::camera::{Calibration, Camera, Distortion, Intrinsics};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Scalar(String),
    Seq(Vec<String>),
    Matrix {
        rows: usize,
        cols: usize,
        data: Vec<f64>,
    },
}

/// Parses the FileStorage YAML subset into top-level `key → (node, line)`.
fn parse_nodes(text: &str, origin: &str) -> Result<HashMap<String, (Node, usize)>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = HashMap::new();
    let mut i = 0;
    let indented = |l: &str| l.starts_with([' ', '\t']) || l.trim().is_empty();
    while i < lines.len() {
        let lineno = i + 1;
        let raw = lines[i];
        let t = raw.trim();
        i += 1;
        if t.is_empty() || t.starts_with('#') || t.starts_with('%') || t == "---" || t == "..." {
            continue;
        }
        if indented(raw) {
            return Err(Error::parse(
                origin,
                Some(lineno),
                t,
                "unexpected indented line",
            ));
        }
        let Some((key, rest)) = t.split_once(':') else {
            return Err(Error::parse(
                origin,
                Some(lineno),
                t,
                "expected `key: value`",
            ));
        };
        let key = key.trim().to_owned();
        let rest = rest.trim();
        let node = if let Some(after) = rest.strip_prefix("!!opencv-matrix") {
            if !after.trim().is_empty() {
                return Err(Error::parse(
                    origin,
                    Some(lineno),
                    &key,
                    "text after the tag",
                ));
            }
            let start = i;
            while i < lines.len() && indented(lines[i]) {
                i += 1;
            }
            parse_matrix(&lines[start..i], start + 1, &key, origin)?
        } else if rest.starts_with('[') {
            let mut buf = rest.to_owned();
            while !buf.contains(']') && i < lines.len() {
                buf.push(' ');
                buf.push_str(lines[i].trim());
                i += 1;
            }
            Node::Seq(flow_items(&buf).ok_or_else(|| {
                Error::parse(origin, Some(lineno), &key, "unterminated `[` sequence")
            })?)
        } else if rest.is_empty() {
            let mut items = Vec::new();
            while i < lines.len() && (indented(lines[i]) || lines[i].starts_with('-')) {
                let l = lines[i].trim();
                i += 1;
                if l.is_empty() {
                    continue;
                }
                let Some(item) = l.strip_prefix('-') else {
                    return Err(Error::parse(origin, Some(i), &key, "expected `- item`"));
                };
                items.push(unquote(item.trim()));
            }
            Node::Seq(items)
        } else {
            Node::Scalar(unquote(rest))
        };
        out.insert(key, (node, lineno));
    }
    Ok(out)
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(s)
        .to_owned()
}

/// Items of `[a, b, c]` (text after `]` is ignored); `None` without brackets.
fn flow_items(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('[')?;
    let inner = &inner[..inner.find(']')?];
    Some(
        inner
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(unquote)
            .collect(),
    )
}

fn yaml_number(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        ".nan" => Some(f64::NAN),
        ".inf" | "+.inf" => Some(f64::INFINITY),
        "-.inf" => Some(f64::NEG_INFINITY),
        x => x.parse().ok(),
    }
}

fn parse_matrix(block: &[&str], first_line: usize, key: &str, origin: &str) -> Result<Node> {
    let (mut rows, mut cols, mut data) = (None, None, None::<String>);
    let mut k = 0;
    while k < block.len() {
        let l = block[k].trim();
        let lineno = first_line + k;
        k += 1;
        if l.is_empty() {
            continue;
        }
        let Some((sub, val)) = l.split_once(':') else {
            return Err(Error::parse(
                origin,
                Some(lineno),
                key,
                "expected `rows/cols/dt/data: …`",
            ));
        };
        let val = val.trim();
        let bad = |what: &str| {
            Error::parse(
                origin,
                Some(lineno),
                format!("{key}.{sub}"),
                what.to_owned(),
            )
        };
        match sub.trim() {
            "rows" => rows = Some(val.parse::<usize>().map_err(|_| bad("not a count"))?),
            "cols" => cols = Some(val.parse::<usize>().map_err(|_| bad("not a count"))?),
            "dt" => {
                if !matches!(val, "d" | "f" | "i" | "\"d\"" | "\"f\"") {
                    return Err(bad("unsupported element type (expected d or f)"));
                }
            }
            "data" => {
                let mut buf = val.to_owned();
                while !buf.contains(']') && k < block.len() {
                    buf.push(' ');
                    buf.push_str(block[k].trim());
                    k += 1;
                }
                data = Some(buf);
            }
            _ => return Err(bad("unknown matrix field")),
        }
    }
    let missing = |f: &str| Error::parse(origin, Some(first_line), format!("{key}.{f}"), "missing");
    let rows = rows.ok_or_else(|| missing("rows"))?;
    let cols = cols.ok_or_else(|| missing("cols"))?;
    let data = data.ok_or_else(|| missing("data"))?;
    let items = flow_items(&data).ok_or_else(|| {
        Error::parse(
            origin,
            Some(first_line),
            format!("{key}.data"),
            "expected `[ … ]`",
        )
    })?;
    let data: Vec<f64> = items
        .iter()
        .map(|s| {
            yaml_number(s).ok_or_else(|| {
                Error::parse(
                    origin,
                    Some(first_line),
                    format!("{key}.data"),
                    format!("not a number: {s:?}"),
                )
            })
        })
        .collect::<Result<_>>()?;
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(Error::parse(
            origin,
            Some(first_line),
            format!("{key}.data"),
            format!("{rows}×{cols} matrix with {} values", data.len()),
        ));
    }
    Ok(Node::Matrix { rows, cols, data })
}

/// Parses OpenCV FileStorage YAML in EasyMocap's layout.
pub fn read_opencv_yaml(text: &str, origin: &str) -> Result<Calibration> {
    let nodes = parse_nodes(text, origin)?;
    let names: Vec<String> = match nodes.get("names") {
        Some((Node::Seq(n), _)) => n.clone(),
        Some((_, line)) => {
            return Err(Error::parse(
                origin,
                Some(*line),
                "names",
                "expected a sequence of camera names",
            ));
        }
        None => {
            let mut n: Vec<String> = nodes
                .keys()
                .filter_map(|k| k.strip_prefix("K_").map(str::to_owned))
                .collect();
            n.sort();
            n
        }
    };
    let mut cameras = Vec::with_capacity(names.len());
    for name in names {
        let err = |field: &str, reason: String| Error::Camera {
            file: origin.to_owned(),
            camera: name.clone(),
            field: field.to_owned(),
            reason,
        };
        let matrix = |prefix: &str| -> Result<(usize, usize, Vec<f64>)> {
            let field = format!("{prefix}_{name}");
            match nodes.get(&field) {
                Some((Node::Matrix { rows, cols, data }, _)) => Ok((*rows, *cols, data.clone())),
                Some(_) => Err(err(&field, "expected an !!opencv-matrix".into())),
                None => Err(err(&field, "missing".into())),
            }
        };
        let scalar = |prefix: &str| -> Result<f64> {
            let field = format!("{prefix}_{name}");
            match nodes.get(&field) {
                Some((Node::Scalar(s), _)) => yaml_number(s)
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| err(&field, format!("not a number: {s:?}"))),
                Some(_) => Err(err(&field, "expected a number".into())),
                None => Err(err(&field, "missing".into())),
            }
        };
        let (r, c, k) = matrix("K")?;
        if (r, c) != (3, 3) {
            return Err(err(
                &format!("K_{name}"),
                format!("expected 3×3, got {r}×{c}"),
            ));
        }
        let intrinsics = Intrinsics::from_matrix(&Matrix3::from_row_slice(&k))
            .map_err(|e| err(&format!("K_{name}"), e))?;
        let (_, _, d) = matrix("dist")?;
        let distortion =
            Distortion::from_opencv(&d).map_err(|e| err(&format!("dist_{name}"), e))?;
        let rotation = if nodes.contains_key(&format!("Rot_{name}")) {
            let (r, c, m) = matrix("Rot")?;
            if (r, c) != (3, 3) {
                return Err(err(
                    &format!("Rot_{name}"),
                    format!("expected 3×3, got {r}×{c}"),
                ));
            }
            rotation_from_matrix(&Matrix3::from_row_slice(&m))
                .map_err(|e| err(&format!("Rot_{name}"), e))?
        } else {
            let (r, c, m) = matrix("R")?;
            match (r, c) {
                (3, 3) => rotation_from_matrix(&Matrix3::from_row_slice(&m)),
                _ => rotation_from_rodrigues(&m),
            }
            .map_err(|e| err(&format!("R_{name}"), e))?
        };
        let (_, _, t) = matrix("T")?;
        let [x, y, z] = t[..] else {
            return Err(err(
                &format!("T_{name}"),
                format!("expected 3 values, got {}", t.len()),
            ));
        };
        let (w, h) = (scalar("W")?, scalar("H")?);
        if !(1.0..1e6).contains(&w) || !(1.0..1e6).contains(&h) {
            return Err(err("W/H", format!("implausible image size {w}×{h}")));
        }
        cameras.push(Camera {
            name,
            size: (w as u32, h as u32),
            intrinsics,
            distortion,
            rotation,
            translation: Vector3::new(x, y, z),
        });
    }
    Ok(Calibration::new(cameras))
}

fn write_matrix(out: &mut String, key: &str, rows: usize, cols: usize, data: &[f64]) {
    let values: Vec<String> = data.iter().map(|v| format!("{v:?}")).collect();
    let _ = write!(
        out,
        "{key}: !!opencv-matrix\n   rows: {rows}\n   cols: {cols}\n   dt: d\n   data: [ {} ]\n",
        values.join(", ")
    );
}

/// Writes OpenCV FileStorage YAML (EasyMocap's intri.yml and extri.yml keys in one file),
/// readable by `cv2.FileStorage`.
pub fn write_opencv_yaml(cal: &Calibration) -> String {
    let mut out = String::from("%YAML:1.0\n---\nnames:\n");
    for c in &cal.cameras {
        let _ = writeln!(out, "   - \"{}\"", c.name);
    }
    for c in &cal.cameras {
        let n = &c.name;
        let k = c.intrinsics.matrix();
        let k_rows: Vec<f64> = (0..3)
            .flat_map(|i| (0..3).map(move |j| k[(i, j)]))
            .collect();
        write_matrix(&mut out, &format!("K_{n}"), 3, 3, &k_rows);
        write_matrix(
            &mut out,
            &format!("dist_{n}"),
            5,
            1,
            &c.distortion.to_opencv(),
        );
        write_matrix(
            &mut out,
            &format!("R_{n}"),
            3,
            1,
            c.rotation.scaled_axis().as_slice(),
        );
        let r = c.rotation.matrix();
        let r_rows: Vec<f64> = (0..3)
            .flat_map(|i| (0..3).map(move |j| r[(i, j)]))
            .collect();
        write_matrix(&mut out, &format!("Rot_{n}"), 3, 3, &r_rows);
        write_matrix(&mut out, &format!("T_{n}"), 3, 1, c.translation.as_slice());
        let _ = writeln!(out, "W_{n}: {}\nH_{n}: {}", c.size.0, c.size.1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The layout `cv2.FileStorage` writes (indentation, multi-line data, block sequence).
    const OPENCV: &str = "%YAML:1.0
---
names:
   - \"1\"
K_1: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 1.1e+03, 0., 9.6e+02, 0., 1.1e+03,
       5.4e+02, 0., 0., 1. ]
dist_1: !!opencv-matrix
   rows: 1
   cols: 5
   dt: d
   data: [ -1.0e-01, 1.0e-02, 0., 0., 0. ]
R_1: !!opencv-matrix
   rows: 3
   cols: 1
   dt: d
   data: [ 0., 0., 0. ]
T_1: !!opencv-matrix
   rows: 3
   cols: 1
   dt: d
   data: [ 0.5, 0., 4. ]
W_1: 1920
H_1: 1080
";

    #[test]
    fn reads_filestorage_layout() {
        let cal = read_opencv_yaml(OPENCV, "intri.yml").unwrap();
        cal.validate("intri.yml").unwrap();
        let c = &cal.cameras[0];
        assert_eq!((c.name.as_str(), c.size), ("1", (1920, 1080)));
        assert_eq!((c.intrinsics.fx, c.intrinsics.cy), (1100.0, 540.0));
        assert_eq!(c.distortion.k1, -0.1);
        assert_eq!(c.translation.z, 4.0);
    }

    #[test]
    fn errors_name_line_and_field() {
        // (edit of the file, what the error must name)
        let cases: [(&str, &str, &[&str]); 2] = [
            ("cols: 5", "cols: 4", &["x.yml:12", "dist_1.data"]),
            ("W_1: 1920\n", "", &["W_1", "missing"]),
        ];
        for (from, to, names) in cases {
            let e = read_opencv_yaml(&OPENCV.replace(from, to), "x.yml").unwrap_err();
            let e = e.to_string();
            assert!(names.iter().all(|n| e.contains(n)), "{from:?}: {e}");
        }
        let e = read_opencv_yaml(&OPENCV.replace("[ 0.5,", "[ .Nan,"), "x.yml");
        let e = e.unwrap().validate("x.yml").unwrap_err().to_string();
        assert!(e.contains("translation"), "{e}");
    }
}
