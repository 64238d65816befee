//! Pictures for broadcast and for checking the chain: the speed and acceleration curves,
//! split-time bars, and a skeleton overlay drawn onto a video frame (the triangulated
//! joints reprojected into the camera next to the 2D detections, so a wrong calibration
//! or a bad association shows at a glance). SVG or PNG by the file's extension.

use std::path::Path;

use nalgebra::Point3;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::biomech::Analysis;
use crate::camera::Camera;
use crate::keypoints::Keypoints2D;
use crate::skeleton::Skeleton;

/// Why a picture could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{path}: {reason}")]
    Draw { path: String, reason: String },
    #[error("{path}: image buffer is {got} bytes, {width}×{height} RGB needs {need}")]
    Buffer {
        path: String,
        got: usize,
        need: usize,
        width: u32,
        height: u32,
    },
    #[error("{0}: nothing to plot (no finite samples)")]
    Empty(String),
}

fn draw_err(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |reason| PlotError::Draw {
        path: path.display().to_string(),
        reason,
    }
}

fn is_svg(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
}

/// Something drawable on any plotters backend.
trait Picture {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Draws `picture` into an SVG or PNG file of `size`, chosen by the extension of `path`.
fn save(path: &Path, size: (u32, u32), picture: &impl Picture) -> Result<(), PlotError> {
    if is_svg(path) {
        let root = SVGBackend::new(path, size).into_drawing_area();
        picture.draw(&root).map_err(draw_err(path))?;
        root.present().map_err(|e| draw_err(path)(e.to_string()))
    } else {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        picture.draw(&root).map_err(draw_err(path))?;
        root.present().map_err(|e| draw_err(path)(e.to_string()))
    }
}

fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    (lo <= hi).then(|| {
        let pad = ((hi - lo) * 0.05).max(0.1);
        (lo - pad, hi + pad)
    })
}

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A panel of the speed figure: title, y range, colour, value per frame.
type Row = (
    &'static str,
    (f64, f64),
    RGBColor,
    fn(&crate::biomech::FrameMetrics) -> f64,
);

struct SpeedCurve<'a> {
    analysis: &'a Analysis,
    t_range: (f64, f64),
    v_range: (f64, f64),
    a_range: (f64, f64),
}

impl Picture for SpeedCurve<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(e2s)?;
        let areas = root.split_evenly((2, 1));
        let frames = &self.analysis.frames;
        let rows: [Row; 2] = [
            ("speed along the lane (m/s)", self.v_range, BLUE, |f| {
                f.speed_lane_mps
            }),
            (
                "acceleration along the lane (m/s²)",
                self.a_range,
                RGBColor(0, 130, 0),
                |f| f.accel_lane_mps2,
            ),
        ];
        for (k, (area, (label, (y0, y1), color, value))) in areas.iter().zip(rows).enumerate() {
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .caption(label, ("sans-serif", 20))
                .build_cartesian_2d(self.t_range.0..self.t_range.1, y0..y1)
                .map_err(e2s)?;
            chart
                .configure_mesh()
                .x_desc("time since start (s)")
                .draw()
                .map_err(e2s)?;
            chart
                .draw_series(LineSeries::new(
                    frames
                        .iter()
                        .map(|f| (f.time_s, value(f)))
                        .filter(|(_, v)| v.is_finite()),
                    color.stroke_width(2),
                ))
                .map_err(e2s)?;
            let top = (self.analysis.top_speed_time_s, self.analysis.top_speed_mps);
            if k == 0 && top.1.is_finite() {
                chart
                    .draw_series([Circle::new(top, 5, RED.filled())])
                    .map_err(e2s)?;
                chart
                    .draw_series([Text::new(
                        format!("top speed {:.2} m/s", top.1),
                        (
                            top.0 - 0.3 * (self.t_range.1 - self.t_range.0),
                            y1 - 0.1 * (y1 - y0),
                        ),
                        ("sans-serif", 18),
                    )])
                    .map_err(e2s)?;
            }
        }
        Ok(())
    }
}

/// Speed (top) and acceleration (bottom) of the centre of mass along the lane over time,
/// with the top speed marked.
pub fn speed_curve(analysis: &Analysis, path: &Path) -> Result<(), PlotError> {
    let empty = || PlotError::Empty(path.display().to_string());
    let f = &analysis.frames;
    let picture = SpeedCurve {
        analysis,
        t_range: range(f.iter().map(|f| f.time_s)).ok_or_else(empty)?,
        v_range: range(f.iter().map(|f| f.speed_lane_mps)).ok_or_else(empty)?,
        a_range: range(f.iter().map(|f| f.accel_lane_mps2)).ok_or_else(empty)?,
    };
    save(path, (1000, 700), &picture)
}

struct SplitBars<'a>(&'a Analysis);

