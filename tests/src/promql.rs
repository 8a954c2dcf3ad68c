//! The metric names a PromQL expression reads, for the tests that check a dashboard's or a
//! rules file's queries against what a running server exports. A small tokenizer, not a
//! parser: enough for the queries this repository ships, and it says so (by panicking) where a
//! query uses a form it does not understand rather than guess.

use std::collections::BTreeSet;

/// Words PromQL gives a meaning of its own, which are therefore never metric names here.
const KEYWORDS: [&str; 8] = ["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"];

/// Keywords followed by a parenthesised list of label names (`by (le)`, `on (queue)`).
const LABEL_LIST_KEYWORDS: [&str; 6] =
    ["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names `expr` selects, exactly as written (`chute_storage_sync_seconds_bucket`,
/// not its base name: a query can only read series the server writes, so the caller compares
/// them with the sample names of a scrape, see [`scraped_metric_names`]). Function and
/// aggregation names, keywords, label names (in `{...}` and after `by`, `on`, ...), strings,
/// numbers, durations and Grafana variables (`$queue`, `${DS}`, `$__rate_interval`) are skipped.
///
/// # Panics
/// On a selector by `__name__`, which this tokenizer cannot resolve to a name.
pub fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        at = match c {
            '"' | '\'' | '`' => skip_string(&chars, at),
            '{' => {
                let end = skip_until(&chars, at, '}');
                let matchers: String = chars[at..end].iter().collect();
                assert!(!matchers.contains("__name__"), "a __name__ selector in {expr:?}");
                end
            }
            '[' => skip_until(&chars, at, ']'),
            '$' => skip_variable(&chars, at),
            '#' => chars[at..].iter().position(|&c| c == '\n').map_or(chars.len(), |n| at + n),
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(at + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // Numbers and durations (`0.99`, `1e3`, `5m`, `0x1f`) as one token.
                skip_while(&chars, at, |c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let end =
                    skip_while(&chars, at, |c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
                let word: String = chars[at..end].iter().collect();
                let next = skip_while(&chars, end, char::is_whitespace);
                let lower = word.to_ascii_lowercase();
                if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                    if chars.get(next) == Some(&'(') {
                        skip_until(&chars, next, ')')
                    } else {
                        end
                    }
                } else if KEYWORDS.contains(&lower.as_str())
                    || chars.get(next) == Some(&'(')
                    || starts_grouping(&chars, next)
                {
                    // A function call, or an aggregation with its grouping first (`sum by (le)`).
                    end
                } else {
                    names.insert(word);
                    end
                }
            }
            _ => at + 1,
        };
    }
    names
}

/// The sample names on a Prometheus text page (`chute_storage_sync_seconds_bucket`,
/// `chute_messages_published_total`, ...): the names a query can select.
pub fn scraped_metric_names(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Whether `by` or `without` (then a space or `(`) starts at `at`.
fn starts_grouping(chars: &[char], at: usize) -> bool {
    ["by", "without"].iter().any(|keyword| {
        let end = at + keyword.len();
        let word: String = chars.get(at..end).unwrap_or_default().iter().collect();
        word.eq_ignore_ascii_case(keyword)
            && chars.get(end).is_some_and(|&c| c == '(' || c.is_whitespace())
    })
}

/// The index just past the string literal starting at `at` (escapes honoured, except in
/// backquoted raw strings).
fn skip_string(chars: &[char], at: usize) -> usize {
    let quote = chars[at];
    let mut i = at + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    panic!("an unterminated string in {:?}", chars.iter().collect::<String>())
}

/// The index just past the `close` ending the group opened at `at`, strings inside skipped.
fn skip_until(chars: &[char], at: usize, close: char) -> usize {
    let mut i = at + 1;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i),
            c if c == close => return i + 1,
            _ => i += 1,
        }
    }
    panic!("no {close:?} closes the group in {:?}", chars.iter().collect::<String>())
}

/// The index just past a Grafana variable: `$name` or `${name...}`.
fn skip_variable(chars: &[char], at: usize) -> usize {
    if chars.get(at + 1) == Some(&'{') {
        skip_until(chars, at + 1, '}')
    } else {
        skip_while(chars, at + 1, |c| c.is_ascii_alphanumeric() || c == '_')
    }
}

fn skip_while(chars: &[char], at: usize, keep: impl Fn(char) -> bool) -> usize {
    chars[at..].iter().position(|&c| !keep(c)).map_or(chars.len(), |n| at + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        promql_metric_names(expr).into_iter().collect()
    }

    #[test]
    fn functions_keywords_labels_and_variables_are_not_metrics() {
        let expr = r#"histogram_quantile(0.99, sum by (le, instance) (rate(chute_storage_sync_seconds_bucket{instance=~"$instance", le!="+Inf"}[$__rate_interval])))"#;
        assert_eq!(names(expr), ["chute_storage_sync_seconds_bucket"]);
        let expr = "sum(rate(a_total[5m] offset 1h)) / on (queue) group_left (state) b > bool 0.5e3 unless c";
        assert_eq!(names(expr), ["a_total", "b", "c"]);
        assert_eq!(names("sum without (queue) (x) by (le)"), ["x"]);
        assert_eq!(names("${DS_PROMETHEUS} + up # comment names_nothing"), ["up"]);
        assert_eq!(
            names(r#"label_replace(m, "dst", "$1", "src", "(.*)") and M:recorded"#),
            ["M:recorded", "m"]
        );
        assert_eq!(names("max_over_time(g[1h:5m]) + .5 + 1e-3"), ["g"]);
    }

    #[test]
    #[should_panic(expected = "__name__")]
    fn a_name_selector_is_refused() {
        promql_metric_names(r#"{__name__="chute_up"}"#);
    }

    #[test]
    fn a_scrape_names_its_samples() {
        let page = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\nh_bucket{le=\"1\"} 2\nh_sum 3\n\n";
        let names: Vec<_> = scraped_metric_names(page).into_iter().collect();
        assert_eq!(names, ["a_total", "h_bucket", "h_sum"]);
    }
}
