//! The human summary of a run (or of the median of several).

use crate::bench::measure::Figures;

/// A few lines describing `figures`, headed by `title`.
pub fn summary(title: &str, figures: &Figures) -> String {
    let f = figures;
    let pacing = match f.rate_per_s {
        Some(rate) => format!("paced at {} msg/s", thousands(rate.round() as u64)),
        None => "as fast as confirms allow".into(),
    };
    let queues = match f.queues {
        1 => String::new(),
        n => format!(" on {n} queues"),
    };
    let mut out = format!(
        "{title}: {} messages of {} B, {} × {}{queues}, {}, {pacing}\n",
        thousands(f.messages),
        f.size_bytes,
        plural(f.producers, "producer"),
        plural(f.consumers, "consumer"),
        if f.durable { "durable" } else { "in memory" },
    );
    out += &format!(
        "  throughput       {} msg/s, {:.1} MB/s ({:.3} s, first publish to last ack)\n",
        thousands(f.msgs_per_s.round() as u64),
        f.mb_per_s,
        f.seconds
    );
    if let Some(fairness) = f.fairness_min_over_mean {
        out += &format!(
            "  fairness         {fairness:.3} (slowest queue's rate / mean of the {} queues' rates)\n",
            f.queues
        );
    }
    if let (Some(disk), Some(fraction)) = (f.disk_write_mb_per_s, f.disk_fraction) {
        out += &format!(
            "  disk             sequential write {disk:.1} MB/s; this run {:.1} % of it\n",
            fraction * 100.0
        );
    }
    out += &format!(
        "  publish→confirm  p50 {}  p99 {}\n",
        micros(f.publish_confirm_p50_us),
        micros(f.publish_confirm_p99_us)
    );
    out += &format!(
        "  end-to-end       p50 {}  p99 {}  p99.9 {}  max {}\n",
        micros(f.e2e_p50_us),
        micros(f.e2e_p99_us),
        micros(f.e2e_p999_us),
        micros(f.e2e_max_us)
    );
    if let Some(lag_us) = f.max_send_lag_us {
        out += &format!("  max send lag     {} behind schedule\n", micros(lag_us));
    }
    out += &format!("  duplicates       {}\n", thousands(f.duplicates));
    out += &format!("  broker           {}\n", broker(f));
    if f.load1.is_some() || f.cpu_steal_pct.is_some() {
        let load = f.load1.map_or("?".into(), |l| format!("{l:.2}"));
        let steal = f.cpu_steal_pct.map_or("?".into(), |s| format!("{s:.1} %"));
        out += &format!("  host             load1 {load} at start, CPU steal {steal}\n");
    }
    out
}

fn broker(f: &Figures) -> String {
    let b = &f.broker;
    if b.cpu_us_per_msg.is_none() && b.fsyncs.is_none() && b.peak_rss_bytes.is_none() {
        return "figures unavailable (admin endpoint off or unreachable)".into();
    }
    let cpu = b.cpu_us_per_msg.map_or("?".into(), |us| format!("{us:.1} µs"));
    let fsyncs = match (b.fsyncs, b.msgs_per_fsync) {
        (Some(n), Some(per)) => format!("{} ({per:.1} msgs/fsync)", fsyncs(n)),
        (Some(n), None) => fsyncs(n),
        (None, _) => "? fsyncs".into(),
    };
    let rss =
        b.peak_rss_bytes.map_or("?".into(), |bytes| format!("{:.1} MiB", bytes as f64 / 1048576.0));
    format!("CPU {cpu}/msg, {fsyncs}, peak RSS {rss}")
}

fn fsyncs(n: u64) -> String {
    if n == 1 {
        "1 fsync".into()
    } else {
        format!("{} fsyncs", thousands(n))
    }
}

fn plural(n: u32, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (at, digit) in digits.chars().enumerate() {
        if at > 0 && (digits.len() - at).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A latency in µs, as µs below a millisecond and ms above.
fn micros(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::measure::{latency_histogram, Measured};
    use crate::bench::metrics::BrokerFigures;
    use crate::bench::workload::{resolve, Overrides, Preset};

    #[test]
    fn numbers_read_easily() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(micros(999), "999 µs");
        assert_eq!(micros(1500), "1.50 ms");
    }

    #[test]
    fn summary_names_the_workload_and_its_figures() {
        let named = resolve(Some(Preset::W3), &Overrides::default()).unwrap();
        let mut e2e_us = latency_histogram();
        e2e_us.record(400).unwrap();
        let measured = Measured {
            seconds: 10.0,
            publish_confirm_us: latency_histogram(),
            e2e_us,
            duplicates: 0,
            max_send_lag_us: Some(700),
            fairness_min_over_mean: None,
        };
        let figures = Figures::new(&named, "q", &measured, BrokerFigures::default());
        let text = summary("W3", &figures);
        assert!(text.starts_with("W3: 20,000 messages of 256 B, 1 producer × 1 consumer, durable, paced at 2,000 msg/s\n"), "{text}");
        assert!(text.contains("2,000 msg/s, 0.5 MB/s (10.000 s"), "{text}");
        assert!(text.contains("p50 400 µs"), "{text}");
        assert!(text.contains("max send lag     700 µs"), "{text}");
        assert!(text.contains("figures unavailable"), "{text}");
        assert!(!text.contains("fairness") && !text.contains("disk"), "{text}");
    }

    /// Several queues are named in the heading with the fairness; a disk rate with its share.
    #[test]
    fn summary_shows_queues_fairness_and_disk() {
        let named = resolve(Some(Preset::W5), &Overrides::default()).unwrap();
        let measured = Measured {
            seconds: 2.0,
            publish_confirm_us: latency_histogram(),
            e2e_us: latency_histogram(),
            duplicates: 0,
            max_send_lag_us: None,
            fairness_min_over_mean: Some(0.875),
        };
        let mut figures = Figures::new(&named, "q", &measured, BrokerFigures::default());
        figures.set_disk_write_mb_per_s(512.0);
        let text = summary("W5", &figures);
        assert!(text.contains("64 producers × 64 consumers on 64 queues, durable"), "{text}");
        assert!(text.contains("100,000 msg/s, 25.6 MB/s"), "{text}");
        assert!(
            text.contains("fairness         0.875 (slowest queue's rate / mean of the 64"),
            "{text}"
        );
        assert!(text.contains("sequential write 512.0 MB/s; this run 5.0 % of it"), "{text}");
    }
}
