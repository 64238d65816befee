//! Per-frame latency of multi-view 3D for the live target: 4 cameras × 17 joints × 8
//! athletes, with 3 px noise and 5 % outlier keypoints.
//!
//! `cargo bench -p stadion-track --bench triangulate` prints latency percentiles over
//! 20 000 frames first (the live-mode figure: p50/p99/max), then criterion's means for
//! triangulation alone (association known) and for the full tracker (association across
//! views + over time + triangulation); the live line adds the Kalman speed filters and the
//! JSON serialisation of `stadion track live`.
//!
//! Each percentile line is given twice: wall time, and the CPU time of the measuring thread
//! (`CLOCK_THREAD_CPUTIME_ID`), which excludes the time slices the scheduler gives to other
//! processes. On a shared, loaded machine the wall-time tail is that preemption; the CPU-time
//! tail is the work, i.e. what an idle core dedicated to the live mode would see.

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use nalgebra::{Point3, Vector3};
use rand::{Rng, SeedableRng, rngs::StdRng};
use stadion_track::biomech::TrackGeometry;
use stadion_track::pipeline::LiveTracker;
use stadion_track::{
    Calibration, Camera, Frame2D, Intrinsics, Keypoint2D, Keypoints2D, MultiViewTracker, Skeleton,
    TrackerConfig, TriangulationConfig, Triangulator,
};

const PEOPLE: usize = 8;
const JOINTS: usize = 17;

/// Four cameras 30 m from the lanes, two per side, looking at the 50 m mark.
fn rig() -> Calibration {
    let k = Intrinsics {
        fx: 2200.0,
        fy: 2200.0,
        cx: 960.0,
        cy: 540.0,
        skew: 0.0,
    };
    let target = Point3::new(50.0, 4.3, 1.0);
    let at = [(40.0, -30.0), (60.0, -30.0), (40.0, 38.6), (60.0, 38.6)];
    Calibration::new(
        at.iter()
            .enumerate()
            .map(|(i, &(x, y))| {
                Camera::look_at(
                    &format!("cam{i}"),
                    (1920, 1080),
                    k,
                    Point3::new(x, y, 6.0),
                    target,
                    Vector3::z(),
                )
            })
            .collect(),
    )
}

/// Frames generated; the loops cycle through them.
const CYCLE: usize = 200;

/// Eight athletes, one per lane, a crude 17-joint body each, running back and forth by 4 m
/// once per cycle (up to 6 m/s at 50 fps), so that the cycle repeats without a jump that
/// would break the trackers' constant-velocity prediction.
fn athletes(frame: usize) -> Vec<Vec<Point3<f64>>> {
    let phase = std::f64::consts::TAU * (frame % CYCLE) as f64 / CYCLE as f64;
    (0..PEOPLE)
        .map(|lane| {
            let x = 50.0 + 2.0 * phase.sin() + 0.1 * lane as f64;
            let y = 1.22 * (lane as f64 + 0.5);
            (0..JOINTS)
                .map(|j| {
                    Point3::new(
                        x + 0.05 * ((j % 3) as f64 - 1.0),
                        y + 0.08 * ((j % 2) as f64 - 0.5),
                        0.1 * j as f64 + 0.05,
                    )
                })
                .collect()
        })
        .collect()
}

