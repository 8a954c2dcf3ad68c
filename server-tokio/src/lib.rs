//! chute's tokio adapter: the [`chute_server::Runtime`] implementation behind `chuted`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

mod stream;

pub use stream::TokioStream;

/// `chuted`'s own flags, beside the server's.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct TokioFlags {
    /// Threads running tasks. With one, every task runs beside the broker on one thread,
    /// fastest on small machines; more let socket I/O run on other cores.
    #[arg(
        long,
        env = "CHUTE_TOKIO_THREADS",
        default_value_t = 1,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub tokio_threads: u16,
}

#[derive(Clone)]
pub struct TokioRuntime {
    runtime: Arc<tokio::runtime::Runtime>,
}

impl TokioRuntime {
    /// A runtime with I/O and timers on `threads` threads. With one (the default), every task
    /// runs on the thread that runs the broker: a message then crosses no thread on its way
    /// through, which is both faster and cheaper than handing each socket event to another
    /// thread, since the broker's state machine is single-threaded anyway. More threads let
    /// socket reads and writes run beside the broker, for machines with cores to spare.
    pub fn new(threads: usize) -> io::Result<TokioRuntime> {
        let mut builder = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        };
        let runtime = builder.enable_all().thread_name("chuted-worker").build()?;
        Ok(TokioRuntime { runtime: Arc::new(runtime) })
    }
}

impl chute_server::Runtime for TokioRuntime {
    type Listener = tokio::net::TcpListener;
    type Stream = TokioStream;

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
        Ok((TokioStream(stream), peer))
    }

    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
        let _context = self.runtime.enter();
        tokio::time::sleep_until(deadline.into())
    }

    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static {
        let host = host.to_string();
        async move {
            let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(TokioStream(stream))
        }
    }
}
