//! One connection's byte stream, plain TCP or TLS, split so that the driver can wait to read
//! and to write at once.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_io::{Async, Timer};
use futures::future::{self, Either};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::reactor::Reactor;
#[cfg(feature = "tokio")]
use crate::reactor::TokioIo;
use crate::tls::TlsClient;
use crate::url::ServerUrl;

pub(crate) struct Transport {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
    /// TLS may keep in its buffer what the socket did not take: the driver flushes once a
    /// batch is written.
    pub buffers_writes: bool,
}

impl Transport {
    /// Connects to `url` (and runs the TLS handshake with `tls`), all within `timeout`, on
    /// `reactor`'s sockets.
    pub async fn open(
        url: &ServerUrl,
        tls: Option<&TlsClient>,
        timeout: Duration,
        reactor: Reactor,
    ) -> Result<Transport, String> {
        match reactor {
            Reactor::AsyncIo => {
                let socket = connect_tcp(url, timeout).await?;
                match tls {
                    Some(tls) => Transport::secured(url, tls, timeout, reactor, socket).await,
                    None => {
                        let socket = Arc::new(socket);
                        Ok(Transport::plain(Plain(socket.clone()), Plain(socket)))
                    }
                }
            }
            #[cfg(feature = "tokio")]
            Reactor::Tokio => {
                let socket = connect_tokio(url, timeout).await?;
                match tls {
                    Some(tls) => {
                        Transport::secured(url, tls, timeout, reactor, TokioIo(socket)).await
                    }
                    None => {
                        let (reader, writer) = socket.into_split();
                        Ok(Transport::plain(TokioIo(reader), TokioIo(writer)))
                    }
                }
            }
        }
    }

    fn plain(
        reader: impl AsyncRead + Send + Unpin + 'static,
        writer: impl AsyncWrite + Send + Unpin + 'static,
    ) -> Transport {
        Transport { reader: Box::new(reader), writer: Box::new(writer), buffers_writes: false }
    }

    /// Runs the TLS handshake over `socket` within `timeout`.
    async fn secured<S>(
        url: &ServerUrl,
        tls: &TlsClient,
        timeout: Duration,
        reactor: Reactor,
        socket: S,
    ) -> Result<Transport, String>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let handshake = std::pin::pin!(tls.handshake(&url.host, socket));
        let stream = match future::select(handshake, reactor.sleep(timeout)).await {
            Either::Left((result, _)) => result?,
            Either::Right(_) => {
                let (addr, ms) = (url.authority(), timeout.as_millis());
                return Err(format!("no TLS handshake with {addr} within {ms} ms"));
            }
        };
        let (reader, writer) = stream.split();
        Ok(Transport { reader: Box::new(reader), writer: Box::new(writer), buffers_writes: true })
    }

    /// Writes `bytes`, then closes (TLS first sends its close_notify).
    pub async fn write_and_close(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.close().await
    }
}

/// The addresses `url`'s host resolves to.
fn resolve(url: &ServerUrl) -> Result<Vec<SocketAddr>, String> {
    // Name resolution blocks; for a numeric address it returns at once.
    Ok((url.host.as_str(), url.port).to_socket_addrs().map_err(|e| e.to_string())?.collect())
}

/// Tries each address the host resolves to, each for at most `timeout`.
async fn connect_tcp(url: &ServerUrl, timeout: Duration) -> Result<Async<TcpStream>, String> {
    let mut last_error = format!("{} resolves to no address", url.host);
    for addr in resolve(url)? {
        let attempt = std::pin::pin!(Async::<TcpStream>::connect(addr));
        match future::select(attempt, Timer::after(timeout)).await {
            Either::Left((Ok(stream), _)) => {
                stream.get_ref().set_nodelay(true).map_err(|e| e.to_string())?;
                return Ok(stream);
            }
            Either::Left((Err(e), _)) => last_error = e.to_string(),
            Either::Right(_) => last_error = no_answer(addr, timeout),
        }
    }
    Err(last_error)
}

/// [`connect_tcp`] on the current tokio runtime's reactor.
#[cfg(feature = "tokio")]
async fn connect_tokio(
    url: &ServerUrl,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, String> {
    let mut last_error = format!("{} resolves to no address", url.host);
    for addr in resolve(url)? {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                return Ok(stream);
            }
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = no_answer(addr, timeout),
        }
    }
    Err(last_error)
}

fn no_answer(addr: SocketAddr, timeout: Duration) -> String {
    format!("no answer from {addr} within {} ms", timeout.as_millis())
}

/// A plain socket shared by its two halves: async-io reads and writes through `&Async`.
struct Plain(Arc<Async<TcpStream>>);

impl AsyncRead for Plain {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Plain {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.0).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.0).poll_close(cx)
    }
}
