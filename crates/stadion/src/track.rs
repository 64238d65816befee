//! `stadion track`: multi-camera 3D pose and sprint biomechanics from the command line.
//! Every command is a thin shell over `stadion-track` (whose docs are in docs/track.md):
//! it finds files, shows progress and writes results.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use stadion_track::biomech::{AnalysisConfig, TrackGeometry, analyse};
use stadion_track::filter::{BoneLengths, Butterworth, Motion};
use stadion_track::pipeline::{self, LiveTracker, Project};
use stadion_track::synth::{SprintConfig, SyntheticSprint, evaluate};
use stadion_track::{CalibFormat, Skeleton, TrackerConfig, calib, plot};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a calibration file and write it in another format, printing every camera.
    ///
    /// Reads Pose2Sim/anipose TOML, OpenCV FileStorage YAML and Qualisys .qca.txt (format
    /// from the file name, or --from); writes TOML or YAML. Bad files are refused with the
    /// file, camera and field named (NaN, singular matrix, not a rotation...).
    #[command(after_help = "Example:\n  \
        stadion track calibrate ../shared/data/track/pose2sim-demo-single/calibration/Calib.qca.txt \\\n    \
        --output /tmp/Calib.toml")]
    Calibrate(CalibrateArgs),
    /// 2D pose from a project's videos (videos/<camera>.mp4) on the CPU: decodes with ffmpeg,
    /// runs the BlazePose landmark model (ONNX, through tract) and writes OpenPose JSON into
    /// pose/<camera>_json/, one file per frame.
    ///
    /// The model is a file you provide (docs/track.md tells how to convert MediaPipe's);
    /// nothing is downloaded. Each person is followed from their landmarks in the frame
    /// before; new people are looked for where the picture moved and by scanning the whole
    /// frame with those followed blacked out, up to --max-people per video.
    #[command(after_help = "Example:\n  \
        stadion track pose my-project --model ../shared/data/models/pose_landmark_full.onnx")]
    Pose(PoseArgs),
    /// Triangulate a Pose2Sim-style project's 2D keypoints into 3D (every person, every frame).
    ///
    /// Reads calibration/<one file> and pose/<camera>_json/*.json (OpenPose format: BODY_25,
    /// COCO-17/18, HALPE-26 or BlazePose-33 by joint count). People are associated across views
    /// by epipolar consistency and over time by track ids; each joint is triangulated from
    /// its views weighted by confidence, with outlier views rejected. Writes points3d.csv,
    /// points3d.jsonl, athlete.trc (the longest track, Butterworth-filtered) and summary.json
    /// (mean reprojection error, views per joint) into --out.
    #[command(
        after_help = "Example:\n  stadion track triangulate my-project --fps 60 --out /tmp/out"
    )]
    Triangulate(TriangulateArgs),
    /// Sprint biomechanics of one athlete's 3D motion (a TRC file).
    ///
    /// Centre of mass (de Leva segment model), speed and acceleration along the lane, top
    /// speed, foot contacts and flight times, step and stride length and frequency, split
    /// times, knee/hip angles and trunk lean. Writes frames.csv, steps.csv, splits.csv,
    /// analysis.json, speed.svg and splits.svg into --out. The lane runs along +x from
    /// x = 0 with z up unless told otherwise.
    #[command(
        after_help = "Example:\n  stadion track analyse /tmp/out/athlete.trc --out /tmp/out/biomech"
    )]
    Analyse(AnalyseArgs),
    /// The whole chain over a project folder: 2D keypoints → 3D → filter → TRC → biomechanics
    /// → pictures, with a skeleton overlay on a video frame when the videos are there.
    ///
    /// 2D keypoints are read from pose/<camera>_json/, or made from videos/ first when
    /// --model is given and pose/ is empty; the overlay needs `ffmpeg` on PATH.
    #[command(after_help = "Example:\n  \
        stadion track run demo --model ../shared/data/models/pose_landmark_full.onnx --out /tmp/demo")]
    Run(RunArgs),
    /// Live mode: consume a project's frames one by one and print one JSON line per frame
    /// (athletes with id, position, distance, speed, acceleration) as a graphics engine
    /// would read it; per-frame latency percentiles go to standard error at the end.
    #[command(after_help = "Example:\n  stadion track live my-project --fps 50 > metrics.jsonl")]
    Live(LiveArgs),
    /// Generate the synthetic 100 m benchmark and score the chain against its ground truth.
    ///
    /// A sprinter with a known speed profile, steps and contacts is filmed by pan-tilt
    /// cameras 30 m from the lane; the 2D detections get pixel noise, outliers, left/right
    /// swaps, dropped joints, occlusions and false detections. Prints MPJPE, speed, split,
    /// step and contact errors and the time per frame as JSON; --exchange writes the race for
    /// other tools (bench/track/run.sh feeds it to aniposelib).
    #[command(after_help = "Example:\n  \
        stadion track synth --cameras 4 --noise-px 3 --outliers 0.05 --exchange /tmp/race.json")]
    Synth(SynthArgs),
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Calibration file to read, or with --landmarks a CSV of `camera,X,Y,Z,u,v` rows
    /// (a landmark's world position in metres and its pixel in that camera; ≥ 6 landmarks
    /// per camera, not all in one plane) to solve every camera from.
    input: PathBuf,
    /// Solve the cameras from landmark correspondences (DLT + Levenberg–Marquardt).
    #[arg(long)]
    landmarks: bool,
    /// Image size of the cameras solved from landmarks.
    #[arg(long, default_value = "1920x1080", value_parser = parse_size)]
    size: (u32, u32),
    /// Format of the input when its name does not tell (toml, yaml, qualisys).
    #[arg(long, value_parser = parse_format)]
    from: Option<CalibFormat>,
    /// Where to write the calibration (.toml or .yml).
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PoseArgs {
    /// Project folder (videos/, calibration/); keypoints go to pose/.
    project: PathBuf,
    /// BlazePose landmark model in ONNX (pose_landmark_full.onnx or _lite).
    #[arg(long, env = "STADION_POSE_MODEL")]
    model: PathBuf,
    /// Layout of the keypoints written (COCO_17 suits the biomechanics; BLAZEPOSE_33 keeps
    /// every landmark).
    #[arg(long, default_value = "COCO_17", value_parser = parse_skeleton)]
    skeleton: Skeleton,
    /// Videos decoded in parallel.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Stop after this many frames per video.
    #[arg(long)]
    max_frames: Option<usize>,
    /// Where to write the keypoint folders (default: PROJECT/pose).
    #[arg(long)]
    pose_dir: Option<PathBuf>,
    #[command(flatten)]
    people: PeopleArgs,
}

