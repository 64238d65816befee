//! BlazePose tracking of several people through a video: the ROI of each person in frame
//! `t + 1` comes from their landmarks in frame `t` (the auxiliary alignment points), as in
//! MediaPipe's pose pipeline. Without a person detector, new people are looked for in the
//! regions that moved since the previous frame ([`crate::motion`]) and, at an interval, by
//! scanning the whole frame with the people already followed blacked out; each crop where
//! the model is sure of a person ([`Pose::score`]) is refined from its own landmarks and
//! followed from then on, up to a cap per video.

use stadion_track::{Keypoint2D, Keypoints2D};

use crate::error::Result;
use crate::image::{RgbImage, Roi, crop_into};
use crate::model::{BODY_LANDMARKS, CropLandmarks, INPUT_SIZE, LandmarkModel};
use crate::motion::{MotionConfig, MotionDetector, Rect};

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
    /// Most ROI refinements after an acquisition (each one crop more).
    pub refine_passes: usize,
    /// Most people followed at once (each costs one model run a frame).
    pub max_people: usize,
    /// Every this many frames, the regions that moved since the previous frame and that no
    /// followed person explains are searched for new people (0: never).
    pub motion_interval: usize,
    /// Every this many frames, the whole frame is scanned for new people (0: only while
    /// nobody is followed, when every frame is scanned).
    pub scan_interval: usize,
    pub motion: MotionConfig,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            min_score: 0.5,
            roi_scale: 1.25,
            refine_passes: 5,
            max_people: 4,
            motion_interval: 5,
            scan_interval: 30,
            motion: MotionConfig::default(),
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

    /// The box around the 33 body points.
    pub fn extent(&self) -> Rect {
        let body = &self.landmarks[..BODY_LANDMARKS.min(self.landmarks.len())];
        body.iter().fold(
            Rect::new(
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ),
            |r, l| Rect::new(r.x0.min(l.x), r.y0.min(l.y), r.x1.max(l.x), r.y1.max(l.y)),
        )
    }

    /// [`Pose::extent`] grown by a tenth of its larger side: what a scan for other people
    /// blacks out.
    pub fn body_box(&self) -> Rect {
        self.extent().grown(0.1)
    }

    /// The share of the body points inside `r`.
    pub fn share_inside(&self, r: &Rect) -> f64 {
        let body = &self.landmarks[..BODY_LANDMARKS.min(self.landmarks.len())];
        let inside = body.iter().filter(|l| r.contains(l.x, l.y)).count();
        inside as f64 / body.len().max(1) as f64
    }

    /// Whether `other` is this person again: their body points lie, at the median, within
    /// a tenth of the body's size of each other (two people side by side differ by a
    /// body's width at least).
    pub fn same_person(&self, other: &Pose) -> bool {
        let n = BODY_LANDMARKS
            .min(self.landmarks.len())
            .min(other.landmarks.len());
        if n == 0 {
            return false;
        }
        let mut d: Vec<f64> = self.landmarks[..n]
            .iter()
            .zip(&other.landmarks[..n])
            .map(|(a, b)| (a.x - b.x).hypot(a.y - b.y))
            .collect();
        d.sort_by(f64::total_cmp);
        let e = self.extent();
        d[n / 2] < 0.1 * e.width().max(e.height())
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

/// A followed person's pose in one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedPose {
    /// Stable over the frames this person is followed (per video, from 0).
    pub id: i64,
    pub pose: Pose,
}

/// Follows several people through consecutive frames of one video.
#[derive(Debug)]
pub struct PoseTracker<'m> {
    model: &'m LandmarkModel,
    config: TrackerConfig,
    /// The people followed: id and the ROI of the next frame.
    people: Vec<(i64, Roi)>,
    next_id: i64,
    frame: usize,
    motion: MotionDetector,
    tensor: Vec<f32>,
    crops: usize,
}

impl<'m> PoseTracker<'m> {
    pub fn new(model: &'m LandmarkModel, config: TrackerConfig) -> Self {
        PoseTracker {
            model,
            motion: MotionDetector::new(config.motion.clone()),
            config,
            people: Vec::new(),
            next_id: 0,
            frame: 0,
            tensor: Vec::new(),
            crops: 0,
        }
    }

