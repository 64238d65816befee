//! Readers for the public benchmark formats: Solomon / Gehring-Homberger (VRPTW), Li & Lim
//! (PDPTW), SINTEF best-known-solution route lists, and the BKS tables shipped with the data.

use crate::model::{
    Instance, Location, Matrix, Request, Side, Solution, Stop, TimeWindow, VehicleType, VisitKind,
};
use crate::schedule::schedule;
use std::collections::HashMap;
use std::path::Path;
use thiserror::Error;

/// A malformed input: what and where (1-based line).
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("{file}: line {line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Instance {
        file: String,
        #[source]
        source: crate::model::InstanceError,
    },
}

/// How Euclidean distances are rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rounding {
    /// Truncate to one decimal, `floor(10 d) / 10`: the DIMACS 2021 convention.
    #[default]
    Dimacs,
    /// Double precision: the SINTEF convention.
    Exact,
}

impl Rounding {
    fn apply(self, d: f64) -> f64 {
        match self {
            // The tiny bias keeps exact decimals such as 0.3 * 10 from dropping below 3.
            Rounding::Dimacs => (10.0 * d + 1e-9).floor() / 10.0,
            Rounding::Exact => d,
        }
    }
}

fn syntax(file: &str, line: usize, message: impl Into<String>) -> ReadError {
    ReadError::Syntax {
        file: file.into(),
        line,
        message: message.into(),
    }
}

/// Lines of `text` that consist only of numbers, with their 1-based line numbers.
fn numeric_rows<'a>(
    file: &'a str,
    text: &'a str,
) -> impl Iterator<Item = Result<(usize, Vec<f64>), ReadError>> + 'a {
    text.lines().enumerate().filter_map(move |(i, line)| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || fields[0].parse::<f64>().is_err() {
            return None;
        }
        Some(
            fields
                .iter()
                .map(|f| {
                    f.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| syntax(file, i + 1, format!("`{f}` is not a number")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|v| (i + 1, v)),
        )
    })
}

fn as_count(file: &str, line: usize, v: f64, what: &str) -> Result<usize, ReadError> {
    if v >= 0.0 && v.fract() == 0.0 && v < 1e12 {
        Ok(v as usize)
    } else {
        Err(syntax(
            file,
            line,
            format!("{what} must be a non-negative integer, got {v}"),
        ))
    }
}

fn finish(
    file: &str,
    name: String,
    locations: Vec<Location>,
    requests: Vec<Request>,
    vehicles: VehicleType,
    rounding: Rounding,
    speed: f64,
) -> Result<Instance, ReadError> {
    let distance = Matrix::euclidean(&locations, |d| rounding.apply(d));
    let duration = if speed == 1.0 {
        distance.clone()
    } else {
        Matrix::euclidean(&locations, |d| rounding.apply(d / speed))
    };
    let instance = Instance {
        name,
        locations,
        distance,
        duration,
        requests,
        vehicle_types: vec![vehicles],
    };
    instance.validate().map_err(|source| ReadError::Instance {
        file: file.into(),
        source,
    })?;
    Ok(instance)
}

/// Reads a Solomon or Gehring-Homberger VRPTW file (`file` names it in errors). Customer 0 is
/// the depot; its window becomes the vehicles' shift. Request `i` is customer `i + 1`.
pub fn read_solomon(file: &str, text: &str, rounding: Rounding) -> Result<Instance, ReadError> {
    let name = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(file)
        .to_string();
    let mut rows = numeric_rows(file, text);
    let (line, head) = rows
        .next()
        .ok_or_else(|| syntax(file, 1, "no vehicle line"))??;
    if head.len() != 2 {
        return Err(syntax(file, line, "expected `vehicles capacity`"));
    }
    let count = as_count(file, line, head[0], "vehicle number")?;
    let capacity = as_count(file, line, head[1], "capacity")? as i64;
    let mut locations = Vec::new();
    let mut requests = Vec::new();
    let mut shift = TimeWindow::UNBOUNDED;
    for row in rows {
        let (line, f) = row?;
        if f.len() != 7 {
            return Err(syntax(
                file,
                line,
                format!("expected 7 fields, got {}", f.len()),
            ));
        }
        let id = as_count(file, line, f[0], "customer number")?;
        if id != locations.len() {
            return Err(syntax(file, line, format!("customer {id} out of order")));
        }
        let window = TimeWindow::new(f[4], f[5]);
        if window.start > window.end {
            return Err(syntax(file, line, "due date before ready time"));
        }
        locations.push(Location {
            name: id.to_string(),
            x: f[1],
            y: f[2],
        });
        if id == 0 {
            shift = window;
            continue;
        }
        requests.push(Request {
            name: id.to_string(),
            demand: as_count(file, line, f[3], "demand")? as i64,
            pickup: None,
            delivery: Some(Stop {
                location: id,
                service: f[6],
                window,
            }),
            max_ride_time: None,
        });
    }
    if locations.is_empty() {
        return Err(syntax(file, 1, "no depot line"));
    }
    let vehicles = VehicleType::simple(count, capacity, 0, shift);
    finish(file, name, locations, requests, vehicles, rounding, 1.0)
}

