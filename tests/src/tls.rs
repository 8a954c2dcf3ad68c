//! TLS for the black-box tests: a test PKI made by rcgen inside the test (no private key is
//! checked in), written to a directory the server's configuration names, and a rustls client
//! (ring provider, blocking, over a std `TcpStream`) that speaks the protocol by raw frames.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chute_protocol::{
    Ack, Credentials, Credit, Destination, Frame, FrameReader, Hello, HelloOk, Publish,
    PublishMessage, QueueDeclare, QueueDeclareOk, QueueOptions, Range, Subscribe, PREFACE,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// How long a test waits for any one answer of the server.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate authority of the test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `localhost` and 127.0.0.1, valid until `not_after` (year,
    /// month, day).
    pub fn server(&self, not_after: (i32, u8, u8)) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        self.sign(params)
    }

    /// A server certificate for these names only (no IP address unless one is listed), valid
    /// for decades.
    pub fn server_named(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        self.sign(params)
    }

    /// Writes the CA's certificate (PEM) to `path`, for a client to trust.
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.pem()).unwrap();
    }

    /// A client certificate with `common_name` and an e-mail SAN `email`.
    pub fn client(&self, common_name: &str, email: &str) -> Leaf {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.subject_alt_names = vec![SanType::Rfc822Name(email.try_into().unwrap())];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }
}

