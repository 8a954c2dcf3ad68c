//! The server's own counters (the broker's are in its stats), for `/metrics`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::alerts::AlertBoard;
use crate::audit::AuditCounters;
use crate::config::ReloadCounters;
use crate::tls::TlsCounters;

#[derive(Clone, Debug, Default)]
pub struct ServerCounters {
    pub reloads: Arc<ReloadCounters>,
    /// Log lines dropped because the log's output could not keep up.
    pub log_lines_dropped: Arc<AtomicU64>,
    pub audit: Arc<AuditCounters>,
    pub tls: Arc<TlsCounters>,
    /// The alerts standing now and the webhooks' counters.
    pub alerts: Arc<AlertBoard>,
}
