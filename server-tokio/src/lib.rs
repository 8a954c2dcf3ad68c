//! chute's tokio adapter: the [`chute_server::Runtime`] implementation behind `chuted`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

#[derive(Clone)]
pub struct TokioRuntime {
    runtime: Arc<tokio::runtime::Runtime>,
}

impl TokioRuntime {
    /// A multi-threaded runtime with I/O and timers.
    pub fn new() -> io::Result<TokioRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("chuted-worker")
            .build()?;
        Ok(TokioRuntime { runtime: Arc::new(runtime) })
    }
}

impl chute_server::Runtime for TokioRuntime {
    type Listener = tokio::net::TcpListener;
    type Stream = Compat<tokio::net::TcpStream>;

    fn name(&self) -> &'static str {
        "tokio"
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(task);
    }

    fn listener(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener> {
        let _context = self.runtime.enter();
        tokio::net::TcpListener::from_std(listener)
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream.compat(), peer))
    }

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
        let _context = self.runtime.enter();
        tokio::time::sleep_until(deadline.into())
    }
}
