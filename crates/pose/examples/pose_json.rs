//! One video to a folder of OpenPose-style JSON files (what `stadion track` does per
//! camera): `cargo run --release -p stadion-pose --example pose_json -- <model.onnx>
//! <video> <out dir> [skeleton, e.g. BLAZEPOSE_33 or BODY_25]`.

use std::path::Path;

use stadion_pose::{LandmarkModel, PoseOptions, estimate_video, write_openpose};
use stadion_track::Skeleton;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(model), Some(video), Some(out)) = (args.get(1), args.get(2), args.get(3)) else {
        return Err("usage: pose_json <model.onnx> <video> <out dir> [skeleton]".into());
    };
    let skeleton = match args.get(4) {
        Some(s) => Skeleton::from_name(s).ok_or_else(|| format!("unknown skeleton {s}"))?,
        None => Skeleton::Blazepose33,
    };
    let model = LandmarkModel::load(Path::new(model))?;
    let video = Path::new(video);
    let camera = video
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or("video name is not UTF-8")?;
    let options = PoseOptions {
        skeleton,
        ..PoseOptions::default()
    };
    let poses = estimate_video(&model, video, camera, &options, &mut |_| {})?;
    let files = write_openpose(&poses.keypoints, Path::new(out))?;
    println!(
        "{camera}: {} frames, {} with somebody, {} people, {} crops, {:.1} s; {} files in {out}",
        poses.keypoints.frames.len(),
        poses.detected,
        poses.people,
        poses.crops,
        poses.elapsed.as_secs_f64(),
        files.len()
    );
    Ok(())
}