    /// Model runs so far (searching for people costs several per frame).
    pub fn crops(&self) -> usize {
        self.crops
    }

    fn infer(&mut self, image: &RgbImage, roi: Roi) -> Result<Pose> {
        crop_into(image, &roi, INPUT_SIZE, &mut self.tensor);
        self.crops += 1;
        Ok(Pose::from_crop(&self.model.run(&self.tensor)?, roi))
    }

    /// The poses of the people in the next frame, ordered by id (empty if nobody is found).
    pub fn track(&mut self, image: &RgbImage) -> Result<Vec<TrackedPose>> {
        let mut found: Vec<TrackedPose> = Vec::new();
        for (id, roi) in std::mem::take(&mut self.people) {
            let pose = self.infer(image, roi)?;
            if pose.score() >= self.config.min_score {
                found.push(TrackedPose { id, pose });
            }
        }
        // Two ROIs that converged on one person: the surer pose keeps it.
        found.sort_by(|a, b| b.pose.score().total_cmp(&a.pose.score()));
        let mut kept: Vec<TrackedPose> = Vec::with_capacity(found.len());
        for t in found {
            if !kept.iter().any(|k| k.pose.same_person(&t.pose)) {
                kept.push(t);
            }
        }
        let mut found = kept;

        // While nobody is followed, every frame is searched.
        let due = |interval: usize| {
            interval > 0 && (found.is_empty() || self.frame.is_multiple_of(interval))
        };
        let (motion_due, scan_due) = (
            due(self.config.motion_interval),
            due(self.config.scan_interval),
        );
        let masks: Vec<Rect> = found.iter().map(|t| t.pose.body_box()).collect();
        let moved = self.motion.update(image, &masks);
        if found.len() < self.config.max_people {
            if motion_due {
                for roi in merge_rois(moved.iter().map(|r| blob_roi(r, image)).collect()) {
                    if found.len() >= self.config.max_people {
                        break;
                    }
                    let pose = self.infer(image, roi)?;
                    if pose.score() >= self.config.min_score {
                        let pose = self.refine(image, pose)?;
                        self.adopt(&mut found, pose);
                    }
                }
            }
            if scan_due || found.is_empty() {
                self.scan(image, &mut found)?;
            }
        }
        self.frame += 1;
        found.sort_by_key(|t| t.id);
        self.people = found
            .iter()
            .filter_map(|t| Some((t.id, t.pose.next_roi(self.config.roi_scale)?)))
            .collect();
        Ok(found)
    }

    /// Follows `pose` as a new person unless most of its body lies in the box of one
    /// already followed: that is the same person again, or, in a scan, a body the model
    /// made up around the blacked-out box (seen on the demo: a second "person" on the
    /// subject's legs).
    fn adopt(&mut self, found: &mut Vec<TrackedPose>, pose: Pose) -> bool {
        if found
            .iter()
            .any(|t| pose.share_inside(&t.pose.body_box()) > 0.5)
        {
            return false;
        }
        found.push(TrackedPose {
            id: self.next_id,
            pose,
        });
        self.next_id += 1;
        true
    }

    /// `first` (a pose the model is sure of) refined from its own landmarks: the crops
    /// that follow centre, scale and turn on the body, until the ROI moves by less than
    /// 3 % of its side. A crop of two people, or of a person at its edge, takes a few,
    /// and the model may be unsure on the way (0.95, 0.30, 0.45, 0.67, 1.00 seen): the
    /// last pose counts if the model is sure of it, else the surest.
    fn refine(&mut self, image: &RgbImage, first: Pose) -> Result<Pose> {
        let mut last = first.clone();
        let mut best = first;
        for _ in 0..self.config.refine_passes {
            let Some(roi) = last.next_roi(self.config.roi_scale) else {
                break;
            };
            let r = last.roi;
            let shift = (roi.cx - r.cx)
                .hypot(roi.cy - r.cy)
                .max((roi.size - r.size).abs());
            if shift < 0.03 * r.size {
                break;
            }
            last = self.infer(image, roi)?;
            if last.score() > best.score() {
                best = last.clone();
            }
        }
        Ok(if last.score() >= self.config.min_score {
            last
        } else {
            best
        })
    }

