//! The disk's sequential write rate, measured in the same run as W6 so that W6's MB/s can be
//! read as a fraction of what the disk takes. It is what `dd bs=1M count=N conv=fdatasync`
//! reports: N MiB (by default as much as the run's payloads) written in 1 MiB writes, then one
//! `fdatasync`, timed from the first write to the end of the sync, in a file of the directory
//! given (the broker's data directory, so the figure is its file system's). The file is
//! removed afterwards; the broker ignores files in its data directory that are not segments or
//! its manifest.
//!
//! The fsync probe of the peer harness measures something else (the latency of a 4 KiB write
//! and its sync), and `../shared/limits` a broker-shaped relay; neither is the disk's
//! sequential rate, which is what a 64 KiB-message workload runs into.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One write; as dd's `bs=1M`.
const CHUNK_BYTES: usize = 1 << 20;
/// Not zeros: a virtual disk or file system may skip or compress runs of zeros.
const FILLER: u8 = 0xAB;

/// Where and how much to write.
#[derive(Clone, Debug)]
pub struct DiskProbe {
    dir: PathBuf,
    mib: u32,
}

impl DiskProbe {
    /// Refuses a `dir` that is not an existing directory, before any run starts.
    pub fn new(dir: &Path, mib: u32) -> Result<DiskProbe, String> {
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => Ok(DiskProbe { dir: dir.to_path_buf(), mib }),
            Ok(_) => Err(format!("--disk-dir {}: not a directory", dir.display())),
            Err(e) => Err(format!("--disk-dir {}: {e}", dir.display())),
        }
    }

    /// Writes and syncs the probe file; the rate in MB/s (10⁶ bytes, as the harness's MB/s).
    pub fn measure(&self) -> Result<f64, String> {
        let path = self.dir.join(format!("chute-bench-disk-probe.{}.tmp", std::process::id()));
        let written = write_and_sync(&path, self.mib);
        let removed = std::fs::remove_file(&path);
        let seconds = written.map_err(|e| format!("disk probe in {}: {e}", self.dir.display()))?;
        removed.map_err(|e| format!("disk probe: cannot remove {}: {e}", path.display()))?;
        Ok(f64::from(self.mib) * CHUNK_BYTES as f64 / 1e6 / seconds)
    }
}

/// Seconds from the first write to the end of the `fdatasync`.
fn write_and_sync(path: &Path, mib: u32) -> std::io::Result<f64> {
    let mut file: File = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    let chunk = vec![FILLER; CHUNK_BYTES];
    let start = Instant::now();
    for _ in 0..mib {
        file.write_all(&chunk)?;
    }
    file.sync_data()?;
    Ok(start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe writes what it says into the directory, reports a positive rate, and leaves
    /// nothing behind.
    #[test]
    fn measures_and_cleans_up() {
        let dir =
            std::env::temp_dir().join(format!("chute-disk-probe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let probe = DiskProbe::new(&dir, 2).unwrap();
        let mb_per_s = probe.measure().unwrap();
        assert!(mb_per_s.is_finite() && mb_per_s > 0.0, "{mb_per_s}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the probe file is removed");
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_missing_or_plain_file_is_refused() {
        let missing = Path::new("/nonexistent/chute-bench");
        let error = DiskProbe::new(missing, 1).unwrap_err();
        assert!(error.starts_with("--disk-dir /nonexistent/chute-bench: "), "{error}");
        let file = std::env::current_exe().unwrap();
        assert!(DiskProbe::new(&file, 1).unwrap_err().ends_with("not a directory"));
    }
}