/// How many people the pose model follows in each video and how it finds new ones.
#[derive(Debug, Args)]
pub struct PeopleArgs {
    /// Most people followed at once in each video (each costs one model run a frame).
    #[arg(long, default_value_t = stadion_pose::TrackerConfig::default().max_people)]
    max_people: usize,
    /// Every this many frames, look for new people where the picture moved (0: never).
    #[arg(long, default_value_t = stadion_pose::TrackerConfig::default().motion_interval)]
    motion_interval: usize,
    /// Every this many frames, scan the whole frame for new people (0: only while nobody
    /// is followed).
    #[arg(long, default_value_t = stadion_pose::TrackerConfig::default().scan_interval)]
    scan_interval: usize,
}

impl PeopleArgs {
    fn tracker(&self) -> stadion_pose::TrackerConfig {
        stadion_pose::TrackerConfig {
            max_people: self.max_people,
            motion_interval: self.motion_interval,
            scan_interval: self.scan_interval,
            ..Default::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct TriangulateArgs {
    /// Project folder (calibration/, pose/).
    project: PathBuf,
    /// Frame rate of the videos (Hz).
    #[arg(long, default_value_t = 60.0)]
    fps: f64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Low-pass cutoff of the zero-phase Butterworth filter for athlete.trc (Hz).
    #[arg(long, default_value_t = 6.0)]
    cutoff: f64,
    /// Keypoint layout, if the joint count is ambiguous (BODY_25, COCO_17, HALPE_26, ...).
    #[arg(long, value_parser = parse_skeleton)]
    skeleton: Option<Skeleton>,
    /// Folder of the keypoint folders <camera>_json/ (default: PROJECT/pose).
    #[arg(long)]
    pose_dir: Option<PathBuf>,
    /// A view whose reprojection error exceeds this is an outlier (pixels).
    #[arg(long, default_value_t = 15.0)]
    inlier_px: f64,
}

#[derive(Debug, Args)]
pub struct AnalyseArgs {
    /// TRC file of one athlete (as written by `triangulate`, Pose2Sim or OpenSim).
    trc: PathBuf,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Distances of the split times (m), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,20,30,40,50,60,70,80,90,100"
    )]
    splits: Vec<f64>,
    /// Start line position along the lane axis (m).
    #[arg(long, default_value_t = 0.0)]
    start: f64,
    /// Time of the first frame relative to the start signal (s).
    #[arg(long, default_value_t = 0.0)]
    t0: f64,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Project folder (calibration/, pose/, videos/).
    project: PathBuf,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Frame rate of the videos (Hz).
    #[arg(long, default_value_t = 60.0)]
    fps: f64,
    /// Butterworth cutoff (Hz).
    #[arg(long, default_value_t = 6.0)]
    cutoff: f64,
    /// BlazePose model: when given and PROJECT/pose/ is empty, 2D keypoints are made from
    /// the videos first (as `stadion track pose`) and written into OUT/pose/, so the project
    /// folder may be read-only.
    #[arg(long, env = "STADION_POSE_MODEL")]
    model: Option<PathBuf>,
    /// With --model: only the first this many frames of each video.
    #[arg(long)]
    max_frames: Option<usize>,
    #[command(flatten)]
    people: PeopleArgs,
    /// Frame of the skeleton overlay pictures (default: the middle frame).
    #[arg(long)]
    overlay_frame: Option<usize>,
    /// Keypoint layout, if the joint count is ambiguous.
    #[arg(long, value_parser = parse_skeleton)]
    skeleton: Option<Skeleton>,
}

#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Project folder (calibration/, pose/).
    project: PathBuf,
    /// Folder of the keypoint folders <camera>_json/ (default: PROJECT/pose).
    #[arg(long)]
    pose_dir: Option<PathBuf>,
    /// Frame rate (Hz).
    #[arg(long, default_value_t = 50.0)]
    fps: f64,
    /// Keypoint layout, if the joint count is ambiguous.
    #[arg(long, value_parser = parse_skeleton)]
    skeleton: Option<Skeleton>,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Number of cameras (alternating sides of the lane).
    #[arg(long, default_value_t = 4)]
    cameras: usize,
    /// Distance of the cameras from the lane (m).
    #[arg(long, default_value_t = 30.0)]
    distance: f64,
    /// Race distance (m).
    #[arg(long, default_value_t = 100.0)]
    race_m: f64,
    /// Pixel noise, standard deviation (px).
    #[arg(long, default_value_t = 3.0)]
    noise_px: f64,
    /// Fraction of keypoints that are outliers.
    #[arg(long, default_value_t = 0.05)]
    outliers: f64,
    /// Frame rate (Hz).
    #[arg(long, default_value_t = 50.0)]
    fps: f64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Butterworth cutoff for the 3D joints (Hz).
    #[arg(long, default_value_t = 8.0)]
    cutoff: f64,
    /// Write the race (cameras per frame, the athlete's 2D keypoints, truth) as JSON here.
    #[arg(long)]
    exchange: Option<PathBuf>,
    /// Also write the truth's biomechanics tables and pictures here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the race as a project folder (calibration/Calib.toml, pose/<camera>_json/)
    /// for the other commands; the cameras are then fixed, framing the whole run, since
    /// one calibration file cannot describe pan-tilt cameras.
    #[arg(long)]
    project: Option<PathBuf>,
}

