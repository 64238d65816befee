//! Concurrent receivers over time: sessions (intervals) bucketed by minute or hour.
//!
//! A session is the half-open interval `[connected, disconnected)` in seconds since the
//! epoch, so one that ends when another starts never counts twice. For each bucket the
//! result says how many were connected at the busiest instant (`peak`), on average over the
//! bucket (`mean`, receiver-seconds divided by the bucket's seconds), and at any time in it
//! (`sessions`).

use std::str::FromStr;

/// Bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Minute,
    Hour,
}

impl Resolution {
    pub fn seconds(self) -> i64 {
        match self {
            Resolution::Minute => 60,
            Resolution::Hour => 3600,
        }
    }

    /// The start of the bucket `t` falls in.
    pub fn floor(self, t: i64) -> i64 {
        t.div_euclid(self.seconds()) * self.seconds()
    }
}

impl FromStr for Resolution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "minute" => Ok(Resolution::Minute),
            "hour" => Ok(Resolution::Hour),
            other => Err(format!("{other:?} is not a resolution (minute or hour)")),
        }
    }
}

/// Receivers in one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Occupancy {
    /// Start of the bucket, seconds since the epoch.
    pub start: i64,
    /// Most sessions connected at one instant.
    pub peak: u32,
    /// Average number connected over the part of the bucket inside the period.
    pub mean: f64,
    /// Sessions connected at any time in the bucket.
    pub sessions: u32,
}

