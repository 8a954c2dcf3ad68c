//! # chute-server
//!
//! The server, written once for any async runtime. A runtime adapter (`chute-server-tokio`,
//! `chute-server-smol`) implements the small [`Runtime`] trait and calls [`main`] (or
//! [`main_with_flags`], to take flags of its own).
//!
//! Inside, one task owns the sans-IO [`chute_core::Broker`]; each connection has a reader task
//! that forwards bytes to it and a writer task that writes what it sends; an accept task hands
//! it new sockets; a signal thread asks it to stop, drain or reload; the storage worker thread
//! carries out its log requests and reports on a channel of its own, which the broker task reads
//! first; a measuring task passes the memory and disk readings the resource alarms are judged
//! on, every `alarms.check_interval_ms`. The broker task is the only place state changes, so there are no locks around queues.
//! A TLS listener (`[tls]`, docs/SECURITY.md) runs each handshake in a task of its own before
//! the broker sees the connection; the connection tasks then read and write plain or TLS
//! streams alike (`tls` module).
//! The configuration ([`config`]) is loaded from defaults, a TOML file, `CHUTE_*` variables and
//! flags, and reloaded whole on SIGHUP. The admin HTTP endpoint (health, Prometheus metrics,
//! the JSON API of docs/ADMIN.md) serves each connection on a task of its own and asks the
//! broker task for snapshots and operator commands (answered once durable); the storage
//! worker's counters it reads directly.
//!
//! ```text
//!  accept task ──streams──▶ ┌──────────────┐ ──Send──▶ writer task ──▶ socket
//!  reader tasks ──bytes───▶ │ broker task  │ ──Pause──▶ reader gate
//!  writer tasks ──flushed─▶ │ (Broker)     │ ◀──timer── runtime
//!  signal thread ─stop────▶ │              │ ──Storage─▶ storage worker (thread)
//!  storage worker ─done───▶ │              │
//!  admin tasks ──asks─────▶ └──────────────┘ ──answers──▶ admin tasks
//! ```

mod access;
mod admin;
mod alerts;
mod audit;
pub mod config;
mod connection;
mod counters;
mod data_dir;
mod event_loop;
mod keys;
pub mod logging;
mod memory_trim;
mod notify;
mod operator;
mod payload_reader;
mod resources;
mod runtime;
mod serve;
mod signals;
mod storage_worker;
mod syncer;
mod tls;
mod tools;
mod users_file;

pub use config::{AdminListen, Listen};
pub use counters::ServerCounters;
pub use event_loop::StartupSyncError;
pub use runtime::Runtime;
pub use serve::{
    main, main_with_flags, serve, Args, Endpoint, Listening, ServeError, ServerConfig,
};