/// Reads a Li & Lim PDPTW file. Each pickup row and the delivery it names become one paired
/// request, in pickup row order.
pub fn read_lilim(file: &str, text: &str, rounding: Rounding) -> Result<Instance, ReadError> {
    let name = Path::new(file)
        .file_stem()
        .map_or_else(|| file.to_string(), |s| s.to_string_lossy().into_owned());
    let mut rows = numeric_rows(file, text);
    let (line, head) = rows.next().ok_or_else(|| syntax(file, 1, "empty file"))??;
    if head.len() != 3 {
        return Err(syntax(file, line, "expected `vehicles capacity speed`"));
    }
    let count = as_count(file, line, head[0], "vehicle number")?;
    let capacity = as_count(file, line, head[1], "capacity")? as i64;
    // Some published files say speed 0; travel time equals distance in all of them.
    let speed = if head[2] > 0.0 { head[2] } else { 1.0 };
    let mut table = Vec::new();
    for row in rows {
        let (line, f) = row?;
        if f.len() != 9 {
            return Err(syntax(
                file,
                line,
                format!("expected 9 fields, got {}", f.len()),
            ));
        }
        let id = as_count(file, line, f[0], "task number")?;
        if id != table.len() {
            return Err(syntax(file, line, format!("task {id} out of order")));
        }
        if f[4] > f[5] {
            return Err(syntax(file, line, "due date before ready time"));
        }
        table.push((line, f));
    }
    let Some((_, depot)) = table.first() else {
        return Err(syntax(file, 1, "no depot line"));
    };
    let shift = TimeWindow::new(depot[4], depot[5]);
    let locations = table
        .iter()
        .enumerate()
        .map(|(i, (_, f))| Location {
            name: i.to_string(),
            x: f[1],
            y: f[2],
        })
        .collect();
    let stop = |i: usize| Stop {
        location: i,
        service: table[i].1[6],
        window: TimeWindow::new(table[i].1[4], table[i].1[5]),
    };
    let mut requests = Vec::new();
    let mut paired = vec![false; table.len()];
    for (i, (line, f)) in table.iter().enumerate().skip(1) {
        let (pick, deliv) = (
            as_count(file, *line, f[7], "pickup index")?,
            as_count(file, *line, f[8], "delivery index")?,
        );
        if pick != 0 {
            // A delivery row: checked from its pickup.
            continue;
        }
        if deliv == 0 || deliv >= table.len() {
            return Err(syntax(
                file,
                *line,
                format!("pickup names delivery {deliv}, which does not exist"),
            ));
        }
        let (dline, d) = &table[deliv];
        if d[7] as usize != i || d[3] != -f[3] {
            return Err(syntax(
                file,
                *dline,
                format!("delivery does not match pickup {i}"),
            ));
        }
        paired[i] = true;
        paired[deliv] = true;
        requests.push(Request {
            name: format!("{i}-{deliv}"),
            demand: as_count(file, *line, f[3], "pickup demand")? as i64,
            pickup: Some(stop(i)),
            delivery: Some(stop(deliv)),
            max_ride_time: None,
        });
    }
    if let Some(i) = (1..table.len()).find(|&i| !paired[i]) {
        return Err(syntax(
            file,
            table[i].0,
            format!("task {i} is not part of a pickup-delivery pair"),
        ));
    }
    let vehicles = VehicleType::simple(count, capacity, 0, shift);
    finish(file, name, locations, requests, vehicles, rounding, speed)
}

/// The benchmark families this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Solomon,
    LiLim,
}

/// Reads a benchmark file, telling Solomon from Li & Lim by its first line.
pub fn read_file(path: &Path, rounding: Rounding) -> Result<(Format, Instance), ReadError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
        file: file.clone(),
        source,
    })?;
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let numeric = first.split_whitespace().all(|f| f.parse::<f64>().is_ok());
    if numeric {
        read_lilim(&file, &text, rounding).map(|i| (Format::LiLim, i))
    } else {
        read_solomon(&file, &text, rounding).map(|i| (Format::Solomon, i))
    }
}