fn parse_format(s: &str) -> Result<CalibFormat, String> {
    match s.to_ascii_lowercase().as_str() {
        "toml" => Ok(CalibFormat::Toml),
        "yaml" | "yml" | "opencv" => Ok(CalibFormat::OpencvYaml),
        "qualisys" | "qca" => Ok(CalibFormat::Qualisys),
        _ => Err(format!("unknown format `{s}` (toml, yaml, qualisys)")),
    }
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or("expected WIDTHxHEIGHT, e.g. 1920x1080")?;
    Ok((
        w.parse().map_err(|e| format!("width `{w}`: {e}"))?,
        h.parse().map_err(|e| format!("height `{h}`: {e}"))?,
    ))
}

/// Reads `camera,X,Y,Z,u,v` rows (a header line is skipped) grouped by camera, in order of
/// first appearance.
type Landmarks = Vec<(
    String,
    Vec<nalgebra::Point3<f64>>,
    Vec<nalgebra::Point2<f64>>,
)>;

fn read_landmarks(path: &Path) -> anyhow::Result<Landmarks> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out: Landmarks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if line.trim().is_empty() || (i == 0 && f.get(1).is_some_and(|v| v.parse::<f64>().is_err()))
        {
            continue;
        }
        if f.len() != 6 {
            bail!(
                "{}:{}: expected 6 fields camera,X,Y,Z,u,v, got {}",
                path.display(),
                i + 1,
                f.len()
            );
        }
        let mut v = [0.0; 5];
        for (k, x) in f[1..].iter().enumerate() {
            v[k] = x
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .with_context(|| {
                    format!(
                        "{}:{}: field {} `{x}` is not a finite number",
                        path.display(),
                        i + 1,
                        k + 2
                    )
                })?;
        }
        let slot = match out.iter().position(|(c, _, _)| c == f[0]) {
            Some(s) => s,
            None => {
                out.push((f[0].to_owned(), Vec::new(), Vec::new()));
                out.len() - 1
            }
        };
        out[slot].1.push(nalgebra::Point3::new(v[0], v[1], v[2]));
        out[slot].2.push(nalgebra::Point2::new(v[3], v[4]));
    }
    Ok(out)
}

