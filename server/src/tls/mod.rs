//! TLS and mutual TLS on the client listener and the admin endpoint (docs/SECURITY.md):
//! rustls on the ring provider, through futures-rustls over the runtime's futures-io stream, so
//! tokio and smol share one code path.
//!
//! - [`material`]: the PEM files, read and checked (key matches, not expired, CAs parse), and
//!   the rustls configurations built from them;
//! - [`acceptor`]: handshakes in tasks of their own, bounded in time and number, before the
//!   broker sees a connection; the live configuration behind an `ArcSwap`;
//! - [`identity`]: the user a client certificate names (`tls.client_identity`);
//! - [`stream`]: one stream type for plain and TLS connections;
//! - [`state`]: reloads, all or nothing; [`watch`]: noticing that the files changed;
//! - [`counters`]: what `/metrics` shows.

pub mod acceptor;
pub mod counters;
pub mod identity;
pub mod material;
pub mod state;
pub mod stream;
pub mod watch;

pub use acceptor::{Accepted, TlsAcceptor};
pub use counters::TlsCounters;
pub use material::Material;
pub use state::TlsState;
pub use stream::ServerStream;
