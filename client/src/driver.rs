//! The connection's I/O: moves bytes between the socket and the core `Client`, and fires its
//! timers. It is one future, [`ConnectionDriver`], polled either by a thread of the
//! connection's own (`Connection::connect` outside tokio), by a task on the caller's tokio
//! runtime (`Connection::connect` within one), or by the caller (`Connection::connect_driven`).
//! Its socket and timers are async-io's, which work under any executor or none, except in the
//! tokio task, where they are the runtime's own (`reactor.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant as StdInstant};

use bytes::BytesMut;
use chute_core::client::SessionInput;
use chute_core::Instant;
use chute_protocol::{DecodeError, Frame, FrameReader, FRAME_SIZE_CEILING};
use futures::future::{self, Either};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::FutureExt;

use crate::error::Ended;
use crate::reactor::{Reactor, Timer};
use crate::shared::Inner;
use crate::tls::TlsClient;
use crate::transport::Transport;
use crate::url::ServerUrl;

const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy)]
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

    pub fn std_instant(&self, at: Instant) -> StdInstant {
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
        urls: Vec<ServerUrl>,
        tls: Option<TlsClient>,
        connect_timeout: Duration,
        reactor: Reactor,
    ) -> ConnectionDriver {
        let io = Box::pin(drive(inner.clone(), urls, tls, connect_timeout, reactor));
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
            let addr = shared.addrs.get(shared.machine.address()).cloned().unwrap_or_default();
            shared.fail_everything(Ended::Lost { addr, io_error });
            drop(shared);
            self.inner.mark_finished();
        }
    }
}

/// What the session asked of the I/O since it last looked.
struct Asked {
    deadline: Option<StdInstant>,
    close: bool,
    connect: Option<usize>,
    ended: bool,
}

/// Runs until the session is over: opens the transports it asks for, moves bytes, fires its
/// timer.
async fn drive(
    inner: Arc<Inner>,
    urls: Vec<ServerUrl>,
    tls: Option<TlsClient>,
    connect_timeout: Duration,
    reactor: Reactor,
) {
    let mut stream: Option<Transport> = None;
    // What was read is cut into frames and decoded here, before the session's lock is taken:
    // a read holds a few hundred deliveries or confirms, and decoding them under the lock made
    // every publish and ack of that connection wait (and sleep, and be woken) behind it.
    let mut reader = FrameReader::new(FRAME_SIZE_CEILING);
    let mut read_buffer = BytesMut::new();
    let mut write_buffer = BytesMut::new();
    // Written bytes may wait in TLS's buffer until flushed.
    let mut unflushed = false;
    let mut timer = reactor.timer();
    // When `timer` fires, if it is set; see `arm`.
    let mut armed: Option<StdInstant> = None;
    loop {
        let asked = {
            let mut shared = inner.lock();
            shared.drain_outputs();
            for bytes in shared.outgoing.drain(..) {
                write_buffer.extend_from_slice(&bytes);
            }
            let deadline = shared.machine.poll_timeout().map(|at| shared.clock.std_instant(at));
            Asked {
                deadline,
                close: std::mem::take(&mut shared.close_transport),
                connect: shared.connect_to.take(),
                ended: shared.machine.is_ended(),
            }
        };
        if asked.close {
            if let Some(stream) = stream.take() {
                flush_and_close(stream, &write_buffer, reactor).await;
            }
            write_buffer.clear();
            unflushed = false;
        }
        if let Some(address) = asked.connect {
            stream = open_transport(&inner, &urls[address], tls.as_ref(), connect_timeout, reactor)
                .await;
            // A new transport is a new connection for the session: its frames start afresh.
            reader = FrameReader::new(FRAME_SIZE_CEILING);
            continue;
        }
        if asked.ended && stream.is_none() {
            return;
        }
        arm(&mut timer, &mut armed, asked.deadline);
        let waits = Waits { read_buffer: &mut read_buffer, write_buffer: &write_buffer, unflushed };
        match next_event(stream.as_mut(), &inner, waits, &mut timer).await {
            Step::Read(Ok(0)) => {
                stream = None;
                write_buffer.clear();
                transport_lost(&inner, "the server closed the socket without a Close");
            }
            Step::Read(Err(error)) | Step::Wrote(Err(error), _) | Step::Flushed(Err(error)) => {
                stream = None;
                write_buffer.clear();
                transport_lost(&inner, &error.to_string());
            }
            Step::Read(Ok(n)) => {
                reader.feed(read_buffer.split_to(n).freeze());
                let (frames, error) = decode_frames(&mut reader);
                let mut shared = inner.lock();
                let now = shared.now();
                shared.machine.handle_input(now, SessionInput::Frames { frames, error });
            }
            Step::Wrote(Ok(n), flushed) => {
                let _ = write_buffer.split_to(n);
                unflushed = !flushed && stream.as_ref().is_some_and(|stream| stream.buffers_writes);
            }
            Step::Flushed(Ok(())) => unflushed = false,
            Step::Woken => {}
            Step::Timer => {
                armed = None;
                let mut shared = inner.lock();
                let now = shared.now();
                shared.machine.handle_input(now, SessionInput::Timeout);
            }
        }
    }
}

