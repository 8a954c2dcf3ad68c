//! # chute-core
//!
//! The sans-IO heart of chute: the broker and client state machines, queues, and the pure
//! policies (backoff, circuit breaker, token bucket) they use. Nothing here touches a socket,
//! a file, a clock or a random source: the driver passes bytes and time in and carries out the
//! outputs. The same code runs under the tokio and smol servers, in the simulator, and under
//! proptest and cargo-fuzz.
//!
//! The run loop of a driver:
//!
//! ```text
//! loop {
//!     let input = next_event_or_timer(broker.poll_timeout());   // socket bytes, accept, ...
//!     broker.handle_input(now(), input);
//!     while let Some(output) = broker.poll_output() {
//!         match output {
//!             Output::Send { conn, bytes } => write(conn, bytes),
//!             Output::PauseRead { conn } | Output::ResumeRead { conn } => ..,
//!             Output::Close { conn } => close_after_flush(conn),
//!             Output::Event(event) => log(event),
//!         }
//!     }
//! }
//! ```
//!
//! A broker that has a data directory starts through [`Recovery`], which takes the log one
//! segment file at a time, so the driver never holds more than one in memory:
//!
//! ```text
//! let mut recovery = Recovery::new(config, now());
//! for (i, name) in segment_file_names_sorted.iter().enumerate() {   // oldest first
//!     let bytes = read_whole_file(name);                            // then fdatasync it
//!     recovery.handle_segment(SegmentFile { name, bytes }, i + 1 == count)?;
//! }                                                                 // each buffer freed here
//! let (broker, report) = recovery.finish(read_manifest(), accept_data_loss)?;
//! if let Some(cut) = report.truncation { truncate(cut.file, cut.valid_len) }   // torn tail
//! ```
//!
//! `Broker::recover` does the same over a whole log held in memory (`LogImage`), for tests.
//! docs/STORAGE.md §10 gives every check and refusal.
//!
//! See [`Broker`] for the contract and a runnable example, and [`client::Client`] for the
//! client side, which has the same shape; [`client::Session`] drives one `Client` after
//! another and keeps what must survive a reconnect.
//!
//! ## Embedding the core in your own event loop
//!
//! Two examples drive the core from a hand-written, single-threaded loop over std sockets and
//! the `polling` crate, with no async runtime (tests/tests/embedding.rs runs both against the
//! real `chute` CLI):
//!
//! - `core/examples/broker_event_loop.rs`: a whole broker in under 300 lines, plain files in a
//!   directory for its log, recovered at start
//!   (`cargo run -p chute-core --example broker_event_loop -- 127.0.0.1:4770 ./data`);
//! - `core/examples/client_event_loop.rs`: a client [`client::Session`] that declares,
//!   publishes and consumes
//!   (`cargo run -p chute-core --example client_event_loop -- 127.0.0.1:4770 jobs 1000`).

pub mod alerts;
pub mod auth;
pub mod broker;
pub mod client;
pub mod config;
pub mod ids;
pub mod io;
/// Planted bugs for the simulator's self-test; absent unless the `mutants` feature is on.
#[cfg(feature = "mutants")]
pub mod mutants;
pub mod names;
pub mod policy;
pub mod queue;
pub mod rng;
pub mod seq_slots;
pub mod storage;
/// An in-memory disk for tests, benches, the simulator and fuzzing; absent unless the
/// `test-util` feature is on.
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod time;

pub use broker::{
    Broker, BrokerStats, ConnectionInfo, ConnectionState, DeclareError, PayloadCacheStats,
    PublishError, QueueAdminError, Recovery, RecoveryReport,
};
pub use config::{BrokerConfig, BrokerLimits, ConfigError, TimeoutConfig};
pub use ids::{ConnId, MessageSeq, QueueId};
pub use io::{Event, Input, Output, PeerInfo};
pub use time::{Instant, WallClock};
