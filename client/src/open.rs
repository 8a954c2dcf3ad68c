//! Opening a connection: the session, its first transport and handshake; then the I/O runs on
//! a thread of the connection's own or on the caller's task.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use chute_core::client::{ClientConfig, Session, SessionConfig, Timeouts};
use chute_protocol::{Credentials, HelloOk};
use futures::channel::oneshot;

use crate::connection::ConnectOptions;
use crate::driver::{Clock, ConnectionDriver};
use crate::error::Error;
use crate::reactor::Reactor;
use crate::shared::Inner;
use crate::url::{ServerUrl, Target};

type Opened = (Arc<Inner>, HelloOk, ConnectionDriver);

/// Starts a session on the target's servers and drives it until its first connection is open
/// (or every address failed).
pub(crate) async fn open(
    target: &Target,
    options: ConnectOptions,
    reactor: Reactor,
) -> Result<Opened, Error> {
    let urls = &target.servers;
    let client = client_config(target, &options)?;
    let tls = match target.tls {
        true => Some(options.tls.build().map_err(Error::InvalidOptions)?),
        false => None,
    };
    let clock = Clock::new();
    let connect_timeout = options.connect_timeout;
    let config = SessionConfig {
        client,
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
    let inner = Inner::new(session, clock, addrs);
    let (connected_tx, connected_rx) = oneshot::channel();
    inner.lock().connected_waiters.push(connected_tx);
    let mut driver =
        ConnectionDriver::new(inner.clone(), urls.to_vec(), tls, connect_timeout, reactor);
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

/// The client machine's settings: the options', with the URL's credentials and what the
/// transport will be. A secret sent in `Hello` (a token) is refused without TLS: the server
/// would refuse it too, but only once it had crossed the network in clear.
fn client_config(target: &Target, options: &ConnectOptions) -> Result<ClientConfig, Error> {
    let mut client = options.client.clone();
    if let Some(username) = &target.username {
        if client.credentials != Credentials::Anonymous {
            let message = "credentials both in the URL and in the options; give them once";
            return Err(Error::InvalidOptions(message.into()));
        }
        let password = target.password.clone().ok_or_else(|| {
            Error::InvalidOptions(format!("the URL names user {username:?} but no password"))
        })?;
        client.credentials = Credentials::Password { username: username.clone(), password };
    }
    if matches!(client.credentials, Credentials::Token { .. }) && !target.tls {
        let message = "a token is sent as it is, so only over TLS: use chutes://";
        return Err(Error::InvalidOptions(message.into()));
    }
    client.client_certificate = target.tls && options.tls.has_client_certificate();
    Ok(client)
}

/// The body of a connection's own thread: open, hand the connection over, drive it to its end.
pub(crate) fn run_on_own_thread(
    target: Target,
    options: ConnectOptions,
    ready: oneshot::Sender<Result<(Arc<Inner>, HelloOk), Error>>,
) {
    async_io::block_on(async move {
        match open(&target, options, Reactor::AsyncIo).await {
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
