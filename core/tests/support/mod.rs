//! An in-memory wire between one `Broker` and many `Client` machines: bytes move instantly,
//! time moves only when a test says so. Enough to test the protocol end to end without I/O.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use chute_core::client::{
    Client, ClientConfig, ClientEvent, ClientInput, ClientOutput, CloseReason, Response,
};
use chute_core::storage::io::StorageRequest;
use chute_core::storage::recovery::LogImage;
use chute_core::test_util::MemDisk;
use chute_core::{Broker, BrokerConfig, ConnId, Input, Instant, Output};
use chute_protocol::{Delivery, Destination, PublishMessage, QueueOptions};

pub struct Net {
    pub now: Instant,
    pub broker: Broker,
    pub clients: BTreeMap<ConnId, Client>,
    pub events: BTreeMap<ConnId, Vec<ClientEvent>>,
    /// Connections the broker closed (`Output::Close`).
    pub closed_by_broker: BTreeSet<ConnId>,
    /// Every non-`Send` output of the broker, in order.
    pub broker_log: Vec<Output>,
    /// Bytes the broker sent and the "socket" has not yet flushed (when not auto-flushing).
    pub unflushed: BTreeMap<ConnId, u64>,
    pub auto_flush: bool,
    /// Connections whose incoming bytes are withheld (a client that stopped reading).
    pub stalled: BTreeSet<ConnId>,
    pub withheld: BTreeMap<ConnId, Vec<Bytes>>,
    /// What the broker sent on connections that have no client machine (raw peers).
    pub raw_received: BTreeMap<ConnId, BytesMut>,
    pub disk: MemDisk,
    /// Storage completions not yet reported, when `auto_storage` is off.
    pub storage_queue: Vec<StorageRequest>,
    pub auto_storage: bool,
    /// Reads of evicted payloads the broker asked for.
    pub reads: usize,
    next_conn: u64,
}

impl Net {
    pub fn new() -> Net {
        Net::with_config(BrokerConfig::default())
    }

    pub fn with_config(config: BrokerConfig) -> Net {
        Net::with_broker(Broker::new(config, Instant::ZERO), MemDisk::default())
    }

    /// A net around a broker recovered from `image`, on the disk that recovery leaves.
    pub fn recovered(config: BrokerConfig, image: &LogImage) -> (Net, chute_core::RecoveryReport) {
        let (broker, report) = Broker::recover(config, Instant::ZERO, image).expect("recovery");
        let disk = MemDisk::recovered_from(image, report.truncation.as_ref());
        let mut net = Net::with_broker(broker, disk);
        net.pump();
        (net, report)
    }

    fn with_broker(broker: Broker, disk: MemDisk) -> Net {
        let mut net = Net {
            now: Instant::ZERO,
            broker,
            clients: BTreeMap::new(),
            events: BTreeMap::new(),
            closed_by_broker: BTreeSet::new(),
            broker_log: Vec::new(),
            unflushed: BTreeMap::new(),
            auto_flush: true,
            stalled: BTreeSet::new(),
            withheld: BTreeMap::new(),
            raw_received: BTreeMap::new(),
            disk,
            storage_queue: Vec::new(),
            auto_storage: true,
            reads: 0,
            next_conn: 1,
        };
        net.pump();
        net
    }

    /// Carries out the storage requests held back while `auto_storage` was off.
    pub fn run_storage(&mut self) {
        for request in std::mem::take(&mut self.storage_queue) {
            self.disk.carry_out(&request, &mut self.broker, self.now);
        }
        self.pump();
    }

    /// Opens a connection and completes the handshake.
    pub fn connect(&mut self) -> ConnId {
        let conn = self.connect_without_handshake();
        let client = Client::new(ClientConfig::default(), self.now);
        self.clients.insert(conn, client);
        self.pump();
        assert!(self.clients[&conn].is_open(), "handshake failed: {:?}", self.events[&conn]);
        self.take_events(conn);
        conn
    }

