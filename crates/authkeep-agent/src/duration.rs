//! Durations as the API and the command read them (`30s`, `10m`, `1h30m`):
//! never negative, at most 100 years, so that no arithmetic on them
//! overflows.

use jiff::SignedDuration;

/// The longest duration accepted: 100 years of 365.25 days.
const MAX: SignedDuration = SignedDuration::from_hours(876_600);

/// Reads a duration such as `30s`, `10m` or `1h30m`; the error never repeats
/// more than a short prefix of the text.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let shown: String = text.chars().take(32).collect();
    let parsed: SignedDuration = text
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {shown:?}: write it like 30s, 10m or 1h30m"))?;
    if parsed.is_negative() {
        return Err(format!("invalid duration {shown:?}: must not be negative"));
    }
    if parsed > MAX {
        return Err(format!(
            "invalid duration {shown:?}: at most 876600h (100 years)"
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded_and_errors_short() {
        assert_eq!(parse_duration("10m"), Ok(SignedDuration::from_mins(10)));
        assert_eq!(parse_duration("1h30m"), Ok(SignedDuration::from_mins(90)));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1000000h").is_err());
        let long = "x".repeat(500);
        assert!(parse_duration(&long).unwrap_err().len() < 120);
    }
}
