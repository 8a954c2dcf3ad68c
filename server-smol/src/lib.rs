//! chute's smol adapter: the [`chute_server::Runtime`] implementation behind `chuted-smol`.
//!
//! Tasks run on smol's global executor (`SMOL_THREADS` threads, default 1) while the broker
//! task runs on the thread that called `block_on`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

#[derive(Clone, Default)]
pub struct SmolRuntime;

impl chute_server::Runtime for SmolRuntime {
    type Listener = smol::net::TcpListener;
    type Stream = smol::net::TcpStream;

    fn name(&self) -> &'static str {
        "smol"
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        smol::block_on(future)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(task).detach();
    }

    fn listener(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener> {
        smol::net::TcpListener::try_from(listener)
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }

    // Not an `async fn`: that would borrow `self`, and the timer must be `'static`.
    #[allow(clippy::manual_async_fn)]
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
        async move {
            smol::Timer::at(deadline).await;
        }
    }

    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static {
        let host = host.to_string();
        async move {
            let stream = smol::net::TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        }
    }
}
