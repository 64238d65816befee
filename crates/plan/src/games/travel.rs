//! Time-dependent travel times: a base duration per pair of sites, stretched or shrunk by
//! time-of-day bands (Olympic lanes make a road faster while they are in force, the evening
//! peak slower).
//!
//! A band with factor `f` makes every minute of base driving take `f` real minutes. Travel is
//! integrated through band changes, so a vehicle never arrives earlier by leaving later
//! (first-in, first-out), and the longest travel time over an interval of departures is found
//! exactly: travel time is piecewise linear in the departure time, with breaks only where the
//! departure or the arrival crosses a band boundary.

/// A time-of-day band: from `from` to `to` (minutes after midnight) driving takes `factor`
/// times its base duration.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub from: f64,
    pub to: f64,
    pub factor: f64,
    pub label: String,
}

/// Sorted, non-overlapping bands; factor 1 outside them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpeedProfile {
    bands: Vec<Band>,
}

impl SpeedProfile {
    /// `bands` must not overlap and must have `from < to` and `factor > 0` (the scenario
    /// reader checks this and says where); they are sorted here.
    pub fn new(mut bands: Vec<Band>) -> Self {
        bands.sort_by(|a, b| a.from.total_cmp(&b.from));
        Self { bands }
    }

    pub fn bands(&self) -> &[Band] {
        &self.bands
    }

    /// The fastest factor anywhere in the day (at most 1).
    pub fn min_factor(&self) -> f64 {
        self.bands.iter().map(|b| b.factor).fold(1.0, f64::min)
    }

    /// The slowest factor anywhere in the day (at least 1).
    pub fn max_factor(&self) -> f64 {
        self.bands.iter().map(|b| b.factor).fold(1.0, f64::max)
    }

    /// Factor in force just after `t`, and when it next changes.
    fn ahead(&self, t: f64) -> (f64, f64) {
        for b in &self.bands {
            if t < b.from {
                return (1.0, b.from);
            }
            if t < b.to {
                return (b.factor, b.to);
            }
        }
        (1.0, f64::INFINITY)
    }

    /// Factor in force just before `t`, and since when.
    fn behind(&self, t: f64) -> (f64, f64) {
        for b in self.bands.iter().rev() {
            if t > b.to {
                return (1.0, b.to);
            }
            if t > b.from {
                return (b.factor, b.from);
            }
        }
        (1.0, f64::NEG_INFINITY)
    }

    /// When a drive of `base` minutes (at factor 1) that leaves at `depart` arrives.
    pub fn arrive(&self, base: f64, depart: f64) -> f64 {
        let (mut left, mut t) = (base, depart);
        loop {
            let (factor, until) = self.ahead(t);
            let end = t + left * factor;
            if end <= until {
                return end;
            }
            left -= (until - t) / factor;
            t = until;
        }
    }

    /// The latest departure of a drive of `base` minutes that arrives by `arrive`.
    pub fn depart_for(&self, base: f64, arrive: f64) -> f64 {
        let (mut left, mut t) = (base, arrive);
        loop {
            let (factor, since) = self.behind(t);
            let start = t - left * factor;
            if start >= since {
                return start;
            }
            left -= (t - since) / factor;
            t = since;
        }
    }

    /// Real travel time of a `base`-minute drive leaving at `depart`.
    pub fn travel(&self, base: f64, depart: f64) -> f64 {
        self.arrive(base, depart) - depart
    }

    /// The longest real travel time over all departures in `[lo, hi]`.
    pub fn max_travel(&self, base: f64, lo: f64, hi: f64) -> f64 {
        if base == 0.0 {
            return 0.0;
        }
        let hi = hi.max(lo);
        let inside = |t: f64| t > lo && t < hi;
        let mut worst = self.travel(base, lo).max(self.travel(base, hi));
        for b in &self.bands {
            for edge in [b.from, b.to] {
                for t in [edge, self.depart_for(base, edge)] {
                    if inside(t) {
                        worst = worst.max(self.travel(base, t));
                    }
                }
            }
        }
        worst
    }
}

