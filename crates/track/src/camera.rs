//! The pinhole camera with OpenCV's distortion model, and a set of calibrated cameras.
//!
//! Conventions (OpenCV's): a world point `X` maps to camera coordinates `Xc = R·X + t`
//! (`R` = [`Camera::rotation`], world→camera), the camera looks along +z, image x grows to the
//! right and y downwards. Lengths are in metres, image coordinates in pixels.

use nalgebra::{Matrix3, Matrix3x4, Point2, Point3, Rotation3, Unit, Vector3};

use crate::error::{Error, Result};

/// Pinhole intrinsics in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intrinsics {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    /// `K[0][1]`; zero for every modern sensor.
    pub skew: f64,
}

impl Intrinsics {
    /// The 3×3 matrix `K`.
    pub fn matrix(&self) -> Matrix3<f64> {
        Matrix3::new(
            self.fx, self.skew, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0,
        )
    }

    /// Reads `K`; refuses a matrix whose last row is not `[0, 0, 1]` or whose
    /// focal lengths are not positive.
    pub fn from_matrix(k: &Matrix3<f64>) -> Result<Self, String> {
        if k[(1, 0)] != 0.0 || k[(2, 0)] != 0.0 || k[(2, 1)] != 0.0 || k[(2, 2)] != 1.0 {
            return Err(format!("not an upper-triangular K with K[2][2] = 1: {k:?}"));
        }
        let i = Intrinsics {
            fx: k[(0, 0)],
            fy: k[(1, 1)],
            cx: k[(0, 2)],
            cy: k[(1, 2)],
            skew: k[(0, 1)],
        };
        i.check().map(|()| i)
    }

    fn check(&self) -> Result<(), String> {
        let all = [self.fx, self.fy, self.cx, self.cy, self.skew];
        if all.iter().any(|v| !v.is_finite()) {
            return Err(format!("not finite: {all:?}"));
        }
        if self.fx <= 0.0 || self.fy <= 0.0 {
            return Err(format!(
                "focal lengths must be positive (singular K): fx={}, fy={}",
                self.fx, self.fy
            ));
        }
        Ok(())
    }
}

/// OpenCV's radial (`k1, k2, k3`) and tangential (`p1, p2`) lens distortion, applied to
/// normalised image coordinates. OpenCV orders them `[k1, k2, p1, p2, k3]`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Distortion {
    pub k1: f64,
    pub k2: f64,
    pub k3: f64,
    pub p1: f64,
    pub p2: f64,
}

impl Distortion {
    /// From OpenCV's order `[k1, k2, p1, p2 (, k3)]`; 4 or 5 values (more are refused).
    pub fn from_opencv(d: &[f64]) -> Result<Self, String> {
        if !(4..=5).contains(&d.len()) {
            return Err(format!(
                "expected 4 or 5 coefficients [k1, k2, p1, p2, k3], got {}",
                d.len()
            ));
        }
        if d.iter().any(|v| !v.is_finite()) {
            return Err(format!("not finite: {d:?}"));
        }
        Ok(Distortion {
            k1: d[0],
            k2: d[1],
            p1: d[2],
            p2: d[3],
            k3: d.get(4).copied().unwrap_or(0.0),
        })
    }

    /// OpenCV's order `[k1, k2, p1, p2, k3]`.
    pub fn to_opencv(&self) -> [f64; 5] {
        [self.k1, self.k2, self.p1, self.p2, self.k3]
    }

    /// Whether every coefficient is zero (projection can skip the polynomial).
    pub fn is_zero(&self) -> bool {
        self.to_opencv().iter().all(|v| *v == 0.0)
    }

