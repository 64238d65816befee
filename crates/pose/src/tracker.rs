//! Single-person BlazePose tracking over a video: the ROI of frame `t + 1` comes from the
//! landmarks of frame `t` (the auxiliary alignment points), as in MediaPipe's pose
//! pipeline. Without a person detector, (re-)acquisition scans the whole frame and a few
//! overlapping squares along its long side, keeps the crop where the model is most sure
//! of a person ([`Pose::score`]), and refines the ROI from its own landmarks.

use stadion_track::{Keypoint2D, Keypoints2D};

use crate::error::Result;
use crate::image::{RgbImage, Roi, crop_into};
use crate::model::{BODY_LANDMARKS, CropLandmarks, INPUT_SIZE, LandmarkModel};

/// Auxiliary landmarks: the hips' centre and a point on the body's bounding circle above it.
const ALIGN_CENTRE: usize = 33;
const ALIGN_TOP: usize = 34;

/// Tracking settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// Below this [`Pose::score`] the person counts as lost.
    pub min_score: f64,
    /// ROI side over the alignment circle's diameter (MediaPipe: 1.25).
    pub roi_scale: f64,
    /// ROI refinements after an acquisition (each one crop more).
    pub refine_passes: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            min_score: 0.5,
            roi_scale: 1.25,
            refine_passes: 2,
        }
    }
}

/// One landmark in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Landmark {
    pub x: f64,
    pub y: f64,
    /// Depth relative to the hips, in the same pixel scale as x (BlazePose's `z`).
    pub z: f64,
    /// Probability that the point is visible (not occluded).
    pub visibility: f64,
    /// Probability that the point is inside the frame.
    pub presence: f64,
}

/// One person's pose in one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Pose {
    /// The 39 model landmarks (33 body points, then the auxiliary ones), image pixels.
    pub landmarks: Vec<Landmark>,
    /// Pose-presence score of the crop.
    pub presence: f64,
    /// The ROI the model saw.
    pub roi: Roi,
}

fn sigmoid(x: f32) -> f64 {
    1.0 / (1.0 + (-x as f64).exp())
}

impl Pose {
    /// Maps a crop's output back into the image through its ROI.
    pub fn from_crop(raw: &CropLandmarks, roi: Roi) -> Pose {
        let k = roi.size / INPUT_SIZE as f64;
        let landmarks = raw
            .points
            .iter()
            .map(|p| {
                let (x, y) = roi.to_image(p[0] as f64, p[1] as f64, INPUT_SIZE);
                Landmark {
                    x,
                    y,
                    z: p[2] as f64 * k,
                    visibility: sigmoid(p[3]),
                    presence: sigmoid(p[4]),
                }
            })
            .collect();
        Pose {
            landmarks,
            presence: raw.presence as f64,
            roi,
        }
    }

    /// How sure the model is that a person fills this crop: the pose-presence score times
    /// the body landmarks' mean presence. Either alone is weak (random noise gets a pose
    /// presence of 0.8, a bare floor a landmark presence of 0.9); their product is near 1
    /// for a person and below 0.2 for those.
    pub fn score(&self) -> f64 {
        let body = &self.landmarks[..BODY_LANDMARKS.min(self.landmarks.len())];
        if body.is_empty() {
            return 0.0;
        }
        let mean = body.iter().map(|l| l.presence).sum::<f64>() / body.len() as f64;
        self.presence * mean
    }

    /// The ROI for the next frame: centred on the hips' centre, rotated so the alignment
    /// point is straight up, side `scale ×` the alignment circle's diameter.
    pub fn next_roi(&self, scale: f64) -> Option<Roi> {
        let c = self.landmarks.get(ALIGN_CENTRE)?;
        let t = self.landmarks.get(ALIGN_TOP)?;
        let (dx, dy) = (t.x - c.x, t.y - c.y);
        let size = 2.0 * dx.hypot(dy) * scale;
        (size.is_finite() && size >= 1.0).then(|| Roi {
            cx: c.x,
            cy: c.y,
            size,
            rotation: dx.atan2(-dy),
        })
    }

    /// The 33 body points as BlazePose-33 keypoints (see [`stadion_track::Skeleton`]) for an
    /// image `width × height`: confidence is the visibility probability; points the model
    /// places outside the frame are missing.
    pub fn keypoints(&self, width: usize, height: usize) -> Keypoints2D {
        let points = self
            .landmarks
            .iter()
            .take(BODY_LANDMARKS)
            .map(|l| {
                let inside = l.x >= 0.0 && l.y >= 0.0 && l.x < width as f64 && l.y < height as f64;
                if inside {
                    Keypoint2D::new(l.x, l.y, l.visibility)
                } else {
                    Keypoint2D::MISSING
                }
            })
            .collect();
        Keypoints2D {
            person_id: None,
            points,
        }
    }
}

/// Follows one person through consecutive frames of one video.
#[derive(Debug)]
pub struct PoseTracker<'m> {
    model: &'m LandmarkModel,
    config: TrackerConfig,
    roi: Option<Roi>,
    tensor: Vec<f32>,
    crops: usize,
}

impl<'m> PoseTracker<'m> {
    pub fn new(model: &'m LandmarkModel, config: TrackerConfig) -> Self {
        PoseTracker {
            model,
            config,
            roi: None,
            tensor: Vec::new(),
            crops: 0,
        }
    }

    /// Model runs so far (acquisition costs several per frame).
    pub fn crops(&self) -> usize {
        self.crops
    }

    fn infer(&mut self, image: &RgbImage, roi: Roi) -> Result<Pose> {
        crop_into(image, &roi, INPUT_SIZE, &mut self.tensor);
        self.crops += 1;
        Ok(Pose::from_crop(&self.model.run(&self.tensor)?, roi))
    }