fn parse_skeleton(s: &str) -> Result<Skeleton, String> {
    Skeleton::from_name(s).ok_or_else(|| {
        format!("unknown skeleton `{s}` (BODY_25, COCO_17, COCO_18, HALPE_26, BLAZEPOSE_33)")
    })
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Calibrate(a) => calibrate(a),
        Command::Pose(a) => {
            let dir = a.pose_dir.unwrap_or_else(|| a.project.join("pose"));
            let options = stadion_pose::PoseOptions {
                tracker: a.people.tracker(),
                skeleton: a.skeleton,
                max_frames: a.max_frames,
            };
            pose(&a.project, &a.model, &options, a.threads, &dir)
        }
        Command::Triangulate(a) => {
            let inputs = Inputs::open(&a.project, a.pose_dir.as_deref())?;
            triangulate(&inputs, a.fps, a.cutoff, a.skeleton, a.inlier_px, &a.out)?;
            Ok(())
        }
        Command::Analyse(a) => {
            let motion = pipeline::read_trc(&a.trc)?;
            let geometry = TrackGeometry {
                start: nalgebra::Point3::new(a.start, 0.0, 0.0),
                ..TrackGeometry::default()
            };
            biomechanics(&motion, &a.splits, geometry, a.t0, &a.out)
        }
        Command::Run(a) => run_project(a),
        Command::Live(a) => live(a),
        Command::Synth(a) => synth(a),
    }
}

fn calibrate(a: CalibrateArgs) -> anyhow::Result<()> {
    let cal = if a.landmarks {
        let mut cameras = Vec::new();
        for (name, world, image) in read_landmarks(&a.input)? {
            let fit = calib::solve::calibrate_camera(&name, a.size, &world, &image, true)
                .with_context(|| format!("{}: camera {name}", a.input.display()))?;
            eprintln!(
                "{name}: {} landmarks, RMS reprojection error {:.2} px after {} iterations",
                world.len(),
                fit.rms_px,
                fit.iterations
            );
            cameras.push(fit.camera);
        }
        stadion_track::Calibration::new(cameras)
    } else {
        calib::read(&a.input, a.from)?
    };
    for c in &cal.cameras {
        let k = &c.intrinsics;
        let centre = c.centre();
        println!(
            "{:>8}  {}x{}  f = ({:.1}, {:.1}) px  c = ({:.1}, {:.1})  k1 = {:+.4}  centre = ({:.3}, {:.3}, {:.3}) m",
            c.name,
            c.size.0,
            c.size.1,
            k.fx,
            k.fy,
            k.cx,
            k.cy,
            c.distortion.k1,
            centre.x,
            centre.y,
            centre.z
        );
    }
    if let Some(out) = a.output {
        calib::write(&out, &cal, None)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:40}] {pos}/{len} frames ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

