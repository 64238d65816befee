//! OpenSim's TRC marker files (tab-separated, `PathFileType 4`), written and read.
//!
//! stadion's world is z-up; OpenSim expects y-up. [`z_up_to_y_up`] applies the same axis
//! permutation as Pose2Sim (`(x, y, z) → (y, z, x)`), so files open in OpenSim like
//! Pose2Sim's.

use std::io::Write;

use nalgebra::Point3;

use crate::error::{Error, Result};

/// Marker trajectories: `frames[f][m]` is marker `m` at frame `f` (NaN = missing).
#[derive(Debug, Clone, PartialEq)]
pub struct TrcData {
    pub rate_hz: f64,
    /// Length unit written in the header (`m` or `mm`).
    pub units: String,
    pub markers: Vec<String>,
    /// Frame number of `frames[0]` (TRC counts from 1).
    pub first_frame: usize,
    pub frames: Vec<Vec<Point3<f64>>>,
}

/// Pose2Sim's z-up → y-up permutation for OpenSim.
pub fn z_up_to_y_up(p: &Point3<f64>) -> Point3<f64> {
    Point3::new(p.y, p.z, p.x)
}

/// Writes a TRC file; `file_name` goes into the first header line. Missing coordinates are
/// written as empty fields, as OpenSim expects.
pub fn write_trc(out: &mut impl Write, file_name: &str, data: &TrcData) -> std::io::Result<()> {
    let n = data.frames.len();
    writeln!(out, "PathFileType\t4\t(X/Y/Z)\t{file_name}")?;
    writeln!(
        out,
        "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames"
    )?;
    writeln!(
        out,
        "{r}\t{r}\t{n}\t{m}\t{u}\t{r}\t{f}\t{n}",
        r = data.rate_hz,
        m = data.markers.len(),
        u = data.units,
        f = data.first_frame
    )?;
    write!(out, "Frame#\tTime")?;
    for m in &data.markers {
        write!(out, "\t{m}\t\t")?;
    }
    write!(out, "\n\t")?;
    for i in 1..=data.markers.len() {
        write!(out, "\tX{i}\tY{i}\tZ{i}")?;
    }
    writeln!(out, "\n")?;
    for (k, frame) in data.frames.iter().enumerate() {
        let number = data.first_frame + k;
        write!(out, "{number}\t{:.6}", k as f64 / data.rate_hz)?;
        for p in frame {
            for v in p.iter() {
                if v.is_finite() {
                    write!(out, "\t{v:.6}")?;
                } else {
                    write!(out, "\t")?;
                }
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Reads a TRC file (as written by [`write_trc`], Pose2Sim or OpenSim).
pub fn read_trc(text: &str, origin: &str) -> Result<TrcData> {
    let lines: Vec<&str> = text.lines().collect();
    let err =
        |line: usize, field: &str, reason: String| Error::parse(origin, Some(line), field, reason);
    if lines.len() < 5 || !lines[0].starts_with("PathFileType") {
        return Err(err(1, "PathFileType", "not a TRC file".into()));
    }
    let keys: Vec<&str> = lines[1].split('\t').map(str::trim).collect();
    let vals: Vec<&str> = lines[2].split('\t').map(str::trim).collect();
    let get = |k: &str| {
        keys.iter()
            .position(|x| *x == k)
            .and_then(|i| vals.get(i).copied())
            .ok_or_else(|| err(3, k, "missing".into()))
    };
    let rate_hz: f64 = get("DataRate")?
        .parse()
        .ok()
        .filter(|r: &f64| *r > 0.0 && r.is_finite())
        .ok_or_else(|| err(3, "DataRate", "not a positive number".into()))?;
    let units = get("Units")?.to_owned();
    let n_markers: usize = get("NumMarkers")?
        .parse()
        .map_err(|_| err(3, "NumMarkers", "not a count".into()))?;
    let markers: Vec<String> = lines[3]
        .split('\t')
        .skip(2)
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    if markers.len() != n_markers {
        return Err(err(
            4,
            "markers",
            format!("{} names, NumMarkers says {n_markers}", markers.len()),
        ));
    }
    let mut frames = Vec::new();
    let mut first_frame = None;
    for (i, l) in lines.iter().enumerate().skip(5) {
        if l.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = l.split('\t').collect();
        let number: usize = cells[0].trim().parse().map_err(|_| {
            err(
                i + 1,
                "Frame#",
                format!("not a frame number: {:?}", cells[0]),
            )
        })?;
        first_frame.get_or_insert(number);
        let mut frame = Vec::with_capacity(n_markers);
        for (m, marker) in markers.iter().enumerate() {
            let mut xyz = [f64::NAN; 3];
            for (a, v) in xyz.iter_mut().enumerate() {
                let cell = cells.get(2 + 3 * m + a).map_or("", |c| c.trim());
                if !cell.is_empty() {
                    *v = cell
                        .parse()
                        .map_err(|_| err(i + 1, marker, format!("not a number: {cell:?}")))?;
                }
            }
            frame.push(Point3::from(xyz));
        }
        frames.push(frame);
    }
    Ok(TrcData {
        rate_hz,
        units,
        markers,
        first_frame: first_frame.unwrap_or(1),
        frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_with_missing_markers() {
        let data = TrcData {
            rate_hz: 60.0,
            units: "m".into(),
            markers: vec!["RHip".into(), "LHip".into()],
            first_frame: 1,
            frames: vec![
                vec![
                    Point3::new(0.1, 0.2, 0.3),
                    Point3::new(f64::NAN, f64::NAN, f64::NAN),
                ],
                vec![Point3::new(-1.5, 2.0, 0.875), Point3::new(1.0, 0.0, -0.25)],
            ],
        };
        let mut buf = Vec::new();
        write_trc(&mut buf, "t.trc", &data).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("PathFileType\t4\t(X/Y/Z)\tt.trc\n"));
        let back = read_trc(&text, "t.trc").unwrap();
        assert_eq!(back.markers, data.markers);
        assert_eq!(back.frames[1], data.frames[1]);
        assert!(back.frames[0][1].x.is_nan());
        assert_eq!(
            z_up_to_y_up(&Point3::new(1.0, 2.0, 3.0)),
            Point3::new(2.0, 3.0, 1.0)
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(s in "(PathFileType.*\n)?([A-Za-z0-9\t.\\-]{0,40}\n){0,8}") {
            let _ = read_trc(&s, "p");
        }
    }
}
