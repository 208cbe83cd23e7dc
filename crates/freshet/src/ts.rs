//! `freshet ts VALUE...`: normalises timestamps from the command line, one line per value.

// The normalised timestamps on stdout are this command's product.
#![allow(clippy::print_stdout)]

use freshet_timestamp::{normalize, normalize_json, NormalizedTs, TimestampError};

/// How a command-line VALUE is read: as JSON when it is valid JSON (so `1726667942` and
/// `1.5e9` are numbers, `'"123"'` is the string "123", `true` is a boolean and is rejected),
/// otherwise as a plain string (`2021-12-03T16:15:30Z` needs no quotes).
pub fn normalize_arg(value: &str) -> Result<NormalizedTs, TimestampError> {
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(json) => normalize_json(&json),
        Err(_) => normalize(value),
    }
}

/// Prints each value's normalised form, or `error: VALUE: REASON` on stderr; fails if any did.
pub fn run(values: &[String]) -> anyhow::Result<()> {
    let mut failed = 0usize;
    for value in values {
        match normalize_arg(value) {
            Ok(ts) => println!("{ts}"),
            Err(e) => {
                eprintln!("error: {value}: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} values are not timestamps", values.len());
    }
    Ok(())
}
