//! TLS counters for `/metrics` (docs/SECURITY.md lists them): handshakes of the client
//! listener, certificate reloads, and the serving certificate's expiry.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct TlsCounters {
    /// Client handshakes completed.
    pub handshakes: AtomicU64,
    /// Client handshakes not done within `tls.handshake_timeout_ms`.
    pub handshakes_timed_out: AtomicU64,
    /// Client handshakes refused for the client's certificate: missing under `required`, or
    /// not verified by the client CAs.
    pub handshakes_client_certificate_refused: AtomicU64,
    /// Client handshakes failed otherwise (a protocol error, the client hung up or refused
    /// the server's certificate).
    pub handshakes_failed_other: AtomicU64,
    /// TCP connections closed at once because `tls.handshakes_max` handshakes were running.
    pub handshakes_refused_over_limit: AtomicU64,
    /// Client handshakes running now.
    pub handshakes_in_progress: AtomicU64,
    /// Certificate material swapped in (changed files that passed every check).
    pub certificate_reloads_ok: AtomicU64,
    /// Changed or re-read material refused (the old one stays).
    pub certificate_reloads_failed: AtomicU64,
    /// Unix time the serving certificate expires at; 0 before one is loaded.
    pub certificate_expiry_unix_s: AtomicI64,
}

impl TlsCounters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
