//! The pictures an operator asks for most, each from the warehouse's tables: delivered
//! Mbit/s per broadcaster, concurrent receivers per broadcaster, access decisions by outcome,
//! and bytes per flow. SVG or PNG by the output file's extension.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::DateTime;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::InsightError;
use crate::occupancy::{Resolution, occupancy};
use crate::warehouse::{Cell, Warehouse};

/// A picture `stadion insight plot` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Delivered Mbit/s per broadcaster over time (hourly averages, `usage_hourly`).
    Delivery,
    /// Concurrent receivers per broadcaster over time (peak per minute or hour, `sessions`).
    Receivers,
    /// Access decisions per hour (or minute), stacked by outcome: allowed or the refusal.
    Decisions,
    /// Bytes delivered per flow, stacked by broadcaster (`usage_hourly`).
    Flows,
}

impl Report {
    /// The report as the command line and error messages name it.
    pub fn name(self) -> &'static str {
        match self {
            Report::Delivery => "delivery",
            Report::Receivers => "receivers",
            Report::Decisions => "decisions",
            Report::Flows => "flows",
        }
    }
}

/// A chart, with its data gathered.
#[derive(Debug, Clone, PartialEq)]
enum Chart {
    /// Step lines over time: each value holds from its instant for `step` seconds.
    Steps {
        title: String,
        y_label: &'static str,
        step: i64,
        series: Vec<(String, Vec<(i64, f64)>)>,
    },
    /// Bars per category, series stacked on each other.
    Stacked {
        title: String,
        y_label: String,
        categories: Vec<String>,
        series: Vec<(String, Vec<f64>)>,
    },
}

/// Draws `report` from `warehouse` into `path` (`.svg` or `.png`), bucketing time by
/// `resolution` where the report has time buckets of its own choosing (receivers and
/// decisions; delivery is hourly, as usage is kept).
pub async fn plot(
    warehouse: &mut Warehouse,
    report: Report,
    resolution: Resolution,
    path: &Path,
) -> Result<(), InsightError> {
    let svg = match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
    {
        Some(e) if e == "svg" => true,
        Some(e) if e == "png" => false,
        _ => {
            return Err(InsightError::Write {
                path: path.display().to_string(),
                message: "name the picture .svg or .png".into(),
            });
        }
    };
    let chart = gather(warehouse, report, resolution).await?;
    let size = (1100, 600);
    let drawn = if svg {
        draw(&chart, SVGBackend::new(path, size).into_drawing_area())
    } else {
        draw(&chart, BitMapBackend::new(path, size).into_drawing_area())
    };
    drawn.map_err(|message| InsightError::Write {
        path: path.display().to_string(),
        message,
    })
}

fn text(c: &Cell) -> String {
    c.to_string()
}

fn number(c: &Cell) -> f64 {
    c.as_f64().unwrap_or(0.0)
}