/// Reads a SINTEF solution file (`Route k : ids ...`, ids being location numbers of the
/// instance file) for `instance`, as routes of vehicle type 0 timed by [`schedule`].
pub fn read_sintef_solution(
    file: &str,
    text: &str,
    instance: &Instance,
) -> Result<Solution, ReadError> {
    let mut by_location: HashMap<usize, VisitKind> = HashMap::new();
    for (request, r) in instance.requests.iter().enumerate() {
        for side in [Side::Pickup, Side::Delivery] {
            if let Some(s) = r.stop(side) {
                by_location.insert(s.location, VisitKind::Request { request, side });
            }
        }
    }
    let mut routes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.trim().strip_prefix("Route") else {
            continue;
        };
        let Some((_, ids)) = rest.split_once(':') else {
            return Err(syntax(file, i + 1, "expected `Route k : ids`"));
        };
        let kinds = ids
            .split_whitespace()
            .map(|id| {
                id.parse::<usize>()
                    .ok()
                    .and_then(|l| by_location.get(&l).copied())
                    .ok_or_else(|| {
                        syntax(
                            file,
                            i + 1,
                            format!("`{id}` is not a customer of the instance"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        routes.push(schedule(instance, 0, &kinds));
    }
    if routes.is_empty() {
        return Err(syntax(file, 1, "no routes"));
    }
    Ok(Solution {
        routes,
        unassigned: Vec::new(),
    })
}

/// A best-known solution value from one of the shipped tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Bks {
    /// Lower-case instance name.
    pub instance: String,
    /// Number of routes, where the table gives it (SINTEF).
    pub vehicles: Option<usize>,
    pub distance: f64,
}

/// Reads `bks_dimacs.csv` (`instance,time_limit_s,bks_distance,bks_optimal`) or
/// `bks_sintef.csv` (`benchmark,clients,instance,when,routes,distance,who`), by its header.
pub fn read_bks(file: &str, text: &str) -> Result<Vec<Bks>, ReadError> {
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l.trim()).unwrap_or("");
    let sintef = header.starts_with("benchmark,");
    if !sintef && !header.starts_with("instance,") {
        return Err(syntax(file, 1, "unknown BKS table header"));
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let f: Vec<&str> = line.trim().split(',').collect();
        if f.len() < 3 || f[0].is_empty() {
            continue;
        }
        let bad = |what: &str| syntax(file, i + 1, format!("bad {what}"));
        let entry = if sintef {
            if f.len() < 6 {
                return Err(bad("row"));
            }
            Bks {
                instance: f[2].to_lowercase(),
                vehicles: Some(f[4].parse().map_err(|_| bad("routes"))?),
                distance: f[5].parse().map_err(|_| bad("distance"))?,
            }
        } else {
            Bks {
                instance: f[0].to_lowercase(),
                vehicles: None,
                distance: f[2].parse().map_err(|_| bad("distance"))?,
            }
        };
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dimacs_rounding_truncates_to_one_decimal() {
        assert_eq!(Rounding::Dimacs.apply(2.0f64.sqrt()), 1.4);
        assert_eq!(Rounding::Dimacs.apply(0.3), 0.3);
        assert_eq!(Rounding::Exact.apply(2.0f64.sqrt()), 2.0f64.sqrt());
    }

    proptest! {
        #[test]
        fn readers_never_panic(text in "[0-9 .\\-\n]{0,200}") {
            let _ = read_solomon("p", &text, Rounding::Dimacs);
            let _ = read_lilim("p", &text, Rounding::Exact);
            let _ = read_bks("p", &text);
        }

        #[test]
        fn solomon_rows_round_trip(rows in proptest::collection::vec((0u8..100, 0u8..100, 0u8..20, 0u16..500, 0u16..500, 0u8..20), 1..20)) {
            let mut text = String::from("X\nVEHICLE\n3 50\nCUSTOMER\n0 50 50 0 0 1000 0\n");
            for (i, (x, y, d, a, b, s)) in rows.iter().enumerate() {
                let (lo, hi) = (a.min(b), a.max(b));
                text.push_str(&format!("{} {x} {y} {d} {lo} {hi} {s}\n", i + 1));
            }
            let inst = read_solomon("p", &text, Rounding::Dimacs).unwrap();
            prop_assert_eq!(inst.requests.len(), rows.len());
            prop_assert_eq!(inst.vehicle_types[0].capacity, 50);
        }
    }
}
