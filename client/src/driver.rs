//! The connection's I/O: moves bytes between the socket and the core `Client`, and fires its
//! timers. It is one future, [`ConnectionDriver`], polled either by a thread of the
//! connection's own (`Connection::connect`) or by the caller (`Connection::connect_driven`).
//! Its socket and timers are async-io's, so it works the same under tokio, smol, or no runtime
//! at all.

use std::future::Future;
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant as StdInstant;

use async_io::{Async, Timer};
use bytes::BytesMut;
use chute_core::client::ClientInput;
use chute_core::Instant;
use futures::future::{self, Either};
use futures::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::Ended;
use crate::shared::Inner;

const READ_CHUNK_BYTES: usize = 64 * 1024;

pub(crate) struct Clock {
    started: StdInstant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { started: StdInstant::now() }
    }

    pub fn now(&self) -> Instant {
        Instant::from_nanos(self.started.elapsed().as_nanos() as u64)
    }

    fn std_instant(&self, at: Instant) -> StdInstant {
        self.started + std::time::Duration::from_nanos(at.as_nanos())
    }
}

/// A connection's I/O as a future: it resolves when the connection has ended, and the
/// connection makes progress only while it is polled. Spawn it on your executor, or poll it in
/// the task that uses the connection with [`ConnectionDriver::run_until`]: then the socket is
/// read and written on that task's thread, with no hand-off to another thread per message.
///
/// Under `async_io::block_on` or smol, that thread also waits for the socket itself; other
/// executors get socket readiness from async-io's reactor thread.
///
/// Dropping the driver before it resolves closes the socket and fails whatever is pending on
/// the connection.
#[must_use = "the connection makes no progress unless its driver is polled"]
pub struct ConnectionDriver {
    inner: Arc<Inner>,
    io: Pin<Box<dyn Future<Output = ()> + Send>>,
    finished: bool,
}

impl ConnectionDriver {
    pub(crate) fn new(
        inner: Arc<Inner>,
        wake: async_channel::Receiver<()>,
        stream: Async<TcpStream>,
        clock: Clock,
    ) -> ConnectionDriver {
        let io = Box::pin(drive(inner.clone(), wake, stream, clock));
        ConnectionDriver { inner, io, finished: false }
    }

    /// Drives the connection until `work` completes and returns its output. If the connection
    /// ends first, `work` still runs to its end; the connection's commands then fail with the
    /// reason it ended.
    pub async fn run_until<F: Future>(&mut self, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        futures::future::poll_fn(|cx| {
            // The work first: what it queues is then written in the same pass.
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            if Pin::new(&mut *self).poll(cx).is_ready() {
                // The connection ended and failed every waiter, so the work can move on.
                return work.as_mut().poll(cx);
            }
            Poll::Pending
        })
        .await
    }
}

impl Future for ConnectionDriver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.finished {
            return Poll::Ready(());
        }
        futures::ready!(self.io.as_mut().poll(cx));
        self.finished = true;
        self.inner.mark_finished();
        Poll::Ready(())
    }
}

impl Drop for ConnectionDriver {
    fn drop(&mut self) {
        if !self.finished {
            let mut shared = self.inner.lock();
            let io_error = Some("the connection's driver was dropped".to_string());
            let addr = shared.addr.clone();
            shared.fail_everything(Ended::Lost { addr, io_error });
            drop(shared);
            self.inner.mark_finished();
        }
    }
}

/// Runs until the connection is closed by either side.
async fn drive(
    inner: Arc<Inner>,
    wake: async_channel::Receiver<()>,
    stream: Async<TcpStream>,
    clock: Clock,
) {
    let mut read_buffer = BytesMut::new();
    let mut write_buffer = BytesMut::new();
    loop {
        let (deadline, close) = {
            let mut shared = inner.lock();
            shared.drain_outputs();
            for bytes in shared.outgoing.drain(..) {
                write_buffer.extend_from_slice(&bytes);
            }
            (shared.machine.poll_timeout().map(|at| clock.std_instant(at)), shared.close_transport)
        };
        if close {
            let _ = (&stream).write_all(&write_buffer).await;
            let _ = (&stream).close().await;
            return;
        }
        match next_event(&stream, &wake, &mut read_buffer, &write_buffer, deadline).await {
            Step::Read(Ok(0)) => {
                return transport_lost(
                    &inner,
                    &clock,
                    "the server closed the socket without a Close",
                )
            }
            Step::Read(Err(error)) | Step::Wrote(Err(error)) => {
                return transport_lost(&inner, &clock, &error.to_string())
            }
            Step::Read(Ok(n)) => {
                let bytes = read_buffer.split_to(n).freeze();
                inner.lock().machine.handle_input(clock.now(), ClientInput::Received(bytes));
            }
            Step::Wrote(Ok(n)) => {
                let _ = write_buffer.split_to(n);
            }
            Step::Woken => {}
            Step::Timer => inner.lock().machine.handle_input(clock.now(), ClientInput::Timeout),
        }
    }
}

/// The socket failed or reached its end under an open connection: the machine ends the
/// connection, and every waiter learns it was lost, and how.
fn transport_lost(inner: &Inner, clock: &Clock, how: &str) {
    let mut shared = inner.lock();
    shared.transport_error = Some(how.to_string());
    shared.machine.handle_input(clock.now(), ClientInput::Closed);
    shared.drain_outputs();
}

enum Step {
    Read(std::io::Result<usize>),
    Wrote(std::io::Result<usize>),
    Woken,
    Timer,
}

/// Waits for whichever comes first: bytes to read, room to write, a nudge, the deadline.
async fn next_event(
    stream: &Async<TcpStream>,
    wake: &async_channel::Receiver<()>,
    read_buffer: &mut BytesMut,
    write_buffer: &BytesMut,
    deadline: Option<StdInstant>,
) -> Step {
    if read_buffer.len() < 4096 {
        *read_buffer = BytesMut::zeroed(READ_CHUNK_BYTES);
    }
    // `&Async<TcpStream>` reads and writes through shared references, so both directions can
    // wait at once.
    let (mut reader, mut writer) = (stream, stream);
    let read = async { Step::Read(reader.read(&mut read_buffer[..]).await) };
    let write = async {
        if write_buffer.is_empty() {
            future::pending::<()>().await;
        }
        Step::Wrote(writer.write(write_buffer).await)
    };
    let woken = async {
        let _ = wake.recv().await;
        Step::Woken
    };
    let timer = async {
        match deadline {
            Some(at) => {
                Timer::at(at).await;
            }
            None => future::pending::<()>().await,
        }
        Step::Timer
    };
    futures::pin_mut!(read, write, woken, timer);
    let io = future::select(read, write);
    let other = future::select(woken, timer);
    match future::select(io, other).await {
        Either::Left((Either::Left((step, _)) | Either::Right((step, _)), _)) => step,
        Either::Right((Either::Left((step, _)) | Either::Right((step, _)), _)) => step,
    }
}
