//! How busy this machine was, as the peer harness records it: the 1-minute load average when a
//! run starts, and the share of CPU time the hypervisor stole during it. On a shared VM these
//! say whether a slow figure is the broker's doing. Linux only; `None` elsewhere.

/// The 1-minute load average (`/proc/loadavg`).
pub fn load1() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// `(steal, total)` jiffies of all CPUs, from the first line of `/proc/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    steal: u64,
    total: u64,
}

impl CpuTimes {
    pub fn now() -> Option<CpuTimes> {
        parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Percentage of CPU time stolen between `self` and `later`.
    pub fn steal_pct_until(self, later: CpuTimes) -> Option<f64> {
        let total = later.total.checked_sub(self.total).filter(|t| *t > 0)?;
        let steal = later.steal.checked_sub(self.steal)?;
        Some(100.0 * steal as f64 / total as f64)
    }
}

/// `cpu user nice system idle iowait irq softirq steal ...`: steal is the 8th figure, and the
/// first eight make up the total (guest time is already inside user).
fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let figures: Vec<u64> =
        text.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    Some(CpuTimes { steal: *figures.get(7)?, total: figures.iter().take(8).sum() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_share_from_proc_stat() {
        let before = parse_proc_stat("cpu  100 0 100 700 0 0 0 100 0 0\ncpu0 1 2 3").unwrap();
        let after = parse_proc_stat("cpu  200 0 200 1300 0 0 0 300 0 0\n").unwrap();
        assert_eq!(before.steal_pct_until(after), Some(20.0));
        assert_eq!(before.steal_pct_until(before), None, "no time passed");
        assert_eq!(parse_proc_stat("cpu 1 2"), None);
    }
}
