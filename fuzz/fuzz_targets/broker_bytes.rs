//! The broker state machine on arbitrary bytes from its peers.
//!
//! Input layout: `[flags, split, time, data...]`.
//! - Connection 1 completes the handshake (preface and `Hello`, built with the protocol crate)
//!   and then receives `data`, so frame handling after the handshake is exercised.
//! - With `flags & 1`, connection 2 receives the same `data` raw, from its first byte.
//! - `split` cuts `data` into chunks (0: one chunk); `time` scales the pauses between chunks,
//!   after each of which the clock advances and `Input::Timeout` is fed when a timer is due.
//! - `flags & 2`: the driver reports every `Send` as flushed (otherwise nothing is, and
//!   backpressure builds). `flags & 4`: the broker is shut down halfway. `flags & 8`: the peers
//!   close their connections at the end.
//!
//! At the end the clock runs far ahead so every lease, heartbeat and delay fires.
//!
//! Properties: the broker never panics, and everything it sends decodes as frames.
//!
//! `CHUTE_FUZZ_TRACE=1` prints every input and output, to read a crash or check a seed:
//! `CHUTE_FUZZ_TRACE=1 cargo fuzz run broker_bytes -s none corpus/broker_bytes/seed-session`.

#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use chute_core::test_util::MemDisk;
use chute_core::{Broker, BrokerConfig, ConnId, Input, Instant, Output};
use chute_protocol::{
    Credentials, Frame, FrameReader, Hello, FRAME_SIZE_CEILING, PREFACE, PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN,
};
use libfuzzer_sys::fuzz_target;

const HANDSHAKEN: ConnId = ConnId(1);
const RAW: ConnId = ConnId(2);

fuzz_target!(|input: &[u8]| {
    let [flags, split, time, data @ ..] = input else {
        return;
    };
    let mut data = Bytes::copy_from_slice(data);
    let mut driver = Driver::new(*flags & 2 != 0);

    driver.accept(HANDSHAKEN);
    driver.receive(HANDSHAKEN, hello_prefix());
    let two = *flags & 1 != 0;
    if two {
        driver.accept(RAW);
    }

    let mut rng = XorShift::new(u32::from(*split) << 8 | u32::from(*time));
    let max_pause_ms = 1u64 << (*time % 18); // up to about two minutes
    let halfway = data.len() / 2;
    let mut fed = 0;
    let mut shut_down = false;
    while !data.is_empty() {
        let len = match *split {
            0 => data.len(),
            n => (1 + rng.next() as usize % usize::from(n)).min(data.len()),
        };
        let chunk = data.split_to(len);
        fed += len;
        driver.receive(HANDSHAKEN, chunk.clone());
        if two {
            driver.receive(RAW, chunk);
        }
        driver.sleep(u64::from(rng.next()) % max_pause_ms);
        if *flags & 4 != 0 && !shut_down && fed >= halfway {
            shut_down = true;
            driver.shutdown();
        }
    }

    if *flags & 8 != 0 {
        driver.closed(HANDSHAKEN);
        driver.closed(RAW);
    }
    driver.sleep(3_600_000);
});

/// The preface and a `Hello` that the default configuration accepts.
fn hello_prefix() -> Bytes {
    let mut wire = BytesMut::from(&PREFACE[..]);
    Frame::Hello(Hello {
        version_min: PROTOCOL_VERSION_MIN,
        version_max: PROTOCOL_VERSION_MAX,
        client_name: "fuzz".into(),
        credentials: Credentials::Anonymous,
        heartbeat_ms: 0,
    })
    .encode(&mut wire, FRAME_SIZE_CEILING)
    .expect("a small Hello encodes");
    wire.freeze()
}

/// Plays the driver: feeds inputs, carries out outputs the way a server would.
struct Driver {
    broker: Broker,
    now: Instant,
    flush: bool,
    conns: BTreeMap<ConnId, Peer>,
    disk: MemDisk,
}

/// What the driver knows of one connection.
struct Peer {
    /// The broker closed it; further input is ignored by the broker, so none is sent.
    closed: bool,
    /// Bytes not read while the broker asked for reads to pause.
    paused: Option<BytesMut>,
    /// Bytes sent but not yet reported as flushed.
    unflushed: u64,
    /// Decodes what the broker sends, as the client would.
    reader: FrameReader,
}

impl Default for Peer {
    fn default() -> Peer {
        Peer {
            closed: false,
            paused: None,
            unflushed: 0,
            reader: FrameReader::new(FRAME_SIZE_CEILING),
        }
    }
}

impl Driver {
    fn new(flush: bool) -> Driver {
        Driver {
            broker: Broker::new(BrokerConfig::default(), Instant::ZERO),
            now: Instant::ZERO,
            flush,
            conns: BTreeMap::new(),
            disk: MemDisk::default(),
        }
    }

