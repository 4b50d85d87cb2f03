//! Interest tags: what "short lowercase tags" means, in one place.

use crate::error::ParseError;
use crate::limits::{MAX_INTERESTS, MAX_INTEREST_CHARS};

/// Normalises interest tags as a person would expect: case and surrounding blanks do not
/// matter, inner runs of blanks become one space, empty tags and repeats are dropped (first
/// occurrence kept). More than [`MAX_INTERESTS`] tags, or a tag longer than
/// [`MAX_INTEREST_CHARS`] characters, is an error rather than a silent cut.
pub fn normalize_interests(raw: Vec<String>) -> Result<Vec<String>, ParseError> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len().min(MAX_INTERESTS));
    for tag in raw {
        let tag = tag.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        if tag.is_empty() || out.contains(&tag) {
            continue;
        }
        if tag.chars().count() > MAX_INTEREST_CHARS {
            return Err(ParseError::bad(format!(
                "hello: interest {:?} is longer than {MAX_INTEREST_CHARS} characters",
                tag.chars().take(MAX_INTEREST_CHARS).collect::<String>()
            )));
        }
        if out.len() == MAX_INTERESTS {
            return Err(ParseError::bad(format!("hello: at most {MAX_INTERESTS} interests are allowed")));
        }
        out.push(tag);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_blanks_and_repeats() {
        let got = normalize_interests(vec!["  Rock  Music ".into(), "rock music".into(), "".into(), "ART".into()]);
        assert_eq!(got.unwrap(), vec!["rock music".to_string(), "art".to_string()]);
    }

    #[test]
    fn refuses_too_many_or_too_long() {
        assert!(normalize_interests((0..=MAX_INTERESTS).map(|i| format!("t{i}")).collect()).is_err());
        assert!(normalize_interests(vec!["x".repeat(MAX_INTEREST_CHARS + 1)]).is_err());
        assert!(normalize_interests(vec!["x".repeat(MAX_INTEREST_CHARS)]).is_ok());
    }
}
