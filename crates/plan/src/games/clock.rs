//! Clock times of the operating day, in minutes after midnight.
//!
//! A Games day runs past midnight (evening sessions end at 23:00, the last buses leave at
//! 01:00), so times after midnight are written as 24:00 to 47:59, as in GTFS timetables.

/// Parses `HH:MM` (00:00 to 47:59) into minutes after midnight.
pub fn parse(text: &str) -> Result<f64, String> {
    let bad = || format!("`{text}` is not a clock time HH:MM (00:00 to 47:59)");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h >= 48 || m >= 60 || text.trim().len() > 5 {
        return Err(bad());
    }
    Ok(f64::from(h * 60 + m))
}

/// Formats minutes after midnight as `HH:MM`, rounding to the nearest minute.
pub fn format(minutes: f64) -> String {
    let total = minutes.round().max(0.0) as i64;
    format!("{:02}:{:02}", total / 60, total % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_formats_past_midnight() {
        assert_eq!(parse("07:30"), Ok(450.0));
        assert_eq!(parse("25:05"), Ok(1505.0));
        assert_eq!(format(1505.4), "25:05");
        for bad in ["7", "07:60", "48:00", "a:b", "07:30:00", "-1:00"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(minutes in 0u32..48 * 60) {
            prop_assert_eq!(parse(&format(f64::from(minutes))), Ok(f64::from(minutes)));
        }

        #[test]
        fn never_panics(text in ".{0,12}") {
            let _ = parse(&text);
        }
    }
}
