//! A client that speaks the protocol frame by frame over a plain TCP socket, for tests that
//! need what the client library does not do (a login refused halfway, frames out of order).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chute_protocol::{Credentials, Frame, FrameReader, Hello, FRAME_SIZE_CEILING, PREFACE};

const READ_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RawConn {
    stream: TcpStream,
    reader: FrameReader,
    /// How the server's side ended, once it has: `end of stream` or the read's error.
    ended: Option<String>,
}

impl RawConn {
    /// Connects and sends the preface and a `Hello` with `credentials`, offering versions
    /// 1 to `version_max`.
    pub fn hello(addr: SocketAddr, version_max: u16, credentials: Credentials) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut conn =
            RawConn { stream, reader: FrameReader::new(FRAME_SIZE_CEILING), ended: None };
        conn.stream.write_all(&PREFACE).unwrap();
        let hello = Hello {
            version_min: 1,
            version_max,
            client_name: "raw-test".into(),
            credentials,
            heartbeat_ms: 0,
        };
        conn.send(&[Frame::Hello(hello)]);
        conn
    }

    pub fn send(&mut self, frames: &[Frame]) {
        let mut bytes = BytesMut::new();
        for frame in frames {
            frame.encode(&mut bytes, FRAME_SIZE_CEILING).unwrap();
        }
        // The server may have closed already; what it sent is still read afterwards.
        let _ = self.stream.write_all(&bytes);
    }

    /// Every frame until the server closes.
    pub fn until_closed(&mut self) -> Vec<Frame> {
        self.by_ref().collect()
    }

    /// How the connection ended (for failure messages); `open` while it has not.
    pub fn ended(&self) -> &str {
        self.ended.as_deref().unwrap_or("open")
    }
}

/// The frames the server sends, until it closes the connection.
impl Iterator for RawConn {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.reader.next_frame().expect("the server sends valid frames") {
                return Some(frame);
            }
            let mut buffer = [0u8; 16 * 1024];
            match self.stream.read(&mut buffer) {
                Ok(0) => {
                    self.ended = Some("end of stream".into());
                    return None;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.ended = Some(format!("read failed: {e}"));
                    return None;
                }
                Ok(n) => self.reader.feed(Bytes::copy_from_slice(&buffer[..n])),
            }
        }
    }
}
