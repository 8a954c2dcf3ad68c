//! What a run measured, as the figures `chute bench` reports: latency percentiles from
//! HdrHistograms (µs, 3 significant digits, as in the peer harness), throughput (msgs/s and
//! MB/s), the fairness between queues, the disk's write rate, the broker's own figures, and
//! the median over repetitions.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::bench::metrics::BrokerFigures;
use crate::bench::workload::Named;

/// Highest latency a histogram holds: 10 minutes in µs (the harness's bound); longer ones
/// are recorded as this.
const LATENCY_US_MAX: u64 = 600_000_000;

/// A latency histogram in µs.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("constant histogram bounds")
}

/// What the producers and consumers of one run saw.
#[derive(Debug)]
pub struct Measured {
    /// First publish to last ack.
    pub seconds: f64,
    /// From making a message to its confirm arriving at the producer.
    pub publish_confirm_us: Histogram<u64>,
    /// From making a message to a consumer receiving it.
    pub e2e_us: Histogram<u64>,
    pub duplicates: u64,
    /// Paced runs: the furthest any publish fell behind its schedule.
    pub max_send_lag_us: Option<u64>,
    /// Runs of several queues: see [`fairness_min_over_mean`].
    pub fairness_min_over_mean: Option<f64>,
}

/// The peer harness's fairness: the slowest queue's rate over the mean of the queues' rates,
/// each queue's rate being its messages / (the run's first publish → the last ack on that
/// queue). 1.0 when every queue finished together; `None` for fewer than two queues or a rate
/// that is not a positive number.
pub fn fairness_min_over_mean(queue_rates: &[f64]) -> Option<f64> {
    if queue_rates.len() < 2 || !queue_rates.iter().all(|r| r.is_finite() && *r > 0.0) {
        return None;
    }
    let mean = queue_rates.iter().sum::<f64>() / queue_rates.len() as f64;
    let slowest = queue_rates.iter().copied().fold(f64::INFINITY, f64::min);
    Some(slowest / mean)
}

/// One run's figures, or the median of several.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    pub workload: String,
    /// The queue's name, or with several queues the name their suffixes follow.
    pub queue: String,
    pub queues: u32,
    pub messages: u64,
    pub size_bytes: u32,
    pub producers: u32,
    pub consumers: u32,
    pub durable: bool,
    pub rate_per_s: Option<f64>,
    pub seconds: f64,
    pub msgs_per_s: f64,
    /// msgs/s × payload bytes / 10⁶, as the harness's `mb_per_s`.
    pub mb_per_s: f64,
    pub fairness_min_over_mean: Option<f64>,
    /// The disk's sequential write rate measured just before the run (`disk`), in MB/s.
    pub disk_write_mb_per_s: Option<f64>,
    /// `mb_per_s` / `disk_write_mb_per_s`.
    pub disk_fraction: Option<f64>,
    pub publish_confirm_p50_us: u64,
    pub publish_confirm_p99_us: u64,
    pub e2e_p50_us: u64,
    pub e2e_p99_us: u64,
    pub e2e_p999_us: u64,
    pub e2e_max_us: u64,
    pub duplicates: u64,
    pub max_send_lag_us: Option<u64>,
    pub broker: BrokerFigures,
    /// Load average when the run started, and CPU steal during it (noise indicators).
    pub load1: Option<f64>,
    pub cpu_steal_pct: Option<f64>,
}

impl Figures {
    pub fn new(named: &Named, queue: &str, measured: &Measured, broker: BrokerFigures) -> Figures {
        let w = &named.workload;
        let confirm = &measured.publish_confirm_us;
        let e2e = &measured.e2e_us;
        let msgs_per_s = w.messages as f64 / measured.seconds;
        Figures {
            workload: named.name.clone(),
            queue: queue.to_string(),
            queues: w.queues,
            messages: w.messages,
            size_bytes: w.size_bytes,
            producers: w.producers,
            consumers: w.consumers,
            durable: w.durable,
            rate_per_s: w.rate_per_s,
            seconds: measured.seconds,
            msgs_per_s,
            mb_per_s: msgs_per_s * f64::from(w.size_bytes) / 1e6,
            fairness_min_over_mean: measured.fairness_min_over_mean,
            disk_write_mb_per_s: None,
            disk_fraction: None,
            publish_confirm_p50_us: confirm.value_at_quantile(0.5),
            publish_confirm_p99_us: confirm.value_at_quantile(0.99),
            e2e_p50_us: e2e.value_at_quantile(0.5),
            e2e_p99_us: e2e.value_at_quantile(0.99),
            e2e_p999_us: e2e.value_at_quantile(0.999),
            e2e_max_us: e2e.max(),
            duplicates: measured.duplicates,
            max_send_lag_us: measured.max_send_lag_us,
            broker,
            load1: None,
            cpu_steal_pct: None,
        }
    }

