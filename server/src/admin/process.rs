//! CPU time and memory of this process, read from `/proc/self` (Linux). Elsewhere, or when a
//! file cannot be read or parsed, the numbers are `None` and their metrics are left out.

/// Clock ticks per second in `/proc/self/stat`. The kernel reports CPU time in `USER_HZ`, which
/// is 100 on every Linux architecture chute runs on; assumed rather than asked of
/// `sysconf(_SC_CLK_TCK)`, which would need `libc` and `unsafe` for a constant.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time.
    pub cpu_seconds: Option<f64>,
    /// Resident set size now (`VmRSS`).
    pub resident_bytes: Option<u64>,
    /// Largest resident set size so far (`VmHWM`).
    pub resident_peak_bytes: Option<u64>,
}

impl ProcessStats {
    /// Reads `/proc/self`. Two small reads of a pseudo-filesystem, which never block on a disk.
    pub fn read() -> ProcessStats {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let status = std::fs::read_to_string("/proc/self/status").ok();
        ProcessStats {
            cpu_seconds: stat.as_deref().and_then(cpu_seconds),
            resident_bytes: status.as_deref().and_then(|s| status_kib(s, "VmRSS:")),
            resident_peak_bytes: status.as_deref().and_then(|s| status_kib(s, "VmHWM:")),
        }
    }
}

/// `utime + stime` from `/proc/self/stat`, in seconds. The second field (the command name) is
/// in parentheses and may itself hold spaces and parentheses, so fields are counted from the
/// last `)`: after it come field 3 (`state`) onwards, and utime and stime are fields 14 and 15.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_SECOND)
}

/// This machine's host name, as the kernel has it (`/proc/sys/kernel/hostname`), else as
/// `$HOSTNAME` says, else `unknown`. Read once, when the server starts.
pub fn node_name() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let name = kernel.or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_default();
    match name.trim() {
        "" => "unknown".to_string(),
        name => name.to_string(),
    }
}

/// A `Key:   1234 kB` line of `/proc/self/status`, in bytes.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(key))?;
    let mut words = line[key.len()..].split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command name with spaces and a `)` must not shift the fields.
    #[test]
    fn cpu_time_counts_fields_after_the_name() {
        let stat = "4242 (we ird) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 \
                    9 0 123456 1000000 500 18446744073709551615";
        assert_eq!(cpu_seconds(stat), Some(3.25));
    }

    #[test]
    fn cpu_time_of_garbage_is_none() {
        assert_eq!(cpu_seconds("no parenthesis here"), None);
        assert_eq!(cpu_seconds("1 (x) S 1 2"), None);
    }

    #[test]
    fn memory_lines_are_read_in_bytes() {
        let status = "Name:\tchuted\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t4\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10 * 1024 * 1024));
        assert_eq!(status_kib(status, "VmHWM:"), Some(20 * 1024 * 1024));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn the_node_has_a_name() {
        let name = node_name();
        assert!(!name.is_empty() && name.trim() == name, "{name:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory() {
        let stats = ProcessStats::read();
        assert!(stats.resident_bytes.unwrap() > 0);
        assert!(stats.resident_peak_bytes.unwrap() >= stats.resident_bytes.unwrap());
        assert!(stats.cpu_seconds.is_some());
    }
}