/// Great-circle distance in km between two points given in degrees.
pub fn great_circle_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
}

/// Road km and base minutes between every pair of sites, plus the time-of-day profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Travel {
    n: usize,
    km: Vec<f64>,
    base_min: Vec<f64>,
    pub profile: SpeedProfile,
}

impl Travel {
    /// `km` and `base_min` are `n * n`, row-major by site index.
    pub fn new(n: usize, km: Vec<f64>, base_min: Vec<f64>, profile: SpeedProfile) -> Self {
        debug_assert_eq!(km.len(), n * n);
        debug_assert_eq!(base_min.len(), n * n);
        Self {
            n,
            km,
            base_min,
            profile,
        }
    }

    pub fn km(&self, from: usize, to: usize) -> f64 {
        self.km[from * self.n + to]
    }

    /// Travel time at factor 1.
    pub fn base_min(&self, from: usize, to: usize) -> f64 {
        self.base_min[from * self.n + to]
    }

    /// Real minutes leaving at `depart`.
    pub fn minutes(&self, from: usize, to: usize, depart: f64) -> f64 {
        self.profile.travel(self.base_min(from, to), depart)
    }

    /// The longest real travel time over departures in `[lo, hi]`.
    pub fn max_minutes(&self, from: usize, to: usize, lo: f64, hi: f64) -> f64 {
        self.profile.max_travel(self.base_min(from, to), lo, hi)
    }

    /// The shortest real travel time at any hour.
    pub fn min_minutes(&self, from: usize, to: usize) -> f64 {
        self.base_min(from, to) * self.profile.min_factor()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lanes() -> SpeedProfile {
        SpeedProfile::new(vec![
            Band {
                from: 420.0,
                to: 720.0,
                factor: 0.75,
                label: "lanes".into(),
            },
            Band {
                from: 1020.0,
                to: 1170.0,
                factor: 1.25,
                label: "peak".into(),
            },
        ])
    }

    #[test]
    fn integrates_through_band_changes() {
        let p = lanes();
        // 40 base minutes from 06:40: 20 at factor 1 (to 07:00), then 20 base minutes at 0.75.
        assert!((p.arrive(40.0, 400.0) - (420.0 + 15.0)).abs() < 1e-9);
        // Entirely inside the evening peak.
        assert!((p.travel(20.0, 1030.0) - 25.0).abs() < 1e-9);
        assert!((p.depart_for(40.0, 435.0) - 400.0).abs() < 1e-9);
        // The worst departure between 06:00 and 08:00 is 06:00 (no lanes yet).
        assert!((p.max_travel(40.0, 360.0, 480.0) - 40.0).abs() < 1e-9);
        // Between 16:30 and 18:00 the worst is a drive wholly inside the peak.
        assert!((p.max_travel(40.0, 990.0, 1080.0) - 50.0).abs() < 1e-9);
        assert_eq!(SpeedProfile::default().travel(12.0, 100.0), 12.0);
    }

    #[test]
    fn great_circle_matches_a_known_distance() {
        // Stade de France to the Eiffel Tower: about 8.9 km as the crow flies.
        let d = great_circle_km(48.9245, 2.3602, 48.8584, 2.2945);
        assert!((d - 8.83).abs() < 0.1, "{d}");
    }

    proptest! {
        #[test]
        fn first_in_first_out_and_inverse(base in 0.0f64..300.0, t in 0.0f64..1500.0, dt in 0.0f64..200.0) {
            let p = lanes();
            prop_assert!(p.arrive(base, t + dt) >= p.arrive(base, t) - 1e-9);
            prop_assert!((p.depart_for(base, p.arrive(base, t)) - t).abs() < 1e-6);
        }

        #[test]
        fn max_travel_bounds_every_departure(base in 0.0f64..200.0, lo in 0.0f64..1400.0, len in 0.0f64..300.0, s in 0.0f64..1.0) {
            let p = lanes();
            let worst = p.max_travel(base, lo, lo + len);
            prop_assert!(p.travel(base, lo + s * len) <= worst + 1e-9);
        }
    }
}
