//! Per-crop inference time and end-to-end frames/s of the BlazePose models on the demo
//! videos, for docs/benchmarks.md:
//!
//! `cargo run --release -p stadion-pose --example pose_bench -- <models dir> <videos dir> [threads]`
//!
//! `<models dir>` holds `pose_landmark_{lite,full}.onnx`, `<videos dir>` `cam01..04.mp4`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use stadion_pose::image::crop_into;
use stadion_pose::model::INPUT_SIZE;
use stadion_pose::tracker::acquisition_rois;
use stadion_pose::video::FrameReader;
use stadion_pose::{LandmarkModel, PoseOptions, estimate_videos};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
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
    let t = Instant::now();
    for _ in 0..100 {
        crop_into(&frame, &roi, INPUT_SIZE, &mut tensor);
    }
    println!(
        "warp 1080x1080 -> 256x256: {:.3} ms",
        t.elapsed().as_secs_f64() * 10.0
    );

    for variant in ["lite", "full"] {
        let path = Path::new(models).join(format!("pose_landmark_{variant}.onnx"));
        let t = Instant::now();
        let model = LandmarkModel::load(&path)?;
        let load = t.elapsed().as_secs_f64();
        model.run(&tensor)?;
        let mut ms: Vec<f64> = (0..30)
            .map(|_| {
                let t = Instant::now();
                model.run(&tensor).map(|_| t.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<Result<_, _>>()?;
        ms.sort_by(f64::total_cmp);
        println!(
            "{variant}: load+optimise {load:.2} s, per crop p50 {:.1} ms p90 {:.1} ms (1 thread)",
            percentile(&ms, 0.5),
            percentile(&ms, 0.9)
        );
        let t = Instant::now();
        let runs = estimate_videos(&model, &cams, &PoseOptions::default(), threads, &|_, _| {})?;
        let secs = t.elapsed().as_secs_f64();
        let frames: usize = runs.iter().map(|r| r.keypoints.frames.len()).sum();
        let detected: usize = runs.iter().map(|r| r.detected).sum();
        let crops: usize = runs.iter().map(|r| r.crops).sum();
        println!(
            "{variant}: {} videos, {frames} frames, {detected} with a person, {crops} crops, \
             {secs:.1} s on {threads} threads: {:.1} frames/s end to end",
            cams.len(),
            frames as f64 / secs
        );
    }
    Ok(())
}