    /// Distorts normalised coordinates `(x, y) = (X/Z, Y/Z)`.
    #[inline]
    pub fn distort(&self, x: f64, y: f64) -> (f64, f64) {
        let r2 = x * x + y * y;
        let radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3));
        let xy2 = 2.0 * x * y;
        (
            x * radial + self.p1 * xy2 + self.p2 * (r2 + 2.0 * x * x),
            y * radial + self.p1 * (r2 + 2.0 * y * y) + self.p2 * xy2,
        )
    }

    /// Inverts [`Distortion::distort`] by Newton's method on the 2×2 system (OpenCV's
    /// fixed-point loop converges slowly for strong distortion; Newton reaches 1e-12 in a
    /// few steps). Returns the best estimate after 20 iterations if it has not converged.
    pub fn undistort(&self, xd: f64, yd: f64) -> (f64, f64) {
        if self.is_zero() {
            return (xd, yd);
        }
        let (mut x, mut y) = (xd, yd);
        for _ in 0..20 {
            let (fx, fy) = self.distort(x, y);
            let (ex, ey) = (fx - xd, fy - yd);
            if ex * ex + ey * ey < 1e-28 {
                break;
            }
            let [a, b, c, d] = self.jacobian(x, y);
            let det = a * d - b * c;
            if det.abs() < 1e-12 || !det.is_finite() {
                break;
            }
            x -= (d * ex - b * ey) / det;
            y -= (-c * ex + a * ey) / det;
        }
        (x, y)
    }

    /// `∂(xd, yd)/∂(x, y)` row-major.
    #[inline]
    fn jacobian(&self, x: f64, y: f64) -> [f64; 4] {
        let r2 = x * x + y * y;
        let radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3));
        // d(radial)/d(r2)
        let dr = self.k1 + r2 * (2.0 * self.k2 + 3.0 * r2 * self.k3);
        let dxdx = radial + x * dr * 2.0 * x + 2.0 * self.p1 * y + 6.0 * self.p2 * x;
        let dxdy = x * dr * 2.0 * y + 2.0 * self.p1 * x + 2.0 * self.p2 * y;
        let dydx = y * dr * 2.0 * x + 2.0 * self.p1 * x + 2.0 * self.p2 * y;
        let dydy = radial + y * dr * 2.0 * y + 6.0 * self.p1 * y + 2.0 * self.p2 * x;
        [dxdx, dxdy, dydx, dydy]
    }
}

/// One calibrated camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Camera {
    /// Name used to match keypoint folders and video files (`cam01`...).
    pub name: String,
    /// Image size in pixels `(width, height)`.
    pub size: (u32, u32),
    pub intrinsics: Intrinsics,
    pub distortion: Distortion,
    /// World→camera rotation.
    pub rotation: Rotation3<f64>,
    /// World→camera translation in metres (`Xc = R·X + t`; not the camera centre).
    pub translation: Vector3<f64>,
}

impl Camera {
    /// A camera at `centre` looking at `target`, image y pointing towards `-up` (down in the
    /// world), with no distortion: handy for synthetic rigs.
    pub fn look_at(
        name: &str,
        size: (u32, u32),
        intrinsics: Intrinsics,
        centre: Point3<f64>,
        target: Point3<f64>,
        up: Vector3<f64>,
    ) -> Self {
        let z = (target - centre).normalize();
        let x = z.cross(&up).normalize();
        let y = z.cross(&x);
        let r = Matrix3::from_rows(&[x.transpose(), y.transpose(), z.transpose()]);
        let rotation = Rotation3::from_matrix_unchecked(r);
        let translation = -(rotation * centre.coords);
        Camera {
            name: name.to_owned(),
            size,
            intrinsics,
            distortion: Distortion::default(),
            rotation,
            translation,
        }
    }