    /// Records the disk's sequential write rate and this run's share of it.
    pub fn set_disk_write_mb_per_s(&mut self, disk_mb_per_s: f64) {
        self.disk_write_mb_per_s = Some(disk_mb_per_s);
        self.disk_fraction = Some(self.mb_per_s / disk_mb_per_s);
    }

    /// The JSON object `--json` prints. `rep` is the repetition (1-based), or `None` for the
    /// median of `reps` runs.
    pub fn to_json(&self, rep: Option<u32>, reps: u32) -> Value {
        json!({
            "workload": self.workload,
            "rep": rep.map_or_else(|| Value::from("median"), Value::from),
            "reps": reps,
            "messages": self.messages,
            "size": self.size_bytes,
            "producers": self.producers,
            "consumers": self.consumers,
            "durable": self.durable,
            "rate": self.rate_per_s,
            "queue": self.queue,
            "queues": self.queues,
            "seconds": round(self.seconds, 3),
            "msgs_per_s": round(self.msgs_per_s, 1),
            "mb_per_s": round(self.mb_per_s, 2),
            "fairness_min_over_mean": self.fairness_min_over_mean.map(|v| round(v, 3)),
            "disk_write_mb_per_s": self.disk_write_mb_per_s.map(|v| round(v, 1)),
            "disk_fraction": self.disk_fraction.map(|v| round(v, 3)),
            "publish_confirm_p50_us": self.publish_confirm_p50_us,
            "publish_confirm_p99_us": self.publish_confirm_p99_us,
            "e2e_p50_us": self.e2e_p50_us,
            "e2e_p99_us": self.e2e_p99_us,
            "e2e_p999_us": self.e2e_p999_us,
            "e2e_max_us": self.e2e_max_us,
            "duplicates": self.duplicates,
            "max_send_lag_us": self.max_send_lag_us,
            "broker_cpu_us_per_msg": self.broker.cpu_us_per_msg.map(|v| round(v, 2)),
            "broker_fsyncs": self.broker.fsyncs,
            "msgs_per_fsync": self.broker.msgs_per_fsync.map(|v| round(v, 1)),
            "broker_peak_rss_bytes": self.broker.peak_rss_bytes,
            "load1": self.load1,
            "cpu_steal_pct": self.cpu_steal_pct.map(|v| round(v, 1)),
        })
    }
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// The median of each figure over `runs`, except `duplicates` (the total over all runs: one
/// duplicate anywhere matters) and the broker's peak RSS (the highest: it is a peak).
pub fn median(runs: &[Figures]) -> Figures {
    let first = runs.first().expect("the median of no runs");
    let f = |get: fn(&Figures) -> f64| median_of(runs.iter().map(get)).expect("every run has it");
    let u = |get: fn(&Figures) -> u64| {
        median_of(runs.iter().map(|r| get(r) as f64)).expect("every run has it").round() as u64
    };
    let opt = |get: fn(&Figures) -> Option<f64>| median_of(runs.iter().filter_map(get));
    let opt_u = |get: fn(&Figures) -> Option<u64>| {
        median_of(runs.iter().filter_map(get).map(|v| v as f64)).map(|m| m.round() as u64)
    };
    Figures {
        seconds: f(|r| r.seconds),
        msgs_per_s: f(|r| r.msgs_per_s),
        mb_per_s: f(|r| r.mb_per_s),
        fairness_min_over_mean: opt(|r| r.fairness_min_over_mean),
        disk_write_mb_per_s: opt(|r| r.disk_write_mb_per_s),
        // The median of each run's own fraction, not a ratio of two medians from different runs.
        disk_fraction: opt(|r| r.disk_fraction),
        publish_confirm_p50_us: u(|r| r.publish_confirm_p50_us),
        publish_confirm_p99_us: u(|r| r.publish_confirm_p99_us),
        e2e_p50_us: u(|r| r.e2e_p50_us),
        e2e_p99_us: u(|r| r.e2e_p99_us),
        e2e_p999_us: u(|r| r.e2e_p999_us),
        e2e_max_us: u(|r| r.e2e_max_us),
        duplicates: runs.iter().map(|r| r.duplicates).sum(),
        max_send_lag_us: opt_u(|r| r.max_send_lag_us),
        broker: BrokerFigures {
            cpu_us_per_msg: opt(|r| r.broker.cpu_us_per_msg),
            fsyncs: opt_u(|r| r.broker.fsyncs),
            msgs_per_fsync: opt(|r| r.broker.msgs_per_fsync),
            peak_rss_bytes: runs.iter().filter_map(|r| r.broker.peak_rss_bytes).max(),
            published: opt_u(|r| r.broker.published),
        },
        load1: opt(|r| r.load1),
        cpu_steal_pct: opt(|r| r.cpu_steal_pct),
        ..first.clone()
    }
}

/// The middle value, or the mean of the two middle ones; `None` for no values.
fn median_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workload::{resolve, Overrides, Preset};

