//! Reading and validating a scenario directory (format: `docs/plan.md`).
//!
//! Every problem is reported with the file, the line and the field it comes from, and all of
//! them at once, so a planner fixes a spreadsheet in one pass instead of one error per run.

use super::clock;
use super::travel::{Band, SpeedProfile, Travel, great_circle_km};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;
use toml::Spanned;

/// Where a record comes from: file name (relative to the scenario) and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

/// One problem in the input files.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{file}:{line}: field `{field}`: {message}")]
pub struct InputError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

/// Every problem found in a scenario, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct InputErrors(pub Vec<InputError>);

impl fmt::Display for InputErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in the scenario:", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// What a site is for; venues receive sessions, depots house vehicles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteKind {
    Village,
    Hotel,
    Media,
    Venue,
    Depot,
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub id: String,
    pub name: String,
    pub kind: SiteKind,
    pub lat: f64,
    pub lon: f64,
    /// Kerb time of every stop here (security screening, bay access), minutes.
    pub stop_min: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: String,
    pub venue: usize,
    pub name: String,
    pub start: f64,
    pub end: f64,
}

/// A client group (athletes, technical officials, press) and its travel rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub home: usize,
    pub arrive_before_min: f64,
    pub arrive_window_min: f64,
    pub leave_after_min: f64,
    pub leave_window_min: f64,
    pub max_ride_min: f64,
    pub board_min_per_person: f64,
    /// People per load; defaults to the largest vehicle capacity.
    pub load_size: Option<i64>,
}

/// People of one group travelling to and from one session, with resolved windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    pub session: usize,
    pub group: usize,
    pub origin: usize,
    pub arrive: i64,
    pub leave: i64,
    /// When they must reach the venue (drop-off window).
    pub arrive_window: (f64, f64),
    /// When they are collected at the venue (pick-up window).
    pub leave_window: (f64, f64),
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VehicleKind {
    pub id: String,
    pub capacity: i64,
    pub fixed_cost: f64,
    pub cost_per_km: f64,
    pub cost_per_hour: f64,
}

/// `count` vehicles of one kind at one depot, each driven by one driver for one shift.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub id: String,
    pub kind: usize,
    pub depot: usize,
    pub count: usize,
    pub shift: (f64, f64),
}

/// A break every driver takes: `min` minutes, starting between `from_min` and `by_min` after
/// the start of the shift.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakRule {
    pub min: f64,
    pub from_min: f64,
    pub by_min: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub dir: PathBuf,
    pub name: String,
    pub date: Option<String>,
    pub sites: Vec<Site>,
    pub sessions: Vec<Session>,
    pub groups: Vec<Group>,
    pub demand: Vec<Demand>,
    pub kinds: Vec<VehicleKind>,
    pub fleet: Vec<Fleet>,
    pub driver_break: Option<BreakRule>,
    pub travel: Travel,
    pub time_limit_s: f64,
    pub seed: u64,
}

/// Why a scenario could not be read.
#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] InputErrors),
}

