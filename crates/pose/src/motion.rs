//! Where the picture moved: frame differences on a coarse grey grid, grouped into blobs.
//!
//! Without a person detector, motion is the cheap cue for "somebody new came in": the
//! tracker runs the landmark model on the blobs that no followed person explains. Cells
//! average `cell × cell` pixels, which smooths sensor noise and compression artefacts
//! before the threshold, and keeps the labelling a few thousand cells a frame.

use crate::image::RgbImage;

/// An axis-aligned box in image pixels, `x0 <= x1`, `y0 <= y1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl Rect {
    pub const fn new(x0: f64, y0: f64, x1: f64, y1: f64) -> Rect {
        Rect { x0, y0, x1, y1 }
    }

    pub fn width(&self) -> f64 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> f64 {
        self.y1 - self.y0
    }

    pub fn area(&self) -> f64 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    /// The smallest box holding both.
    pub fn union(&self, o: &Rect) -> Rect {
        Rect::new(
            self.x0.min(o.x0),
            self.y0.min(o.y0),
            self.x1.max(o.x1),
            self.y1.max(o.y1),
        )
    }

    /// Area of the overlap.
    pub fn overlap(&self, o: &Rect) -> f64 {
        let w = self.x1.min(o.x1) - self.x0.max(o.x0);
        let h = self.y1.min(o.y1) - self.y0.max(o.y0);
        w.max(0.0) * h.max(0.0)
    }

    /// Grown by `margin` times its larger side on every side.
    pub fn grown(&self, margin: f64) -> Rect {
        let m = margin * self.width().max(self.height());
        Rect::new(self.x0 - m, self.y0 - m, self.x1 + m, self.y1 + m)
    }

    pub fn contains(&self, x: f64, y: f64) -> bool {
        x >= self.x0 && x < self.x1 && y >= self.y0 && y < self.y1
    }
}

/// Motion settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionConfig {
    /// Side of a grid cell in pixels.
    pub cell: usize,
    /// A cell moved when its mean grey level changed by more than this (0–255).
    pub threshold: u8,
    /// Blobs of fewer cells are noise.
    pub min_cells: usize,
}

impl Default for MotionConfig {
    fn default() -> Self {
        // 16-pixel cells: a person 500 px tall spans 30 rows; a 12-level change is well above
        // the frame-to-frame noise of compressed video (2–4 levels averaged over a cell).
        MotionConfig {
            cell: 16,
            threshold: 12,
            min_cells: 4,
        }
    }
}

/// Keeps the previous frame's grey grid and reports the moving blobs of the next one.
#[derive(Debug, Clone)]
pub struct MotionDetector {
    config: MotionConfig,
    size: (usize, usize),
    previous: Vec<u8>,
    current: Vec<u8>,
}

impl MotionDetector {
    pub fn new(config: MotionConfig) -> Self {
        MotionDetector {
            config: MotionConfig {
                cell: config.cell.max(1),
                ..config
            },
            size: (0, 0),
            previous: Vec::new(),
            current: Vec::new(),
        }
    }

    /// Takes the next frame; returns the bounding boxes of the blobs that moved since the
    /// previous frame, leaving out the cells whose centre lies in one of `ignore` (the
    /// people already followed). The first frame, or one of another size, moves nowhere.
    pub fn update(&mut self, image: &RgbImage, ignore: &[Rect]) -> Vec<Rect> {
        let cell = self.config.cell;
        let (gw, gh) = (image.width() / cell, image.height() / cell);
        std::mem::swap(&mut self.previous, &mut self.current);
        grey_grid(image, cell, &mut self.current);
        let comparable = self.size == (gw, gh) && self.previous.len() == gw * gh;
        self.size = (gw, gh);
        if !comparable {
            return Vec::new();
        }
        let c = cell as f64;
        let moved: Vec<bool> = (0..gw * gh)
            .map(|i| {
                let (x, y) = ((i % gw) as f64 + 0.5, (i / gw) as f64 + 0.5);
                self.current[i].abs_diff(self.previous[i]) > self.config.threshold
                    && !ignore.iter().any(|r| r.contains(x * c, y * c))
            })
            .collect();
        blobs(&moved, gw, gh, self.config.min_cells)
            .into_iter()
            .map(|(x0, y0, x1, y1)| {
                Rect::new(
                    x0 as f64 * c,
                    y0 as f64 * c,
                    (x1 + 1) as f64 * c,
                    (y1 + 1) as f64 * c,
                )
            })
            .collect()
    }
}