async fn gather(
    w: &mut Warehouse,
    report: Report,
    resolution: Resolution,
) -> Result<Chart, InsightError> {
    let name = report.name();
    let empty = |why: &str| InsightError::NothingToPlot {
        report: name,
        why: why.to_owned(),
    };
    let step = resolution.seconds();
    let per = if resolution == Resolution::Hour {
        "hour"
    } else {
        "minute"
    };
    match report {
        Report::Delivery => {
            let rows = w
                .query(
                    "SELECT hour_epoch, COALESCE(org, org_id), SUM(bytes) * 8.0 / 3600 / 1e6 \
                     FROM usage_hourly GROUP BY 1, 2 ORDER BY 2, 1",
                )
                .await?
                .rows;
            if rows.is_empty() {
                return Err(empty(
                    "usage_hourly has no rows in the period (nothing was delivered)",
                ));
            }
            let points = rows
                .iter()
                .map(|r| (text(&r[1]), number(&r[0]) as i64, number(&r[2])));
            Ok(Chart::Steps {
                title: "Delivered to each broadcaster (hourly average)".into(),
                y_label: "Mbit/s",
                step: 3600,
                series: dense(points, 3600),
            })
        }
        Report::Receivers => {
            let (from, until, as_of) = w.period();
            let end = until.min(as_of).timestamp();
            let rows = w
                .query(&format!(
                    "SELECT COALESCE(org, org_id), connected_epoch, COALESCE(disconnected_epoch, {end}) \
                     FROM sessions ORDER BY 1"
                ))
                .await?
                .rows;
            let mut spans: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
            for r in &rows {
                spans
                    .entry(text(&r[0]))
                    .or_default()
                    .push((number(&r[1]) as i64, number(&r[2]) as i64));
            }
            let start = spans
                .values()
                .flatten()
                .map(|s| s.0)
                .min()
                .ok_or_else(|| empty("no receiver sessions in the period"))?;
            let start = start.max(from.timestamp());
            let series = spans
                .into_iter()
                .map(|(org, spans)| {
                    let buckets = occupancy(&spans, resolution, start, end);
                    (
                        org,
                        buckets
                            .iter()
                            .map(|b| (b.start, f64::from(b.peak)))
                            .collect(),
                    )
                })
                .collect();
            Ok(Chart::Steps {
                title: format!("Concurrent receivers per broadcaster (peak per {per})"),
                y_label: "receivers",
                step,
                series,
            })
        }
        Report::Decisions => {
            let rows = w
                .query(&format!(
                    "SELECT at_epoch / {step} * {step}, COALESCE(reason, result), COUNT(*) \
                     FROM decisions GROUP BY 1, 2 ORDER BY 1"
                ))
                .await?
                .rows;
            let first = rows
                .first()
                .ok_or_else(|| empty("no access decisions in the period"))?;
            let (first, last) = (
                number(&first[0]) as i64,
                rows.iter().map(|r| number(&r[0]) as i64).max().unwrap_or(0),
            );
            let buckets: Vec<i64> = (first..=last).step_by(step as usize).collect();
            let mut outcomes: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for r in &rows {
                let slot = ((number(&r[0]) as i64 - first) / step) as usize;
                outcomes
                    .entry(text(&r[1]))
                    .or_insert_with(|| vec![0.0; buckets.len()])[slot] += number(&r[2]);
            }
            // Grants at the bottom, refusals stacked above in name order.
            let mut series: Vec<(String, Vec<f64>)> = outcomes.into_iter().collect();
            series.sort_by_key(|(name, _)| (name != "allow", name.clone()));
            Ok(Chart::Stacked {
                title: format!("Access decisions per {per}, by outcome"),
                y_label: "decisions".into(),
                categories: buckets.iter().map(|&t| clock(t, step)).collect(),
                series,
            })
        }
        Report::Flows => {
            let rows = w
                .query(
                    "SELECT COALESCE(flow, flow_id), COALESCE(org, org_id), SUM(bytes) \
                     FROM usage_hourly GROUP BY 1, 2",
                )
                .await?
                .rows;
            if rows.is_empty() {
                return Err(empty(
                    "usage_hourly has no rows in the period (nothing was delivered)",
                ));
            }
            let mut totals: BTreeMap<String, f64> = BTreeMap::new();
            for r in &rows {
                *totals.entry(text(&r[0])).or_default() += number(&r[2]);
            }
            let mut flows: Vec<(String, f64)> = totals.into_iter().collect();
            flows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let (unit, scale) = byte_unit(flows.first().map_or(0.0, |f| f.1));
            let index: BTreeMap<&str, usize> = flows
                .iter()
                .enumerate()
                .map(|(i, f)| (f.0.as_str(), i))
                .collect();
            let mut orgs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for r in &rows {
                let slot = index[text(&r[0]).as_str()];
                orgs.entry(text(&r[1]))
                    .or_insert_with(|| vec![0.0; flows.len()])[slot] += number(&r[2]) / scale;
            }
            Ok(Chart::Stacked {
                title: "Delivered per flow, by broadcaster".into(),
                y_label: unit.into(),
                categories: flows.into_iter().map(|f| f.0).collect(),
                series: orgs.into_iter().collect(),
            })
        }
    }
}

/// Series with a value for every `step` from the first to the last instant of any series
/// (missing buckets are 0).
fn dense(
    points: impl Iterator<Item = (String, i64, f64)>,
    step: i64,
) -> Vec<(String, Vec<(i64, f64)>)> {
    let mut by_name: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for (name, t, v) in points {
        *by_name.entry(name).or_default().entry(t).or_default() += v;
    }
    let instants: BTreeSet<i64> = by_name.values().flat_map(|m| m.keys().copied()).collect();
    let (Some(&first), Some(&last)) = (instants.first(), instants.last()) else {
        return Vec::new();
    };
    by_name
        .into_iter()
        .map(|(name, values)| {
            let filled = (first..=last)
                .step_by(step as usize)
                .map(|t| (t, values.get(&t).copied().unwrap_or(0.0)))
                .collect();
            (name, filled)
        })
        .collect()
}

