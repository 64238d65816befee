//! Pictures a planner can read: a map of the passenger flows between sites and a Gantt
//! chart of every vehicle's day. SVG when the path ends in `.svg`, PNG otherwise.

use super::build::project;
use super::clock;
use super::input::{Scenario, SiteKind};
use super::report::{Report, StepKind};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// Why a picture could not be drawn (font or file trouble).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {message}")]
pub struct DrawError {
    pub path: String,
    pub message: String,
}

fn fail(path: &Path) -> impl Fn(String) -> DrawError + '_ {
    move |message| DrawError {
        path: path.display().to_string(),
        message,
    }
}

/// A drawing area of either backend, so one drawing routine serves both formats.
enum Target<'a, 'b> {
    Svg(&'a DrawingArea<SVGBackend<'b>, Shift>),
    Png(&'a DrawingArea<BitMapBackend<'b>, Shift>),
}

/// Draws on an SVG or PNG backend chosen by the file extension.
fn with_backend(
    path: &Path,
    size: (u32, u32),
    draw: &dyn Fn(Target<'_, '_>) -> Result<(), String>,
) -> Result<(), DrawError> {
    let result = if path.extension().is_some_and(|e| e == "svg") {
        let root = SVGBackend::new(path, size).into_drawing_area();
        draw(Target::Svg(&root)).and_then(|()| root.present().map_err(|e| e.to_string()))
    } else {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        draw(Target::Png(&root)).and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    result.map_err(fail(path))
}

fn kind_colour(kind: SiteKind) -> RGBColor {
    match kind {
        SiteKind::Village => RGBColor(0, 110, 60),
        SiteKind::Hotel => RGBColor(120, 60, 160),
        SiteKind::Media => RGBColor(200, 120, 0),
        SiteKind::Venue => RGBColor(200, 30, 40),
        SiteKind::Depot => RGBColor(60, 60, 60),
        SiteKind::Other => RGBColor(90, 90, 160),
    }
}

/// Map of the sites and of the people carried between them: the wider the line, the more
/// passengers; thin grey lines are empty runs.
pub fn map(scenario: &Scenario, report: &Report, path: &Path) -> Result<(), DrawError> {
    struct Map<'a> {
        scenario: &'a Scenario,
        report: &'a Report,
    }
    impl Map<'_> {
        fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
            let s = self.scenario;
            let at = |id: &str| {
                s.sites
                    .iter()
                    .find(|site| site.id == id)
                    .map(|site| project(site.lat, site.lon))
            };
            let xy: Vec<(f64, f64)> = s
                .sites
                .iter()
                .map(|site| project(site.lat, site.lon))
                .collect();
            let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for &(x, y) in &xy {
                (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
            }
            let pad = 0.08 * (x1 - x0).max(y1 - y0).max(1.0);
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let mut chart = ChartBuilder::on(root)
                .caption(format!("{}: passenger flows", s.name), ("sans-serif", 22))
                .margin(15)
                .x_label_area_size(30)
                .y_label_area_size(40)
                .build_cartesian_2d(x0 - pad..x1 + pad, y0 - pad..y1 + pad)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("km east")
                .y_desc("km north")
                .x_label_formatter(&|v| format!("{:.0}", v - x0))
                .y_label_formatter(&|v| format!("{:.0}", v - y0))
                .draw()
                .map_err(|e| e.to_string())?;
            // People per unordered pair of sites, and empty runs.
            let mut flows: BTreeMap<(String, String), i64> = BTreeMap::new();
            let mut empty: BTreeMap<(String, String), usize> = BTreeMap::new();
            for b in &self.report.blocks {
                for step in &b.steps {
                    if let (StepKind::Drive, Some(to)) = (step.what, &step.to_site) {
                        let key = if step.site < *to {
                            (step.site.clone(), to.clone())
                        } else {
                            (to.clone(), step.site.clone())
                        };
                        if step.on_board > 0 {
                            *flows.entry(key).or_default() += step.on_board;
                        } else {
                            *empty.entry(key).or_default() += 1;
                        }
                    }
                }
            }
            let most = flows.values().copied().max().unwrap_or(1).max(1) as f64;
            for (a, b) in empty.keys() {
                if let (Some(p), Some(q)) = (at(a), at(b)) {
                    chart
                        .draw_series(LineSeries::new(
                            [p, q],
                            RGBColor(190, 190, 190).stroke_width(1),
                        ))
                        .map_err(|e| e.to_string())?;
                }
            }
            for ((a, b), people) in &flows {
                if let (Some(p), Some(q)) = (at(a), at(b)) {
                    let width = 1 + (12.0 * *people as f64 / most) as u32;
                    chart
                        .draw_series(LineSeries::new(
                            [p, q],
                            RGBColor(30, 100, 200).mix(0.7).stroke_width(width),
                        ))
                        .map_err(|e| e.to_string())?;
                }
            }
            for (site, &(x, y)) in s.sites.iter().zip(&xy) {
                let colour = kind_colour(site.kind);
                chart
                    .draw_series([EmptyElement::at((x, y))
                        + Circle::new((0, 0), 6, colour.filled())
                        + Text::new(
                            site.id.clone(),
                            (8, -6),
                            ("sans-serif", 14).into_font().color(&colour),
                        )])
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
    let m = Map { scenario, report };
    with_backend(path, (1100, 900), &|target| match target {
        Target::Svg(area) => m.draw(area),
        Target::Png(area) => m.draw(area),
    })
}

/// Gantt chart: one row per vehicle, time of day across; blue = driving with passengers,
/// grey = driving empty, green = boarding/alighting, orange = break, light = waiting.
pub fn gantt(report: &Report, path: &Path) -> Result<(), DrawError> {
    struct Gantt<'a>(&'a Report);
    impl Gantt<'_> {
        fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
            let blocks = &self.0.blocks;
            let steps = blocks.iter().flat_map(|b| &b.steps);
            let t0 = steps
                .clone()
                .map(|s| s.from_min)
                .fold(f64::MAX, f64::min)
                .min(24.0 * 60.0);
            let t1 = steps
                .map(|s| s.to_min)
                .fold(f64::MIN, f64::max)
                .max(t0 + 60.0);
            let (t0, t1) = ((t0 / 60.0).floor() * 60.0, (t1 / 60.0).ceil() * 60.0);
            let rows = blocks.len().max(1);
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let mut chart = ChartBuilder::on(root)
                .caption(
                    format!("{}: vehicle blocks", self.0.scenario),
                    ("sans-serif", 22),
                )
                .margin(15)
                .x_label_area_size(30)
                .y_label_area_size(110)
                .build_cartesian_2d(t0..t1, 0.0..rows as f64)
                .map_err(|e| e.to_string())?;
            let names: Vec<&str> = blocks.iter().map(|b| b.vehicle.as_str()).collect();
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_labels(((t1 - t0) / 60.0) as usize + 1)
                .y_labels(rows.min(60))
                .x_label_formatter(&|m| clock::format(*m))
                .y_label_formatter(&|y| {
                    names
                        .get(*y as usize)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                })
                .x_desc("time of day")
                .draw()
                .map_err(|e| e.to_string())?;
            for (row, b) in blocks.iter().enumerate() {
                let (lo, hi) = (row as f64 + 0.15, row as f64 + 0.85);
                for s in &b.steps {
                    let colour = match (s.what, s.on_board > 0) {
                        (StepKind::Drive, true) => RGBColor(30, 100, 200),
                        (StepKind::Drive, false) => RGBColor(160, 160, 160),
                        (StepKind::Serve, _) => RGBColor(40, 160, 80),
                        (StepKind::Break, _) => RGBColor(240, 150, 20),
                        (StepKind::Wait, _) => RGBColor(225, 230, 240),
                    };
                    chart
                        .draw_series([Rectangle::new(
                            [(s.from_min, lo), (s.to_min, hi)],
                            colour.filled(),
                        )])
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        }
    }
    let g = Gantt(report);
    let height = (80 + 18 * report.blocks.len()).clamp(300, 4000) as u32;
    with_backend(path, (1400, height), &|target| match target {
        Target::Svg(area) => g.draw(area),
        Target::Png(area) => g.draw(area),
    })
}
