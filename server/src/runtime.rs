//! The small surface an async runtime must provide, in the spirit of quinn's runtime module.
//! Everything else in the server is written once against this trait.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use futures::io::{AsyncRead, AsyncWrite};

pub trait Runtime: Clone + Send + Sync + 'static {
    type Listener: Send + Sync + 'static;
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Shown in logs: "tokio" or "smol".
    fn name(&self) -> &'static str;

    /// Runs a future to completion on the calling thread (the binary's `main`).
    fn block_on<F: Future>(&self, future: F) -> F::Output;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);

    /// Adopts a bound, non-blocking std listener. Binding happens in common code so that
    /// address errors read the same under every runtime.
    fn listener(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// The next connection, with `TCP_NODELAY` set.
    fn accept<'a>(
        &'a self,
        listener: &'a Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send + 'a;

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static;

    /// A connection to `host:port` (a name is resolved without blocking the runtime), with
    /// `TCP_NODELAY` set: the alert webhooks' client.
    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static;
}

/// How long an accept loop waits after a failed accept before trying again.
const ACCEPT_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// The next connection `listener` accepts, or `None` once `stop` fires (or its sender is
/// dropped). A failed accept (usually: out of file descriptors) is logged with `what` and
/// retried after a pause rather than in a spin.
pub async fn accept_until_stopped<R: Runtime>(
    runtime: &R,
    listener: &R::Listener,
    stop: &mut futures::channel::oneshot::Receiver<()>,
    what: &str,
) -> Option<(R::Stream, SocketAddr)> {
    use futures::future::{self, Either};
    loop {
        let accept = runtime.accept(listener);
        futures::pin_mut!(accept);
        match future::select(accept, &mut *stop).await {
            Either::Left((Ok(connection), _)) => return Some(connection),
            Either::Left((Err(error), _)) => {
                tracing::warn!(%error, "{what} accept failed");
                runtime.sleep_until(Instant::now() + ACCEPT_RETRY_PAUSE).await;
            }
            Either::Right(_) => return None,
        }
    }
}
