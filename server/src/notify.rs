//! systemd's readiness protocol (`Type=notify`, deploy/systemd/chuted.service): `READY=1` once
//! the log is recovered, the startup checkpoint synced and the listeners bound. Without
//! `NOTIFY_SOCKET` (not started by systemd) nothing is sent.

/// Tells systemd the server is ready. A failure is logged, not fatal: the server serves either
/// way, and systemd times the start out by itself.
pub fn ready() {
    if let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(%error, "could not tell systemd the server is ready");
    }
}
