//! Per-connection tasks: a reader that forwards received bytes to the broker task, and a
//! writer that writes what the broker sends and reports each flush back.
//!
//! The broker task owns all state; these tasks only move bytes. Reading stops while the broker
//! says `PauseRead` (the gate), which is how backpressure reaches the socket.
//!
//! Closing is lingering, as a careful HTTP server's is: once the broker is done with a
//! connection, the reader drops what still arrives until the writer has written everything
//! and shut its side, and then for [`LINGER`] more (or until the client closes too). Closing a
//! socket while received bytes lie unread makes the kernel send a reset at once, discarding
//! what the socket has not sent yet: the `Error` and `Close` frames that say why.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use chute_core::ConnId;
use futures::channel::mpsc;
use futures::future::{self, Either};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use futures::task::AtomicWaker;
use futures::{SinkExt, StreamExt};

use crate::event_loop::LoopEvent;
use crate::runtime::Runtime;

/// Bytes read from a socket in one go, at most; one `Received` input each.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// The read buffer of a connection until one read fills it. Most connections of a busy
/// server are idle at any moment, each holding its read buffer: this much, not
/// [`READ_CHUNK_BYTES`] (10,000 idle connections: about 40 MB rather than 650).
const READ_CHUNK_FIRST_BYTES: usize = 4 * 1024;
/// Below this much room left, a fresh read buffer is started.
const READ_CHUNK_MIN_BYTES: usize = 4 * 1024;
/// How long the reader goes on dropping what arrives after the writer shut its side.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
/// What a lingering reader drops at most; then it stops reading (the socket still closes
/// only once the writer is done).
const LINGER_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Bytes gathered from queued `Send`s into one socket write, at most.
const WRITE_GATHER_BYTES: usize = 256 * 1024;

/// Lets the broker task pause and stop a reader.
#[derive(Default)]
pub struct ReadGate {
    paused: AtomicBool,
    closed: AtomicBool,
    /// The writer has written everything and shut its side of the socket.
    written: AtomicBool,
    waker: AtomicWaker,
}