    /// Scans the frame ([`acquisition_rois`]) with the people in `found` blacked out,
    /// adopting the best-scoring person each time, until nobody new is found or the cap
    /// is reached.
    fn scan(&mut self, image: &RgbImage, found: &mut Vec<TrackedPose>) -> Result<()> {
        let mut view = image.clone();
        black_out(&mut view, found.iter().map(|t| t.pose.body_box()));
        while found.len() < self.config.max_people {
            let mut best: Option<Pose> = None;
            for roi in acquisition_rois(image.width(), image.height()) {
                let pose = self.infer(&view, roi)?;
                if best.as_ref().is_none_or(|b| pose.score() > b.score()) {
                    best = Some(pose);
                }
            }
            let Some(best) = best.filter(|b| b.score() >= self.config.min_score) else {
                break;
            };
            let pose = self.refine(&view, best)?;
            black_out(&mut view, [pose.body_box()]);
            if !self.adopt(found, pose) {
                break;
            }
        }
        Ok(())
    }
}

/// An upright square ROI around a moving blob: as wide as its longer side plus a margin,
/// and at least a quarter of the frame's shorter side (a blob is often a limb that moved
/// while the rest of the body stood still).
fn blob_roi(r: &Rect, image: &RgbImage) -> Roi {
    let least = image.width().min(image.height()) as f64 / 4.0;
    Roi {
        cx: (r.x0 + r.x1) / 2.0,
        cy: (r.y0 + r.y1) / 2.0,
        size: (1.5 * r.width().max(r.height())).max(least),
        rotation: 0.0,
    }
}

/// Upright ROIs that overlap by more than a third of the smaller one become the square
/// around both, until none do: one person's moving limbs give one crop, not several.
fn merge_rois(mut rois: Vec<Roi>) -> Vec<Roi> {
    let rect = |r: &Roi| {
        Rect::new(
            r.cx - r.size / 2.0,
            r.cy - r.size / 2.0,
            r.cx + r.size / 2.0,
            r.cy + r.size / 2.0,
        )
    };
    'again: loop {
        for i in 0..rois.len() {
            for j in i + 1..rois.len() {
                let (a, b) = (rect(&rois[i]), rect(&rois[j]));
                if a.overlap(&b) > a.area().min(b.area()) / 3.0 {
                    let u = a.union(&b);
                    rois[i] = Roi {
                        cx: (u.x0 + u.x1) / 2.0,
                        cy: (u.y0 + u.y1) / 2.0,
                        size: u.width().max(u.height()),
                        rotation: 0.0,
                    };
                    rois.swap_remove(j);
                    continue 'again;
                }
            }
        }
        return rois;
    }
}

/// Paints the boxes black, so that a scan of the frame sees only the people not yet
/// followed.
fn black_out(image: &mut RgbImage, boxes: impl IntoIterator<Item = Rect>) {
    let (w, h) = (image.width(), image.height());
    let data = image.data_mut();
    for r in boxes {
        let x0 = r.x0.max(0.0).min(w as f64) as usize;
        let x1 = r.x1.max(0.0).min(w as f64) as usize;
        let y0 = r.y0.max(0.0).min(h as f64) as usize;
        let y1 = r.y1.max(0.0).min(h as f64) as usize;
        for y in y0..y1 {
            data[(y * w + x0) * 3..(y * w + x1) * 3].fill(0);
        }
    }
}

