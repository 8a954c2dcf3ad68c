//! What the memory and disk alarms are judged on: the process's resident memory, the machine's
//! physical memory (or the cgroup's limit, when lower) and the free space of the data
//! directory's file system, measured every `alarms.check_interval_ms` by a task of its own and
//! passed to the broker task as `Input::Resources`. The broker decides (chute_core's
//! `policy::alarm`); this only measures.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chute_core::policy::alarm::ResourceReading;
use futures::channel::mpsc;
use futures::SinkExt;

use crate::admin::process::ProcessStats;
use crate::event_loop::LoopEvent;
use crate::runtime::Runtime;

/// The cgroup v2 memory limit of this process's cgroup (`max` when there is none).
const CGROUP_MEMORY_MAX: &str = "/sys/fs/cgroup/memory.max";

/// Measures now. RSS and physical memory are 0 where `/proc` or `sysconf` cannot say (the
/// memory alarm then has no reading to go on); free space that cannot be measured is an error,
/// since reporting a guess could raise or clear the disk alarm wrongly.
pub fn measure(data_dir: &Path) -> io::Result<ResourceReading> {
    Ok(ResourceReading {
        rss_bytes: ProcessStats::read().resident_bytes.unwrap_or(0),
        memory_total_bytes: memory_total_bytes(),
        disk_free_bytes: disk_free_bytes(data_dir)?,
    })
}

/// Measures every `interval_ms` (read again each time, so a reload changes it) and sends the
/// readings to the broker task, until the broker task is gone.
pub async fn measure_loop<R: Runtime>(
    runtime: R,
    data_dir: PathBuf,
    interval_ms: Arc<AtomicU32>,
    mut events: mpsc::Sender<LoopEvent>,
) {
    let mut failing = false;
    loop {
        let interval = Duration::from_millis(interval_ms.load(Ordering::Relaxed).into());
        runtime.sleep_until(Instant::now() + interval).await;
        let reading = match measure(&data_dir) {
            Ok(reading) => reading,
            Err(error) => {
                // Once per run of failures: a failing statvfs would otherwise log every second.
                if !failing {
                    tracing::warn!(%error, data_dir = %data_dir.display(), "cannot measure free disk space; the alarms keep their last reading");
                }
                failing = true;
                continue;
            }
        };
        failing = false;
        if events.send(LoopEvent::Resources(reading)).await.is_err() {
            return;
        }
    }
}

/// Physical memory, or the cgroup's memory limit when that is lower (in a container the limit
/// is what the kernel enforces). 0 when unknown.
fn memory_total_bytes() -> u64 {
    // SAFETY: sysconf only reads system constants; it has no memory-safety preconditions.
    let (pages, page_bytes) =
        unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    let physical = match (u64::try_from(pages), u64::try_from(page_bytes)) {
        (Ok(pages), Ok(page_bytes)) => pages.saturating_mul(page_bytes),
        _ => 0,
    };
    let limit =
        std::fs::read_to_string(CGROUP_MEMORY_MAX).ok().and_then(|text| cgroup_limit(&text));
    match (physical, limit) {
        (0, Some(limit)) => limit,
        (physical, Some(limit)) => physical.min(limit),
        (physical, None) => physical,
    }
}

/// `memory.max` holds a byte count, or `max` for no limit.
fn cgroup_limit(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Bytes an unprivileged process may still write on the file system holding `dir`
/// (`f_bavail`: the blocks reserved for root do not count, since chuted rarely runs as root).
fn disk_free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and `stat` is a
    // properly aligned statvfs that the call fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data directory's free space is measured (the temp dir has some), RSS and physical
    /// memory on Linux too, and a directory that does not exist is an error, not a guess.
    #[test]
    fn measures_a_directory_and_refuses_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let reading = measure(dir.path()).unwrap();
        assert!(reading.disk_free_bytes > 0);
        if cfg!(target_os = "linux") {
            assert!(reading.rss_bytes > 0 && reading.memory_total_bytes >= reading.rss_bytes);
        }
        let error = measure(&dir.path().join("missing")).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_cgroup_without_a_limit_says_max() {
        assert_eq!(cgroup_limit("max\n"), None);
        assert_eq!(cgroup_limit("1073741824\n"), Some(1 << 30));
    }
}