impl Picture for SplitBars<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(e2s)?;
        let splits = &self.0.splits;
        let top = splits.iter().map(|s| s.interval_s).fold(0.0, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .caption("split times (interval per segment)", ("sans-serif", 22))
            .build_cartesian_2d(0.0..splits.len() as f64, 0.0..top.max(0.1))
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(splits.len().max(1))
            .x_label_formatter(&|x| {
                let i = (*x - 0.5).round().max(0.0) as usize;
                splits
                    .get(i)
                    .map(|s| format!("{:.0} m", s.distance_m))
                    .unwrap_or_default()
            })
            .y_desc("interval (s)")
            .draw()
            .map_err(e2s)?;
        for (i, s) in splits.iter().enumerate() {
            let x = i as f64;
            chart
                .draw_series([Rectangle::new(
                    [(x + 0.1, 0.0), (x + 0.9, s.interval_s)],
                    RGBColor(30, 90, 200).filled(),
                )])
                .map_err(e2s)?;
            chart
                .draw_series([Text::new(
                    format!("{:.2} s", s.time_s),
                    (x + 0.15, s.interval_s + 0.03 * top),
                    ("sans-serif", 15),
                )])
                .map_err(e2s)?;
        }
        Ok(())
    }
}

/// One bar per split segment (its interval), labelled with the cumulative time.
pub fn split_bars(analysis: &Analysis, path: &Path) -> Result<(), PlotError> {
    if analysis.splits.is_empty() {
        return Err(PlotError::Empty(path.display().to_string()));
    }
    save(path, (1000, 500), &SplitBars(analysis))
}

/// What to draw over a video frame.
#[derive(Debug, Clone, Copy)]
pub struct Overlay<'a> {
    /// The frame, RGB, `camera.size` pixels, row-major.
    pub rgb: &'a [u8],
    pub camera: &'a Camera,
    pub skeleton: Skeleton,
    /// Triangulated joints (NaN where unknown), reprojected into the frame in green.
    pub joints: &'a [Point3<f64>],
    /// The 2D detections of this camera, drawn as red dots.
    pub detections: Option<&'a Keypoints2D>,
    pub label: &'a str,
}

impl Picture for Overlay<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (w, h) = self.camera.size;
        let image = BitMapElement::with_ref((0, 0), (w, h), self.rgb)
            .ok_or("image buffer does not match the camera size")?;
        root.draw(&image).map_err(e2s)?;
        let px: Vec<Option<(i32, i32)>> = self
            .joints
            .iter()
            .map(|p| {
                crate::filter::known(p)
                    .then(|| self.camera.project(p))
                    .flatten()
                    .map(|q| (q.x.round() as i32, q.y.round() as i32))
            })
            .collect();
        let thick = (w.max(h) / 400).max(2);
        for &(a, b) in self.skeleton.bones() {
            if let (Some(Some(p)), Some(Some(q))) = (px.get(a as usize), px.get(b as usize)) {
                root.draw(&PathElement::new(
                    vec![*p, *q],
                    RGBColor(40, 230, 60).stroke_width(thick),
                ))
                .map_err(e2s)?;
            }
        }
        for p in px.iter().flatten() {
            root.draw(&Circle::new(
                *p,
                thick as i32 * 2,
                RGBColor(40, 230, 60).filled(),
            ))
            .map_err(e2s)?;
        }
        if let Some(d) = self.detections {
            for k in d.points.iter().filter(|k| k.is_valid()) {
                root.draw(&Circle::new(
                    (k.x.round() as i32, k.y.round() as i32),
                    thick as i32,
                    RED.filled(),
                ))
                .map_err(e2s)?;
            }
        }
        root.draw(&Text::new(
            self.label.to_owned(),
            (20, 20),
            ("sans-serif", (h / 40).max(14) as f64)
                .into_font()
                .color(&WHITE),
        ))
        .map_err(e2s)?;
        Ok(())
    }
}

/// Draws the overlay onto the frame and saves it (PNG; SVG embeds the frame too).
pub fn skeleton_overlay(overlay: &Overlay<'_>, path: &Path) -> Result<(), PlotError> {
    let (w, h) = overlay.camera.size;
    let need = w as usize * h as usize * 3;
    if overlay.rgb.len() != need {
        return Err(PlotError::Buffer {
            path: path.display().to_string(),
            got: overlay.rgb.len(),
            need,
            width: w,
            height: h,
        });
    }
    save(path, (w, h), overlay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::biomech::{AnalysisConfig, analyse};
    use crate::synth::{SprintConfig, SyntheticSprint};

    #[test]
    fn pictures_are_written() {
        let race = SyntheticSprint::generate(&SprintConfig {
            distance_m: 30.0,
            ..SprintConfig::default()
        });
        let a = analyse(&race.truth, &AnalysisConfig::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for name in ["speed.svg", "speed.png"] {
            speed_curve(&a, &dir.path().join(name)).unwrap();
            assert!(std::fs::metadata(dir.path().join(name)).unwrap().len() > 1000);
        }
        split_bars(&a, &dir.path().join("splits.svg")).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("splits.svg")).unwrap();
        assert!(svg.contains("30 m"), "split labels are drawn");
        let cam = &race.calibrations[50].cameras[0];
        let rgb = vec![0u8; (cam.size.0 * cam.size.1 * 3) as usize];
        let overlay = Overlay {
            rgb: &rgb,
            camera: cam,
            skeleton: Skeleton::Coco17,
            joints: &race.truth.frames[50],
            detections: race.views[50][0].people.first(),
            label: "cam01 frame 50",
        };
        let out = dir.path().join("overlay.png");
        skeleton_overlay(&overlay, &out).unwrap();
        assert!(std::fs::metadata(&out).unwrap().len() > 1000);
        let short = Overlay {
            rgb: &rgb[..10],
            ..overlay
        };
        assert!(matches!(
            skeleton_overlay(&short, &out),
            Err(PlotError::Buffer { .. })
        ));
    }
}
