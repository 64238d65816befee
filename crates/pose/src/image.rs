//! RGB frames and the rotated, letterboxed crop that feeds the landmark model.

use crate::error::{Error, Result};

/// An 8-bit RGB image, rows top to bottom, `width * height * 3` bytes (ffmpeg's `rgb24`).
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl RgbImage {
    /// Wraps `data`; refused when its length is not `width * height * 3`.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        let expected = width.checked_mul(height).and_then(|n| n.checked_mul(3));
        if expected != Some(data.len()) {
            return Err(Error::ImageSize {
                width,
                height,
                expected: expected.unwrap_or(usize::MAX),
                len: data.len(),
            });
        }
        Ok(RgbImage {
            width,
            height,
            data,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The pixels, to paint on.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// The buffer back, to be refilled with the next frame without reallocating.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

/// A square region of interest in image pixels: centre, side, and a rotation in radians.
///
/// The crop's x axis runs along `(cos r, sin r)` and its y axis along `(-sin r, cos r)` in
/// image coordinates (y down), so `r` turns the crop clockwise on screen. The tracker picks
/// `r` so that the person's head is at the top of the crop, as the model expects
/// (MediaPipe's `NormalizedRect.rotation` convention).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roi {
    pub cx: f64,
    pub cy: f64,
    pub size: f64,
    pub rotation: f64,
}

impl Roi {
    /// The upright square that holds the whole image, centred on it (the rest is letterbox).
    pub fn whole(width: usize, height: usize) -> Roi {
        Roi {
            cx: width as f64 / 2.0,
            cy: height as f64 / 2.0,
            size: width.max(height) as f64,
            rotation: 0.0,
        }
    }

    /// Image position of the point `(u, v)` of an `n`×`n` crop (both in pixel units, with
    /// pixel `i` covering `[i, i + 1)`).
    pub fn to_image(&self, u: f64, v: f64, n: usize) -> (f64, f64) {
        let k = self.size / n as f64;
        let half = n as f64 / 2.0;
        let (a, b) = ((u - half) * k, (v - half) * k);
        let (s, c) = self.rotation.sin_cos();
        (self.cx + a * c - b * s, self.cy + a * s + b * c)
    }

    /// Crop position of the image point `(x, y)`: the inverse of [`Roi::to_image`].
    pub fn to_crop(&self, x: f64, y: f64, n: usize) -> (f64, f64) {
        let k = self.size / n as f64;
        let half = n as f64 / 2.0;
        let (dx, dy) = (x - self.cx, y - self.cy);
        let (s, c) = self.rotation.sin_cos();
        ((dx * c + dy * s) / k + half, (-dx * s + dy * c) / k + half)
    }
}

/// Samples `roi` of `image` into an `n`×`n`×3 tensor (NHWC, RGB scaled to 0..1) with
/// bilinear interpolation; what lies outside the image is black, as in a letterbox.
///
/// The affine map is evaluated per pixel from the row origin (no accumulated drift) and
/// the four taps are read without bounds checks' branches except on the image border.
pub fn crop_into(image: &RgbImage, roi: &Roi, n: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(n * n * 3, 0.0);
    if n == 0 || image.width == 0 || image.height == 0 || !roi.size.is_finite() {
        return;
    }
    let (w, h) = (image.width as isize, image.height as isize);
    let stride = image.width * 3;
    let data = &image.data;
    let k = roi.size / n as f64;
    let (s, c) = roi.rotation.sin_cos();
    // One crop column moves the sample by (dx, dy) in the image.
    let (dx, dy) = (k * c, k * s);
    const SCALE: f32 = 1.0 / 255.0;
    let tap = |x: isize, y: isize| -> [f32; 3] {
        if x < 0 || y < 0 || x >= w || y >= h {
            return [0.0; 3];
        }
        let i = y as usize * stride + x as usize * 3;
        [data[i] as f32, data[i + 1] as f32, data[i + 2] as f32]
    };
    for (row, out_row) in out.chunks_exact_mut(n * 3).enumerate() {
        // Sample at pixel centres; image pixel `i` has its value at `i + 0.5`.
        let (x0, y0) = roi.to_image(0.5, row as f64 + 0.5, n);
        let (x0, y0) = (x0 - 0.5, y0 - 0.5);
        for (col, px) in out_row.chunks_exact_mut(3).enumerate() {
            let sx = x0 + col as f64 * dx;
            let sy = y0 + col as f64 * dy;
            let (fx, fy) = (sx.floor(), sy.floor());
            if !(fx >= -1.0 && fy >= -1.0 && fx < w as f64 && fy < h as f64) {
                continue; // wholly outside (or NaN): letterbox black
            }
            let (ix, iy) = (fx as isize, fy as isize);
            let (tx, ty) = ((sx - fx) as f32, (sy - fy) as f32);
            let w00 = (1.0 - tx) * (1.0 - ty) * SCALE;
            let w10 = tx * (1.0 - ty) * SCALE;
            let w01 = (1.0 - tx) * ty * SCALE;
            let w11 = tx * ty * SCALE;
            if ix >= 0 && iy >= 0 && ix + 1 < w && iy + 1 < h {
                let i = iy as usize * stride + ix as usize * 3;
                let (a, b) = (&data[i..i + 6], &data[i + stride..i + stride + 6]);
                for ch in 0..3 {
                    px[ch] = w00 * a[ch] as f32
                        + w10 * a[ch + 3] as f32
                        + w01 * b[ch] as f32
                        + w11 * b[ch + 3] as f32;
                }
            } else {
                let (p00, p10) = (tap(ix, iy), tap(ix + 1, iy));
                let (p01, p11) = (tap(ix, iy + 1), tap(ix + 1, iy + 1));
                for ch in 0..3 {
                    px[ch] = w00 * p00[ch] + w10 * p10[ch] + w01 * p01[ch] + w11 * p11[ch];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Red = column, green = row, blue = 200: bilinear interpolation reproduces the first
    /// two exactly, so every crop pixel has a value known in closed form.
    fn ramp(w: usize, h: usize) -> RgbImage {
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[x as u8, y as u8, 200]);
            }
        }
        RgbImage::new(w, h, data).unwrap()
    }

    /// Checks every crop pixel against the analytic transform: inside the image the value
    /// is the sampled position itself, wholly outside it is black.
    fn check_against_analytic(img: &RgbImage, roi: &Roi, n: usize) -> Result<(), String> {
        let mut out = Vec::new();
        crop_into(img, roi, n, &mut out);
        let (w, h) = (img.width() as f64, img.height() as f64);
        for v in 0..n {
            for u in 0..n {
                let (x, y) = roi.to_image(u as f64 + 0.5, v as f64 + 0.5, n);
                let (sx, sy) = (x - 0.5, y - 0.5);
                let px = &out[(v * n + u) * 3..][..3];
                let got = [px[0] * 255.0, px[1] * 255.0, px[2] * 255.0];
                let inside = sx >= 0.0 && sy >= 0.0 && sx <= w - 1.0 && sy <= h - 1.0;
                let outside = sx <= -1.0 || sy <= -1.0 || sx >= w || sy >= h;
                let want = if inside {
                    [sx as f32, sy as f32, 200.0]
                } else if outside {
                    [0.0; 3]
                } else {
                    continue; // blended with the black border
                };
                for ch in 0..3 {
                    if (got[ch] - want[ch]).abs() > 2e-3 * want[ch].abs().max(1.0) {
                        return Err(format!(
                            "crop ({u},{v}) -> image ({x:.3},{y:.3}) channel {ch}: {} != {}",
                            got[ch], want[ch]
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn identity_crop_copies_pixels() {
        let img = ramp(8, 8);
        let roi = Roi::whole(8, 8);
        let mut out = Vec::new();
        crop_into(&img, &roi, 8, &mut out);
        let bytes: Vec<u8> = out.iter().map(|v| (v * 255.0).round() as u8).collect();
        assert_eq!(bytes, img.data());
    }

    #[test]
    fn rotated_scaled_crop_matches_the_affine_map() {
        let img = ramp(200, 180);
        let roi = Roi {
            cx: 97.3,
            cy: 88.1,
            size: 150.0,
            rotation: 0.7,
        };
        check_against_analytic(&img, &roi, 64).unwrap();
        // A quarter turn: the crop's "up" points to the image's right.
        let roi = Roi {
            cx: 100.0,
            cy: 90.0,
            size: 64.0,
            rotation: std::f64::consts::FRAC_PI_2,
        };
        let mut out = Vec::new();
        crop_into(&img, &roi, 64, &mut out);
        // Crop top-left pixel centre sits near the image's top-right of the square.
        let (x, y) = roi.to_image(0.5, 0.5, 64);
        assert!(
            (x - 131.5).abs() < 1e-9 && (y - 58.5).abs() < 1e-9,
            "{x} {y}"
        );
        assert!((out[0] * 255.0 - (x - 0.5) as f32).abs() < 1e-3);
    }

    #[test]
    fn letterbox_is_black_and_borders_blend() {
        // A portrait image in a square ROI: the left and right bands are letterbox.
        let img = ramp(100, 200);
        let roi = Roi::whole(100, 200);
        check_against_analytic(&img, &roi, 50).unwrap();
        let mut out = Vec::new();
        crop_into(&img, &roi, 50, &mut out);
        let row = 25 * 50 * 3;
        assert_eq!(&out[row..row + 3], &[0.0, 0.0, 0.0], "left band");
        // Column 12 samples exactly on the image's left edge (x = 0): half black, half blue.
        let (x, _) = roi.to_image(12.5, 25.5, 50);
        assert!((x - 0.0).abs() < 1e-9, "{x}");
        assert!((out[row + 12 * 3 + 2] * 255.0 - 100.0).abs() < 1e-3);
    }

    #[test]
    fn crop_and_image_coordinates_are_inverse() {
        let roi = Roi {
            cx: 500.0,
            cy: 900.0,
            size: 700.0,
            rotation: -2.1,
        };
        let (x, y) = roi.to_image(17.0, 230.0, 256);
        let (u, v) = roi.to_crop(x, y, 256);
        assert!((u - 17.0).abs() < 1e-9 && (v - 230.0).abs() < 1e-9);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let img = ramp(4, 4);
        let mut out = vec![1.0; 3];
        crop_into(&img, &Roi::whole(4, 4), 0, &mut out);
        assert!(out.is_empty());
        let nan = Roi {
            cx: f64::NAN,
            ..Roi::whole(4, 4)
        };
        crop_into(&img, &nan, 4, &mut out);
        assert!(out.iter().all(|v| *v == 0.0));
        assert!(RgbImage::new(4, 4, vec![0; 47]).is_err());
    }

    proptest! {
        #[test]
        fn any_roi_matches_the_affine_map(
            cx in -50.0..250.0f64, cy in -50.0..230.0f64,
            size in 5.0..400.0f64, rotation in -4.0..4.0f64,
        ) {
            let img = ramp(200, 180);
            let roi = Roi { cx, cy, size, rotation };
            prop_assert_eq!(check_against_analytic(&img, &roi, 24), Ok(()));
        }
    }
}
