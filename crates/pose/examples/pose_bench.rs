//! Per-crop inference time and end-to-end frames/s of the BlazePose models on the demo
//! videos, for docs/benchmarks.md:
//!
//! `cargo run --release -p stadion-pose --example pose_bench -- <models dir> <videos dir> [threads]`
//!
//! `<models dir>` holds `pose_landmark_{lite,full}.onnx`, `<videos dir>` `cam01..04.mp4`.
//! Wall-clock times on a shared, loaded machine overstate the cost, so CPU time is printed
//! beside them: the thread's own for a crop, the process's plus its `ffmpeg` children's for
//! a whole run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use stadion_pose::image::crop_into;
use stadion_pose::model::INPUT_SIZE;
use stadion_pose::tracker::acquisition_rois;
use stadion_pose::video::FrameReader;
use stadion_pose::{LandmarkModel, PoseOptions, estimate_videos};

/// CPU seconds used by the calling thread.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// CPU seconds (user + system) of this process and of its children that have exited.
fn process_cpu() -> f64 {
    let secs = |who| {
        // SAFETY: an all-zero rusage is valid and getrusage only writes into it.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    secs(libc::RUSAGE_SELF) + secs(libc::RUSAGE_CHILDREN)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(models), Some(videos)) = (args.get(1), args.get(2)) else {
        return Err("usage: pose_bench <models dir> <videos dir> [threads]".into());
    };
    let threads: usize = args.get(3).map(|t| t.parse()).transpose()?.unwrap_or(2);
    let cams: Vec<(String, PathBuf)> = (1..=4)
        .map(|c| {
            (
                format!("cam{c:02}"),
                Path::new(videos).join(format!("cam{c:02}.mp4")),
            )
        })
        .collect();
    let frame = FrameReader::open(&cams[0].1, Some(1))?
        .next_frame(None)?
        .ok_or("empty video")?;
    let roi = acquisition_rois(frame.width(), frame.height())[1];
    let mut tensor = Vec::new();
    let (wall, cpu): (Vec<f64>, Vec<f64>) = (0..50)
        .map(|_| {
            let (t, c) = (Instant::now(), thread_cpu());
            crop_into(&frame, &roi, INPUT_SIZE, &mut tensor);
            (t.elapsed().as_secs_f64() * 1e3, (thread_cpu() - c) * 1e3)
        })
        .unzip();
    println!(
        "warp 1080x1080 -> 256x256: median {:.2} ms wall, {:.2} ms CPU",
        median(wall),
        median(cpu)
    );

    for variant in ["lite", "full"] {
        let path = Path::new(models).join(format!("pose_landmark_{variant}.onnx"));
        let t = Instant::now();
        let model = LandmarkModel::load(&path)?;
        let load = t.elapsed().as_secs_f64();
        model.run(&tensor)?;
        let mut wall = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..30 {
            let (t, c) = (Instant::now(), thread_cpu());
            model.run(&tensor)?;
            wall.push(t.elapsed().as_secs_f64() * 1e3);
            cpu.push((thread_cpu() - c) * 1e3);
        }
        println!(
            "{variant}: load+optimise {load:.2} s; per crop median {:.1} ms wall, {:.1} ms CPU \
             (one thread)",
            median(wall),
            median(cpu)
        );
        let (t, c) = (Instant::now(), process_cpu());
        let runs = estimate_videos(&model, &cams, &PoseOptions::default(), threads, &|_, _| {})?;
        let (secs, cpu) = (t.elapsed().as_secs_f64(), process_cpu() - c);
        let frames: usize = runs.iter().map(|r| r.keypoints.frames.len()).sum();
        let detected: usize = runs.iter().map(|r| r.detected).sum();
        let crops: usize = runs.iter().map(|r| r.crops).sum();
        println!(
            "{variant}: {} videos, {frames} frames, {detected} with a person, {crops} crops; \
             {secs:.1} s wall on {threads} threads = {:.1} frames/s; {cpu:.1} CPU-s with ffmpeg \
             = {:.1} frames/s per core",
            cams.len(),
            frames as f64 / secs,
            frames as f64 / cpu
        );
    }
    Ok(())
}
