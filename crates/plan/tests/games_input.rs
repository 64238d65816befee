//! Bad scenario input is refused with the file, line and field at fault. Each test copies the
//! shipped sample scenario, breaks one thing and reads it back.

use stadion_plan::games::{InputError, Scenario, ScenarioError, build};
use std::path::{Path, PathBuf};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/paris-day")
}

/// A copy of the sample scenario with `edit` applied to `file` (`from` must occur in it).
fn broken(file: &str, from: &str, to: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(sample()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let target = dir.path().join(file);
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(text.contains(from), "{from:?} not in {file}");
    std::fs::write(&target, text.replacen(from, to, 1)).unwrap();
    dir
}

fn line_of(file: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(sample().join(file)).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

fn errors(dir: &Path) -> Vec<InputError> {
    match Scenario::load(dir) {
        Err(ScenarioError::Invalid(e)) => e.0,
        other => panic!("expected invalid input, got {other:?}"),
    }
}

fn assert_one(errors: &[InputError], file: &str, line: usize, field: &str, says: &str) {
    assert!(
        errors.iter().any(|e| e.file == file
            && e.line == line
            && e.field == field
            && e.message.contains(says)),
        "no error {file}:{line} `{field}` containing {says:?} in {errors:#?}"
    );
}

#[test]
fn the_sample_scenario_is_valid() {
    let s = Scenario::load(&sample()).unwrap();
    assert_eq!(s.sessions.len(), 9);
    assert!(s.fleet.iter().map(|f| f.count).sum::<usize>() > 50);
    assert_eq!(s.travel.profile.bands().len(), 3);
    // The measured pair overrides the estimate in both directions.
    let (v, sdf) = (
        s.sites.iter().position(|x| x.id == "village").unwrap(),
        s.sites
            .iter()
            .position(|x| x.id == "stade_de_france")
            .unwrap(),
    );
    assert_eq!((s.travel.km(v, sdf), s.travel.km(sdf, v)), (2.9, 2.9));
}

#[test]
fn unknown_venue() {
    let dir = broken(
        "sessions.csv",
        "ath_pm,stade_de_france",
        "ath_pm,stade_de_franse",
    );
    let e = errors(dir.path());
    assert_one(
        &e,
        "sessions.csv",
        line_of("sessions.csv", "ath_pm,"),
        "venue",
        "unknown venue `stade_de_franse`",
    );
}

#[test]
fn session_ending_before_it_starts() {
    let dir = broken("sessions.csv", "12:00,14:30", "12:00,11:30");
    let e = errors(dir.path());
    assert_one(
        &e,
        "sessions.csv",
        line_of("sessions.csv", "gym_am,"),
        "end",
        "before it starts at 12:00",
    );
}

#[test]
fn vehicle_with_no_depot() {
    let dir = broken(
        "fleet.csv",
        "car_ouest_pm,car,depot_ouest",
        "car_ouest_pm,car,",
    );
    let e = errors(dir.path());
    assert_one(
        &e,
        "fleet.csv",
        line_of("fleet.csv", "car_ouest_pm"),
        "depot",
        "no depot",
    );
}

#[test]
fn vehicle_at_a_site_that_is_not_a_depot() {
    let dir = broken(
        "fleet.csv",
        "bus_nord_pm,bus,depot_nord",
        "bus_nord_pm,bus,village",
    );
    let e = errors(dir.path());
    assert_one(
        &e,
        "fleet.csv",
        line_of("fleet.csv", "bus_nord_pm"),
        "depot",
        "not a depot",
    );
}

#[test]
fn impossible_time_windows() {
    // An explicit arrival window that closes before it opens, and one that closes after the
    // session has started.
    let dir = broken(
        "demand.csv",
        "session,group,arrive,leave,origin\nath_am,athletes,160,140,\nath_am,officials,16,16,",
        "session,group,arrive,leave,origin,arrive_from,arrive_by\nath_am,athletes,160,140,,09:00,08:30\nath_am,officials,16,16,,09:00,10:30",
    );
    let e = errors(dir.path());
    let first = line_of("demand.csv", "ath_am,athletes");
    assert_one(
        &e,
        "demand.csv",
        first,
        "arrive_by",
        "closes at 08:30 before it opens at 09:00",
    );
    assert_one(
        &e,
        "demand.csv",
        first + 1,
        "arrive_by",
        "after the session starts at 10:05",
    );
    // Every other row lacks the two new columns: still fine (they are optional).
    assert_eq!(e.len(), 2, "{e:#?}");
}

#[test]
fn unknown_group_and_bad_number_are_both_reported() {
    let dir = broken(
        "demand.csv",
        "gym_am,athletes,40,40,",
        "gym_am,gymnasts,forty,40,",
    );
    let e = errors(dir.path());
    let line = line_of("demand.csv", "gym_am,athletes");
    assert_one(&e, "demand.csv", line, "arrive", "invalid digit");
    let dir = broken(
        "demand.csv",
        "gym_am,athletes,40,40,",
        "gym_am,gymnasts,40,40,",
    );
    assert_one(
        &errors(dir.path()),
        "demand.csv",
        line,
        "group",
        "unknown group `gymnasts`",
    );
}

#[test]
fn shift_longer_than_the_driver_may_work() {
    let dir = broken(
        "fleet.csv",
        "bus_ouest_am,bus,depot_ouest,10,06:00,16:30",
        "bus_ouest_am,bus,depot_ouest,10,06:00,18:30",
    );
    assert_one(
        &errors(dir.path()),
        "fleet.csv",
        line_of("fleet.csv", "bus_ouest_am"),
        "shift_end",
        "longer than the driver limit",
    );
}

#[test]
fn toml_problems_name_line_and_key() {
    let dir = broken("scenario.toml", "capacity = 50", "capacity = \"fifty\"");
    let e = errors(dir.path());
    assert_one(
        &e,
        "scenario.toml",
        line_of("scenario.toml", "capacity = 50"),
        "capacity",
        "invalid type",
    );

    let dir = broken(
        "scenario.toml",
        "home = \"hotel_eiffel\"",
        "home = \"hotel_eifel\"",
    );
    assert_one(
        &errors(dir.path()),
        "scenario.toml",
        line_of("scenario.toml", "home = \"hotel_eiffel\""),
        "home",
        "unknown site `hotel_eifel`",
    );

    let dir = broken("scenario.toml", "factor = 1.25", "factor = -1.25");
    assert_one(
        &errors(dir.path()),
        "scenario.toml",
        line_of("scenario.toml", "factor = 1.25"),
        "factor",
        "must be > 0",
    );
}

#[test]
fn loads_no_vehicle_can_reach_are_listed_with_why() {
    // A session at 06:30: athletes must be there by 05:40, before any shift starts at 06:00.
    let dir = broken(
        "sessions.csv",
        "jud_am,champ_de_mars,Judo eliminations,10:00",
        "jud_am,champ_de_mars,Judo eliminations,06:30",
    );
    let s = Scenario::load(dir.path()).unwrap();
    let built = build(&s);
    let names: Vec<(&str, &str)> = built
        .unservable
        .iter()
        .map(|u| (built.loads[u.load].name.as_str(), u.reason.as_str()))
        .collect();
    assert!(
        names
            .iter()
            .any(|(n, why)| n.starts_with("jud_am/athletes/to")
                && why.contains("after the pick-up window closes")),
        "{names:#?}"
    );
    // Loads after the session are still served: the screen is per load, not per session.
    assert!(
        built
            .instance
            .requests
            .iter()
            .any(|r| r.name.starts_with("jud_am/athletes/from"))
    );
}

#[test]
fn a_ride_longer_than_allowed_is_unservable() {
    let dir = broken("scenario.toml", "max_ride_min = 75", "max_ride_min = 5");
    let s = Scenario::load(dir.path()).unwrap();
    let built = build(&s);
    let media: Vec<&str> = built
        .unservable
        .iter()
        .filter(|u| built.loads[u.load].name.contains("/media/"))
        .map(|u| u.reason.as_str())
        .collect();
    assert!(
        !media.is_empty()
            && media
                .iter()
                .all(|r| r.contains("more than the maximum ride of 5 min")),
        "{media:#?}"
    );
}
