//! Topics and the binding patterns that route them to queues.
//!
//! A topic is words separated by `.`, such as `orders.eu.created`. A pattern is a topic whose
//! words may also be `*` (exactly one word) or `#` (zero or more words): `orders.*.created`,
//! `orders.#`, `#`. Wildcards are whole words only, as in AMQP topic exchanges, so a word
//! never has to be scanned for them and `a*` can never mean two things.

use std::str::Split;

use chute_protocol::NAME_LEN_MAX;

/// Why a topic or pattern was refused; shown to the client in an `invalid-argument` error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len_bytes} bytes, longer than {NAME_LEN_MAX}")]
    TooLong { what: &'static str, len_bytes: usize },
    #[error("{what} {name:?} has an empty word (a leading, trailing or doubled '.')")]
    EmptyWord { what: &'static str, name: String },
    #[error("topic {topic:?} contains {ch:?}; wildcards belong in binding patterns only")]
    WildcardInTopic { topic: String, ch: char },
    #[error("binding pattern {pattern:?} has the word {word:?}; '*' and '#' must be whole words")]
    PartialWildcard { pattern: String, word: String },
    #[error("{what} {name:?} contains {ch:?}; allowed are ASCII letters, digits and - _ : /")]
    BadChar { what: &'static str, name: String, ch: char },
}

const TOPIC: &str = "topic";
const PATTERN: &str = "binding pattern";

/// A topic a message may be published to: 1 to `NAME_LEN_MAX` bytes of non-empty words.
pub fn check_topic(topic: &str) -> Result<(), TopicError> {
    check_shape(TOPIC, topic)?;
    for word in topic.split('.') {
        if let Some(ch) = word.chars().find(|&c| c == '*' || c == '#') {
            return Err(TopicError::WildcardInTopic { topic: topic.to_string(), ch });
        }
        check_word_chars(TOPIC, topic, word)?;
    }
    Ok(())
}

/// A binding pattern: like a topic, but a word may also be `*` or `#`.
pub fn check_pattern(pattern: &str) -> Result<(), TopicError> {
    check_shape(PATTERN, pattern)?;
    for word in pattern.split('.').filter(|&word| !is_wildcard(word)) {
        if word.contains(['*', '#']) {
            let word = word.to_string();
            return Err(TopicError::PartialWildcard { pattern: pattern.to_string(), word });
        }
        check_word_chars(PATTERN, pattern, word)?;
    }
    Ok(())
}

/// Whether `topic` matches `pattern`. Both are expected to have passed their checks; other
/// input gives some answer without panicking.
///
/// Greedy, like glob matching with `*` and `?`: a `#` first swallows no words, and when the
/// rest fails to match, the latest `#` swallows one more and the match resumes after it.
/// Earlier `#`s never need to be revisited: whatever they swallowed, the latest `#` can
/// swallow instead. So the work is O(pattern words × topic words) with any number of `#`s,
/// and nothing is allocated: positions are `split` iterators, cloned to be remembered.
pub fn matches(pattern: &str, topic: &str) -> bool {
    let mut pattern_rest = pattern.split('.');
    let mut topic_rest = topic.split('.');
    // After the latest `#`: the pattern following it, and the first topic word it has not
    // swallowed.
    let mut latest_hash: Option<(Split<'_, char>, Split<'_, char>)> = None;
    while let Some(topic_word) = topic_rest.clone().next() {
        let mut pattern_after = pattern_rest.clone();
        match pattern_after.next() {
            Some("#") => {
                latest_hash = Some((pattern_after.clone(), topic_rest.clone()));
                pattern_rest = pattern_after;
            }
            Some(word) if word == "*" || word == topic_word => {
                pattern_rest = pattern_after;
                topic_rest.next();
            }
            _ => {
                let Some((after_hash, unswallowed)) = &mut latest_hash else { return false };
                unswallowed.next();
                pattern_rest = after_hash.clone();
                topic_rest = unswallowed.clone();
            }
        }
    }
    pattern_rest.all(|word| word == "#")
}

fn is_wildcard(word: &str) -> bool {
    word == "*" || word == "#"
}

/// Length and word structure, shared by topics and patterns.
fn check_shape(what: &'static str, name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty { what });
    }
    if name.len() > NAME_LEN_MAX {
        return Err(TopicError::TooLong { what, len_bytes: name.len() });
    }
    if name.split('.').any(str::is_empty) {
        return Err(TopicError::EmptyWord { what, name: name.to_string() });
    }
    Ok(())
}

fn check_word_chars(what: &'static str, name: &str, word: &str) -> Result<(), TopicError> {
    match word.chars().find(|&c| !(c.is_ascii_alphanumeric() || "-_:/".contains(c))) {
        Some(ch) => Err(TopicError::BadChar { what, name: name.to_string(), ch }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_usual_topics() {
        for topic in ["orders", "orders.eu-west.created", "a:b/c_d.E9", "x"] {
            assert_eq!(check_topic(topic), Ok(()), "{topic}");
        }
        check_topic(&"a".repeat(NAME_LEN_MAX)).unwrap();
    }

    #[test]
    fn refuses_malformed_topics() {
        assert_eq!(check_topic(""), Err(TopicError::Empty { what: "topic" }));
        let long = "a".repeat(NAME_LEN_MAX + 1);
        assert_eq!(check_topic(&long), Err(TopicError::TooLong { what: "topic", len_bytes: 256 }));
        for topic in [".a", "a.", "a..b", "."] {
            assert!(matches!(check_topic(topic), Err(TopicError::EmptyWord { .. })), "{topic}");
        }
        assert!(matches!(check_topic("a.*"), Err(TopicError::WildcardInTopic { ch: '*', .. })));
        assert!(matches!(check_topic("a#"), Err(TopicError::WildcardInTopic { ch: '#', .. })));
        assert!(matches!(check_topic("a b"), Err(TopicError::BadChar { ch: ' ', .. })));
        assert!(matches!(check_topic("ä"), Err(TopicError::BadChar { ch: 'ä', .. })));
    }

    #[test]
    fn accepts_whole_word_wildcards() {
        for pattern in ["a.*.c", "a.#", "#", "#.b", "a.#.b", "*", "#.#", "*.*.#", "plain"] {
            assert_eq!(check_pattern(pattern), Ok(()), "{pattern}");
        }
    }

    #[test]
    fn refuses_partial_wildcards_and_malformed_patterns() {
        for pattern in ["a*", "a.b#", "**", "#a.b", "a.*#"] {
            assert!(
                matches!(check_pattern(pattern), Err(TopicError::PartialWildcard { .. })),
                "{pattern}"
            );
        }
        assert_eq!(check_pattern(""), Err(TopicError::Empty { what: "binding pattern" }));
        assert!(matches!(check_pattern("a..#"), Err(TopicError::EmptyWord { .. })));
        assert!(matches!(check_pattern("a.+"), Err(TopicError::BadChar { ch: '+', .. })));
    }

    #[test]
    fn errors_explain_themselves() {
        let error = check_pattern("a.b#").unwrap_err();
        assert_eq!(
            error.to_string(),
            "binding pattern \"a.b#\" has the word \"b#\"; '*' and '#' must be whole words"
        );
    }

    /// (pattern, topic, matches)
    const CASES: &[(&str, &str, bool)] = &[
        ("a.b.c", "a.b.c", true),
        ("a.b.c", "a.b", false),
        ("a.b", "a.b.c", false),
        ("a.b.c", "a.x.c", false),
        // `#` matches everything, a single word included.
        ("#", "a", true),
        ("#", "a.b.c", true),
        // `a.#` matches `a` itself (zero words) and anything below it.
        ("a.#", "a", true),
        ("a.#", "a.b.c", true),
        ("a.#", "b.a", false),
        ("#.b", "b", true),
        ("#.b", "a.x.b", true),
        ("#.b", "b.a", false),
        ("a.#.b", "a.b", true),
        ("a.#.b", "a.x.y.b", true),
        ("a.#.b", "a.b.c", false),
        // `*` is exactly one word, never zero.
        ("*", "a", true),
        ("*", "a.b", false),
        ("a.*", "a", false),
        ("a.*.c", "a.b.c", true),
        ("a.*.c", "a.c", false),
        ("a.*.c", "a.b.b.c", false),
        ("#.#", "a", true),
        ("#.#", "a.b.c", true),
        ("a.*.#", "a", false),
        ("a.*.#", "a.b", true),
        ("a.*.#", "a.b.c.d", true),
        ("#.*", "a", true),
        ("#.*.*", "a", false),
        ("#.a.#.a.#", "a.a", true),
        ("#.a.#.a.#", "b.a.b", false),
        // The latest `#` must be able to swallow words that an earlier literal matched.
        ("#.a.b", "a.a.b", true),
        ("a.#.a.b", "a.a.a.b", true),
    ];

    #[test]
    fn table() {
        for &(pattern, topic, expected) in CASES {
            assert_eq!(matches(pattern, topic), expected, "{pattern:?} vs {topic:?}");
            assert_eq!(naive_matches(pattern, topic), expected, "naive {pattern:?} vs {topic:?}");
        }
    }

    /// Many `#`s against a long near-miss: a backtracking matcher would take exponential time
    /// here; this one does at most pattern words × topic words steps.
    #[test]
    fn many_hashes_stay_fast() {
        let pattern = "#.a.#.a.#.a.#.a.#.a.#.a.#.a.#.a.#.a.#.a.#.b";
        let topic = ["a"; 120].join(".");
        assert!(!matches(pattern, &topic));
        assert!(matches(pattern, &format!("{topic}.b")));
    }

    /// Deliberately simple and exponential: the definition, word by word.
    fn naive_matches(pattern: &str, topic: &str) -> bool {
        let pattern: Vec<&str> = pattern.split('.').collect();
        let topic: Vec<&str> = topic.split('.').collect();
        naive_words(&pattern, &topic)
    }

    fn naive_words(pattern: &[&str], topic: &[&str]) -> bool {
        match pattern.split_first() {
            None => topic.is_empty(),
            Some((&"#", rest)) => (0..=topic.len()).any(|skip| naive_words(rest, &topic[skip..])),
            Some((&word, rest)) => match topic.split_first() {
                Some((&first, topic_rest)) => {
                    (word == "*" || word == first) && naive_words(rest, topic_rest)
                }
                None => false,
            },
        }
    }

    fn words_of(alphabet: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(alphabet), 1..=max)
            .prop_map(|words| words.join("."))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        /// On a two-letter alphabet matches are common, so both answers get exercised.
        #[test]
        fn agrees_with_the_naive_matcher(
            pattern in words_of(&["a", "b", "*", "#"], 7),
            topic in words_of(&["a", "b"], 8),
        ) {
            prop_assert_eq!(check_pattern(&pattern), Ok(()));
            prop_assert_eq!(check_topic(&topic), Ok(()));
            prop_assert_eq!(matches(&pattern, &topic), naive_matches(&pattern, &topic));
        }

        /// A topic used as a pattern matches exactly itself.
        #[test]
        fn a_topic_matches_only_itself(
            topic in words_of(&["a", "b", "ab"], 5),
            other in words_of(&["a", "b", "ab"], 5),
        ) {
            prop_assert!(matches(&topic, &topic));
            prop_assert_eq!(matches(&topic, &other), topic == other);
        }
    }
}