/// A project with its calibration, its keypoint folders looked up in `pose_dir` when given.
struct Inputs {
    project: Project,
    calibration: stadion_track::Calibration,
}

impl Inputs {
    fn open(root: &Path, pose_dir: Option<&Path>) -> anyhow::Result<Inputs> {
        let (mut project, calibration) = Project::open(root)?;
        if let Some(dir) = pose_dir {
            project.pose_dirs = pipeline::find_pose_dirs(&calibration, dir)?;
        }
        Ok(Inputs {
            project,
            calibration,
        })
    }

    /// Every calibrated camera's keypoints, or an error telling how to make them.
    fn keypoints(
        &self,
        skeleton: Option<Skeleton>,
    ) -> anyhow::Result<Vec<stadion_track::CameraKeypoints>> {
        if self.project.pose_dirs.is_empty() {
            bail!(
                "{}: no 2D keypoints (pose/<camera>_json/); make them with `stadion track pose` first",
                self.project.root.join("pose").display()
            );
        }
        Ok(pipeline::load_keypoints(
            &self.calibration,
            &self.project.pose_dirs,
            skeleton,
        )?)
    }
}

/// Triangulates a project, writes the 3D tables and the filtered athlete.trc; returns the
/// filtered athlete motion, the raw sequence and the keypoints it came from.
fn triangulate(
    inputs: &Inputs,
    fps: f64,
    cutoff: f64,
    skeleton: Option<Skeleton>,
    inlier_px: f64,
    out: &Path,
) -> anyhow::Result<(
    Motion,
    pipeline::Sequence,
    Vec<stadion_track::CameraKeypoints>,
)> {
    let cal = &inputs.calibration;
    let keypoints = inputs.keypoints(skeleton)?;
    let n = keypoints[0].frames.len() as u64;
    let pb = bar(n, "triangulate");
    let mut config = TrackerConfig::default();
    config.triangulation.inlier_threshold_px = inlier_px;
    let seq = pipeline::triangulate_sequence(cal, &keypoints, fps, config, &mut |f| {
        pb.set_position(f as u64)
    })?;
    pb.finish();
    seq.write_tables(out)?;
    let Some((id, raw)) = seq.main_track() else {
        bail!("nobody was triangulated: check that the cameras see the same person");
    };
    let filter = Butterworth::low_pass(4, cutoff, fps)?;
    let mut motion = raw.butterworth(&filter, (0.2 * fps) as usize);
    let bones = BoneLengths::estimate(&motion);
    let off = bones.violations(&motion, 0.2).len();
    let fixed = bones.enforce(&mut motion, 0.2);
    pipeline::write_trc(&motion, &out.join("athlete.trc"))?;
    let summary = serde_json::json!({
        "triangulation": seq.summary,
        "athlete_track_id": id,
        "butterworth_cutoff_hz": cutoff,
        "bone_length_violations_over_20pct": off,
        "bone_corrections": fixed,
        "bone_lengths_m": bones.bones.iter().map(|(a, b, l)| {
            let names = seq.skeleton.joint_names();
            (format!("{}-{}", names[*a], names[*b]), *l)
        }).collect::<std::collections::BTreeMap<_, _>>(),
    });
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )
    .with_context(|| format!("writing {}", out.join("summary.json").display()))?;
    let s = &seq.summary;
    eprintln!(
        "{} frames, {} track id(s); reprojection error mean {:.2} px, median {:.2} px; {:.2} views per joint; {:.0} µs per frame",
        s.frames,
        s.people_ids,
        s.mean_reprojection_error_px,
        s.median_reprojection_error_px,
        s.mean_views,
        s.mean_frame_us
    );
    Ok((motion, seq, keypoints))
}

