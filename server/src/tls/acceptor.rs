//! TLS handshakes, off the broker task: the TLS listener's accept loop starts each handshake in
//! a task of its own, bounded in time (`tls.handshake_timeout_ms`) and in number
//! (`tls.handshakes_max`: past it a new TCP connection is closed at once), so a slow or
//! hostile handshake never holds up accepting or the broker. Only a finished handshake reaches
//! the broker, as an accepted connection whose [`PeerInfo`] says it is encrypted and which
//! user its client certificate names.
//!
//! The configuration each handshake uses is read from an [`ArcSwap`] when it starts, so a
//! reload changes what new handshakes see while established connections keep theirs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chute_core::PeerInfo;
use futures::channel::{mpsc, oneshot};
use futures::future::{self, Either};
use futures::io::{AsyncRead, AsyncWrite};
use futures::SinkExt;
use rustls::ServerConfig;

use super::counters::TlsCounters;
use super::identity::certificate_user;
use super::stream::ServerStream;
use crate::config::ClientIdentity;
use crate::runtime::{accept_until_stopped, Runtime};

/// A connection ready for the broker: its stream and what is known of its peer.
pub struct Accepted<S> {
    pub stream: ServerStream<S>,
    pub peer: PeerInfo,
}

/// What handshakes read; replaced whole by a reload.
pub struct Live {
    /// The client listener's configuration (client certificates per `tls.client_auth`).
    pub client: Arc<ServerConfig>,
    /// The admin endpoint's: the same certificate, no client certificate.
    pub admin: Arc<ServerConfig>,
    pub identity: ClientIdentity,
    pub handshake_timeout: Duration,
    pub handshakes_max: usize,
}

/// Why a handshake did not finish, as the metrics count it.
#[derive(Debug)]
pub enum HandshakeFailure {
    TimedOut,
    /// The client's certificate was missing (under `required`) or did not verify.
    ClientCertificate(std::io::Error),
    Other(std::io::Error),
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeFailure::TimedOut => f.write_str("timed out"),
            HandshakeFailure::ClientCertificate(error) => write!(f, "client certificate: {error}"),
            HandshakeFailure::Other(error) => error.fmt(f),
        }
    }
}

/// The handshakes' shared state: the live configuration, the count running, the counters.
pub struct TlsAcceptor {
    live: ArcSwap<Live>,
    in_progress: AtomicUsize,
    counters: Arc<TlsCounters>,
}

impl TlsAcceptor {
    pub fn new(live: Live, counters: Arc<TlsCounters>) -> TlsAcceptor {
        TlsAcceptor {
            live: ArcSwap::from_pointee(live),
            in_progress: AtomicUsize::new(0),
            counters,
        }
    }

    /// New handshakes use `live` from now on.
    pub fn swap(&self, live: Live) {
        self.live.store(Arc::new(live));
    }

    /// A slot for one client handshake, or `None` (counted) when `tls.handshakes_max` are
    /// running.
    fn try_start(self: &Arc<Self>) -> Option<HandshakeSlot> {
        let max = self.live.load().handshakes_max;
        let taken = self.in_progress.fetch_update(Ordering::AcqRel, Ordering::Acquire, |running| {
            (running < max).then_some(running + 1)
        });
        match taken {
            Ok(running) => {
                self.counters.handshakes_in_progress.store(running as u64 + 1, Ordering::Relaxed);
                Some(HandshakeSlot(self.clone()))
            }
            Err(_) => {
                TlsCounters::add(&self.counters.handshakes_refused_over_limit);
                None
            }
        }
    }

    /// The client handshake on `stream`, bounded by `tls.handshake_timeout_ms`.
    pub async fn handshake<R: Runtime>(
        &self,
        runtime: &R,
        stream: R::Stream,
        addr: SocketAddr,
    ) -> Result<Accepted<R::Stream>, HandshakeFailure> {
        let live = self.live.load_full();
        let tls = within(runtime, live.handshake_timeout, live.client.clone(), stream).await?;
        let certificate_user = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| certificate_user(leaf, live.identity));
        let peer = PeerInfo { addr: Some(addr), tls: true, certificate_user };
        Ok(Accepted { stream: ServerStream::Tls(Box::new(tls)), peer })
    }

    /// The admin endpoint's handshake (HTTPS; no client certificate), bounded as the client
    /// listener's. Not counted: probes and scrapers are not clients.
    pub async fn admin_handshake<R: Runtime>(
        &self,
        runtime: &R,
        stream: R::Stream,
    ) -> Result<ServerStream<R::Stream>, HandshakeFailure> {
        let live = self.live.load_full();
        let tls = within(runtime, live.handshake_timeout, live.admin.clone(), stream).await?;
        Ok(ServerStream::Tls(Box::new(tls)))
    }

    fn count(&self, result: &Result<(), &HandshakeFailure>) {
        let counter = match result {
            Ok(()) => &self.counters.handshakes,
            Err(HandshakeFailure::TimedOut) => &self.counters.handshakes_timed_out,
            Err(HandshakeFailure::ClientCertificate(_)) => {
                &self.counters.handshakes_client_certificate_refused
            }
            Err(HandshakeFailure::Other(_)) => &self.counters.handshakes_failed_other,
        };
        TlsCounters::add(counter);
    }
}

