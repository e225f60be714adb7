//! Durations as the API and the command read them (`30s`, `10m`, `1h30m`):
//! the library's reading, as config.toml's durations are read (never
//! negative, at most 100 years, so that no arithmetic on them overflows, and
//! an error that never repeats long or unprintable text).

pub use authkeep::config::names::parse_duration;

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

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