/// The whole frame, then squares of the short side placed so that one of them may hold one
/// of several people alone: in a long frame, stepping by half a side along the long side
/// (a portrait 1080×1920 frame: the whole frame and three squares); in a nearly square one,
/// centred on its two halves (two people side by side confuse a whole-frame crop).
pub fn acquisition_rois(width: usize, height: usize) -> Vec<Roi> {
    let mut rois = vec![Roi::whole(width, height)];
    let (short, long) = (width.min(height) as f64, width.max(height) as f64);
    if short <= 0.0 {
        return rois;
    }
    let centres: Vec<f64> = if long <= short * 1.2 {
        vec![long / 4.0, long * 3.0 / 4.0]
    } else {
        let steps = ((long - short) / (short / 2.0)).ceil() as usize;
        (0..=steps)
            .map(|i| short / 2.0 + (long - short) * i as f64 / steps as f64)
            .collect()
    };
    rois.extend(centres.into_iter().map(|along| {
        let (cx, cy) = if width >= height {
            (along, short / 2.0)
        } else {
            (short / 2.0, along)
        };
        Roi {
            cx,
            cy,
            size: short,
            rotation: 0.0,
        }
    }));
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
        let square = acquisition_rois(640, 600);
        assert_eq!(square.len(), 3);
        assert_eq!(
            (square[1].cx, square[2].cx, square[1].size),
            (160.0, 480.0, 600.0)
        );
        assert_eq!(acquisition_rois(1920, 1080)[1].cx, 540.0);
    }

    /// A pose whose 33 body points are spread over the box `(x, y)`–`(x + w, y + h)`.
    fn body_at(x: f64, y: f64, w: f64, h: f64) -> Pose {
        let mut pose = pose_with_alignment((x + w / 2.0, y + h / 2.0), (x + w / 2.0, y));
        for (i, l) in pose.landmarks.iter_mut().take(BODY_LANDMARKS).enumerate() {
            l.x = x + w * (i % 4) as f64 / 3.0;
            l.y = y + h * (i / 4) as f64 / 8.0;
        }
        pose
    }

    #[test]
    fn same_person_tells_neighbours_apart() {
        let a = body_at(100.0, 100.0, 200.0, 800.0);
        let b = body_at(a.landmarks[0].x + 30.0, 110.0, 200.0, 800.0);
        assert!(a.same_person(&b), "30 px off on an 800 px body");
        let neighbour = body_at(320.0, 100.0, 200.0, 800.0);
        assert!(!a.same_person(&neighbour), "side by side");
        assert_eq!(b.share_inside(&a.body_box()), 1.0);
        assert!(neighbour.share_inside(&a.body_box()) < 0.5);
        let r = a.body_box();
        assert_eq!((r.x0, r.y0, r.x1, r.y1), (20.0, 20.0, 380.0, 980.0));
    }

    #[test]
    fn overlapping_blob_rois_merge_and_distant_ones_do_not() {
        let roi = |cx: f64, cy: f64, size: f64| Roi {
            cx,
            cy,
            size,
            rotation: 0.0,
        };
        let merged = merge_rois(vec![
            roi(100.0, 100.0, 100.0),
            roi(500.0, 500.0, 100.0),
            roi(130.0, 120.0, 100.0),
        ]);
        assert_eq!(merged.len(), 2, "{merged:?}");
        assert_eq!(merged[0], roi(115.0, 110.0, 130.0));
        // A blob smaller than a quarter of the frame's short side gets that quarter.
        let image = RgbImage::new(800, 400, vec![0; 800 * 400 * 3]).unwrap();
        let small = Rect::new(10.0, 20.0, 30.0, 40.0);
        assert_eq!(blob_roi(&small, &image), roi(20.0, 30.0, 100.0));
        let tall = Rect { y1: 220.0, ..small };
        assert_eq!(blob_roi(&tall, &image).size, 300.0);
    }

    #[test]
    fn black_out_paints_inside_the_frame_only() {
        let mut image = RgbImage::new(4, 3, vec![9; 4 * 3 * 3]).unwrap();
        let r = Rect::new(-5.0, 1.0, 2.0, 99.0);
        black_out(&mut image, [r]);
        let zero: Vec<bool> = image.data().chunks(3).map(|p| p == [0, 0, 0]).collect();
        let expect = [
            false, false, false, false, true, true, false, false, true, true, false, false,
        ];
        assert_eq!(zero, expect);
    }
}
