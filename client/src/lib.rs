//! # chute-client
//!
//! An async client for the chute broker that works under any executor (tokio, smol, or
//! `futures::executor::block_on`). [`Connection::connect`] runs the connection's socket on a
//! small I/O thread of its own and talks to your tasks through futures and streams;
//! [`Connection::connect_driven`] hands you the I/O as a [`ConnectionDriver`] future to poll
//! on your own task instead, which saves a thread hop each way and is the faster choice at
//! high message rates. [`Connection::publish_tracked`] with [`Connection::publish_outcomes`]
//! publishes without a future per message: sequence numbers out, confirmed ranges back.
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

mod connection;
mod dead_letters;
mod driver;
mod error;
mod open;
mod outcomes;
mod shared;
mod subscription;
mod url;

pub use chute_core::client::{ClientConfig, CommandError};
pub use chute_protocol::{
    AttemptOutcome, AttemptRecord, BackoffPolicy, BreakerPolicy, BreakerState, ConsumerInfo,
    Credentials, DeadLetter, DeadLetterSummary, DeadReason, Destination, Durability, ErrorCode,
    ExpiryPolicy, Header, OverflowPolicy, PublishMessage, QueueCounters, QueueDeclareOk,
    QueueOptions, QueueStats, QueueSummary, Range, RateLimit, RateLimitPolicy, Schedule,
};
pub use connection::{Confirmation, ConnectOptions, Connection, SubscribeOptions};
pub use driver::ConnectionDriver;
pub use error::{Error, PublishError};
pub use outcomes::{PublishOutcome, PublishOutcomes};
pub use subscription::{Delivery, Subscription};
pub use url::{ServerUrl, DEFAULT_PORT};