/// The unit to show a largest value of `max` bytes in, and its size.
fn byte_unit(max: f64) -> (&'static str, f64) {
    [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)]
        .into_iter()
        .find(|&(_, size)| max >= size)
        .unwrap_or(("bytes", 1.0))
}

/// A bucket's start as the axis shows it (UTC).
fn clock(t: i64, step: i64) -> String {
    let format = if step >= 3600 {
        "%m-%d %H:00"
    } else {
        "%m-%d %H:%M"
    };
    DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |d| d.format(format).to_string())
}

fn hours(t: i64) -> f64 {
    t as f64 / 3600.0
}

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn draw<DB: DrawingBackend>(chart: &Chart, root: DrawingArea<DB, Shift>) -> Result<(), String> {
    root.fill(&WHITE).map_err(e2s)?;
    match chart {
        Chart::Steps {
            title,
            y_label,
            step,
            series,
        } => {
            let points = || series.iter().flat_map(|(_, p)| p.iter());
            let x0 = points().map(|p| p.0).min().unwrap_or(0);
            let x1 = points().map(|p| p.0).max().unwrap_or(0) + step;
            let top = points().map(|p| p.1).fold(0.0, f64::max);
            let top = if top > 0.0 { top * 1.15 } else { 1.0 };
            let mut c = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(40)
                .y_label_area_size(64)
                // In hours since the epoch, so the axis' round numbers are round times.
                .build_cartesian_2d(hours(x0)..hours(x1), 0.0..top)
                .map_err(e2s)?;
            c.configure_mesh()
                .x_labels(8)
                .x_label_formatter(&|x| clock((x * 3600.0).round() as i64, 60))
                .x_desc("UTC")
                .y_desc(*y_label)
                .draw()
                .map_err(e2s)?;
            for (i, (name, points)) in series.iter().enumerate() {
                let colour = Palette99::pick(i).to_rgba();
                let steps = points
                    .iter()
                    .flat_map(|&(t, v)| [(hours(t), v), (hours(t + step), v)]);
                c.draw_series(LineSeries::new(steps, colour.stroke_width(2)))
                    .map_err(e2s)?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(3))
                    });
            }
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(e2s)?;
        }
        Chart::Stacked {
            title,
            y_label,
            categories,
            series,
        } => {
            let n = categories.len();
            let top = (0..n)
                .map(|j| series.iter().map(|(_, v)| v[j]).sum::<f64>())
                .fold(0.0, f64::max);
            let top = if top > 0.0 { top * 1.15 } else { 1.0 };
            let mut c = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d((0..n as u32).into_segmented(), 0.0..top)
                .map_err(e2s)?;
            let label = |x: &SegmentValue<u32>| match x {
                SegmentValue::CenterOf(j) => {
                    categories.get(*j as usize).cloned().unwrap_or_default()
                }
                _ => String::new(),
            };
            c.configure_mesh()
                .disable_x_mesh()
                .x_labels(n.min(24))
                .x_label_formatter(&label)
                .y_desc(y_label.as_str())
                .draw()
                .map_err(e2s)?;
            // Gaps between bars: 6 pixels, less when many bars share the width.
            let gap = (900 / n.max(1) / 5).min(6) as u32;
            let mut base = vec![0.0; n];
            for (i, (name, values)) in series.iter().enumerate() {
                let colour = if name == "allow" {
                    RGBColor(46, 160, 67).to_rgba()
                } else {
                    Palette99::pick(i + 1).to_rgba()
                };
                let bars: Vec<_> = (0..n as u32)
                    .zip(values)
                    .map(|(j, &v)| {
                        let below = base[j as usize];
                        base[j as usize] += v;
                        let corners = [
                            (SegmentValue::Exact(j), below),
                            (SegmentValue::Exact(j + 1), below + v),
                        ];
                        let mut bar = Rectangle::new(corners, colour.filled());
                        bar.set_margin(0, 0, gap, gap);
                        bar
                    })
                    .collect();
                c.draw_series(bars)
                    .map_err(e2s)?
                    .label(name)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled())
                    });
            }
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(e2s)?;
        }
    }
    root.present().map_err(e2s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    async fn loaded() -> Warehouse {
        Warehouse::load(&fixture::snapshot()).await.unwrap()
    }

    #[tokio::test]
    async fn every_report_draws_an_svg_naming_what_it_shows() {
        let mut w = loaded().await;
        let dir = tempfile::tempdir().unwrap();
        for (report, names) in [
            (Report::Delivery, &["rhb-one", "rhb-two", "Mbit/s"][..]),
            (
                Report::Receivers,
                &["rhb-one", "rhb-two", "peak per minute"],
            ),
            (
                Report::Decisions,
                &[
                    "allow",
                    "source_network_not_allowed",
                    "unknown_organisation",
                ],
            ),
            (
                Report::Flows,
                &["ath-100m-final", "ath-100m-heats", "rhb-one", "GB"],
            ),
        ] {
            let path = dir.path().join(format!("{}.svg", report.name()));
            plot(&mut w, report, Resolution::Minute, &path)
                .await
                .unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            for name in names {
                assert!(svg.contains(name), "{} lacks {name}", report.name());
            }
        }
        let png = dir.path().join("delivery.png");
        plot(&mut w, Report::Delivery, Resolution::Hour, &png)
            .await
            .unwrap();
        assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
        let err = plot(
            &mut w,
            Report::Delivery,
            Resolution::Hour,
            &dir.path().join("x.gif"),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("x.gif: name the picture .svg or .png"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn charts_hold_the_numbers_of_the_tables() {
        let mut w = loaded().await;
        let Chart::Steps { series, step, .. } =
            gather(&mut w, Report::Delivery, Resolution::Minute)
                .await
                .unwrap()
        else {
            panic!("delivery is a line chart")
        };
        assert_eq!(step, 3600);
        // rhb-one: 1.8 GB at 10:00 (4 Mbit/s), 4.2 GB at 11:00, 0.9 GB at 12:00.
        let one: Vec<f64> = series[0].1.iter().map(|p| p.1).collect();
        assert_eq!(
            (series[0].0.as_str(), one),
            ("rhb-one", vec![4.0, 4.2e9 * 8.0 / 3600.0 / 1e6, 2.0])
        );
        // rhb-two delivered nothing at 10:00 and 12:00: zeros, not gaps.
        assert_eq!(
            series[1].1.iter().map(|p| p.1).collect::<Vec<_>>(),
            [0.0, 4.0, 0.0]
        );

        let Chart::Steps { series, .. } = gather(&mut w, Report::Receivers, Resolution::Hour)
            .await
            .unwrap()
        else {
            panic!("receivers is a line chart")
        };
        // rhb-one has the final and, for ten minutes, the heats: two at once at 11:00.
        let peaks: Vec<(i64, f64)> = series[0].1.clone();
        let h = |x: u32| fixture::t(x, 0).timestamp();
        assert_eq!(peaks, [(h(10), 1.0), (h(11), 2.0), (h(12), 1.0)]);

        let Chart::Stacked {
            categories, series, ..
        } = gather(&mut w, Report::Decisions, Resolution::Hour)
            .await
            .unwrap()
        else {
            panic!("decisions are bars")
        };
        assert_eq!(categories, ["07-24 10:00", "07-24 11:00"]);
        assert_eq!(series[0], ("allow".to_owned(), vec![1.0, 1.0]));
        assert_eq!(series.len(), 3);

        let Chart::Stacked {
            categories,
            series,
            y_label,
            ..
        } = gather(&mut w, Report::Flows, Resolution::Hour)
            .await
            .unwrap()
        else {
            panic!("flows are bars")
        };
        assert_eq!(
            (categories[0].as_str(), y_label.as_str()),
            ("ath-100m-final", "GB")
        );
        assert_eq!(series[0], ("rhb-one".to_owned(), vec![6.3, 0.6]));
    }

    #[tokio::test]
    async fn an_empty_period_says_why_there_is_no_picture() {
        let mut s = fixture::snapshot();
        s.usage.clear();
        s.audit.clear();
        let mut w = Warehouse::load(&s).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = plot(
            &mut w,
            Report::Decisions,
            Resolution::Hour,
            &dir.path().join("d.svg"),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "nothing to plot for `decisions`: no access decisions in the period"
        );
        assert!(!dir.path().join("d.svg").exists());
    }
}