/// One bucket per `resolution` step from the bucket holding `from` to the one holding the
/// last second before `until`, for the sessions `spans` (`(connected, disconnected)`,
/// seconds; clip open sessions to "now" before). Parts of sessions outside `[from, until)`
/// do not count. Empty when `until <= from`.
pub fn occupancy(
    spans: &[(i64, i64)],
    resolution: Resolution,
    from: i64,
    until: i64,
) -> Vec<Occupancy> {
    if until <= from {
        return Vec::new();
    }
    // Ends sort before starts at the same instant: back-to-back sessions do not overlap.
    let mut events: Vec<(i64, i32)> = spans
        .iter()
        .map(|&(s, e)| (s.max(from), e.min(until)))
        .filter(|(s, e)| s < e)
        .flat_map(|(s, e)| [(s, 1), (e, -1)])
        .collect();
    events.sort_unstable();
    let width = resolution.seconds();
    let mut out = Vec::new();
    let mut level: i64 = 0;
    let mut next = 0;
    let mut bucket = resolution.floor(from);
    while bucket < until {
        let end = bucket + width;
        // Everything up to and including the bucket's first instant sets the level there.
        while next < events.len() && events[next].0 <= bucket {
            level += i64::from(events[next].1);
            next += 1;
        }
        let (mut peak, mut sessions) = (level, level);
        let (mut area, mut at) = (0i64, bucket.max(from));
        while next < events.len() && events[next].0 < end {
            let (t, delta) = events[next];
            area += level * (t - at);
            at = t;
            level += i64::from(delta);
            if delta > 0 {
                sessions += 1;
                peak = peak.max(level);
            }
            next += 1;
        }
        let inside_end = end.min(until);
        area += level * (inside_end - at);
        let inside = (inside_end - bucket.max(from)) as f64;
        out.push(Occupancy {
            start: bucket,
            peak: u32::try_from(peak).unwrap_or(u32::MAX),
            mean: area as f64 / inside,
            sessions: u32::try_from(sessions).unwrap_or(u32::MAX),
        });
        bucket = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: i64 = 3600;
    const M: i64 = 60;

    fn at(o: &[Occupancy], start: i64) -> (u32, f64, u32) {
        let b = o.iter().find(|b| b.start == start).unwrap();
        (b.peak, b.mean, b.sessions)
    }

    #[test]
    fn a_session_spanning_hours_counts_in_each_by_its_share() {
        // 10:30 to 12:15.
        let o = occupancy(
            &[(10 * H + 30 * M, 12 * H + 15 * M)],
            Resolution::Hour,
            10 * H,
            13 * H,
        );
        assert_eq!(o.len(), 3);
        assert_eq!(at(&o, 10 * H), (1, 0.5, 1));
        assert_eq!(at(&o, 11 * H), (1, 1.0, 1));
        assert_eq!(at(&o, 12 * H), (1, 0.25, 1));
    }

    #[test]
    fn minutes_see_overlaps_that_hours_average_away() {
        // Two receivers overlap for 30 s in minute 1; a third comes back to back after one.
        let spans = [(30, 90), (60, 150), (150, 200)];
        let o = occupancy(&spans, Resolution::Minute, 0, 4 * M);
        assert_eq!(o.len(), 4);
        assert_eq!(at(&o, 0), (1, 0.5, 1));
        assert_eq!(at(&o, M), (2, 1.5, 2));
        // Minute 2: the second ends at 150 when the third starts: never two at once.
        assert_eq!(at(&o, 2 * M), (1, 1.0, 2));
        let (peak, mean, sessions) = at(&o, 3 * M);
        assert_eq!((peak, sessions), (1, 1));
        assert!((mean - 20.0 / 60.0).abs() < 1e-12);
        let hour = occupancy(&spans, Resolution::Hour, 0, H);
        assert_eq!(hour.len(), 1);
        assert_eq!((hour[0].peak, hour[0].sessions), (2, 3));
        assert!((hour[0].mean - 200.0 / 3600.0).abs() < 1e-12);
    }

    #[test]
    fn the_period_clips_sessions_and_partial_buckets() {
        // Open session (clipped to "now" = 10:45 by the caller), period from 10:10.
        let o = occupancy(
            &[(9 * H, 10 * H + 45 * M)],
            Resolution::Hour,
            10 * H + 10 * M,
            10 * H + 45 * M,
        );
        assert_eq!(o.len(), 1);
        // Connected the whole 35 minutes of the hour that lie inside the period.
        assert_eq!(at(&o, 10 * H), (1, 1.0, 1));
        assert!(occupancy(&[(0, 10)], Resolution::Minute, 5, 5).is_empty());
        // Before the epoch buckets still start on whole minutes.
        let o = occupancy(&[(-90, -30)], Resolution::Minute, -120, 0);
        assert_eq!(o.iter().map(|b| b.start).collect::<Vec<_>>(), [-120, -60]);
        assert_eq!(at(&o, -120), (1, 0.5, 1));
        assert_eq!(at(&o, -60), (1, 0.5, 1));
    }

    proptest! {
        #[test]
        fn buckets_add_up_to_the_sessions(
            spans in proptest::collection::vec((0i64..20_000, 1i64..5_000), 0..40),
            minute in any::<bool>(),
        ) {
            let spans: Vec<(i64, i64)> = spans.into_iter().map(|(s, d)| (s, s + d)).collect();
            let res = if minute { Resolution::Minute } else { Resolution::Hour };
            let (from, until) = (1_000, 21_000);
            let o = occupancy(&spans, res, from, until);
            let seconds: i64 = spans.iter().map(|&(s, e)| (e.min(until) - s.max(from)).max(0)).sum();
            let mut area = 0.0;
            for b in &o {
                let inside = ((b.start + res.seconds()).min(until) - b.start.max(from)) as f64;
                area += b.mean * inside;
                prop_assert!(f64::from(b.peak) >= b.mean - 1e-9);
                prop_assert!(b.peak <= b.sessions);
                let overlapping = spans.iter().filter(|&&(s, e)| {
                    s.max(from) < e.min(until) && s < b.start + res.seconds() && e > b.start
                }).count();
                prop_assert_eq!(b.sessions as usize, overlapping);
            }
            prop_assert!((area - seconds as f64).abs() < 1e-6 * (1.0 + seconds as f64));
        }
    }
}