    fn measured(latencies_us: &[u64]) -> Measured {
        let mut confirm = latency_histogram();
        let mut e2e = latency_histogram();
        for &us in latencies_us {
            confirm.record(us * 2).unwrap();
            e2e.record(us).unwrap();
        }
        Measured {
            seconds: 2.0,
            publish_confirm_us: confirm,
            e2e_us: e2e,
            duplicates: 0,
            max_send_lag_us: None,
            fairness_min_over_mean: None,
        }
    }

    fn w1_of(messages: u64) -> Named {
        resolve(Some(Preset::W1), &Overrides { messages: Some(messages), ..Overrides::default() })
            .unwrap()
    }

    /// 1..=1000 µs: p50 is 500, p99 990, p99.9 999, within the histogram's 3 digits.
    #[test]
    fn percentiles_land_in_the_json() {
        let latencies: Vec<u64> = (1..=1000).collect();
        let broker = BrokerFigures {
            cpu_us_per_msg: Some(4.56789),
            fsyncs: Some(50),
            msgs_per_fsync: Some(20.0),
            peak_rss_bytes: Some(1 << 20),
            published: Some(1000),
        };
        let figures = Figures::new(&w1_of(1000), "q", &measured(&latencies), broker);
        let json = figures.to_json(Some(1), 1);
        assert_eq!(json["workload"], "custom");
        assert_eq!(json["messages"], 1000);
        assert_eq!(json["seconds"], 2.0);
        assert_eq!(json["msgs_per_s"], 500.0);
        assert_eq!(json["e2e_p50_us"], 500);
        assert_eq!(json["e2e_p99_us"], 990);
        assert_eq!(json["e2e_p999_us"], 999);
        assert_eq!(json["e2e_max_us"], 1000);
        assert_eq!(json["publish_confirm_p50_us"], 1000);
        assert_eq!(json["publish_confirm_p99_us"], 1980);
        assert_eq!(json["duplicates"], 0);
        assert_eq!(json["broker_cpu_us_per_msg"], 4.57);
        assert_eq!(json["broker_fsyncs"], 50);
        assert_eq!(json["msgs_per_fsync"], 20.0);
        assert_eq!(json["broker_peak_rss_bytes"], 1 << 20);
        assert_eq!(json["size"], 256);
        assert_eq!((json["producers"].clone(), json["consumers"].clone()), (1.into(), 1.into()));
        assert_eq!(json["durable"], true);
        assert_eq!(json["rep"], 1);
        assert!(json["max_send_lag_us"].is_null() && json["rate"].is_null());
        // 500 msg/s of 256 B.
        assert_eq!((json["queues"].clone(), json["mb_per_s"].clone()), (1.into(), 0.13.into()));
        assert!(json["fairness_min_over_mean"].is_null(), "one queue has no fairness figure");
        assert!(json["disk_write_mb_per_s"].is_null() && json["disk_fraction"].is_null());
    }