/// Runs the server side of a handshake on `stream` with `config`, for at most `timeout`.
async fn within<R: Runtime, S: AsyncRead + AsyncWrite + Unpin>(
    runtime: &R,
    timeout: Duration,
    config: Arc<ServerConfig>,
    stream: S,
) -> Result<futures_rustls::server::TlsStream<S>, HandshakeFailure> {
    let accept = futures_rustls::TlsAcceptor::from(config).accept(stream);
    let deadline = runtime.sleep_until(Instant::now() + timeout);
    futures::pin_mut!(deadline);
    match future::select(accept, deadline).await {
        Either::Left((Ok(tls), _)) => Ok(tls),
        Either::Left((Err(error), _)) => Err(classify(error)),
        Either::Right(((), _)) => Err(HandshakeFailure::TimedOut),
    }
}

fn classify(error: std::io::Error) -> HandshakeFailure {
    let rustls_error = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_)) => {
            HandshakeFailure::ClientCertificate(error)
        }
        _ => HandshakeFailure::Other(error),
    }
}

/// One of the `tls.handshakes_max` handshake slots, given back on drop.
struct HandshakeSlot(Arc<TlsAcceptor>);

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let running = self.0.in_progress.fetch_sub(1, Ordering::AcqRel) - 1;
        self.0.counters.handshakes_in_progress.store(running as u64, Ordering::Relaxed);
    }
}

/// Accepts TLS connections until `stop` fires, each handshake in a task of its own; finished
/// ones go to the broker task through `accepted`.
pub async fn accept_loop<R: Runtime>(
    runtime: R,
    listener: R::Listener,
    acceptor: Arc<TlsAcceptor>,
    accepted: mpsc::Sender<Accepted<R::Stream>>,
    mut stop: oneshot::Receiver<()>,
) {
    while let Some((stream, addr)) =
        accept_until_stopped(&runtime, &listener, &mut stop, "tls").await
    {
        let Some(slot) = acceptor.try_start() else {
            tracing::debug!(%addr, "TLS connection closed: tls.handshakes_max handshakes running");
            continue;
        };
        let task = handshake_task(runtime.clone(), slot, stream, addr, accepted.clone());
        runtime.spawn(task);
    }
}

async fn handshake_task<R: Runtime>(
    runtime: R,
    slot: HandshakeSlot,
    stream: R::Stream,
    addr: SocketAddr,
    mut accepted: mpsc::Sender<Accepted<R::Stream>>,
) {
    let acceptor = &slot.0;
    let result = acceptor.handshake(&runtime, stream, addr).await;
    acceptor.count(&result.as_ref().map(|_| ()));
    match result {
        Ok(connection) => {
            // The slot is held until the broker task has the connection, so that handshakes
            // finished but not yet taken count against the limit too.
            let _ = accepted.send(connection).await;
        }
        Err(failure) => tracing::debug!(%addr, %failure, "TLS handshake failed"),
    }
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acceptor(handshakes_max: usize) -> Arc<TlsAcceptor> {
        let pki = super::super::material::tests::pki((2099, 1, 1));
        let settings = crate::config::TlsSettings {
            cert_file: Some("c".into()),
            key_file: Some("k".into()),
            ..Default::default()
        };
        let files = super::super::material::Files {
            cert: pki.cert_pem.into(),
            key: pki.key_pem.into(),
            client_ca: None,
        };
        let material = super::super::material::Material::check(&settings, files, 0).unwrap();
        let live = Live {
            client: material.client_config(&settings).unwrap(),
            admin: material.admin_config(),
            identity: ClientIdentity::CommonName,
            handshake_timeout: Duration::from_secs(1),
            handshakes_max,
        };
        Arc::new(TlsAcceptor::new(live, Arc::new(TlsCounters::default())))
    }

    /// Past `tls.handshakes_max` running handshakes, the next is refused and counted; a slot
    /// given back makes room again.
    #[test]
    fn handshakes_are_bounded_and_counted() {
        let acceptor = acceptor(2);
        let first = acceptor.try_start().expect("a first slot");
        let _second = acceptor.try_start().expect("a second slot");
        assert!(acceptor.try_start().is_none());
        let counters = &acceptor.counters;
        assert_eq!(counters.handshakes_refused_over_limit.load(Ordering::Relaxed), 1);
        assert_eq!(counters.handshakes_in_progress.load(Ordering::Relaxed), 2);
        drop(first);
        assert_eq!(counters.handshakes_in_progress.load(Ordering::Relaxed), 1);
        assert!(acceptor.try_start().is_some());
    }

    /// rustls' refusals of a client certificate are told apart from other failures.
    #[test]
    fn client_certificate_failures_are_told_apart() {
        let io = |error: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, error);
        let missing = classify(io(rustls::Error::NoCertificatesPresented));
        assert!(matches!(missing, HandshakeFailure::ClientCertificate(_)), "{missing:?}");
        let untrusted = classify(io(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )));
        assert!(matches!(untrusted, HandshakeFailure::ClientCertificate(_)), "{untrusted:?}");
        let other = classify(io(rustls::Error::DecryptError));
        assert!(matches!(other, HandshakeFailure::Other(_)), "{other:?}");
        let hung_up = classify(std::io::ErrorKind::UnexpectedEof.into());
        assert!(matches!(hung_up, HandshakeFailure::Other(_)), "{hung_up:?}");
    }
}
