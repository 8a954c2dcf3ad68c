//! Opening a connection: TCP connect and handshake, then the I/O runs on a thread of the
//! connection's own or on the caller's task.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use async_io::{Async, Timer};
use chute_core::client::Client;
use chute_protocol::HelloOk;
use futures::channel::oneshot;
use futures::future::{self, Either};

use crate::connection::ConnectOptions;
use crate::driver::{Clock, ConnectionDriver};
use crate::error::Error;
use crate::shared::Inner;
use crate::url::ServerUrl;

type Opened = (Arc<Inner>, HelloOk, ConnectionDriver);

/// Connects, and drives the connection until the server has answered the handshake.
pub(crate) async fn open(url: &ServerUrl, options: ConnectOptions) -> Result<Opened, Error> {
    let connect_error = |reason: String| Error::Connect { addr: url.authority(), reason };
    let stream = connect_tcp(url, options.connect_timeout).await.map_err(connect_error)?;
    let clock = Clock::new();
    let mut config = options.client;
    config.handshake_timeout_ms =
        options.connect_timeout.as_millis().min(u128::from(u32::MAX)) as u32;
    let (inner, wake) = Inner::new(Client::new(config, clock.now()), url.authority());
    let (connected_tx, connected_rx) = oneshot::channel();
    inner.lock().connected_waiters.push(connected_tx);
    let mut driver = ConnectionDriver::new(inner.clone(), wake, stream, clock);
    // The connection failing fails this waiter too, so this cannot wait forever.
    match driver.run_until(connected_rx).await {
        Ok(Ok(server)) => Ok((inner, server, driver)),
        Ok(Err(error)) => Err(error),
        Err(oneshot::Canceled) => Err(connect_error("handshake aborted".into())),
    }
}

/// The body of a connection's own thread: open, hand the connection over, drive it to its end.
pub(crate) fn run_on_own_thread(
    url: ServerUrl,
    options: ConnectOptions,
    ready: oneshot::Sender<Result<(Arc<Inner>, HelloOk), Error>>,
) {
    async_io::block_on(async move {
        match open(&url, options).await {
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

/// Tries each address the host resolves to, each for at most `timeout`.
async fn connect_tcp(url: &ServerUrl, timeout: Duration) -> Result<Async<TcpStream>, String> {
    // Name resolution blocks; for a numeric address it returns at once.
    let addrs: Vec<SocketAddr> =
        (url.host.as_str(), url.port).to_socket_addrs().map_err(|e| e.to_string())?.collect();
    let mut last_error = format!("{} resolves to no address", url.host);
    for addr in addrs {
        let attempt = std::pin::pin!(Async::<TcpStream>::connect(addr));
        match future::select(attempt, Timer::after(timeout)).await {
            Either::Left((Ok(stream), _)) => {
                stream.get_ref().set_nodelay(true).map_err(|e| e.to_string())?;
                return Ok(stream);
            }
            Either::Left((Err(e), _)) => last_error = e.to_string(),
            Either::Right(_) => {
                last_error = format!("no answer from {addr} within {} ms", timeout.as_millis())
            }
        }
    }
    Err(last_error)
}