    /// The slowest queue over the mean: 1 when all are equal, below 1 otherwise; nothing for one
    /// queue or a rate that is not a positive number.
    #[test]
    fn fairness_is_the_slowest_rate_over_the_mean() {
        assert_eq!(fairness_min_over_mean(&[100.0, 100.0, 100.0]), Some(1.0));
        assert_eq!(fairness_min_over_mean(&[50.0, 100.0, 150.0]), Some(0.5));
        assert_eq!(fairness_min_over_mean(&[100.0]), None);
        assert_eq!(fairness_min_over_mean(&[100.0, f64::INFINITY]), None);
        assert_eq!(fairness_min_over_mean(&[100.0, 0.0]), None);
    }

    /// W6's figures: MB/s from the payload size, and the fraction of the disk's rate.
    #[test]
    fn megabytes_per_second_and_the_disk_fraction() {
        let w6 =
            resolve(Some(Preset::W6), &Overrides { messages: Some(1000), ..Overrides::default() })
                .unwrap();
        let mut figures = Figures::new(&w6, "q", &measured(&[5]), BrokerFigures::default());
        assert_eq!(figures.msgs_per_s, 500.0);
        assert_eq!(figures.mb_per_s, 500.0 * 65_536.0 / 1e6);
        figures.set_disk_write_mb_per_s(131.072);
        let json = figures.to_json(Some(1), 1);
        assert_eq!(json["mb_per_s"], 32.77);
        assert_eq!(json["disk_write_mb_per_s"], 131.1);
        assert_eq!(json["disk_fraction"], 0.25);
    }

    /// Without the broker's metrics its fields are null, not zero.
    #[test]
    fn missing_broker_figures_are_null() {
        let figures = Figures::new(&w1_of(10), "q", &measured(&[5]), BrokerFigures::default());
        let json = figures.to_json(None, 3);
        for key in
            ["broker_cpu_us_per_msg", "broker_fsyncs", "msgs_per_fsync", "broker_peak_rss_bytes"]
        {
            assert!(json[key].is_null(), "{key}: {}", json[key]);
        }
        assert_eq!((json["rep"].clone(), json["reps"].clone()), ("median".into(), 3.into()));
    }

    #[test]
    fn median_takes_the_middle_but_sums_duplicates_and_keeps_the_highest_peak() {
        let run = |msgs_per_s: f64, p99: u64, duplicates: u64, rss: Option<u64>| {
            let mut figures =
                Figures::new(&w1_of(10), "q", &measured(&[1]), BrokerFigures::default());
            figures.msgs_per_s = msgs_per_s;
            figures.e2e_p99_us = p99;
            figures.duplicates = duplicates;
            figures.broker.peak_rss_bytes = rss;
            figures
        };
        let runs = [run(100.0, 7, 1, Some(5)), run(300.0, 1, 0, None), run(200.0, 4, 2, Some(9))];
        let m = median(&runs);
        assert_eq!((m.msgs_per_s, m.e2e_p99_us, m.duplicates), (200.0, 4, 3));
        assert_eq!(m.broker.peak_rss_bytes, Some(9));
        assert_eq!(m.broker.fsyncs, None);
        let even = median(&runs[..2]);
        assert_eq!((even.msgs_per_s, even.e2e_p99_us), (200.0, 4));
    }

    /// MB/s, fairness and the disk figures are medians too; the disk fraction is the median
    /// of each run's own fraction (here 0.3), not the ratio of the two medians (60 / 100).
    #[test]
    fn median_of_the_throughput_fairness_and_disk_figures() {
        let run = |mb_per_s: f64, fairness: f64, disk_mb_per_s: f64| {
            let mut figures =
                Figures::new(&w1_of(10), "q", &measured(&[1]), BrokerFigures::default());
            figures.mb_per_s = mb_per_s;
            figures.fairness_min_over_mean = Some(fairness);
            figures.set_disk_write_mb_per_s(disk_mb_per_s);
            figures
        };
        let runs = [run(30.0, 0.9, 100.0), run(60.0, 0.5, 200.0), run(45.0, 0.7, 50.0)];
        let m = median(&runs);
        assert_eq!((m.mb_per_s, m.fairness_min_over_mean), (45.0, Some(0.7)));
        assert_eq!((m.disk_write_mb_per_s, m.disk_fraction), (Some(100.0), Some(0.3)));
    }
}
