//! The standard workloads W1–W4 (the same shapes the peer harness in `../shared/peerbench`
//! runs, so figures compare) and custom runs built from them.

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
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::W1 => "W1",
            Preset::W2 => "W2",
            Preset::W3 => "W3",
            Preset::W4 => "W4",
        }
    }

    /// The workload as the issue's table (and the peer harness) defines it.
    pub fn workload(self) -> Workload {
        let w1 = Workload {
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
            _ => Err(format!("unknown workload {value:?} (W1, W2, W3 or W4)")),
        }
    }
}

/// What one run does.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
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
    if workload.messages == 0 {
        return Err("--messages must be at least 1".into());
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

    #[test]
    fn preset_names_parse_in_either_case() {
        assert_eq!("w3".parse::<Preset>(), Ok(Preset::W3));
        assert_eq!("W4".parse::<Preset>(), Ok(Preset::W4));
        assert!("W5".parse::<Preset>().is_err());
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