impl Leaf {
    /// Writes the certificate and key to `STEM.crt` and `STEM.key` in `dir`; their paths.
    pub fn write_to(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

/// Where the server's TLS files live: `cert.pem`, `key.pem` and `clients-ca.pem` in `dir`.
pub struct TlsFiles {
    pub dir: PathBuf,
}

impl TlsFiles {
    pub fn new(dir: &Path) -> TlsFiles {
        std::fs::create_dir_all(dir).unwrap();
        TlsFiles { dir: dir.to_path_buf() }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    pub fn client_ca(&self) -> PathBuf {
        self.dir.join("clients-ca.pem")
    }

    /// Writes the server's certificate and key (in place, one after the other).
    pub fn write_server(&self, leaf: &Leaf) {
        std::fs::write(self.cert(), &leaf.cert_pem).unwrap();
        std::fs::write(self.key(), &leaf.key_pem).unwrap();
    }

    pub fn write_client_ca(&self, ca: &Ca) {
        std::fs::write(self.client_ca(), ca.pem()).unwrap();
    }

    /// The `[tls]` keys naming these files, as TOML lines.
    pub fn config_lines(&self) -> String {
        format!(
            "cert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n",
            self.cert().display().to_string(),
            self.key().display().to_string(),
            self.client_ca().display().to_string()
        )
    }
}

/// A client configuration on the ring provider, trusting `trusted`, presenting `identity`.
pub fn client_config(trusted: &[&Ca], identity: Option<&Leaf>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in trusted {
        roots.add(ca.issuer.der().clone()).unwrap();
    }
    #[allow(deprecated)] // ring, as the server: see docs/SECURITY.md
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(leaf) => {
            let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(vec![leaf.der.clone()], key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr` as `localhost` and completes the client's side of the handshake. (In
/// TLS 1.3 the server's verdict on a client certificate comes after: see the first read.)
pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<TlsStream> {
    let socket = TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let name = ServerName::try_from("localhost").unwrap();
    let connection = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(connection, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The certificate the server presented on `stream`.
pub fn server_certificate(stream: &TlsStream) -> CertificateDer<'static> {
    stream.conn.peer_certificates().expect("a server certificate")[0].clone().into_owned()
}

/// A protocol session by raw frames over any byte stream: enough for `Hello`, a declare and
/// confirmed publishes.
pub struct RawSession<S> {
    stream: S,
    reader: FrameReader,
    published: u64,
    confirmed: u64,
}

impl<S: Read + Write> RawSession<S> {
    /// Sends the preface and `Hello` (anonymous, version 1), and waits for `HelloOk`.
    pub fn open(stream: S, client_name: &str) -> io::Result<(RawSession<S>, HelloOk)> {
        RawSession::open_with(stream, client_name, Credentials::Anonymous)
    }

    /// [`RawSession::open`] with `credentials` in `Hello`.
    pub fn open_with(
        mut stream: S,
        client_name: &str,
        credentials: Credentials,
    ) -> io::Result<(RawSession<S>, HelloOk)> {
        let hello = Frame::Hello(Hello {
            version_min: 1,
            version_max: 1,
            client_name: client_name.into(),
            credentials,
            heartbeat_ms: 0,
        });
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&PREFACE);
        hello.encode(&mut wire, u32::MAX).unwrap();
        stream.write_all(&wire)?;
        stream.flush()?;
        let mut session =
            RawSession { stream, reader: FrameReader::new(1 << 24), published: 0, confirmed: 0 };
        match session.receive()? {
            Frame::HelloOk(ok) => Ok((session, ok)),
            other => Err(io::Error::other(format!("expected HelloOk, got {other:?}"))),
        }
    }

    pub fn send(&mut self, frame: Frame) -> io::Result<()> {
        let mut wire = BytesMut::new();
        frame.encode(&mut wire, u32::MAX).unwrap();
        self.stream.write_all(&wire)?;
        self.stream.flush()
    }

    /// The next frame other than a heartbeat.
    pub fn receive(&mut self) -> io::Result<Frame> {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            match self.reader.next_frame() {
                Ok(Some(Frame::Heartbeat(_))) => continue,
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(error) => return Err(io::Error::other(format!("bad frame: {error:?}"))),
            }
            let read = self.stream.read(&mut buffer)?;
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.reader.feed(Bytes::copy_from_slice(&buffer[..read]));
        }
    }

    pub fn declare(&mut self, queue: &str) -> io::Result<QueueDeclareOk> {
        let declare = QueueDeclare {
            request_id: 1,
            name: queue.into(),
            options: QueueOptions::default(),
            passive: false,
        };
        self.send(Frame::QueueDeclare(declare))?;
        match self.receive()? {
            Frame::QueueDeclareOk(ok) => Ok(ok),
            other => Err(io::Error::other(format!("expected QueueDeclareOk, got {other:?}"))),
        }
    }

    /// Sends `batch` messages of `payload` to `queue` in one `Publish` frame, without waiting.
    pub fn publish(&mut self, queue: &str, payload: &Bytes, batch: usize) -> io::Result<()> {
        let messages = (0..batch).map(|_| PublishMessage::new(payload.clone())).collect();
        let publish =
            Publish { destination: Destination::Queue(queue.into()), mandatory: false, messages };
        self.published += batch as u64;
        self.send(Frame::Publish(publish))
    }

    /// Waits until every message published so far is confirmed.
    pub fn wait_confirms(&mut self) -> io::Result<()> {
        self.wait_confirmed(self.published)
    }

    /// Waits until at least `count` messages are confirmed.
    pub fn wait_confirmed(&mut self, count: u64) -> io::Result<()> {
        while self.confirmed < count {
            match self.receive()? {
                Frame::Confirm(confirm) => {
                    self.confirmed +=
                        confirm.ranges.iter().map(|r| u64::from(r.count)).sum::<u64>();
                }
                other => return Err(io::Error::other(format!("expected Confirm, got {other:?}"))),
            }
        }
        Ok(())
    }

    /// Subscribes to `queue` (subscription 1) with `credit`.
    pub fn subscribe(&mut self, queue: &str, credit: u32) -> io::Result<()> {
        let subscribe = Subscribe {
            request_id: 2,
            subscription: 1,
            queue: queue.into(),
            credit,
            lease_ms: None,
            rate: None,
        };
        self.send(Frame::Subscribe(subscribe))
    }

    /// Takes `count` deliveries of subscription 1, acking each `Deliver` frame's messages and
    /// giving their credit back as they arrive.
    pub fn consume(&mut self, count: u64) -> io::Result<()> {
        let mut consumed = 0;
        while consumed < count {
            let deliver = match self.receive()? {
                Frame::Deliver(deliver) => deliver,
                Frame::Done(_) => continue,
                other => return Err(io::Error::other(format!("expected Deliver, got {other:?}"))),
            };
            let mut ranges: Vec<Range> = Vec::new();
            for delivery in &deliver.deliveries {
                chute_protocol::push_to_ranges(&mut ranges, delivery.tag);
            }
            let taken = deliver.deliveries.len() as u32;
            consumed += u64::from(taken);
            let mut wire = BytesMut::new();
            Frame::Ack(Ack { request_id: 0, ranges }).encode(&mut wire, u32::MAX).unwrap();
            let credit = Credit { subscription: deliver.subscription, credit: taken };
            Frame::Credit(credit).encode(&mut wire, u32::MAX).unwrap();
            self.stream.write_all(&wire)?;
            self.stream.flush()?;
        }
        Ok(())
    }

    pub fn published(&self) -> u64 {
        self.published
    }

    /// Publishes one message to `queue` and waits for its confirm.
    pub fn publish_confirmed(&mut self, queue: &str, payload: &str) -> io::Result<()> {
        self.publish(queue, &Bytes::copy_from_slice(payload.as_bytes()), 1)?;
        self.wait_confirms()
    }

    pub fn stream(&self) -> &S {
        &self.stream
    }
}
