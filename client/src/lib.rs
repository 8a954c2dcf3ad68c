//! # chute-client
//!
//! An async client for the chute broker that works under any executor (tokio, smol, or
//! `futures::executor::block_on`). Called within a tokio runtime, [`Connection::connect`] runs
//! the connection's socket I/O as a task on that runtime; elsewhere (or with
//! [`IoPlacement::OwnThread`]) on a small I/O thread of its own, talking to your tasks through
//! futures and streams. On tokio that saves a thread hop each way per batch of messages (about
//! 12-26 % more messages per second in the peer harness, docs/BENCHMARKS.md).
//! [`Connection::connect_driven`] hands you the I/O as a [`ConnectionDriver`] future to poll
//! yourself, under any executor. [`Connection::publish_tracked`] with [`Connection::publish_outcomes`]
//! publishes without a future per message: sequence numbers out, confirmed ranges back.
//!
//! A connection survives the loss of its server. It reconnects by itself (exponential backoff
//! with jitter, over every address of `chute://a:4770,b:4770`; when a server says it is going
//! away, it moves to the next address once its held deliveries are settled) and puts its state
//! back: queues it declared, bindings, subscriptions (the streams carry on), and every publish
//! not yet confirmed, sent again in order with its message id. Messages published without an id to a queue with a dedup window get one, so
//! nothing is enqueued twice there. Operations have timeouts, refusals that say "later" are retried,
//! and an optional circuit breaker fails publishes fast while the server is down: see
//! [`ConnectOptions`]. [`Connection::events`] reports each state change, and
//! [`Connection::stats`] counts them. This is the core's sans-IO
//! [`Session`](chute_core::client::Session) driven over async-io's sockets and timers, or
//! tokio's for a connection whose I/O runs on a tokio runtime.
//!
//! `chutes://host[:port]` speaks TLS (rustls, ring provider), trusting the CA named in
//! [`ConnectOptions::tls`] ([`TlsOptions`]: `ca_file`, a client certificate for mutual TLS, a
//! server-name override), with a handshake on every connection, reconnects included. A user
//! logs in with a password (`chute://user:password@host`, or
//! [`ConnectOptions::with_password`]) proven by SCRAM-SHA-256 on any connection, plain or TLS:
//! the password never crosses the wire, and the client checks that the server knows it too. A
//! token ([`ConnectOptions::with_token`]) is sent as it is, so only over TLS; a client
//! certificate alone logs in as the user it names. A refused login is not retried. A server
//! that lets a password or token in without checking it (one without users) is refused too,
//! unless [`ConnectOptions::accepting_unchecked_credentials`] says to connect anyway.
//!
//! ```no_run
//! use chute_client::{ConnectOptions, Connection, TlsOptions};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = TlsOptions { ca_file: Some("ca.crt".into()), ..TlsOptions::default() };
//! let options = ConnectOptions { tls, ..ConnectOptions::default() }.with_password("app", "secret");
//! let connection = Connection::connect_with("chutes://broker.example:4773", options).await?;
//! # Ok(())
//! # }
//! ```
//!
//! [`Pool`] shares a few connections among request-style callers, with health checks,
//! idle eviction, a checkout timeout and round-robin publishes.
//!
//! ```no_run
//! use futures::StreamExt;
//! use chute_client::{Connection, QueueOptions};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let connection = Connection::connect("chute://127.0.0.1:4770").await?;
//! connection.declare_queue("jobs", QueueOptions::default()).await?;
//!
//! // Many publishes may be in flight; each confirmation resolves when the broker confirms.
//! let mut confirmations = Vec::new();
//! for i in 0..100 {
//!     confirmations.push(connection.publish("jobs", format!("job {i}")).await?);
//! }
//! for confirmation in confirmations {
//!     confirmation.await?;
//! }
//!
//! let mut jobs = connection.subscribe("jobs", 100).await?;
//! while let Some(job) = jobs.next().await {
//!     println!("{}", String::from_utf8_lossy(job.payload()));
//!     job.ack()?;
//! }
//! # Ok(())
//! # }
//! ```

mod confirms;
mod connection;
mod dead_letters;
mod driver;
mod error;
mod events;
mod open;
mod outcomes;
mod pool;
mod reactor;
mod shared;
mod subscription;
mod tls;
mod transport;
mod url;

pub use chute_core::client::{
    ClientConfig, CommandError, LinkError, ReconnectPolicy, RetryPolicy, SessionStats, Timeouts,
};
pub use chute_protocol::{
    AttemptOutcome, AttemptRecord, BackoffPolicy, BreakerPolicy, BreakerState, ConsumerInfo,
    Credentials, DeadLetter, DeadLetterSummary, DeadReason, Destination, Durability, ErrorCode,
    ExpiryPolicy, Header, OverflowPolicy, PublishMessage, QueueCounters, QueueDeclareOk,
    QueueOptions, QueueStats, QueueSummary, Range, RateLimit, RateLimitPolicy, Schedule,
};
pub use connection::{Confirmation, ConnectOptions, Connection, IoPlacement, SubscribeOptions};
pub use driver::ConnectionDriver;
pub use error::{Error, PublishError};
pub use events::{ConnectionEvent, ConnectionEvents};
pub use outcomes::{PublishOutcome, PublishOutcomes};
pub use pool::{Pool, PoolMetrics, PoolOptions, PooledConnection};
pub use subscription::{Delivery, Subscription};
pub use tls::TlsOptions;
pub use url::{ServerUrl, Target, DEFAULT_PORT, DEFAULT_TLS_PORT};
