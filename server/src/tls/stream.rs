//! One stream type for plain and TLS connections, so that the connection tasks (and the admin
//! endpoint) have one code path: an enum rather than a boxed trait object, so a plain
//! connection pays a branch, not an allocation and a virtual call per read and write.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite, IoSlice};

/// A connection as accepted: the runtime's stream, or TLS over it.
pub enum ServerStream<S> {
    Plain(S),
    /// Boxed: rustls' connection state is a few kilobytes, a plain stream a few words.
    Tls(Box<futures_rustls::server::TlsStream<S>>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ServerStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            ServerStream::Tls(stream) => poll_read_ready(stream.as_mut(), cx, buf),
        }
    }
}

/// Reads all that `reader` has ready, up to `buf`'s length, waiting only if it has nothing.
/// For TLS: one read of a TLS stream yields the records decrypted so far (rustls reads the
/// socket a few KiB at a time and stops at the first record with data), where one read of a
/// plain socket yields all that arrived. Without this a burst of a client's frames reaches the
/// broker in more, smaller batches over TLS, and each batch costs the broker a turn and the
/// storage worker a write.
fn poll_read_ready<R: AsyncRead + Unpin>(
    reader: &mut R,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    let mut filled = 0;
    while filled < buf.len() {
        match Pin::new(&mut *reader).poll_read(cx, &mut buf[filled..]) {
            Poll::Ready(Ok(0)) => break,
            Poll::Ready(Ok(n)) => filled += n,
            // What was read is returned now; the error (or the end) comes with the next read:
            // rustls keeps a failed connection's error and gives it again.
            Poll::Ready(Err(_)) | Poll::Pending if filled > 0 => break,
            other => return other,
        }
    }
    Poll::Ready(Ok(filled))
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ServerStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            ServerStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            ServerStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            ServerStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(stream) => Pin::new(stream).poll_close(cx),
            ServerStream::Tls(stream) => Pin::new(stream.as_mut()).poll_close(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Gives its chunks one per read, then has nothing more yet (or ends, if `ends`).
    struct Chunks {
        chunks: VecDeque<&'static [u8]>,
        ends: bool,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            match self.chunks.pop_front() {
                Some(chunk) => {
                    buf[..chunk.len()].copy_from_slice(chunk);
                    Poll::Ready(Ok(chunk.len()))
                }
                None if self.ends => Poll::Ready(Ok(0)),
                None => Poll::Pending,
            }
        }
    }

    fn read_once(reader: &mut Chunks, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        poll_read_ready(reader, &mut cx, buf)
    }

    #[test]
    fn one_read_takes_every_record_ready() {
        let mut reader =
            Chunks { chunks: VecDeque::from([&b"first "[..], b"second"]), ends: false };
        let mut buf = [0u8; 64];
        let Poll::Ready(Ok(n)) = read_once(&mut reader, &mut buf) else { panic!("data was ready") };
        assert_eq!(&buf[..n], b"first second");
        assert!(read_once(&mut reader, &mut buf).is_pending(), "then it waits");
    }

    #[test]
    fn the_end_comes_after_the_data_before_it() {
        let mut reader = Chunks { chunks: VecDeque::from([&b"last"[..]]), ends: true };
        let mut buf = [0u8; 64];
        assert!(matches!(read_once(&mut reader, &mut buf), Poll::Ready(Ok(4))));
        assert!(matches!(read_once(&mut reader, &mut buf), Poll::Ready(Ok(0))));
    }

    #[test]
    fn a_full_buffer_returns_at_once() {
        let mut reader = Chunks { chunks: VecDeque::from([&b"abcd"[..], b"efgh"]), ends: false };
        let mut buf = [0u8; 4];
        assert!(matches!(read_once(&mut reader, &mut buf), Poll::Ready(Ok(4))));
        assert_eq!(&buf, b"abcd");
    }
}