    /// The person's pose in the next frame, or `None` if nobody is found.
    pub fn track(&mut self, image: &RgbImage) -> Result<Option<Pose>> {
        let threshold = self.config.min_score;
        if let Some(roi) = self.roi.take() {
            let pose = self.infer(image, roi)?;
            if pose.score() >= threshold {
                self.roi = pose.next_roi(self.config.roi_scale);
                return Ok(Some(pose));
            }
        }
        let Some(mut best) = self.acquire(image)? else {
            return Ok(None);
        };
        for _ in 0..self.config.refine_passes {
            let Some(roi) = best.next_roi(self.config.roi_scale) else {
                break;
            };
            let pose = self.infer(image, roi)?;
            if pose.score() < threshold {
                break;
            }
            best = pose;
        }
        self.roi = best.next_roi(self.config.roi_scale);
        Ok(Some(best))
    }

    /// The best-scoring of the whole-frame crop and the overlapping squares along the long
    /// side, if any reaches the threshold.
    fn acquire(&mut self, image: &RgbImage) -> Result<Option<Pose>> {
        let mut best: Option<Pose> = None;
        for roi in acquisition_rois(image.width(), image.height()) {
            let pose = self.infer(image, roi)?;
            if best.as_ref().is_none_or(|b| pose.score() > b.score()) {
                best = Some(pose);
            }
        }
        Ok(best.filter(|b| b.score() >= self.config.min_score))
    }
}

/// The whole frame, then squares of the short side stepping by half a side along the long
/// one (a portrait 1080×1920 frame: the whole frame and three squares).
pub fn acquisition_rois(width: usize, height: usize) -> Vec<Roi> {
    let mut rois = vec![Roi::whole(width, height)];
    let (short, long) = (width.min(height) as f64, width.max(height) as f64);
    if short <= 0.0 || long <= short * 1.2 {
        return rois;
    }
    let steps = ((long - short) / (short / 2.0)).ceil() as usize;
    for i in 0..=steps {
        let along = short / 2.0 + (long - short) * i as f64 / steps as f64;
        let (cx, cy) = if width >= height {
            (along, short / 2.0)
        } else {
            (short / 2.0, along)
        };
        rois.push(Roi {
            cx,
            cy,
            size: short,
            rotation: 0.0,
        });
    }
    rois
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pose_with_alignment(c: (f64, f64), t: (f64, f64)) -> Pose {
        let mut landmarks = vec![
            Landmark {
                x: 10.0,
                y: 10.0,
                z: 0.0,
                visibility: 0.9,
                presence: 0.9,
            };
            39
        ];
        landmarks[ALIGN_CENTRE].x = c.0;
        landmarks[ALIGN_CENTRE].y = c.1;
        landmarks[ALIGN_TOP].x = t.0;
        landmarks[ALIGN_TOP].y = t.1;
        Pose {
            landmarks,
            presence: 1.0,
            roi: Roi::whole(100, 100),
        }
    }

    #[test]
    fn roi_from_alignment_points_puts_the_head_up() {
        // Upright person: alignment point straight above the hips.
        let roi = pose_with_alignment((500.0, 900.0), (500.0, 500.0))
            .next_roi(1.25)
            .unwrap();
        assert_eq!((roi.cx, roi.cy, roi.size), (500.0, 900.0, 1000.0));
        assert!(roi.rotation.abs() < 1e-12);
        // Lying with the head to the image's right: the crop's top must look right.
        let pose = pose_with_alignment((500.0, 900.0), (800.0, 900.0));
        let roi = pose.next_roi(1.0).unwrap();
        let (x, y) = roi.to_image(128.0, 0.0, 256);
        assert!(
            (x - 800.0).abs() < 1e-9 && (y - 900.0).abs() < 1e-9,
            "{x} {y}"
        );
        // Degenerate alignment (both points equal) gives no ROI.
        assert!(
            pose_with_alignment((1.0, 1.0), (1.0, 1.0))
                .next_roi(1.25)
                .is_none()
        );
    }

    #[test]
    fn crop_output_maps_back_through_the_roi() {
        let roi = Roi {
            cx: 300.0,
            cy: 400.0,
            size: 512.0,
            rotation: 0.3,
        };
        let raw = CropLandmarks {
            points: vec![[128.0, 64.0, 10.0, 0.0, 100.0]; 39],
            presence: 0.9,
        };
        let pose = Pose::from_crop(&raw, roi);
        let l = pose.landmarks[0];
        let (u, v) = roi.to_crop(l.x, l.y, INPUT_SIZE);
        assert!((u - 128.0).abs() < 1e-9 && (v - 64.0).abs() < 1e-9);
        assert_eq!(l.z, 20.0);
        assert_eq!(l.visibility, 0.5);
        assert!(l.presence > 0.999);
        assert!((pose.score() - 0.9).abs() < 1e-6);
        let kp = pose.keypoints(1000, 1000);
        assert_eq!(kp.points.len(), 33);
        assert_eq!(kp.points[0].confidence, 0.5);
        // The same point is outside a 100×100 frame: missing.
        assert_eq!(pose.keypoints(100, 100).points[0], Keypoint2D::MISSING);
    }

    #[test]
    fn acquisition_covers_the_long_side() {
        let rois = acquisition_rois(1080, 1920);
        assert_eq!(rois.len(), 4);
        assert_eq!(rois[1].cy, 540.0);
        assert_eq!(rois[3].cy, 1920.0 - 540.0);
        assert!(rois[1..].iter().all(|r| r.size == 1080.0 && r.cx == 540.0));
        assert_eq!(acquisition_rois(640, 640).len(), 1);
        assert_eq!(acquisition_rois(1920, 1080)[1].cx, 540.0);
    }
}
