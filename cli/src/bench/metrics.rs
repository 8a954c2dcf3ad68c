//! The broker's own figures, read from its admin endpoint's Prometheus page before and after a
//! run: CPU seconds, fsyncs, peak resident memory, messages published and acked.
//!
//! The page is fetched with ureq (plain HTTP only). It is parsed here, not by a crate: the six
//! unlabelled series read are one line each, and the parser crate on offer
//! (prometheus-parse) splits labels on `,` and `}` without regard to quoting and brings
//! regex and chrono along.

use std::collections::HashMap;

use crate::admin_http::AdminEndpoint;

pub const SYNCS: &str = "chute_storage_syncs_total";
pub const CPU_SECONDS: &str = "chute_process_cpu_seconds_total";
pub const RSS_BYTES: &str = "chute_process_resident_memory_bytes";
pub const RSS_PEAK_BYTES: &str = "chute_process_resident_memory_peak_bytes";
pub const PUBLISHED: &str = "chute_messages_published_total";
pub const ACKED: &str = "chute_messages_acked_total";

pub const METRICS_PATH: &str = "/metrics";

/// Reads the broker's metrics page now.
pub fn sample(endpoint: &AdminEndpoint) -> Result<BrokerSample, String> {
    let page = endpoint.get_text(METRICS_PATH)?;
    Ok(BrokerSample::from_series(&parse_exposition(&page)))
}

/// Every sample on a Prometheus / OpenMetrics text page, keyed by its series as written
/// (`name` or `name{labels}`). Comments, blank lines and lines that do not parse are skipped.
pub fn parse_exposition(page: &str) -> HashMap<String, f64> {
    page.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<(String, f64)> {
    let series_end = match (line.find('{'), line.find(char::is_whitespace)) {
        (Some(brace), Some(space)) if brace < space => brace + labels_len(&line[brace..])?,
        (Some(brace), None) => brace + labels_len(&line[brace..])?,
        (_, Some(space)) => space,
        (_, None) => return None,
    };
    let (series, rest) = line.split_at(series_end);
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((series.to_string(), value))
}

/// Length of `{...}` at the start of `text`, quotes and escapes inside respected.
fn labels_len(text: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(at + 1),
            _ => {}
        }
    }
    None
}

/// The broker's counters at one moment; a series the page lacks is `None`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BrokerSample {
    pub syncs: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub rss_bytes: Option<f64>,
    pub rss_peak_bytes: Option<f64>,
    pub published: Option<f64>,
    pub acked: Option<f64>,
}

impl BrokerSample {
    pub fn from_series(series: &HashMap<String, f64>) -> BrokerSample {
        let get = |name: &str| series.get(name).copied();
        BrokerSample {
            syncs: get(SYNCS),
            cpu_seconds: get(CPU_SECONDS),
            rss_bytes: get(RSS_BYTES),
            rss_peak_bytes: get(RSS_PEAK_BYTES),
            published: get(PUBLISHED),
            acked: get(ACKED),
        }
    }
}

/// What the broker spent on a run of `messages`, from samples taken before and after it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BrokerFigures {
    pub cpu_us_per_msg: Option<f64>,
    pub fsyncs: Option<u64>,
    pub msgs_per_fsync: Option<f64>,
    /// The process's peak since it started (like the harness's `VmHWM`), read after the run.
    pub peak_rss_bytes: Option<u64>,
    /// Messages the broker accepted during the run: more than `messages` means other traffic
    /// shared the broker and its CPU and fsync figures.
    pub published: Option<u64>,
}