    /// Checks that every parameter is finite and usable; the error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.intrinsics.check().map_err(|e| ("matrix", e))?;
        Distortion::from_opencv(&self.distortion.to_opencv()).map_err(|e| ("distortions", e))?;
        let r = self.rotation.matrix();
        if r.iter().any(|v| !v.is_finite()) {
            return Err(("rotation", "not finite".into()));
        }
        let ortho = (r.transpose() * r - Matrix3::identity()).abs().max();
        if ortho > 1e-6 || (r.determinant() - 1.0).abs() > 1e-6 {
            return Err((
                "rotation",
                format!(
                    "not a rotation (|RᵀR − I| = {ortho:.2e}, det = {})",
                    r.determinant()
                ),
            ));
        }
        if self.translation.iter().any(|v| !v.is_finite()) {
            return Err(("translation", "not finite".into()));
        }
        if self.size.0 == 0 || self.size.1 == 0 {
            return Err(("size", format!("empty image size {:?}", self.size)));
        }
        Ok(())
    }

    /// The optical centre in world coordinates (`−Rᵀ·t`).
    pub fn centre(&self) -> Point3<f64> {
        Point3::from(-(self.rotation.inverse() * self.translation))
    }

    /// World → camera coordinates.
    #[inline]
    pub fn world_to_camera(&self, p: &Point3<f64>) -> Point3<f64> {
        Point3::from(self.rotation * p.coords + self.translation)
    }

    /// Camera → world coordinates.
    #[inline]
    pub fn camera_to_world(&self, p: &Point3<f64>) -> Point3<f64> {
        Point3::from(self.rotation.inverse() * (p.coords - self.translation))
    }

    /// `[R | t]`.
    pub fn extrinsic_matrix(&self) -> Matrix3x4<f64> {
        let mut m = Matrix3x4::zeros();
        m.fixed_view_mut::<3, 3>(0, 0)
            .copy_from(self.rotation.matrix());
        m.set_column(3, &self.translation);
        m
    }

    /// `K·[R | t]`, the projection matrix for *undistorted* pixels.
    pub fn projection_matrix(&self) -> Matrix3x4<f64> {
        self.intrinsics.matrix() * self.extrinsic_matrix()
    }

    /// Normalised (undistorted) coordinates → pixels, without distortion.
    #[inline]
    pub fn normalized_to_pixel(&self, x: f64, y: f64) -> Point2<f64> {
        let i = &self.intrinsics;
        Point2::new(i.fx * x + i.skew * y + i.cx, i.fy * y + i.cy)
    }

    /// Pixels → normalised coordinates, without distortion.
    #[inline]
    pub fn pixel_to_normalized(&self, p: &Point2<f64>) -> (f64, f64) {
        let i = &self.intrinsics;
        let y = (p.y - i.cy) / i.fy;
        ((p.x - i.cx - i.skew * y) / i.fx, y)
    }

    /// Projects a world point to (distorted) pixels; `None` behind the camera.
    #[inline]
    pub fn project(&self, p: &Point3<f64>) -> Option<Point2<f64>> {
        let c = self.world_to_camera(p);
        if c.z <= 1e-9 {
            return None;
        }
        let (x, y) = self.distortion.distort(c.x / c.z, c.y / c.z);
        Some(self.normalized_to_pixel(x, y))
    }

    /// A distorted pixel → undistorted normalised coordinates `(X/Z, Y/Z)`.
    #[inline]
    pub fn undistort_to_normalized(&self, p: &Point2<f64>) -> (f64, f64) {
        let (x, y) = self.pixel_to_normalized(p);
        self.distortion.undistort(x, y)
    }

    /// A distorted pixel → the same point with distortion removed, in pixels.
    pub fn undistort_pixel(&self, p: &Point2<f64>) -> Point2<f64> {
        let (x, y) = self.undistort_to_normalized(p);
        self.normalized_to_pixel(x, y)
    }

    /// The viewing ray of a pixel in world coordinates: `(centre, unit direction)`.
    pub fn unproject(&self, p: &Point2<f64>) -> (Point3<f64>, Unit<Vector3<f64>>) {
        let (x, y) = self.undistort_to_normalized(p);
        let dir = self.rotation.inverse() * Vector3::new(x, y, 1.0);
        (self.centre(), Unit::new_normalize(dir))
    }
}

/// The cameras of one capture, in a fixed order (the order of camera indices everywhere).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Calibration {
    pub cameras: Vec<Camera>,
}

impl Calibration {
    pub fn new(cameras: Vec<Camera>) -> Self {
        Calibration { cameras }
    }

    pub fn len(&self) -> usize {
        self.cameras.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cameras.is_empty()
    }

