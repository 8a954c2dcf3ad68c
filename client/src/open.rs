//! Opening a connection: the session, its first transport and handshake; then the I/O runs on
//! a thread of the connection's own or on the caller's task.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use chute_core::client::{Session, SessionConfig, Timeouts};
use chute_protocol::HelloOk;
use futures::channel::oneshot;

use crate::connection::ConnectOptions;
use crate::driver::{Clock, ConnectionDriver};
use crate::error::Error;
use crate::shared::Inner;
use crate::url::ServerUrl;

type Opened = (Arc<Inner>, HelloOk, ConnectionDriver);

/// Starts a session on `urls` and drives it until its first connection is open (or every
/// address failed).
pub(crate) async fn open(urls: &[ServerUrl], options: ConnectOptions) -> Result<Opened, Error> {
    let clock = Clock::new();
    let connect_timeout = options.connect_timeout;
    let config = SessionConfig {
        client: options.client,
        addresses: urls.len(),
        reconnect: options.reconnect,
        timeouts: Timeouts {
            connect_ms: connect_timeout.as_millis().min(u128::from(u32::MAX)) as u64,
            ..options.timeouts
        },
        retry: options.retry,
        breaker: options.breaker,
        generate_ids: options.generate_ids,
        seed: random_seed(),
    };
    let session = Session::new(config, clock.now());
    let addrs = urls.iter().map(ServerUrl::authority).collect();
    let (inner, wake) = Inner::new(session, clock, addrs);
    let (connected_tx, connected_rx) = oneshot::channel();
    inner.lock().connected_waiters.push(connected_tx);
    let mut driver = ConnectionDriver::new(inner.clone(), wake, urls.to_vec(), connect_timeout);
    // The session ending fails this waiter too, so this cannot wait forever.
    match driver.run_until(connected_rx).await {
        Ok(Ok(server)) => Ok((inner, server, driver)),
        Ok(Err(error)) => Err(error),
        Err(oneshot::Canceled) => {
            let addr = urls[0].authority();
            Err(Error::Connect { addr, reason: "handshake aborted".into() })
        }
    }
}

/// The body of a connection's own thread: open, hand the connection over, drive it to its end.
pub(crate) fn run_on_own_thread(
    urls: Vec<ServerUrl>,
    options: ConnectOptions,
    ready: oneshot::Sender<Result<(Arc<Inner>, HelloOk), Error>>,
) {
    async_io::block_on(async move {
        match open(&urls, options).await {
            Ok((inner, server, driver)) => {
                let _ = ready.send(Ok((inner, server)));
                driver.await;
            }
            Err(error) => {
                let _ = ready.send(Err(error));
            }
        }
    });
}

/// A seed from the operating system's randomness (std's hasher keys, drawn per process and
/// per thread), mixed with the time: sessions of one process and of different processes get
/// different message id prefixes and jitter.
fn random_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}
