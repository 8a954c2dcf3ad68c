//! The standard workloads W1–W6 (the same shapes the peer harness in `../shared/peerbench`
//! runs, so figures compare) and custom runs built from them.

use std::ops::Range;
use std::str::FromStr;

use crate::bench::payload::HEADER_BYTES;

/// Publishes each producer keeps unconfirmed at most, as in the peer harness. The server
/// allows more (its `unconfirmed_max`); the bench holds itself to this bound.
pub const PUBLISH_WINDOW: usize = 1000;
/// Unacked deliveries each consumer may hold, as in the peer harness.
pub const PREFETCH: u32 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    W1,
    W2,
    W3,
    W4,
    W5,
    W6,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::W1 => "W1",
            Preset::W2 => "W2",
            Preset::W3 => "W3",
            Preset::W4 => "W4",
            Preset::W5 => "W5",
            Preset::W6 => "W6",
        }
    }

    /// The workload as the issue's table (and the peer harness) defines it.
    pub fn workload(self) -> Workload {
        let w1 = Workload {
            queues: 1,
            producers: 1,
            consumers: 1,
            messages: 200_000,
            size_bytes: 256,
            rate_per_s: None,
            durable: true,
        };
        match self {
            Preset::W1 => w1,
            Preset::W2 => Workload { durable: false, ..w1 },
            Preset::W3 => Workload { messages: 20_000, rate_per_s: Some(2000.0), ..w1 },
            Preset::W4 => Workload { producers: 4, consumers: 4, ..w1 },
            Preset::W5 => Workload { queues: 64, producers: 64, consumers: 64, ..w1 },
            Preset::W6 => Workload { messages: 20_000, size_bytes: 65_536, ..w1 },
        }
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(value: &str) -> Result<Preset, String> {
        match value.to_ascii_uppercase().as_str() {
            "W1" => Ok(Preset::W1),
            "W2" => Ok(Preset::W2),
            "W3" => Ok(Preset::W3),
            "W4" => Ok(Preset::W4),
            "W5" => Ok(Preset::W5),
            "W6" => Ok(Preset::W6),
            _ => Err(format!("unknown workload {value:?} (W1, W2, W3, W4, W5 or W6)")),
        }
    }
}

/// What one run does.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Queues of the run. The producers and consumers are split evenly over them, and each
    /// publishes to / consumes from its own queue only (the harness's rule).
    pub queues: u32,
    /// In total, over all queues.
    pub producers: u32,
    pub consumers: u32,
    /// In total, over all producers.
    pub messages: u64,
    pub size_bytes: u32,
    /// Total publish rate, shared evenly by the producers; `None` publishes as fast as confirms
    /// allow.
    pub rate_per_s: Option<f64>,
    /// `Durability::Always` (confirm after fsync) or `Durability::None` (in memory).
    pub durable: bool,
}

/// The parts of a workload the command line may change.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub queues: Option<u32>,
    pub producers: Option<u32>,
    pub consumers: Option<u32>,
    pub messages: Option<u64>,
    pub size_bytes: Option<u32>,
    pub rate_per_s: Option<f64>,
    pub durable: Option<bool>,
}

/// A workload and the name it is reported under: the preset's name if nothing was changed,
/// `custom` otherwise (a W1 of 2,000 messages must not pass for a W1 figure).
#[derive(Clone, Debug, PartialEq)]
pub struct Named {
    pub name: String,
    /// The preset the run started from.
    pub base: Preset,
    pub workload: Workload,
}

/// Applies `overrides` to `preset` (W1 if none) and checks the result.
pub fn resolve(preset: Option<Preset>, overrides: &Overrides) -> Result<Named, String> {
    let base = preset.unwrap_or(Preset::W1);
    let standard = base.workload();
    let workload = Workload {
        queues: overrides.queues.unwrap_or(standard.queues),
        producers: overrides.producers.unwrap_or(standard.producers),
        consumers: overrides.consumers.unwrap_or(standard.consumers),
        messages: overrides.messages.unwrap_or(standard.messages),
        size_bytes: overrides.size_bytes.unwrap_or(standard.size_bytes),
        rate_per_s: overrides.rate_per_s.or(standard.rate_per_s),
        durable: overrides.durable.unwrap_or(standard.durable),
    };
    check(&workload)?;
    let name = if workload == standard { base.name().to_string() } else { "custom".to_string() };
    Ok(Named { name, base, workload })
}