    /// Opens a connection from `peer` with a client configured so, and moves bytes until
    /// nothing moves; the handshake (and login) may or may not have succeeded.
    pub fn connect_with(&mut self, peer: chute_core::PeerInfo, config: ClientConfig) -> ConnId {
        let conn = self.accept(peer);
        let client = Client::new(config, self.now);
        self.clients.insert(conn, client);
        self.pump();
        conn
    }

    /// Accepts a connection but sends nothing on it.
    pub fn connect_without_handshake(&mut self) -> ConnId {
        self.accept(chute_core::PeerInfo::default())
    }

    /// Accepts a connection from `peer`; sends nothing on it.
    pub fn accept(&mut self, peer: chute_core::PeerInfo) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.broker.handle_input(self.now, Input::Accepted { conn, peer });
        self.events.insert(conn, Vec::new());
        self.pump();
        conn
    }

    pub fn client(&mut self, conn: ConnId) -> &mut Client {
        self.clients.get_mut(&conn).expect("client exists")
    }

    /// Moves bytes both ways until nothing moves.
    pub fn pump(&mut self) {
        loop {
            let mut moved = self.drain_broker();
            let conns: Vec<ConnId> = self.clients.keys().copied().collect();
            for conn in conns {
                moved |= self.drain_client(conn);
            }
            if !moved {
                break;
            }
        }
        // Every test checks the broker's invariants, segment liveness included, whenever it
        // has settled.
        self.broker.check_invariants();
    }

    fn drain_broker(&mut self) -> bool {
        let mut moved = false;
        while let Some(output) = self.broker.poll_output() {
            moved = true;
            if let Output::Storage(StorageRequest::Read { .. }) = output {
                self.reads += 1;
            }
            match output {
                Output::Send { conn, bytes } => self.deliver_to_client(conn, bytes),
                Output::Close { conn } => {
                    self.closed_by_broker.insert(conn);
                    self.broker_log.push(Output::Close { conn });
                }
                Output::Storage(request) if self.auto_storage => {
                    self.disk.carry_out(&request, &mut self.broker, self.now);
                }
                Output::Storage(request) => self.storage_queue.push(request),
                other => self.broker_log.push(other),
            }
        }
        moved
    }

    fn deliver_to_client(&mut self, conn: ConnId, bytes: Bytes) {
        let len = bytes.len() as u64;
        if self.stalled.contains(&conn) {
            self.withheld.entry(conn).or_default().push(bytes);
        } else if let Some(client) = self.clients.get_mut(&conn) {
            client.handle_input(self.now, ClientInput::Received(bytes));
        } else {
            self.raw_received.entry(conn).or_default().extend_from_slice(&bytes);
        }
        if self.auto_flush && !self.stalled.contains(&conn) {
            self.broker.handle_input(self.now, Input::Flushed { conn, bytes: len });
        } else {
            *self.unflushed.entry(conn).or_default() += len;
        }
    }

    fn drain_client(&mut self, conn: ConnId) -> bool {
        let mut moved = false;
        let Some(client) = self.clients.get_mut(&conn) else {
            return false;
        };
        let mut outputs = Vec::new();
        while let Some(output) = client.poll_output() {
            outputs.push(output);
        }
        for output in outputs {
            moved = true;
            match output {
                ClientOutput::Send(bytes) => {
                    if !self.closed_by_broker.contains(&conn) {
                        self.broker.handle_input(self.now, Input::Received { conn, bytes });
                        self.drain_broker();
                    }
                }
                ClientOutput::Event(event) => self.events.get_mut(&conn).unwrap().push(event),
                ClientOutput::Close => {
                    if !self.closed_by_broker.contains(&conn) {
                        // The client closed its socket: the broker sees the stream end, unless
                        // it already forgot the connection after a Close frame.
                        if self.broker_knows(conn) {
                            self.broker.handle_input(self.now, Input::Closed { conn });
                        }
                        self.closed_by_broker.insert(conn);
                    }
                }
            }
        }
        moved
    }

    fn broker_knows(&self, conn: ConnId) -> bool {
        !self.broker_log.iter().any(|o| matches!(o, Output::Event(chute_core::Event::ConnectionClosed { conn: c, .. }) if *c == conn))
    }

    /// Sends raw bytes from a connection, as a misbehaving peer would.
    pub fn send_raw(&mut self, conn: ConnId, bytes: &[u8]) {
        self.broker
            .handle_input(self.now, Input::Received { conn, bytes: Bytes::copy_from_slice(bytes) });
        self.pump();
    }

    /// The frames the broker sent to a raw peer so far, decoded in order.
    pub fn raw_frames(&mut self, conn: ConnId) -> Vec<chute_protocol::Frame> {
        self.pump();
        let bytes = self.raw_received.remove(&conn).unwrap_or_default().freeze();
        let mut reader = chute_protocol::FrameReader::new(chute_protocol::FRAME_SIZE_CEILING);
        reader.feed(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame().expect("the broker sends valid frames") {
            frames.push(frame);
        }
        frames
    }

    /// A raw peer (no client machine) that sent the preface and `Hello` and got `HelloOk`.
    pub fn open_raw(&mut self) -> ConnId {
        let conn = self.connect_without_handshake();
        let mut bytes = BytesMut::from(&chute_protocol::PREFACE[..]);
        raw_hello().encode(&mut bytes, 1 << 20).unwrap();
        self.send_raw(conn, &bytes);
        let frames = self.raw_frames(conn);
        assert!(matches!(frames[..], [chute_protocol::Frame::HelloOk(_)]), "{frames:?}");
        conn
    }

    /// Sends frames from a raw peer, encoded back to back in one write.
    pub fn send_frames(&mut self, conn: ConnId, frames: &[chute_protocol::Frame]) {
        let mut bytes = BytesMut::new();
        for frame in frames {
            frame.encode(&mut bytes, chute_protocol::FRAME_SIZE_CEILING).unwrap();
        }
        self.send_raw(conn, &bytes);
    }

    /// The socket writes what the broker queued for `conn`.
    pub fn flush(&mut self, conn: ConnId) {
        if let Some(bytes) = self.unflushed.remove(&conn) {
            self.broker.handle_input(self.now, Input::Flushed { conn, bytes });
        }
        self.pump();
    }

    /// A stalled client catches up on everything withheld.
    pub fn unstall(&mut self, conn: ConnId) {
        self.stalled.remove(&conn);
        for bytes in self.withheld.remove(&conn).unwrap_or_default() {
            let now = self.now;
            self.client(conn).handle_input(now, ClientInput::Received(bytes));
        }
        self.flush(conn);
    }

    /// Advances time by `ms`, firing every broker and client timer due on the way.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now.plus_ms(ms);
        loop {
            let mut next = self.broker.poll_timeout();
            for client in self.clients.values() {
                next = match (next, client.poll_timeout()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            let Some(at) = next.filter(|at| *at <= end) else {
                break;
            };
            self.now = self.now.max(at);
            self.broker.handle_input(self.now, Input::Timeout);
            let now = self.now;
            for client in self.clients.values_mut() {
                if client.poll_timeout().is_some_and(|t| t <= now) {
                    client.handle_input(now, ClientInput::Timeout);
                }
            }
            self.pump();
        }
        self.now = end;
        self.broker.handle_input(self.now, Input::Timeout);
        self.pump();
    }

    pub fn take_events(&mut self, conn: ConnId) -> Vec<ClientEvent> {
        std::mem::take(self.events.get_mut(&conn).unwrap())
    }

    // ---- request helpers that wait for the answer ----

    pub fn response(&mut self, conn: ConnId, request_id: u32) -> Response {
        self.pump();
        let events = self.events.get_mut(&conn).unwrap();
        let index = events
            .iter()
            .position(
                |e| matches!(e, ClientEvent::Response { request_id: r, .. } if *r == request_id),
            )
            .unwrap_or_else(|| panic!("no response to request {request_id}: {events:?}"));
        match events.remove(index) {
            ClientEvent::Response { response, .. } => response,
            _ => unreachable!(),
        }
    }

    pub fn declare(&mut self, conn: ConnId, name: &str, options: QueueOptions) -> Response {
        let request = self.client(conn).declare_queue(name, options, false).unwrap();
        self.response(conn, request)
    }

    /// Publishes payloads to a queue and returns their sequence numbers.
    pub fn publish(&mut self, conn: ConnId, queue: &str, payloads: &[&str]) -> Vec<u64> {
        let destination = Destination::Queue(queue.to_string());
        let seqs = payloads
            .iter()
            .map(|p| {
                let message = PublishMessage::new(Bytes::copy_from_slice(p.as_bytes()));
                self.client(conn).publish(&destination, false, message).unwrap()
            })
            .collect();
        self.pump();
        seqs
    }

    pub fn subscribe(&mut self, conn: ConnId, queue: &str, credit: u32) -> u32 {
        let (request, subscription) =
            self.client(conn).subscribe(queue, credit, None, false).unwrap();
        match self.response(conn, request) {
            Response::Done { .. } => subscription,
            other => panic!("subscribe failed: {other:?}"),
        }
    }

    /// Subscribes without waiting for the answer (for stalled connections).
    pub fn subscribe_without_wait(&mut self, conn: ConnId, queue: &str, credit: u32) -> u32 {
        let (_, subscription) = self.client(conn).subscribe(queue, credit, None, false).unwrap();
        self.pump();
        subscription
    }

    /// Deliveries received on `conn` since the last call, in order.
    pub fn deliveries(&mut self, conn: ConnId) -> Vec<Delivery> {
        self.pump();
        let events = self.events.get_mut(&conn).unwrap();
        let mut out = Vec::new();
        events.retain(|e| match e {
            ClientEvent::Deliveries { deliveries, .. } => {
                out.extend(deliveries.iter().cloned());
                false
            }
            _ => true,
        });
        out
    }

    /// Confirmed sequence numbers on `conn` since the last call.
    pub fn confirmed(&mut self, conn: ConnId) -> Vec<u64> {
        self.pump();
        let events = self.events.get_mut(&conn).unwrap();
        let mut out = Vec::new();
        events.retain(|e| match e {
            ClientEvent::Confirmed(range) => {
                out.extend(range.iter());
                false
            }
            _ => true,
        });
        out
    }

    /// The code and message the connection closed with. The in-memory network never loses a
    /// transport under an open connection, so a `TransportLost` here is a harness bug.
    pub fn closed_event(&self, conn: ConnId) -> Option<(chute_protocol::ErrorCode, String)> {
        self.events[&conn].iter().find_map(|e| match e {
            ClientEvent::Closed { reason: CloseReason::Code { code, message } } => {
                Some((*code, message.clone()))
            }
            ClientEvent::Closed { reason: CloseReason::TransportLost } => {
                panic!("connection {conn:?} lost its transport without a Close")
            }
            _ => None,
        })
    }
}

/// The `Hello` a raw peer sends.
pub fn raw_hello() -> chute_protocol::Frame {
    chute_protocol::Frame::Hello(chute_protocol::Hello {
        version_min: 1,
        version_max: 1,
        client_name: "raw".into(),
        credentials: chute_protocol::Credentials::Anonymous,
        heartbeat_ms: 0,
    })
}

/// `config` with segments small enough (128 KiB, frames of 64 KiB) for a test to fill several.
pub fn small_segments(mut config: BrokerConfig) -> BrokerConfig {
    config.limits.frame_size_max = 64 * 1024;
    config.limits.payload_size_max = 16 * 1024;
    config.storage.segment_bytes_max = 128 * 1024;
    config
}

pub fn payload(delivery: &Delivery) -> &str {
    std::str::from_utf8(&delivery.payload).unwrap()
}