/// Mean grey level of each whole `cell × cell` block (every other pixel and row sampled,
/// which is plenty for a mean), row by row.
fn grey_grid(image: &RgbImage, cell: usize, out: &mut Vec<u8>) {
    let (gw, gh) = (image.width() / cell, image.height() / cell);
    out.clear();
    out.resize(gw * gh, 0);
    let stride = image.width() * 3;
    let data = image.data();
    let step = if cell >= 4 { 2 } else { 1 };
    let samples = cell.div_ceil(step).pow(2) as u32 * 3;
    for (gy, row) in out.chunks_exact_mut(gw.max(1)).enumerate().take(gh) {
        for (gx, v) in row.iter_mut().enumerate() {
            let mut sum = 0u32;
            for y in (gy * cell..(gy + 1) * cell).step_by(step) {
                let line = &data[y * stride + gx * cell * 3..y * stride + (gx + 1) * cell * 3];
                for px in line.chunks_exact(3).step_by(step) {
                    sum += px[0] as u32 + px[1] as u32 + px[2] as u32;
                }
            }
            *v = (sum / samples) as u8;
        }
    }
}

/// Bounding boxes `(x0, y0, x1, y1)` (inclusive cells) of the 8-connected groups of moved
/// cells with at least `min_cells` cells; gaps of one cell are bridged (limbs move apart
/// from a still torso).
fn blobs(
    moved: &[bool],
    w: usize,
    h: usize,
    min_cells: usize,
) -> Vec<(usize, usize, usize, usize)> {
    let near = |i: usize, reach: usize| {
        let (x, y) = (i % w, i / w);
        let xs = x.saturating_sub(reach)..=(x + reach).min(w - 1);
        let ys = y.saturating_sub(reach)..=(y + reach).min(h - 1);
        ys.flat_map(move |ny| xs.clone().map(move |nx| ny * w + nx))
    };
    let mut label = vec![false; moved.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..moved.len() {
        if !moved[start] || label[start] {
            continue;
        }
        label[start] = true;
        stack.push(start);
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
        let mut count = 0;
        while let Some(i) = stack.pop() {
            count += 1;
            let (x, y) = (i % w, i / w);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            for n in near(i, 2) {
                if moved[n] && !label[n] {
                    label[n] = true;
                    stack.push(n);
                }
            }
        }
        if count >= min_cells {
            out.push((x0, y0, x1, y1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize, square: Option<(usize, usize, usize)>) -> RgbImage {
        let mut data = vec![40u8; w * h * 3];
        if let Some((sx, sy, side)) = square {
            for y in sy..sy + side {
                for x in sx..sx + side {
                    data[(y * w + x) * 3..(y * w + x) * 3 + 3].fill(220);
                }
            }
        }
        RgbImage::new(w, h, data).unwrap()
    }

    #[test]
    fn a_square_that_appears_is_one_blob_where_it_is() {
        let mut m = MotionDetector::new(MotionConfig::default());
        assert!(
            m.update(&frame(320, 240, None), &[]).is_empty(),
            "first frame"
        );
        assert!(m.update(&frame(320, 240, None), &[]).is_empty(), "still");
        let b = m.update(&frame(320, 240, Some((100, 60, 64))), &[]);
        assert_eq!(b.len(), 1, "{b:?}");
        let r = b[0];
        assert!(
            r.x0 <= 100.0 && r.x1 >= 164.0 && r.y0 <= 60.0 && r.y1 >= 124.0,
            "{r:?}"
        );
        assert!(r.width() <= 96.0 && r.height() <= 96.0, "{r:?}");
        // The same change inside an ignored box is not motion.
        let mut m = MotionDetector::new(MotionConfig::default());
        m.update(&frame(320, 240, None), &[]);
        let ignore = Rect::new(80.0, 40.0, 200.0, 160.0);
        assert!(
            m.update(&frame(320, 240, Some((100, 60, 64))), &[ignore])
                .is_empty()
        );
        // A frame of another size restarts the comparison.
        assert!(m.update(&frame(160, 240, None), &[]).is_empty());
    }

    #[test]
    fn two_movers_far_apart_are_two_blobs_and_specks_are_none() {
        let mut m = MotionDetector::new(MotionConfig::default());
        m.update(&frame(640, 240, None), &[]);
        let mut moved = frame(640, 240, Some((20, 20, 64)));
        let second = frame(640, 240, Some((500, 100, 80)));
        let mut data = moved.clone().into_data();
        for (a, b) in data.iter_mut().zip(second.data()) {
            *a = (*a).max(*b);
        }
        // A lone changed pixel is noise.
        data[(200 * 640 + 300) * 3] = 255;
        moved = RgbImage::new(640, 240, data).unwrap();
        let mut b = m.update(&moved, &[]);
        b.sort_by(|a, b| a.x0.total_cmp(&b.x0));
        assert_eq!(b.len(), 2, "{b:?}");
        assert!(b[0].x1 < 200.0 && b[1].x0 > 400.0, "{b:?}");
    }

    #[test]
    fn rect_geometry() {
        let a = Rect::new(0.0, 0.0, 10.0, 20.0);
        let b = Rect::new(5.0, 10.0, 30.0, 30.0);
        assert_eq!(a.area(), 200.0);
        assert_eq!(a.overlap(&b), 50.0);
        assert_eq!(
            a.union(&b),
            Rect {
                x1: 30.0,
                y1: 30.0,
                ..a
            }
        );
        assert_eq!(a.grown(0.5).x0, -10.0);
        assert!(a.contains(0.0, 19.9) && !a.contains(10.0, 5.0));
    }
}