fn observe(cal: &Calibration, people: &[Vec<Point3<f64>>], rng: &mut StdRng) -> Vec<Frame2D> {
    cal.cameras
        .iter()
        .map(|c| Frame2D {
            people: people
                .iter()
                .map(|body| Keypoints2D {
                    person_id: None,
                    points: body
                        .iter()
                        .map(|p| {
                            let q = c.project(p).expect("in front");
                            let (dx, dy) = if rng.random::<f64>() < 0.05 {
                                (
                                    rng.random_range(-200.0..200.0),
                                    rng.random_range(-200.0..200.0),
                                )
                            } else {
                                (rng.random_range(-3.0..3.0), rng.random_range(-3.0..3.0))
                            };
                            Keypoint2D::new(q.x + dx, q.y + dy, rng.random_range(0.5..1.0))
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

/// CPU time consumed by the calling thread, ns.
fn thread_cpu_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// Wall and thread-CPU time of each call of `step`, in ns.
#[derive(Default)]
struct Latencies {
    wall: Vec<u128>,
    cpu: Vec<u128>,
}

impl Latencies {
    fn time<T>(&mut self, step: impl FnOnce() -> T) -> T {
        let (w, c) = (Instant::now(), thread_cpu_ns());
        let out = step();
        self.cpu.push(thread_cpu_ns() - c);
        self.wall.push(w.elapsed().as_nanos());
        out
    }

    fn print(self, label: &str) {
        println!("{label}, {} frames:", self.wall.len());
        for (clock, mut ns) in [("wall", self.wall), ("cpu ", self.cpu)] {
            ns.sort_unstable();
            let p = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
            println!(
                "  {clock}: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
                p(0.5),
                p(0.9),
                p(0.99),
                p(0.999),
                p(1.0)
            );
        }
    }
}

fn main() {
    let cal = rig();
    let mut rng = StdRng::seed_from_u64(7);
    let frames: Vec<Vec<Frame2D>> = (0..CYCLE)
        .map(|f| observe(&cal, &athletes(f), &mut rng))
        .collect();
    let tri = Triangulator::new(&cal, TriangulationConfig::default()).unwrap();
    let mut tracker =
        MultiViewTracker::new(&cal, Skeleton::Coco17, TrackerConfig::default()).unwrap();
    let mut out = Vec::with_capacity(JOINTS);

    let triangulate_frame = |frame: &[Frame2D], out: &mut Vec<_>| {
        for p in 0..PEOPLE {
            let views = [0, 1, 2, 3].map(|c| Some(&frame[c].people[p]));
            tri.triangulate_pose(&views, JOINTS, out);
            black_box(&out);
        }
    };

    let rounds = 20_000;
    let mut lat = Latencies::default();
    for i in 0..rounds {
        lat.time(|| triangulate_frame(&frames[i % frames.len()], &mut out));
    }
    lat.print("triangulate 4 cams x 17 joints x 8 people");
    let mut lat = Latencies::default();
    let mut people_seen = 0;
    for i in 0..rounds {
        people_seen += lat.time(|| tracker.update(&frames[i % frames.len()]).unwrap().len());
    }
    lat.print("track (associate + triangulate + ids), same frames");
    println!(
        "  mean people found per frame: {:.2} of {PEOPLE}",
        people_seen as f64 / rounds as f64
    );
    // The live mode as `stadion track live` runs it: tracker + Kalman speed per athlete +
    // the JSON line a graphics engine reads.
    let mut live = LiveTracker::new(
        &cal,
        Skeleton::Coco17,
        50.0,
        &TrackGeometry::default(),
        TrackerConfig::default(),
    )
    .unwrap();
    let mut lat = Latencies::default();
    let mut line = Vec::with_capacity(4096);
    let mut athletes = 0;
    for i in 0..rounds {
        lat.time(|| {
            let frame = live.push(&frames[i % frames.len()]).unwrap();
            athletes += frame.athletes.len();
            line.clear();
            serde_json::to_writer(&mut line, &frame).unwrap();
        });
        black_box(&line);
    }
    lat.print("live (track + Kalman + JSON line)");
    println!(
        "  mean athletes per JSON line: {:.2} of {PEOPLE}",
        athletes as f64 / rounds as f64
    );

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("triangulate_4cams_17joints_8people", |b| {
        let mut i = 0;
        b.iter(|| {
            triangulate_frame(&frames[i % frames.len()], &mut out);
            i += 1;
        })
    });
    c.bench_function("track_4cams_17joints_8people", |b| {
        let mut i = 0;
        b.iter(|| {
            black_box(tracker.update(&frames[i % frames.len()]).unwrap().len());
            i += 1;
        })
    });
    c.final_summary();
}