// ------------------------------------------------------------------ raw file layouts

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    date: Option<String>,
    files: RawFiles,
    #[serde(default)]
    travel: RawTravel,
    #[serde(rename = "group", default)]
    groups: Vec<RawGroup>,
    #[serde(rename = "vehicle_type", default)]
    vehicle_types: Vec<RawVehicleType>,
    driver: Option<RawDriver>,
    #[serde(default)]
    solver: RawSolver,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFiles {
    sites: String,
    sessions: String,
    demand: String,
    fleet: String,
    travel: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTravel {
    #[serde(default = "default_road_factor")]
    road_factor: Spanned<f64>,
    #[serde(default = "default_base_kmh")]
    base_kmh: Spanned<f64>,
    #[serde(rename = "band", default)]
    bands: Vec<RawBand>,
}

/// A default with no place in the file (line 1 when reported; defaults are valid anyway).
fn zero() -> Spanned<f64> {
    Spanned::new(0..0, 0.0)
}

fn default_road_factor() -> Spanned<f64> {
    Spanned::new(0..0, 1.3)
}

fn default_base_kmh() -> Spanned<f64> {
    Spanned::new(0..0, 30.0)
}

impl Default for RawTravel {
    fn default() -> Self {
        Self {
            road_factor: default_road_factor(),
            base_kmh: default_base_kmh(),
            bands: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBand {
    from: Spanned<String>,
    to: Spanned<String>,
    factor: Spanned<f64>,
    #[serde(default)]
    label: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    id: Spanned<String>,
    #[serde(default)]
    name: String,
    home: Spanned<String>,
    arrive_before_min: Spanned<f64>,
    arrive_window_min: Spanned<f64>,
    leave_after_min: Spanned<f64>,
    leave_window_min: Spanned<f64>,
    max_ride_min: Spanned<f64>,
    #[serde(default = "zero")]
    board_s_per_person: Spanned<f64>,
    load_size: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVehicleType {
    id: Spanned<String>,
    capacity: Spanned<i64>,
    #[serde(default = "zero")]
    fixed_cost: Spanned<f64>,
    #[serde(default = "zero")]
    cost_per_km: Spanned<f64>,
    #[serde(default = "zero")]
    cost_per_hour: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDriver {
    max_shift_min: Option<Spanned<f64>>,
    break_min: Option<Spanned<f64>>,
    break_from_min: Option<Spanned<f64>>,
    break_by_min: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSolver {
    #[serde(default = "default_time_limit")]
    time_limit_s: f64,
    #[serde(default = "default_seed")]
    seed: u64,
}

fn default_time_limit() -> f64 {
    5.0
}

fn default_seed() -> u64 {
    1
}

impl Default for RawSolver {
    fn default() -> Self {
        Self {
            time_limit_s: default_time_limit(),
            seed: default_seed(),
        }
    }
}

#[derive(Deserialize)]
struct SiteRow {
    id: String,
    #[serde(default)]
    name: String,
    kind: SiteKind,
    lat: f64,
    lon: f64,
    #[serde(default)]
    stop_min: Option<f64>,
}

#[derive(Deserialize)]
struct SessionRow {
    id: String,
    venue: String,
    #[serde(default)]
    name: String,
    start: String,
    end: String,
}

#[derive(Deserialize)]
struct DemandRow {
    session: String,
    group: String,
    arrive: i64,
    leave: i64,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    arrive_from: Option<String>,
    #[serde(default)]
    arrive_by: Option<String>,
    #[serde(default)]
    leave_from: Option<String>,
    #[serde(default)]
    leave_by: Option<String>,
}

#[derive(Deserialize)]
struct FleetRow {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    depot: Option<String>,
    count: usize,
    shift_start: String,
    shift_end: String,
}

#[derive(Deserialize)]
struct TravelRow {
    from: String,
    to: String,
    km: f64,
    #[serde(default)]
    min: Option<f64>,
}

// ------------------------------------------------------------------ helpers

/// Collects errors while reading; each names its file, line and field.
struct Problems(Vec<InputError>);

impl Problems {
    fn add(&mut self, file: &str, line: usize, field: &str, message: impl Into<String>) {
        self.0.push(InputError {
            file: file.to_owned(),
            line,
            field: field.to_owned(),
            message: message.into(),
        });
    }
}

/// `x >= min`, false for NaN (so NaN input is refused).
fn at_least(x: f64, min: f64) -> bool {
    x >= min
}

/// `x > min`, false for NaN.
fn above(x: f64, min: f64) -> bool {
    x > min
}

/// 1-based line of a byte offset in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The key written on a TOML line (`key = value`), to name the field of a syntax error.
fn key_on_line(text: &str, line: usize) -> String {
    let raw = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    match raw.split_once('=') {
        Some((key, _)) => key.trim().to_owned(),
        None => raw.trim().trim_matches(|c| c == '[' || c == ']').to_owned(),
    }
}

fn read_text(dir: &Path, file: &str) -> Result<String, ScenarioError> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|source| ScenarioError::Io { path, source })
}

/// Reads a CSV file with a header line; `#` starts a comment line. Returns each row with its
/// line number; rows that do not parse become problems.
fn read_csv<T: DeserializeOwned>(
    dir: &Path,
    file: &str,
    problems: &mut Problems,
) -> Result<Vec<(T, usize)>, ScenarioError> {
    let text = read_text(dir, file)?;
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        // Optional columns may be left off the end of a row.
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            problems.add(file, 1, "header", e.to_string());
            return Ok(Vec::new());
        }
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                problems.add(file, line, "row", e.to_string());
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        match record.deserialize::<T>(Some(&headers)) {
            Ok(row) => rows.push((row, line)),
            Err(e) => {
                let (field, message) = match e.kind() {
                    csv::ErrorKind::Deserialize { err, .. } => (
                        err.field()
                            .and_then(|i| headers.get(i as usize))
                            .map_or_else(|| missing_field(err.kind()), str::to_owned),
                        err.kind().to_string(),
                    ),
                    other => ("row".to_owned(), format!("{other:?}")),
                };
                problems.add(file, line, &field, message);
            }
        }
    }
    Ok(rows)
}

/// Serde names a missing column in its message ("missing field `x`").
fn missing_field(kind: &csv::DeserializeErrorKind) -> String {
    let text = kind.to_string();
    text.split('`').nth(1).unwrap_or("row").to_owned()
}

/// Resolves a site id, reporting `what` when it is unknown.
fn lookup(
    ids: &HashMap<&str, usize>,
    id: &str,
    what: &str,
    at: (&str, usize, &str),
    problems: &mut Problems,
) -> Option<usize> {
    let found = ids.get(id).copied();
    if found.is_none() {
        problems.add(at.0, at.1, at.2, format!("unknown {what} `{id}`"));
    }
    found
}

// ------------------------------------------------------------------ the reader

impl Scenario {
    /// Reads `dir/scenario.toml` and the files it names, and validates all of it.
    pub fn load(dir: &Path) -> Result<Scenario, ScenarioError> {
        const TOML: &str = "scenario.toml";
        let text = read_text(dir, TOML)?;
        let mut p = Problems(Vec::new());
        let raw: RawScenario = match toml::from_str(&text) {
            Ok(r) => r,
            Err(e) => {
                let line = e.span().map_or(1, |s| line_of(&text, s.start));
                p.add(TOML, line, &key_on_line(&text, line), e.message().trim());
                return Err(InputErrors(p.0).into());
            }
        };
        let at = |s: &std::ops::Range<usize>| line_of(&text, s.start);

        // Sites.
        let site_file = raw.files.sites.as_str();
        let mut sites = Vec::new();
        let mut site_ids: HashMap<String, usize> = HashMap::new();
        for (row, line) in read_csv::<SiteRow>(dir, site_file, &mut p)? {
            if row.id.is_empty() {
                p.add(site_file, line, "id", "empty site id");
                continue;
            }
            if site_ids.contains_key(&row.id) {
                p.add(
                    site_file,
                    line,
                    "id",
                    format!("site `{}` is defined twice", row.id),
                );
                continue;
            }
            if !(-90.0..=90.0).contains(&row.lat) {
                p.add(
                    site_file,
                    line,
                    "lat",
                    format!("latitude {} is outside -90..90", row.lat),
                );
            }
            if !(-180.0..=180.0).contains(&row.lon) {
                p.add(
                    site_file,
                    line,
                    "lon",
                    format!("longitude {} is outside -180..180", row.lon),
                );
            }
            let stop_min = row.stop_min.unwrap_or(0.0);
            if !at_least(stop_min, 0.0) {
                p.add(site_file, line, "stop_min", "kerb time must be >= 0");
            }
            site_ids.insert(row.id.clone(), sites.len());
            let name = if row.name.is_empty() {
                row.id.clone()
            } else {
                row.name
            };
            sites.push(Site {
                id: row.id,
                name,
                kind: row.kind,
                lat: row.lat,
                lon: row.lon,
                stop_min,
            });
        }
        let site_ref: HashMap<&str, usize> =
            site_ids.iter().map(|(k, &v)| (k.as_str(), v)).collect();

        // Vehicle types.
        let mut kinds = Vec::new();
        let mut kind_ids = HashMap::new();
        for v in &raw.vehicle_types {
            let line = at(&v.id.span());
            if kind_ids
                .insert(v.id.get_ref().clone(), kinds.len())
                .is_some()
            {
                p.add(
                    TOML,
                    line,
                    "id",
                    format!("vehicle type `{}` is defined twice", v.id.get_ref()),
                );
            }
            if *v.capacity.get_ref() < 1 {
                p.add(
                    TOML,
                    at(&v.capacity.span()),
                    "capacity",
                    "capacity must be at least 1",
                );
            }
            for (name, value) in [
                ("fixed_cost", &v.fixed_cost),
                ("cost_per_km", &v.cost_per_km),
                ("cost_per_hour", &v.cost_per_hour),
            ] {
                if !at_least(*value.get_ref(), 0.0) {
                    p.add(TOML, at(&value.span()), name, "costs must be >= 0");
                }
            }
            kinds.push(VehicleKind {
                id: v.id.get_ref().clone(),
                capacity: *v.capacity.get_ref(),
                fixed_cost: *v.fixed_cost.get_ref(),
                cost_per_km: *v.cost_per_km.get_ref(),
                cost_per_hour: *v.cost_per_hour.get_ref(),
            });
        }
        if kinds.is_empty() {
            p.add(TOML, 1, "vehicle_type", "no [[vehicle_type]] defined");
        }
        let max_capacity = kinds.iter().map(|k| k.capacity).max().unwrap_or(1).max(1);

        // Client groups.
        let mut groups = Vec::new();
        let mut group_ids = HashMap::new();
        for g in &raw.groups {
            if group_ids
                .insert(g.id.get_ref().clone(), groups.len())
                .is_some()
            {
                p.add(
                    TOML,
                    at(&g.id.span()),
                    "id",
                    format!("group `{}` is defined twice", g.id.get_ref()),
                );
            }
            let home = lookup(
                &site_ref,
                g.home.get_ref(),
                "site",
                (TOML, at(&g.home.span()), "home"),
                &mut p,
            );
            for (name, value) in [
                ("arrive_before_min", &g.arrive_before_min),
                ("arrive_window_min", &g.arrive_window_min),
                ("leave_after_min", &g.leave_after_min),
                ("leave_window_min", &g.leave_window_min),
                ("board_s_per_person", &g.board_s_per_person),
            ] {
                if !at_least(*value.get_ref(), 0.0) {
                    p.add(TOML, at(&value.span()), name, "must be >= 0");
                }
            }
            if !above(*g.max_ride_min.get_ref(), 0.0) {
                p.add(
                    TOML,
                    at(&g.max_ride_min.span()),
                    "max_ride_min",
                    "must be > 0",
                );
            }
            if let Some(size) = &g.load_size
                && !(1..=max_capacity).contains(size.get_ref())
            {
                p.add(
                    TOML,
                    at(&size.span()),
                    "load_size",
                    format!(
                        "load size {} must be between 1 and the largest capacity {max_capacity}",
                        size.get_ref()
                    ),
                );
            }
            groups.push(Group {
                id: g.id.get_ref().clone(),
                name: if g.name.is_empty() {
                    g.id.get_ref().clone()
                } else {
                    g.name.clone()
                },
                home: home.unwrap_or(0),
                arrive_before_min: *g.arrive_before_min.get_ref(),
                arrive_window_min: *g.arrive_window_min.get_ref(),
                leave_after_min: *g.leave_after_min.get_ref(),
                leave_window_min: *g.leave_window_min.get_ref(),
                max_ride_min: *g.max_ride_min.get_ref(),
                board_min_per_person: *g.board_s_per_person.get_ref() / 60.0,
                load_size: g.load_size.as_ref().map(|s| *s.get_ref()),
            });
        }

        // Driver rules.
        let mut max_shift = None;
        let mut driver_break = None;
        if let Some(d) = &raw.driver {
            if let Some(m) = &d.max_shift_min {
                if !above(*m.get_ref(), 0.0) {
                    p.add(TOML, at(&m.span()), "max_shift_min", "must be > 0");
                }
                max_shift = Some(*m.get_ref());
            }
            match (&d.break_min, &d.break_from_min, &d.break_by_min) {
                (Some(len), Some(from), Some(by)) => {
                    if !above(*len.get_ref(), 0.0) {
                        p.add(TOML, at(&len.span()), "break_min", "must be > 0");
                    }
                    if !(*from.get_ref() >= 0.0 && by.get_ref() >= from.get_ref()) {
                        p.add(
                            TOML,
                            at(&by.span()),
                            "break_by_min",
                            "must be >= break_from_min >= 0",
                        );
                    }
                    driver_break = Some(BreakRule {
                        min: *len.get_ref(),
                        from_min: *from.get_ref(),
                        by_min: *by.get_ref(),
                    });
                }
                (None, None, None) => {}
                (Some(s), _, _) | (_, Some(s), _) | (_, _, Some(s)) => p.add(
                    TOML,
                    at(&s.span()),
                    "break_min",
                    "give all of break_min, break_from_min and break_by_min, or none",
                ),
            }
        }

        // Sessions.
        let session_file = raw.files.sessions.as_str();
        let mut sessions = Vec::new();
        let mut session_ids = HashMap::new();
        for (row, line) in read_csv::<SessionRow>(dir, session_file, &mut p)? {
            let venue = lookup(
                &site_ref,
                &row.venue,
                "venue",
                (session_file, line, "venue"),
                &mut p,
            );
            if let Some(v) = venue
                && sites[v].kind != SiteKind::Venue
            {
                p.add(
                    session_file,
                    line,
                    "venue",
                    format!(
                        "site `{}` is not a venue (kind {:?})",
                        row.venue, sites[v].kind
                    ),
                );
            }
            let start = clock::parse(&row.start)
                .map_err(|m| p.add(session_file, line, "start", m))
                .ok();
            let end = clock::parse(&row.end)
                .map_err(|m| p.add(session_file, line, "end", m))
                .ok();
            if let (Some(s), Some(e)) = (start, end)
                && e <= s
            {
                let when = if e < s { "before" } else { "when" };
                p.add(
                    session_file,
                    line,
                    "end",
                    format!(
                        "session ends at {}, {when} it starts at {}",
                        row.end, row.start
                    ),
                );
            }
            if session_ids.insert(row.id.clone(), sessions.len()).is_some() {
                p.add(
                    session_file,
                    line,
                    "id",
                    format!("session `{}` is defined twice", row.id),
                );
            }
            sessions.push(Session {
                id: row.id,
                venue: venue.unwrap_or(0),
                name: row.name,
                start: start.unwrap_or(0.0),
                end: end.unwrap_or(0.0),
            });
        }

        // Demand.
        let demand_file = raw.files.demand.as_str();
        let mut demand = Vec::new();
        for (row, line) in read_csv::<DemandRow>(dir, demand_file, &mut p)? {
            let here = |field| (demand_file, line, field);
            let session = session_ids.get(&row.session).copied();
            if session.is_none() {
                p.add(
                    demand_file,
                    line,
                    "session",
                    format!("unknown session `{}`", row.session),
                );
            }
            let group = group_ids.get(&row.group).copied();
            if group.is_none() {
                p.add(
                    demand_file,
                    line,
                    "group",
                    format!("unknown group `{}`", row.group),
                );
            }
            let origin = match row.origin.as_deref() {
                Some(id) => lookup(&site_ref, id, "site", here("origin"), &mut p),
                None => group.map(|g| groups[g].home),
            };
            for (field, n) in [("arrive", row.arrive), ("leave", row.leave)] {
                if n < 0 {
                    p.add(demand_file, line, field, "number of people must be >= 0");
                }
            }
            let (Some(s), Some(g), Some(origin)) = (session, group, origin) else {
                continue;
            };
            let (session, group) = (&sessions[s], &groups[g]);
            let mut clock_field =
                |field: &'static str, value: &Option<String>, default: f64| match value {
                    Some(text) => clock::parse(text).unwrap_or_else(|m| {
                        p.add(demand_file, line, field, m);
                        default
                    }),
                    None => default,
                };
            let open = session.start - group.arrive_before_min;
            let arrive_from = clock_field("arrive_from", &row.arrive_from, open);
            let arrive_by =
                clock_field("arrive_by", &row.arrive_by, open + group.arrive_window_min);
            let leave_open = session.end + group.leave_after_min;
            let leave_from = clock_field("leave_from", &row.leave_from, leave_open);
            let leave_by = clock_field(
                "leave_by",
                &row.leave_by,
                leave_open + group.leave_window_min,
            );
            let f = clock::format;
            if row.arrive > 0 {
                if arrive_by < arrive_from {
                    p.add(
                        demand_file,
                        line,
                        "arrive_by",
                        format!(
                            "arrival window closes at {} before it opens at {}",
                            f(arrive_by),
                            f(arrive_from)
                        ),
                    );
                } else if arrive_by > session.start {
                    p.add(
                        demand_file,
                        line,
                        "arrive_by",
                        format!(
                            "arrival window closes at {}, after the session starts at {}",
                            f(arrive_by),
                            f(session.start)
                        ),
                    );
                } else if arrive_from < 0.0 {
                    p.add(
                        demand_file,
                        line,
                        "arrive_from",
                        "arrival window opens before 00:00 of the operating day",
                    );
                }
            }
            if row.leave > 0 {
                if leave_by < leave_from {
                    p.add(
                        demand_file,
                        line,
                        "leave_by",
                        format!(
                            "departure window closes at {} before it opens at {}",
                            f(leave_by),
                            f(leave_from)
                        ),
                    );
                } else if leave_from < session.end {
                    p.add(
                        demand_file,
                        line,
                        "leave_from",
                        format!(
                            "departure window opens at {}, before the session ends at {}",
                            f(leave_from),
                            f(session.end)
                        ),
                    );
                }
            }
            demand.push(Demand {
                session: s,
                group: g,
                origin,
                arrive: row.arrive,
                leave: row.leave,
                arrive_window: (arrive_from, arrive_by),
                leave_window: (leave_from, leave_by),
                source: Source {
                    file: demand_file.to_owned(),
                    line,
                },
            });
        }

        // Fleet.
        let fleet_file = raw.files.fleet.as_str();
        let mut fleet = Vec::new();
        for (row, line) in read_csv::<FleetRow>(dir, fleet_file, &mut p)? {
            let kind = kind_ids.get(&row.kind).copied();
            if kind.is_none() {
                p.add(
                    fleet_file,
                    line,
                    "type",
                    format!("unknown vehicle type `{}`", row.kind),
                );
            }
            let depot = match row.depot.as_deref() {
                None => {
                    p.add(
                        fleet_file,
                        line,
                        "depot",
                        format!("vehicles `{}` have no depot", row.id),
                    );
                    None
                }
                Some(id) => lookup(&site_ref, id, "depot", (fleet_file, line, "depot"), &mut p),
            };
            if let Some(d) = depot
                && sites[d].kind != SiteKind::Depot
            {
                p.add(
                    fleet_file,
                    line,
                    "depot",
                    format!(
                        "site `{}` is not a depot (kind {:?})",
                        sites[d].id, sites[d].kind
                    ),
                );
            }
            let start = clock::parse(&row.shift_start)
                .map_err(|m| p.add(fleet_file, line, "shift_start", m))
                .ok();
            let end = clock::parse(&row.shift_end)
                .map_err(|m| p.add(fleet_file, line, "shift_end", m))
                .ok();
            if let (Some(s), Some(e)) = (start, end) {
                if e <= s {
                    let when = if e < s { "before" } else { "when" };
                    p.add(
                        fleet_file,
                        line,
                        "shift_end",
                        format!(
                            "shift ends at {}, {when} it starts at {}",
                            row.shift_end, row.shift_start
                        ),
                    );
                } else if let Some(m) = max_shift
                    && e - s > m
                {
                    p.add(
                        fleet_file,
                        line,
                        "shift_end",
                        format!(
                            "shift of {} min is longer than the driver limit of {m} min",
                            e - s
                        ),
                    );
                }
            }
            if let (Some(kind), Some(depot), Some(s), Some(e)) = (kind, depot, start, end) {
                fleet.push(Fleet {
                    id: row.id,
                    kind,
                    depot,
                    count: row.count,
                    shift: (s, e),
                });
            }
        }
        if fleet.iter().all(|f| f.count == 0) && p.0.is_empty() {
            p.add(fleet_file, 1, "count", "the fleet has no vehicles");
        }

        // Travel.
        let travel = read_travel(dir, &raw, &text, &sites, &site_ref, &mut p)?;

        if !p.0.is_empty() {
            return Err(InputErrors(p.0).into());
        }
        Ok(Scenario {
            dir: dir.to_owned(),
            name: raw.name,
            date: raw.date,
            sites,
            sessions,
            groups,
            demand,
            kinds,
            fleet,
            driver_break,
            travel,
            time_limit_s: raw.solver.time_limit_s,
            seed: raw.solver.seed,
        })
    }
}

/// Base travel between sites: great-circle km times `road_factor` at `base_kmh`, overridden
/// pair by pair by the optional matrix file; then the time-of-day bands.
fn read_travel(
    dir: &Path,
    raw: &RawScenario,
    text: &str,
    sites: &[Site],
    site_ref: &HashMap<&str, usize>,
    p: &mut Problems,
) -> Result<Travel, ScenarioError> {
    const TOML: &str = "scenario.toml";
    let t = &raw.travel;
    let (road_factor, kmh) = (*t.road_factor.get_ref(), *t.base_kmh.get_ref());
    if !at_least(road_factor, 1.0) {
        p.add(
            TOML,
            line_of(text, t.road_factor.span().start),
            "road_factor",
            "must be >= 1 (roads are not shorter than the crow flies)",
        );
    }
    if !above(kmh, 0.0) {
        p.add(
            TOML,
            line_of(text, t.base_kmh.span().start),
            "base_kmh",
            "must be > 0",
        );
    }
    let n = sites.len();
    let mut km = vec![0.0; n * n];
    let mut minutes = vec![0.0; n * n];
    for (i, a) in sites.iter().enumerate() {
        for (j, b) in sites.iter().enumerate() {
            let d = great_circle_km(a.lat, a.lon, b.lat, b.lon) * road_factor;
            km[i * n + j] = d;
            minutes[i * n + j] = d / kmh * 60.0;
        }
    }
    if let Some(file) = &raw.files.travel {
        let mut given = vec![false; n * n];
        for (row, line) in read_csv::<TravelRow>(dir, file, p)? {
            let from = lookup(site_ref, &row.from, "site", (file, line, "from"), p);
            let to = lookup(site_ref, &row.to, "site", (file, line, "to"), p);
            if !at_least(row.km, 0.0) {
                p.add(file, line, "km", "must be >= 0");
            }
            if row.min.is_some_and(|m| !at_least(m, 0.0)) {
                p.add(file, line, "min", "must be >= 0");
            }
            let (Some(i), Some(j)) = (from, to) else {
                continue;
            };
            let m = row.min.unwrap_or(row.km / kmh * 60.0);
            // A row serves both directions unless the other direction has its own row.
            for (a, b, own) in [(i, j, true), (j, i, false)] {
                if own || !given[a * n + b] {
                    km[a * n + b] = row.km;
                    minutes[a * n + b] = m;
                }
            }
            given[i * n + j] = true;
        }
    }
    let mut bands = Vec::new();
    for b in &t.bands {
        let from = clock::parse(b.from.get_ref())
            .map_err(|m| p.add(TOML, line_of(text, b.from.span().start), "from", m))
            .ok();
        let to = clock::parse(b.to.get_ref())
            .map_err(|m| p.add(TOML, line_of(text, b.to.span().start), "to", m))
            .ok();
        if !above(*b.factor.get_ref(), 0.0) {
            p.add(
                TOML,
                line_of(text, b.factor.span().start),
                "factor",
                "must be > 0",
            );
        }
        if let (Some(from), Some(to)) = (from, to) {
            if to <= from {
                p.add(
                    TOML,
                    line_of(text, b.to.span().start),
                    "to",
                    "band must end after it starts",
                );
            } else if let Some(other) = bands.iter().find(|o: &&Band| o.from < to && from < o.to) {
                p.add(
                    TOML,
                    line_of(text, b.from.span().start),
                    "from",
                    format!("band overlaps the band `{}`", other.label),
                );
            } else {
                bands.push(Band {
                    from,
                    to,
                    factor: *b.factor.get_ref(),
                    label: b.label.clone(),
                });
            }
        }
    }
    Ok(Travel::new(n, km, minutes, SpeedProfile::new(bands)))
}