    fn accept(&mut self, conn: ConnId) {
        self.conns.insert(conn, Peer::default());
        self.input(Input::Accepted { conn, peer: Default::default() });
    }

    fn receive(&mut self, conn: ConnId, bytes: Bytes) {
        let Some(peer) = self.conns.get_mut(&conn) else {
            return;
        };
        if peer.closed {
            return;
        }
        if let Some(held) = &mut peer.paused {
            held.extend_from_slice(&bytes);
            return;
        }
        self.input(Input::Received { conn, bytes });
    }

    fn closed(&mut self, conn: ConnId) {
        if self.conns.get(&conn).is_some_and(|peer| !peer.closed) {
            self.input(Input::Closed { conn });
        }
    }

    fn shutdown(&mut self) {
        self.broker.shutdown(self.now);
        self.drain();
    }

    /// Lets `ms` pass, firing every timer that falls due on the way, in order.
    fn sleep(&mut self, ms: u64) {
        let until = self.now.plus_ms(ms);
        let mut fired_at = None;
        while let Some(due) = self.broker.poll_timeout() {
            if due > until {
                break;
            }
            assert!(
                fired_at != Some(self.now) || due > self.now,
                "timer livelock: after a Timeout at {:?}, poll_timeout still says {due:?}",
                self.now
            );
            self.now = self.now.max(due);
            fired_at = Some(self.now);
            self.input(Input::Timeout);
        }
        self.now = until;
        self.input(Input::Timeout);
    }

    fn input(&mut self, input: Input) {
        trace(|| format!("{:?} <- {input:?}", self.now));
        self.broker.handle_input(self.now, input);
        self.drain();
    }

    /// Drains `poll_output`; then, when the driver flushes, reports what was sent, and drains
    /// again, until the broker has nothing more to say.
    fn drain(&mut self) {
        loop {
            while let Some(output) = self.broker.poll_output() {
                self.carry_out(output);
            }
            if !self.flush {
                return;
            }
            let Some((&conn, peer)) =
                self.conns.iter_mut().find(|(_, peer)| peer.unflushed > 0 && !peer.closed)
            else {
                return;
            };
            let bytes = std::mem::take(&mut peer.unflushed);
            self.input(Input::Flushed { conn, bytes });
        }
    }

    fn carry_out(&mut self, output: Output) {
        trace(|| format!("{:?} -> {output:?}", self.now));
        match output {
            Output::Send { conn, bytes } => {
                let peer = self.peer(conn, "Send");
                assert!(!peer.closed, "Send to {conn} after its Close");
                peer.unflushed += bytes.len() as u64;
                peer.read_sent(conn, bytes);
            }
            Output::PauseRead { conn } => {
                let peer = self.peer(conn, "PauseRead");
                peer.paused.get_or_insert_with(BytesMut::new);
            }
            Output::ResumeRead { conn } => {
                let peer = self.peer(conn, "ResumeRead");
                if let Some(held) = peer.paused.take() {
                    if !held.is_empty() && !peer.closed {
                        self.input(Input::Received { conn, bytes: held.freeze() });
                    }
                }
            }
            Output::Close { conn } => {
                let peer = self.peer(conn, "Close");
                peer.closed = true;
                peer.paused = None;
            }
            // The disk is instant and never fails here: appends are written and syncs done at
            // once, so confirms and deliveries flow.
            Output::Storage(request) => {
                if let Some(done) = self.disk.apply(&request).expect("a request a disk can do") {
                    self.input(Input::Storage(done));
                }
            }
            Output::Event(_) | Output::Audit(_) => {}
        }
    }

    fn peer(&mut self, conn: ConnId, what: &str) -> &mut Peer {
        self.conns
            .get_mut(&conn)
            .unwrap_or_else(|| panic!("{what} for {conn}, which was never accepted"))
    }
}

impl Peer {
    /// Everything the broker sends must decode as frames.
    fn read_sent(&mut self, conn: ConnId, bytes: Bytes) {
        self.reader.feed(bytes);
        loop {
            match self.reader.next_frame() {
                Ok(Some(frame)) => trace(|| format!("   {conn} reads {frame:?}")),
                Ok(None) => return,
                Err(err) => panic!("the broker sent {conn} bytes that do not decode: {err}"),
            }
        }
    }
}

/// xorshift32: chunk lengths and pauses from the input's control bytes.
struct XorShift(u32);

impl XorShift {
    fn new(seed: u32) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9) | 1)
    }

    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

fn trace(line: impl FnOnce() -> String) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("CHUTE_FUZZ_TRACE").is_some()) {
        eprintln!("{}", line());
    }
}