/// Every whole frame `reader` holds, and the error it stopped at, if any. After an error the
/// session ends the connection, and whatever follows on this transport is not looked at.
fn decode_frames(reader: &mut FrameReader) -> (Vec<Frame>, Option<DecodeError>) {
    let mut frames = Vec::new();
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(error) => return (frames, Some(error)),
        }
    }
}

/// Sets `timer` to fire by `deadline`. Setting an async-io timer registers it with the reactor
/// and wakes the reactor's thread (a tokio one is cheaper, but the same rule serves both), and the session's deadline moves on with almost every
/// confirm (it follows the oldest unconfirmed publish), so the timer is set again only when the
/// deadline comes earlier than it is set for. When the deadline moved later, the timer fires
/// early: the session, given a `Timeout` with nothing due, does nothing, and the timer is set
/// anew from its next deadline.
fn arm(timer: &mut Timer, armed: &mut Option<StdInstant>, deadline: Option<StdInstant>) {
    if let Some(deadline) = deadline {
        if armed.is_none_or(|at| deadline < at) {
            timer.set_at(deadline);
            *armed = Some(deadline);
        }
    }
}

/// How long a closing connection may take to write what it has left (its `Close` above all):
/// a server that stopped reading must not hold the next connection up.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

async fn flush_and_close(mut stream: Transport, bytes: &[u8], reactor: Reactor) {
    let flush = std::pin::pin!(stream.write_and_close(bytes));
    let _ = future::select(flush, reactor.sleep(CLOSE_FLUSH_TIMEOUT)).await;
}

/// Opens a transport to `url` for the session (TLS with `tls`) and tells it how that went.
async fn open_transport(
    inner: &Inner,
    url: &ServerUrl,
    tls: Option<&TlsClient>,
    connect_timeout: Duration,
    reactor: Reactor,
) -> Option<Transport> {
    let result = Transport::open(url, tls, connect_timeout, reactor).await;
    let mut shared = inner.lock();
    let now = shared.now();
    match result {
        Ok(stream) => {
            shared.machine.handle_input(now, SessionInput::TransportUp);
            Some(stream)
        }
        Err(reason) => {
            shared.machine.handle_input(now, SessionInput::ConnectFailed { reason });
            None
        }
    }
}

/// The socket failed or reached its end under the session: it decides what comes next.
fn transport_lost(inner: &Inner, how: &str) {
    let mut shared = inner.lock();
    let now = shared.now();
    shared.machine.handle_input(now, SessionInput::TransportClosed { reason: how.to_string() });
}

enum Step {
    Read(std::io::Result<usize>),
    /// Bytes written, and whether they were also flushed.
    Wrote(std::io::Result<usize>, bool),
    Flushed(std::io::Result<()>),
    Woken,
    Timer,
}

/// The buffers the next event may read into or write from.
struct Waits<'a> {
    read_buffer: &'a mut BytesMut,
    write_buffer: &'a BytesMut,
    /// Written bytes may wait in the transport's buffer: flush when nothing is left to write.
    unflushed: bool,
}

/// Waits for whichever comes first: bytes to read, room to write (or a flush done), a nudge,
/// the timer. Without a transport, only the last two.
async fn next_event(
    stream: Option<&mut Transport>,
    inner: &Inner,
    waits: Waits<'_>,
    timer: &mut Timer,
) -> Step {
    let Waits { read_buffer, write_buffer, unflushed } = waits;
    if read_buffer.len() < 4096 {
        *read_buffer = BytesMut::zeroed(READ_CHUNK_BYTES);
    }
    // The two halves are apart, so both directions can wait at once.
    let buffers_writes = stream.as_ref().is_some_and(|stream| stream.buffers_writes);
    let (reader, writer) = match stream {
        Some(stream) => (Some(&mut stream.reader), Some(&mut stream.writer)),
        None => (None, None),
    };
    let read = async {
        match reader {
            Some(reader) => Step::Read(reader.read(&mut read_buffer[..]).await),
            None => future::pending().await,
        }
    };
    let write = async {
        match writer {
            Some(writer) if !write_buffer.is_empty() => {
                let wrote = writer.write(write_buffer).await;
                // Flushing TLS at once when the socket takes it saves the loop a turn per
                // batch; when it does not, the flush waits for the next turn.
                let flushed = buffers_writes
                    && wrote.is_ok()
                    && writer.flush().now_or_never().is_some_and(|result| result.is_ok());
                Step::Wrote(wrote, flushed)
            }
            Some(writer) if unflushed => Step::Flushed(writer.flush().await),
            _ => future::pending().await,
        }
    };
    let woken = async {
        future::poll_fn(|cx| inner.poll_woken(cx)).await;
        Step::Woken
    };
    let timer = async {
        timer.await;
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
