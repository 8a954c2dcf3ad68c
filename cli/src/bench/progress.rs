//! A one-line progress bar on stderr, redrawn a few times a second. Drawn only when stderr is
//! a terminal, so logs and pipes get no carriage-return noise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const WIDTH: usize = 30;
pub const REDRAW_EVERY: Duration = Duration::from_millis(200);

pub struct Progress {
    enabled: bool,
    label: String,
    total: u64,
    last_drawn: Option<Instant>,
}

impl Progress {
    pub fn new(label: String, total: u64) -> Progress {
        Progress { enabled: std::io::stderr().is_terminal(), label, total, last_drawn: None }
    }

    /// Redraws if the last drawing is old enough.
    pub fn update(&mut self, confirmed: u64, received: u64, elapsed: Duration) {
        if !self.enabled || self.last_drawn.is_some_and(|at| at.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.last_drawn = Some(Instant::now());
        let line = render(&self.label, self.total, confirmed, received, elapsed);
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r{line}\x1b[K");
        let _ = stderr.flush();
    }

    /// Erases the bar.
    pub fn finish(&mut self) {
        if self.enabled && self.last_drawn.is_some() {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[K");
            let _ = stderr.flush();
        }
        self.last_drawn = None;
    }
}

fn render(label: &str, total: u64, confirmed: u64, received: u64, elapsed: Duration) -> String {
    let filled = (received.min(total) as f64 / total.max(1) as f64 * WIDTH as f64) as usize;
    let bar: String = "#".repeat(filled) + &".".repeat(WIDTH - filled);
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 { received as f64 / seconds } else { 0.0 };
    format!(
        "{label} [{bar}] {received}/{total} acked, {confirmed} confirmed, {rate:.0} msg/s, {seconds:.1} s"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_fills_with_received_messages() {
        let line = render("W1", 100, 60, 50, Duration::from_secs(2));
        assert!(line.starts_with("W1 [###############...............] 50/100"), "{line}");
        assert!(line.contains("25 msg/s"), "{line}");
        let over = render("W1", 100, 100, 120, Duration::ZERO);
        assert!(over.contains(&"#".repeat(WIDTH)), "duplicates do not overflow the bar");
    }
}
