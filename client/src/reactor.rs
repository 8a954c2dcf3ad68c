//! Which reactor a connection's socket and timer wait on. async-io's works under any executor,
//! or none, from a thread of its own. A connection whose driver is a task on a tokio runtime
//! waits on that runtime's reactor instead: socket readiness and timers then wake the task on
//! the runtime's own threads, with no hop through async-io's thread per batch.

use std::future::Future;
#[cfg(feature = "tokio")]
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reactor {
    AsyncIo,
    #[cfg(feature = "tokio")]
    Tokio,
}

impl Reactor {
    /// A timer set for nothing yet.
    pub fn timer(self) -> Timer {
        match self {
            Reactor::AsyncIo => Timer::AsyncIo(async_io::Timer::never()),
            #[cfg(feature = "tokio")]
            Reactor::Tokio => {
                Timer::Tokio { sleep: Box::pin(tokio::time::sleep(Duration::ZERO)), armed: false }
            }
        }
    }

    /// A timer that fires `after` from now.
    pub fn sleep(self, after: Duration) -> Timer {
        let mut timer = self.timer();
        timer.set_at(Instant::now() + after);
        timer
    }
}

/// A one-shot timer that can be set again; it fires once per setting.
pub(crate) enum Timer {
    AsyncIo(async_io::Timer),
    #[cfg(feature = "tokio")]
    Tokio {
        sleep: Pin<Box<tokio::time::Sleep>>,
        /// Whether `sleep` is set for a deadline that has not fired yet (a tokio sleep, once
        /// elapsed, stays ready).
        armed: bool,
    },
}

impl Timer {
    pub fn set_at(&mut self, deadline: Instant) {
        match self {
            Timer::AsyncIo(timer) => timer.set_at(deadline),
            #[cfg(feature = "tokio")]
            Timer::Tokio { sleep, armed } => {
                sleep.as_mut().reset(deadline.into());
                *armed = true;
            }
        }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut *self {
            Timer::AsyncIo(timer) => Pin::new(timer).poll(cx).map(|_| ()),
            #[cfg(feature = "tokio")]
            Timer::Tokio { sleep, armed } => {
                if !*armed {
                    return Poll::Pending;
                }
                futures::ready!(sleep.as_mut().poll(cx));
                *armed = false;
                Poll::Ready(())
            }
        }
    }
}

/// A tokio socket (or half of one) seen through the `futures::io` traits the driver and
/// futures-rustls are written against, with vectored writes forwarded (rustls writes one
/// buffer per record).
#[cfg(feature = "tokio")]
pub(crate) struct TokioIo<T>(pub T);

#[cfg(feature = "tokio")]
impl<T: tokio::io::AsyncRead + Unpin> futures::io::AsyncRead for TokioIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut read = tokio::io::ReadBuf::new(buf);
        Pin::new(&mut self.0).poll_read(cx, &mut read).map_ok(|()| read.filled().len())
    }
}

#[cfg(feature = "tokio")]
impl<T: tokio::io::AsyncWrite + Unpin> futures::io::AsyncWrite for TokioIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
