//! A tokio socket seen through the `futures::io` traits the server is written against.
//!
//! `tokio_util::compat` would do, but it leaves `poll_write_vectored` to the trait's default,
//! which writes only the first buffer. rustls hands its encrypted records to a vectored write,
//! one buffer per record, so over TLS every 16 KiB record cost a `sendto` of its own (12× the
//! plain connection's sends for the same deliveries). This one forwards the vectored write to
//! tokio's `writev`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite, IoSlice};
use tokio::io::{AsyncRead as TokioRead, AsyncWrite as TokioWrite, ReadBuf};
use tokio::net::TcpStream;

/// An accepted connection.
pub struct TokioStream(pub TcpStream);

impl AsyncRead for TokioStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut read = ReadBuf::new(buf);
        Pin::new(&mut self.0).poll_read(cx, &mut read).map_ok(|()| read.filled().len())
    }
}

impl AsyncWrite for TokioStream {
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
        bufs: &[IoSlice<'_>],
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_vectored_write_sends_every_buffer_at_once() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let client = TcpStream::connect(address);
            let (accepted, client) = futures::join!(listener.accept(), client);
            let (mut server, mut client) = (TokioStream(accepted.unwrap().0), client.unwrap());
            let records = [IoSlice::new(b"first record "), IoSlice::new(b"second record")];
            let written = server.write_vectored(&records).await.unwrap();
            assert_eq!(written, 26, "one call takes both buffers, as writev does");
            server.close().await.unwrap();
            let mut received = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut client, &mut received).await.unwrap();
            assert_eq!(received, b"first record second record");
            let mut reply = TokioStream(client);
            assert_eq!(
                reply.read(&mut [0u8; 4]).await.unwrap(),
                0,
                "the peer's close reads as the end"
            );
        });
    }
}
