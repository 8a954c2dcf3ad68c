//! The connection's I/O thread: moves bytes between the socket and the core `Client`, and
//! fires its timers. It runs its own small async loop (async-io), so the client works the same
//! under tokio, smol, or no runtime at all.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use async_io::{Async, Timer};
use bytes::BytesMut;
use chute_core::client::ClientInput;
use chute_core::Instant;
use chute_protocol::ErrorCode;
use futures::future::{self, Either};
use futures::io::{AsyncReadExt, AsyncWriteExt};

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

/// Runs until the connection is closed by either side.
pub(crate) async fn drive(
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
            (shared.machine.poll_timeout(), shared.close_transport)
        };
        if close {
            let _ = (&stream).write_all(&write_buffer).await;
            let _ = (&stream).close().await;
            return;
        }
        match next_event(
            &stream,
            &wake,
            &mut read_buffer,
            &write_buffer,
            deadline.map(|d| clock.std_instant(d)),
        )
        .await
        {
            Step::Read(Ok(0)) | Step::Read(Err(_)) | Step::Wrote(Err(_)) => {
                let mut shared = inner.lock();
                shared.machine.handle_input(clock.now(), ClientInput::Closed);
                shared.drain_outputs();
                shared.fail_everything(ErrorCode::INTERNAL, "connection lost".into());
                return;
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
