//! The BlazePose landmark model (MediaPipe `pose_landmark_{lite,full,heavy}`, converted to
//! ONNX) run by `tract-onnx`: loaded and optimised once, then run once per crop.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::error::{Error, Result};

/// Side of the square RGB crop the model takes (`input_1`: `[1, 256, 256, 3]`, NHWC).
pub const INPUT_SIZE: usize = 256;
/// Landmarks in `Identity`: the 33 body points, then 6 auxiliary ones for the next ROI.
pub const LANDMARKS: usize = 39;
/// The BlazePose body points (the first [`LANDMARKS`] entries up to this one).
pub const BODY_LANDMARKS: usize = 33;
/// Values per landmark in `Identity`: x, y, z, visibility logit, presence logit.
const VALUES: usize = 5;

/// One crop's raw model output.
#[derive(Debug, Clone, PartialEq)]
pub struct CropLandmarks {
    /// `[x, y, z, visibility logit, presence logit]` per landmark, x and y in crop pixels.
    pub points: Vec<[f32; VALUES]>,
    /// The pose-presence score (`Identity_1`): is there a person in this crop at all.
    pub presence: f32,
}

/// A loaded, optimised landmark model. `Sync`: threads share one.
#[derive(Debug, Clone)]
pub struct LandmarkModel {
    plan: Arc<TypedRunnableModel>,
    path: PathBuf,
}

impl LandmarkModel {
    /// Loads the ONNX file, fixes the input shape, keeps only the landmark and presence
    /// outputs (the segmentation and heatmap heads are pruned, saving their compute) and
    /// optimises the graph.
    pub fn load(path: &Path) -> Result<Self> {
        let err = |e: TractError| Error::Model {
            path: path.to_owned(),
            message: format!("{e:#}"),
        };
        if !path.is_file() {
            return Err(Error::Model {
                path: path.to_owned(),
                message: "no such file (see docs/track.md for how to obtain the model)".into(),
            });
        }
        let plan = tract_onnx::onnx()
            .model_for_path(path)
            .and_then(|m| m.with_input_fact(0, f32::fact([1, INPUT_SIZE, INPUT_SIZE, 3]).into()))
            .and_then(|m| m.with_outputs_by_name(["Identity", "Identity_1"]))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(err)?;
        Ok(LandmarkModel {
            plan,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs one crop: `input` is `INPUT_SIZE² × 3` floats (see [`crate::image::crop_into`]).
    pub fn run(&self, input: &[f32]) -> Result<CropLandmarks> {
        let err = |message: String| Error::Model {
            path: self.path.clone(),
            message,
        };
        let tensor = Tensor::from_shape(&[1, INPUT_SIZE, INPUT_SIZE, 3], input)
            .map_err(|e| err(format!("input: {e:#}")))?;
        let out = self
            .plan
            .run(tvec!(tensor.into()))
            .map_err(|e| err(format!("{e:#}")))?;
        let values = |i: usize, name: &str, want: usize| -> Result<Vec<f32>> {
            let v = out
                .get(i)
                .ok_or_else(|| err(format!("output {name} missing")))?
                .to_plain_array_view::<f32>()
                .map_err(|e| err(format!("output {name}: {e:#}")))?
                .iter()
                .copied()
                .collect::<Vec<f32>>();
            if v.len() != want {
                return Err(err(format!(
                    "output {name}: {} values, want {want}",
                    v.len()
                )));
            }
            Ok(v)
        };
        let raw = values(0, "Identity", LANDMARKS * VALUES)?;
        let presence = values(1, "Identity_1", 1)?[0];
        let points = raw
            .chunks_exact(VALUES)
            .map(|c| [c[0], c[1], c[2], c[3], c[4]])
            .collect();
        Ok(CropLandmarks { points, presence })
    }
}