fn check(workload: &Workload) -> Result<(), String> {
    if workload.producers == 0 || workload.consumers == 0 {
        return Err("a run needs at least one producer and one consumer".into());
    }
    if workload.queues == 0 {
        return Err("--queues must be at least 1".into());
    }
    let (queues, producers, consumers) = (workload.queues, workload.producers, workload.consumers);
    if !producers.is_multiple_of(queues) || !consumers.is_multiple_of(queues) {
        return Err(format!(
            "{producers} producers and {consumers} consumers do not split evenly over {queues} \
             queues: each queue needs the same number of each (set --producers and --consumers \
             too)"
        ));
    }
    if workload.messages < u64::from(workload.producers) {
        return Err(format!(
            "--messages must be at least the number of producers ({}), so that each publishes",
            workload.producers
        ));
    }
    if (workload.size_bytes as usize) < HEADER_BYTES {
        return Err(format!(
            "--size must be at least {HEADER_BYTES} bytes: every payload carries its send time \
             and sequence number"
        ));
    }
    if let Some(rate) = workload.rate_per_s {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!(
                "--rate must be a positive number of messages per second, not {rate}"
            ));
        }
    }
    Ok(())
}

impl Workload {
    /// The sequence numbers producer `k` publishes, as `(first, count)`: an even share each,
    /// the last producer taking the remainder (as the peer harness splits them).
    pub fn producer_share(&self, k: u32) -> (u64, u64) {
        assert!(k < self.producers, "producer {k} of {}", self.producers);
        let per = self.messages / u64::from(self.producers);
        let first = per * u64::from(k);
        let count = if k + 1 == self.producers { self.messages - first } else { per };
        (first, count)
    }

    /// The queue (0-based) producer `k` publishes to: a queue's producers are adjacent.
    pub fn queue_of_producer(&self, k: u32) -> u32 {
        k / (self.producers / self.queues)
    }

    /// The queue consumer `j` consumes from.
    pub fn queue_of_consumer(&self, j: u32) -> u32 {
        j / (self.consumers / self.queues)
    }

    /// The sequence numbers published to queue `q`: its producers' shares, which are adjacent.
    pub fn queue_share(&self, q: u32) -> Range<u64> {
        assert!(q < self.queues, "queue {q} of {}", self.queues);
        let per_queue = self.producers / self.queues;
        let (first, _) = self.producer_share(q * per_queue);
        let (last_first, last_count) = self.producer_share((q + 1) * per_queue - 1);
        first..last_first + last_count
    }