impl ReadGate {
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        self.waker.wake();
    }

    /// The broker is done with the connection: nothing more is forwarded.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn written(&self) {
        self.written.store(true, Ordering::Release);
        self.close();
    }

    /// Resolves once the writer has shut its side.
    async fn wait_written(&self) {
        future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            match self.written.load(Ordering::Acquire) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        })
        .await
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves when reading may continue (`true`) or must stop for good (`false`).
    async fn wait_open(&self) -> bool {
        future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.is_closed() {
                Poll::Ready(false)
            } else if self.paused.load(Ordering::Acquire) {
                Poll::Pending
            } else {
                Poll::Ready(true)
            }
        })
        .await
    }

    /// Resolves when the gate is closed.
    async fn closed(&self) {
        future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.is_closed() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// What the broker task sends a writer.
pub enum WriterMessage {
    Data(Bytes),
    /// Write what came before, then close the socket.
    Close,
}

pub async fn read_loop<S: AsyncRead + Unpin, R: Runtime>(
    runtime: R,
    conn: ConnId,
    mut socket: ReadHalf<S>,
    gate: Arc<ReadGate>,
    mut events: mpsc::Sender<LoopEvent>,
) {
    // Reads land in the unused tail of one zeroed allocation; each read's bytes are split off
    // and shared with the broker (payloads end up pointing into it), so the buffer is zeroed
    // once per chunk received, not once per read. Small until a read fills it.
    let mut buffer = BytesMut::new();
    let mut chunk_bytes = READ_CHUNK_FIRST_BYTES;
    loop {
        if !gate.wait_open().await {
            return linger(&runtime, &mut socket, &gate).await;
        }
        if buffer.len() < READ_CHUNK_MIN_BYTES {
            buffer = BytesMut::zeroed(chunk_bytes);
        }
        let read = {
            let read = socket.read(&mut buffer[..]);
            let closed = gate.closed();
            futures::pin_mut!(read, closed);
            match future::select(read, closed).await {
                Either::Left((result, _)) => result,
                Either::Right(((), _)) => return linger(&runtime, &mut socket, &gate).await,
            }
        };
        match read {
            Ok(0) | Err(_) => {
                let _ = events.send(LoopEvent::ReadClosed(conn)).await;
                return;
            }
            Ok(n) => {
                if n == buffer.len() {
                    chunk_bytes = READ_CHUNK_BYTES;
                }
                let bytes = buffer.split_to(n).freeze();
                if events.send(LoopEvent::Received(conn, bytes)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Drops what arrives until the writer has shut its side and then [`LINGER`] more, or until
/// the client closes or [`LINGER_BYTES_MAX`] arrived. The read half is dropped on return.
async fn linger<S: AsyncRead + Unpin, R: Runtime>(
    runtime: &R,
    socket: &mut ReadHalf<S>,
    gate: &ReadGate,
) {
    let mut dropped = 0;
    let written = gate.wait_written();
    if !drop_input(socket, &mut dropped, written).await {
        return;
    }
    let deadline = runtime.sleep_until(std::time::Instant::now() + LINGER);
    drop_input(socket, &mut dropped, deadline).await;
}

/// Reads and drops input until `until` resolves (true), or the client closes or too much
/// arrived (false).
async fn drop_input<S: AsyncRead + Unpin>(
    socket: &mut ReadHalf<S>,
    dropped: &mut usize,
    until: impl std::future::Future<Output = ()>,
) -> bool {
    futures::pin_mut!(until);
    let mut scratch = vec![0u8; 16 * 1024];
    while *dropped < LINGER_BYTES_MAX {
        let read = socket.read(&mut scratch);
        futures::pin_mut!(read);
        match future::select(read, until.as_mut()).await {
            Either::Left((Ok(n), _)) if n > 0 => *dropped += n,
            Either::Left(_) => return false,
            Either::Right(_) => return true,
        }
    }
    false
}

pub async fn write_loop<S: AsyncWrite + Unpin>(
    conn: ConnId,
    mut socket: WriteHalf<S>,
    mut messages: mpsc::UnboundedReceiver<WriterMessage>,
    gate: Arc<ReadGate>,
    mut events: mpsc::Sender<LoopEvent>,
) {
    let mut gather = BytesMut::new();
    let mut closing = false;
    while !closing {
        let Some(first) = messages.next().await else {
            break;
        };
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batch_bytes = 0;
        let mut next = Some(first);
        // Take everything already queued, up to a bound, so one syscall carries many frames.
        while let Some(message) = next.take() {
            match message {
                WriterMessage::Data(bytes) => {
                    batch_bytes += bytes.len();
                    batch.push(bytes);
                }
                WriterMessage::Close => closing = true,
            }
            if closing || batch_bytes >= WRITE_GATHER_BYTES {
                break;
            }
            next = messages.try_recv().ok();
        }
        if batch_bytes > 0 {
            if write_batch(&mut socket, &batch, &mut gather).await.is_err() {
                break;
            }
            let flushed = LoopEvent::Flushed(conn, batch_bytes as u64);
            if events.send(flushed).await.is_err() {
                break;
            }
        }
    }
    let _ = socket.close().await;
    gate.written();
    let _ = events.send(LoopEvent::WriterDone(conn)).await;
}

/// Writes `batch` as one write (TLS cuts it into as few records as its size allows), then
/// flushes: a TLS stream keeps what the socket did not take in its own buffer when the write
/// returns, and only a flush pushes it out, so without one the last bytes of a burst would
/// wait for the next write.
async fn write_batch<W: AsyncWrite + Unpin>(
    socket: &mut W,
    batch: &[Bytes],
    gather: &mut BytesMut,
) -> std::io::Result<()> {
    if let [single] = batch {
        socket.write_all(single).await?;
    } else {
        gather.clear();
        for bytes in batch {
            gather.extend_from_slice(bytes);
        }
        socket.write_all(gather).await?;
    }
    socket.flush().await
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::Context;

    use super::*;

    /// A stream that keeps what is written until it is flushed, as a TLS stream does with the
    /// records a full socket did not take.
    #[derive(Default)]
    struct Buffering {
        held: Vec<u8>,
        sent: Vec<u8>,
        writes: usize,
    }

    impl AsyncWrite for Buffering {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes += 1;
            self.held.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            let held = std::mem::take(&mut self.held);
            self.sent.extend_from_slice(&held);
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.poll_flush(cx)
        }
    }

    fn write(stream: &mut Buffering, frames: &[Bytes]) {
        futures::executor::block_on(write_batch(stream, frames, &mut BytesMut::new())).unwrap();
    }

    /// A batch leaves the stream's buffer before the writer waits for more: a lone small
    /// frame (a confirm) is sent at once.
    #[test]
    fn a_batch_is_flushed() {
        let mut stream = Buffering::default();
        let frame = Bytes::from_static(b"a small frame");
        write(&mut stream, std::slice::from_ref(&frame));
        assert_eq!(stream.sent, frame);
        assert!(stream.held.is_empty());
    }

    /// Queued frames go out as one write, so TLS makes few records of them.
    #[test]
    fn a_batch_is_one_write() {
        let mut stream = Buffering::default();
        let frames: Vec<Bytes> = (0..100u8).map(|n| Bytes::from(vec![n; 300])).collect();
        write(&mut stream, &frames);
        assert_eq!(stream.writes, 1);
        assert_eq!(stream.sent, frames.concat());
    }
}
