//! The name patterns of a permission: which queues and topics a user may touch.

use chute_protocol::NAME_LEN_MAX;

/// Stands for the user's own name in a pattern, replaced when the user is built, so one rule
/// (`"{user}.*"`) gives every user a namespace of their own.
pub const USER_PLACEHOLDER: &str = "{user}";

/// A pattern over queue names and topics: `*` matches any run of characters (none
/// included), every other character matches itself. `*` alone matches every name.
///
/// Globs rather than RabbitMQ's regular expressions: a permission is read far more often
/// than written, and a glob reads as what it allows, matches in linear time, and cannot be
/// written to match more than it looks like (an unanchored regex, a forgotten `\.`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern {
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    #[error("pattern is empty (an empty list allows nothing; a pattern must match something)")]
    Empty,
    #[error("pattern {pattern:?} is longer than {NAME_LEN_MAX} bytes")]
    TooLong { pattern: String },
    #[error(
        "pattern {pattern:?} contains {ch:?}; allowed are letters, digits, - _ . : /, * and {{user}}"
    )]
    BadChar { pattern: String, ch: char },
}

impl NamePattern {
    /// Parses `text`, with `{user}` replaced by `user`.
    pub fn new(text: &str, user: &str) -> Result<NamePattern, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        let expanded = text.replace(USER_PLACEHOLDER, user);
        if expanded.len() > NAME_LEN_MAX {
            return Err(PatternError::TooLong { pattern: text.to_string() });
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:/*".contains(c);
        if let Some(ch) = text.replace(USER_PLACEHOLDER, "").chars().find(|c| !allowed(*c)) {
            return Err(PatternError::BadChar { pattern: text.to_string(), ch });
        }
        Ok(NamePattern { text: expanded })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `name` is one of the names the pattern stands for.
    pub fn matches(&self, name: &str) -> bool {
        glob_matches(self.text.as_bytes(), name.as_bytes())
    }
}

/// `*`-only glob matching, in O(pattern × name) at worst: on a mismatch after a `*`, the
/// `*` takes one more byte and matching resumes behind it; earlier `*`s never need to
/// take more, because the latest one can absorb anything they could.
fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pattern(text: &str) -> NamePattern {
        NamePattern::new(text, "alice").unwrap()
    }

    #[test]
    fn literal_matches_itself_only() {
        assert!(pattern("orders").matches("orders"));
        assert!(!pattern("orders").matches("orders.eu"));
        assert!(!pattern("orders").matches("order"));
    }

    #[test]
    fn star_matches_any_run_including_none() {
        assert!(pattern("*").matches("anything/at:all"));
        assert!(pattern("orders.*").matches("orders."));
        assert!(pattern("orders.*").matches("orders.eu.west"));
        assert!(!pattern("orders.*").matches("orders"));
        assert!(pattern("*.dlq").matches("jobs.dlq"));
        assert!(!pattern("*.dlq").matches("jobs.dlq.x"));
        assert!(pattern("a*b*c").matches("aXbYbZc"));
        assert!(!pattern("a*b*c").matches("aXcYb"));
    }

    #[test]
    fn user_placeholder_is_the_users_name() {
        assert!(pattern("{user}.*").matches("alice.jobs"));
        assert!(!pattern("{user}.*").matches("bob.jobs"));
        assert_eq!(pattern("x.{user}").as_str(), "x.alice");
    }

    #[test]
    fn odd_patterns_are_refused_with_the_reason() {
        assert_eq!(NamePattern::new("", "u"), Err(PatternError::Empty));
        assert!(matches!(NamePattern::new("a b", "u"), Err(PatternError::BadChar { ch: ' ', .. })));
        assert!(matches!(
            NamePattern::new("a{x}", "u"),
            Err(PatternError::BadChar { ch: '{', .. })
        ));
        let long = "a".repeat(NAME_LEN_MAX + 1);
        assert!(matches!(NamePattern::new(&long, "u"), Err(PatternError::TooLong { .. })));
    }

    /// The reference: a straightforward exponential matcher.
    fn reference(pattern: &[u8], name: &[u8]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some((b'*', rest)) => (0..=name.len()).any(|skip| reference(rest, &name[skip..])),
            Some((c, rest)) => name.first() == Some(c) && reference(rest, &name[1..]),
        }
    }

    proptest! {
        /// The linear matcher agrees with the obvious recursive one.
        #[test]
        fn glob_agrees_with_reference(pattern in "[ab.*]{0,8}", name in "[ab.]{0,10}") {
            prop_assert_eq!(
                glob_matches(pattern.as_bytes(), name.as_bytes()),
                reference(pattern.as_bytes(), name.as_bytes())
            );
        }
    }
}