impl BrokerFigures {
    pub fn between(before: &BrokerSample, after: &BrokerSample, messages: u64) -> BrokerFigures {
        let delta = |a: Option<f64>, b: Option<f64>| Some(b? - a?).filter(|d| *d >= 0.0);
        let fsyncs = delta(before.syncs, after.syncs).map(|d| d.round() as u64);
        BrokerFigures {
            cpu_us_per_msg: delta(before.cpu_seconds, after.cpu_seconds)
                .map(|seconds| seconds * 1e6 / messages as f64),
            fsyncs,
            msgs_per_fsync: fsyncs.filter(|n| *n > 0).map(|n| messages as f64 / n as f64),
            peak_rss_bytes: after.rss_peak_bytes.map(|b| b.round() as u64),
            published: delta(before.published, after.published).map(|d| d.round() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_http::test_server::serve_once;

    const PAGE: &str = "\
# HELP chute_storage_syncs Completed fsyncs of the log.
# TYPE chute_storage_syncs counter
chute_storage_syncs_total 17
chute_storage_syncs_created 1.7e9
chute_process_cpu_seconds_total 1.25
chute_process_resident_memory_bytes 4096
chute_process_resident_memory_peak_bytes 1.6777216e7 1700000000000
chute_queue_messages{queue=\"a b}\\\"c\",state=\"ready\"} 3
chute_messages_published_total 100
chute_messages_acked_total 99
# EOF
";

    #[test]
    fn parses_samples_with_labels_timestamps_and_comments() {
        let series = parse_exposition(PAGE);
        assert_eq!(series.get("chute_storage_syncs_total"), Some(&17.0));
        assert_eq!(series.get("chute_process_resident_memory_peak_bytes"), Some(&16_777_216.0));
        assert_eq!(
            series.get("chute_queue_messages{queue=\"a b}\\\"c\",state=\"ready\"}"),
            Some(&3.0),
            "a brace or space inside a quoted label value does not end the series"
        );
        assert!(!series.keys().any(|k| k.starts_with('#')));
        assert_eq!(parse_sample("no_value"), None);
        assert_eq!(parse_sample("x{unterminated=\"} 1"), None);
    }

    #[test]
    fn sample_picks_the_documented_series() {
        let sample = BrokerSample::from_series(&parse_exposition(PAGE));
        assert_eq!(sample.syncs, Some(17.0));
        assert_eq!(sample.cpu_seconds, Some(1.25));
        assert_eq!(sample.rss_bytes, Some(4096.0));
        assert_eq!(sample.published, Some(100.0));
        assert_eq!(sample.acked, Some(99.0));
        assert_eq!(BrokerSample::from_series(&HashMap::new()), BrokerSample::default());
    }

    /// CPU per message and fsyncs are differences over the run; peak RSS is the reading after.
    #[test]
    fn figures_are_differences_over_the_run() {
        let before = BrokerSample {
            syncs: Some(10.0),
            cpu_seconds: Some(1.0),
            published: Some(5.0),
            ..BrokerSample::default()
        };
        let after = BrokerSample {
            syncs: Some(110.0),
            cpu_seconds: Some(1.5),
            rss_peak_bytes: Some(8192.0),
            published: Some(2005.0),
            ..BrokerSample::default()
        };
        let figures = BrokerFigures::between(&before, &after, 2000);
        assert_eq!(figures.cpu_us_per_msg, Some(250.0));
        assert_eq!(figures.fsyncs, Some(100));
        assert_eq!(figures.msgs_per_fsync, Some(20.0));
        assert_eq!(figures.peak_rss_bytes, Some(8192));
        assert_eq!(figures.published, Some(2000));
        let none = BrokerFigures::between(&BrokerSample::default(), &after, 2000);
        assert_eq!((none.cpu_us_per_msg, none.fsyncs, none.msgs_per_fsync), (None, None, None));
        let no_syncs = BrokerFigures::between(&before, &before, 2000);
        assert_eq!((no_syncs.fsyncs, no_syncs.msgs_per_fsync), (Some(0), None));
    }

    /// A whole scrape against a server that answers one canned page.
    #[test]
    fn samples_a_live_endpoint() {
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text\r\n\
             Content-Length: {}\r\n\r\n{PAGE}",
            PAGE.len()
        );
        let (endpoint, server) = serve_once(response);
        assert_eq!(sample(&endpoint).unwrap().syncs, Some(17.0));
        assert!(server.join().unwrap().starts_with("GET /metrics HTTP/1.1\r\n"));
    }

    /// A chunked page, as a streaming server sends it, reads the same.
    #[test]
    fn samples_a_chunked_page() {
        let (first, second) = PAGE.split_at(40);
        let response = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n\
             {:x}\r\n{second}\r\n0\r\n\r\n",
            first.len(),
            second.len()
        );
        let (endpoint, server) = serve_once(response);
        assert_eq!(sample(&endpoint).unwrap().acked, Some(99.0));
        server.join().unwrap();
    }

    /// Any status but 200 is an error naming the status and the URL.
    #[test]
    fn a_status_other_than_200_is_an_error() {
        let response = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string();
        let (endpoint, server) = serve_once(response);
        let error = sample(&endpoint).unwrap_err();
        assert!(error.contains("404") && error.contains("/metrics"), "{error}");
        server.join().unwrap();
    }
}