    /// Each producer's share of the rate.
    pub fn producer_rate_per_s(&self) -> Option<f64> {
        self.rate_per_s.map(|rate| rate / f64::from(self.producers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The presets are the issue's table: W1 durable 1×1 200k, W2 the same in memory, W3
    /// 20k paced at 2,000/s (10 s), W4 4×4 200k in total; 256-byte payloads throughout.
    #[test]
    fn presets_match_the_issue_table() {
        let w = |p: Preset| p.workload();
        assert_eq!(
            w(Preset::W1),
            Workload {
                queues: 1,
                producers: 1,
                consumers: 1,
                messages: 200_000,
                size_bytes: 256,
                rate_per_s: None,
                durable: true
            }
        );
        assert_eq!(w(Preset::W2), Workload { durable: false, ..w(Preset::W1) });
        let w3 = w(Preset::W3);
        assert_eq!((w3.messages, w3.rate_per_s, w3.durable), (20_000, Some(2000.0), true));
        assert_eq!(w3.messages as f64 / w3.rate_per_s.unwrap(), 10.0, "W3 lasts 10 s");
        let w4 = w(Preset::W4);
        assert_eq!((w4.producers, w4.consumers, w4.messages, w4.durable), (4, 4, 200_000, true));
    }

    /// W5 and W6 are the peer harness's: 64 queues with one producer and one consumer each,
    /// 200,000 × 256 B durable in total (3,125 per queue); and 20,000 × 64 KiB durable, 1 × 1.
    #[test]
    fn w5_and_w6_match_the_harness() {
        let w5 = Preset::W5.workload();
        assert_eq!((w5.queues, w5.producers, w5.consumers), (64, 64, 64));
        assert_eq!(
            (w5.messages, w5.size_bytes, w5.durable, w5.rate_per_s),
            (200_000, 256, true, None)
        );
        assert_eq!(w5.queue_share(0), 0..3125);
        assert_eq!(w5.queue_share(63), 196_875..200_000);
        let w6 = Preset::W6.workload();
        assert_eq!((w6.queues, w6.producers, w6.consumers), (1, 1, 1));
        assert_eq!(
            (w6.messages, w6.size_bytes, w6.durable, w6.rate_per_s),
            (20_000, 65_536, true, None)
        );
    }

    /// Each queue gets the sequence numbers of its own producers, and its consumers are the
    /// adjacent block of the same size: with 2 queues, producers 0-1 and consumers 0-2 use the
    /// first, the rest the second.
    #[test]
    fn queues_split_producers_consumers_and_sequence_numbers() {
        let w = Workload {
            queues: 2,
            producers: 4,
            consumers: 6,
            messages: 10,
            ..Preset::W1.workload()
        };
        assert_eq!((0..4).map(|k| w.queue_of_producer(k)).collect::<Vec<_>>(), [0, 0, 1, 1]);
        assert_eq!((0..6).map(|j| w.queue_of_consumer(j)).collect::<Vec<_>>(), [0, 0, 0, 1, 1, 1]);
        assert_eq!((w.queue_share(0), w.queue_share(1)), (0..4, 4..10));
        assert_eq!(Preset::W1.workload().queue_share(0), 0..200_000);
    }

    #[test]
    fn preset_names_parse_in_either_case() {
        assert_eq!("w3".parse::<Preset>(), Ok(Preset::W3));
        assert_eq!("W4".parse::<Preset>(), Ok(Preset::W4));
        assert_eq!("w6".parse::<Preset>(), Ok(Preset::W6));
        assert!("W7".parse::<Preset>().is_err());
    }

    /// A preset keeps its name only while unchanged; any override makes the run `custom`.
    #[test]
    fn overrides_make_a_custom_run() {
        let plain = resolve(Some(Preset::W2), &Overrides::default()).unwrap();
        assert_eq!(plain.name, "W2");
        let fewer = Overrides { messages: Some(2000), ..Overrides::default() };
        let custom = resolve(Some(Preset::W2), &fewer).unwrap();
        assert_eq!((custom.name.as_str(), custom.base), ("custom", Preset::W2));
        assert_eq!(custom.workload, Workload { messages: 2000, ..Preset::W2.workload() });
        let same = Overrides { durable: Some(true), ..Overrides::default() };
        assert_eq!(resolve(None, &same).unwrap().name, "W1", "W1 is durable already");
    }

    #[test]
    fn impossible_workloads_are_refused() {
        let refused = |o: Overrides| resolve(None, &o).is_err();
        assert!(refused(Overrides { producers: Some(0), ..Overrides::default() }));
        assert!(refused(Overrides { consumers: Some(0), ..Overrides::default() }));
        assert!(refused(Overrides { messages: Some(0), ..Overrides::default() }));
        assert!(refused(Overrides { size_bytes: Some(15), ..Overrides::default() }));
        assert!(refused(Overrides { rate_per_s: Some(0.0), ..Overrides::default() }));
        assert!(!refused(Overrides { size_bytes: Some(16), ..Overrides::default() }));
        assert!(refused(Overrides { queues: Some(0), ..Overrides::default() }));
        // W1's one producer and consumer cannot be split over two queues.
        assert!(refused(Overrides { queues: Some(2), ..Overrides::default() }));
        let w5 = |o: Overrides| resolve(Some(Preset::W5), &o);
        assert!(w5(Overrides { queues: Some(5), ..Overrides::default() }).is_err(), "64 over 5");
        assert!(w5(Overrides { queues: Some(8), ..Overrides::default() }).is_ok(), "8 each");
        assert!(w5(Overrides { messages: Some(63), ..Overrides::default() }).is_err());
        assert!(w5(Overrides { messages: Some(64), ..Overrides::default() }).is_ok());
    }

    /// Producers split the sequence numbers without gap or overlap, the last one taking the
    /// remainder.
    #[test]
    fn producer_shares_cover_every_sequence_number_once() {
        let w = Workload { producers: 3, messages: 10, ..Preset::W4.workload() };
        let shares: Vec<_> = (0..3).map(|k| w.producer_share(k)).collect();
        assert_eq!(shares, vec![(0, 3), (3, 3), (6, 4)]);
        let w4 = Preset::W4.workload();
        assert_eq!(w4.producer_rate_per_s(), None);
        let paced = Workload { producers: 4, ..Preset::W3.workload() };
        assert_eq!(paced.producer_rate_per_s(), Some(500.0));
    }
}