    /// Index of the camera called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.cameras.iter().position(|c| c.name == name)
    }

    /// The camera called `name`, or [`Error::MissingCamera`] naming `file`.
    pub fn camera(&self, name: &str, file: &str) -> Result<&Camera> {
        self.index_of(name)
            .map(|i| &self.cameras[i])
            .ok_or_else(|| Error::MissingCamera {
                file: file.to_owned(),
                camera: name.to_owned(),
                known: self.names().join(", "),
            })
    }

    /// Camera names in order.
    pub fn names(&self) -> Vec<&str> {
        self.cameras.iter().map(|c| c.name.as_str()).collect()
    }

    /// Validates every camera (and refuses an empty set or duplicate names); `file` names
    /// the source in the error.
    pub fn validate(&self, file: &str) -> Result<()> {
        if self.cameras.is_empty() {
            return Err(Error::parse(
                file,
                None,
                "cameras",
                "no camera in calibration",
            ));
        }
        for (i, c) in self.cameras.iter().enumerate() {
            if self.cameras[..i].iter().any(|o| o.name == c.name) {
                return Err(Error::parse(
                    file,
                    None,
                    "name",
                    format!("camera name `{}` appears twice", c.name),
                ));
            }
            c.validate().map_err(|(field, reason)| Error::Camera {
                file: file.to_owned(),
                camera: c.name.clone(),
                field: field.to_owned(),
                reason,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam() -> Camera {
        let mut c = Camera::look_at(
            "c",
            (1920, 1080),
            Intrinsics {
                fx: 1400.0,
                fy: 1380.0,
                cx: 950.0,
                cy: 530.0,
                skew: 0.0,
            },
            Point3::new(4.0, -3.0, 2.0),
            Point3::new(0.0, 0.0, 1.0),
            Vector3::z(),
        );
        c.distortion = Distortion {
            k1: -0.2,
            k2: 0.08,
            k3: -0.01,
            p1: 0.001,
            p2: -0.002,
        };
        c
    }

    #[test]
    fn project_unproject_round_trip() {
        let c = cam();
        c.validate().unwrap();
        for p in [
            Point3::new(0.0, 0.0, 1.0),
            Point3::new(0.5, -0.3, 1.8),
            Point3::new(-1.0, 1.0, 0.0),
        ] {
            let px = c.project(&p).unwrap();
            let (o, d) = c.unproject(&px);
            // The point lies on the ray: distance from the ray is ~0.
            let v = p - o;
            let off = (v - d.into_inner() * v.dot(&d)).norm();
            assert!(off < 1e-9, "{p:?} off the ray by {off}");
        }
    }

    #[test]
    fn undistort_inverts_distort_across_the_image() {
        let d = cam().distortion;
        for i in -10..=10 {
            for j in -6..=6 {
                let (x, y) = (i as f64 * 0.06, j as f64 * 0.06);
                let (xd, yd) = d.distort(x, y);
                let (xu, yu) = d.undistort(xd, yd);
                assert!((xu - x).abs() < 1e-10 && (yu - y).abs() < 1e-10);
            }
        }
    }

    #[test]
    fn projection_matrix_matches_project_without_distortion() {
        let mut c = cam();
        c.distortion = Distortion::default();
        let p = Point3::new(0.3, 0.2, 1.1);
        let h = c.projection_matrix() * p.to_homogeneous();
        let px = c.project(&p).unwrap();
        assert!((h.x / h.z - px.x).abs() < 1e-9 && (h.y / h.z - px.y).abs() < 1e-9);
        assert!((c.camera_to_world(&c.world_to_camera(&p)) - p).norm() < 1e-12);
        assert!((c.centre() - Point3::new(4.0, -3.0, 2.0)).norm() < 1e-12);
    }

    #[test]
    fn validate_names_the_bad_field() {
        let mut c = cam();
        c.intrinsics.fx = f64::NAN;
        assert_eq!(c.validate().unwrap_err().0, "matrix");
        let mut c = cam();
        c.translation.x = f64::INFINITY;
        assert_eq!(c.validate().unwrap_err().0, "translation");
        let mut c = cam();
        c.rotation = Rotation3::from_matrix_unchecked(Matrix3::zeros());
        assert_eq!(c.validate().unwrap_err().0, "rotation");
    }
}