fn biomechanics(
    motion: &Motion,
    splits: &[f64],
    geometry: TrackGeometry,
    t0: f64,
    out: &Path,
) -> anyhow::Result<()> {
    let config = AnalysisConfig {
        geometry,
        time_of_first_frame_s: t0,
        splits_m: splits.to_vec(),
        ..AnalysisConfig::default()
    };
    let a = analyse(motion, &config)?;
    a.write_tables(out)?;
    plot::speed_curve(&a, &out.join("speed.svg"))?;
    if !a.splits.is_empty() {
        plot::split_bars(&a, &out.join("splits.svg"))?;
    }
    eprintln!(
        "top speed {:.2} m/s at {:.2} s; {} steps (mean {:.2} m, {:.2} Hz); contact {:.3} s, flight {:.3} s; {} splits; tables and plots in {}",
        a.top_speed_mps,
        a.top_speed_time_s,
        a.steps.len(),
        a.mean_step_length_m,
        a.mean_step_frequency_hz,
        a.mean_contact_time_s,
        a.mean_flight_time_s,
        a.splits.len(),
        out.display()
    );
    Ok(())
}

/// One RGB frame of a video through `ffmpeg` (frame `index`) on a canvas of the camera's
/// `size`, pixel for pixel from the top-left corner: keypoints are in the video's pixels, so
/// a video a few pixels narrower than the calibrated sensor (1080 of 1088) is padded, not
/// stretched.
fn video_frame(video: &Path, index: usize, size: (u32, u32)) -> anyhow::Result<Vec<u8>> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(video)
        .args([
            "-vf",
            &format!(
                "select=eq(n\\,{index}),crop=w='min(iw,{w})':h='min(ih,{h})':x=0:y=0,pad={w}:{h}:0:0",
                w = size.0,
                h = size.1
            ),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .with_context(|| "running ffmpeg (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "{}: ffmpeg failed: {}",
            video.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// Runs the pose model over every video of the project and writes `<camera>_json/` folders
/// into `pose_dir`.
fn pose(
    project: &Path,
    model: &Path,
    options: &stadion_pose::PoseOptions,
    threads: usize,
    pose_dir: &Path,
) -> anyhow::Result<()> {
    let (p, _) = Project::open(project)?;
    if p.videos.is_empty() {
        bail!(
            "{}: no videos named after the calibrated cameras",
            project.join("videos").display()
        );
    }
    let model = stadion_pose::LandmarkModel::load(model)?;
    let multi = indicatif::MultiProgress::new();
    let bars: Vec<ProgressBar> = p
        .videos
        .iter()
        .map(|(camera, _)| multi.add(bar(options.max_frames.unwrap_or(0) as u64, camera)))
        .collect();
    let results = stadion_pose::estimate_videos(&model, &p.videos, options, threads, &|v, f| {
        bars[v].set_position(f as u64);
    })?;
    for (b, r) in bars.iter().zip(&results) {
        b.set_length(r.keypoints.frames.len() as u64);
        b.finish();
        let dir = pose_dir.join(format!("{}_json", r.keypoints.camera));
        stadion_pose::write_openpose(&r.keypoints, &dir)?;
        eprintln!(
            "{}: {} frames, somebody in {}, {} people followed, {} model runs, {:.1} s",
            r.keypoints.camera,
            r.keypoints.frames.len(),
            r.detected,
            r.people,
            r.crops,
            r.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

fn run_project(a: RunArgs) -> anyhow::Result<()> {
    let mut inputs = Inputs::open(&a.project, None)?;
    if let Some(model) = &a.model
        && inputs.project.pose_dirs.is_empty()
    {
        let dir = a.out.join("pose");
        let options = stadion_pose::PoseOptions {
            tracker: a.people.tracker(),
            skeleton: Skeleton::Coco17,
            max_frames: a.max_frames,
        };
        pose(&a.project, model, &options, 2, &dir)?;
        inputs = Inputs::open(&a.project, Some(&dir))?;
    }
    let (motion, seq, keypoints) = triangulate(&inputs, a.fps, a.cutoff, a.skeleton, 15.0, &a.out)?;
    let cal = &inputs.calibration;
    match biomechanics(
        &motion,
        &AnalysisConfig::default().splits_m,
        TrackGeometry::default(),
        0.0,
        &a.out.join("biomech"),
    ) {
        Ok(()) => {}
        Err(e) => eprintln!("biomechanics skipped: {e:#}"),
    }
    let frame = a.overlay_frame.unwrap_or(seq.frames.len() / 2);
    for (camera, video) in &inputs.project.videos {
        let Some(c) = cal.index_of(camera) else {
            continue;
        };
        let cam = &cal.cameras[c];
        let rgb = match video_frame(video, frame, cam.size) {
            Ok(rgb) => rgb,
            Err(e) => {
                eprintln!("overlay skipped: {e:#}");
                break;
            }
        };
        let path = a.out.join(format!("overlay_{camera}.png"));
        let label = format!("{camera} frame {frame}: green = 3D reprojected, red = 2D detected");
        plot::skeleton_overlay(
            &plot::Overlay {
                rgb: &rgb,
                camera: cam,
                skeleton: seq.skeleton,
                joints: motion.frames.get(frame).map_or(&[][..], |f| &f[..]),
                detections: keypoints[c]
                    .frames
                    .get(frame)
                    .and_then(|f| f.people.first()),
                label: &label,
            },
            &path,
        )?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn live(a: LiveArgs) -> anyhow::Result<()> {
    let inputs = Inputs::open(&a.project, a.pose_dir.as_deref())?;
    let cal = &inputs.calibration;
    let keypoints = inputs.keypoints(a.skeleton)?;
    let skeleton = keypoints.first().map(|k| k.skeleton).context("no camera")?;
    let mut live = LiveTracker::new(
        cal,
        skeleton,
        a.fps,
        &TrackGeometry::default(),
        TrackerConfig::default(),
    )?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut latencies = Vec::with_capacity(keypoints[0].frames.len());
    let mut views = Vec::with_capacity(keypoints.len());
    for f in 0..keypoints[0].frames.len() {
        views.clear();
        views.extend(keypoints.iter().map(|k| k.frames[f].clone()));
        let frame = live.push(&views)?;
        latencies.push(frame.latency_us);
        serde_json::to_writer(&mut out, &frame)?;
        writeln!(out)?;
    }
    out.flush()?;
    latencies.sort_by(f64::total_cmp);
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    if !latencies.is_empty() {
        eprintln!(
            "{} frames: latency p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            latencies.len(),
            p(0.5),
            p(0.99),
            p(1.0)
        );
    }
    Ok(())
}

fn synth(a: SynthArgs) -> anyhow::Result<()> {
    if !(a.race_m.is_finite() && (1.0..=400.0).contains(&a.race_m)) {
        bail!("--race-m must be between 1 and 400, got {}", a.race_m);
    }
    let config = SprintConfig {
        fps: a.fps,
        distance_m: a.race_m,
        cameras: a.cameras,
        camera_distance_m: a.distance,
        fixed_cameras: a.project.is_some(),
        seed: a.seed,
        noise: stadion_track::synth::NoiseModel {
            pixel_sigma: a.noise_px,
            outlier_rate: a.outliers,
            ..Default::default()
        },
        ..SprintConfig::default()
    };
    if !(2..=32).contains(&a.cameras) {
        bail!("--cameras must be between 2 and 32, got {}", a.cameras);
    }
    let race = SyntheticSprint::generate(&config);
    let scores = evaluate(&race, TrackerConfig::default(), a.cutoff)?;
    println!("{}", serde_json::to_string_pretty(&scores)?);
    if let Some(path) = a.exchange {
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        serde_json::to_writer(std::io::BufWriter::new(file), &race.exchange_json())?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(dir) = a.project {
        race.write_project(&dir)?;
        eprintln!(
            "wrote project {} ({} frames at {} fps)",
            dir.display(),
            race.frame_count(),
            a.fps
        );
    }
    if let Some(out) = a.out {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        pipeline::write_trc(&race.truth, &out.join("truth.trc"))?;
        biomechanics(
            &race.truth,
            &AnalysisConfig::default().splits_m,
            TrackGeometry::default(),
            0.0,
            &out,
        )?;
    }
    Ok(())
}
