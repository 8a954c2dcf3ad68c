//! A chute broker on a hand-written, single-threaded event loop: std's `TcpListener` and
//! `TcpStream` in non-blocking mode, the `polling` crate for readiness, and plain files in a
//! directory for the log. No async runtime, no threads: the sans-IO `Broker` needs only bytes
//! in, bytes out, a clock and someone to carry out its storage requests. Real `chute` clients
//! (the CLI, `chute-client`) talk to it as to `chuted`.
//!
//! ```text
//! cargo run -p chute-core --example broker_event_loop -- 127.0.0.1:4770 ./example-data
//! chute queue declare jobs && chute publish jobs hello && chute consume jobs --count 1
//! ```
//!
//! It prints `listening on ADDR` once it serves (port 0 picks a free one). Storage requests are
//! carried out in the loop, fsyncs included, which keeps the example short: `chuted` runs them
//! on a worker thread so that an fsync never stalls the sockets.

// An example is a driver: it owns the sockets, files and clock that the core itself may
// not touch (core/clippy.toml).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chute_core::ids::Lsn;
use chute_core::storage::failure::StorageFailure;
use chute_core::storage::format::{parse_segment_file_name, segment_file_name};
use chute_core::storage::io::{StorageDone, StorageRequest};
use chute_core::storage::manifest::MANIFEST_FILE_NAME;
use chute_core::storage::recovery::SegmentFile;
use chute_core::{
    Broker, BrokerConfig, ConnId, Input, Instant, Output, PeerInfo, Recovery, RecoveryReport,
};
use polling::{Event, Events, Poller};

/// The listener's key in the poller; connections use their `ConnId`.
const LISTENER: usize = 0;

struct Connection {
    stream: TcpStream,
    /// Bytes the broker sent that the socket has not taken yet.
    unsent: Vec<u8>,
    reading: bool,
    /// The broker closed it: close once `unsent` is written.
    closing: bool,
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:4770".into());
    let mut storage = Storage {
        dir: args.next().unwrap_or_else(|| "example-data".into()).into(),
        files: BTreeMap::new(),
    };
    std::fs::create_dir_all(&storage.dir)?;

    let started = StdInstant::now();
    let now = || Instant::from_nanos(started.elapsed().as_nanos() as u64);
    let epoch_unix_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let config = BrokerConfig {
        server_name: "broker_event_loop".into(),
        epoch_unix_ms,
        ..BrokerConfig::default()
    };
    let (mut broker, report) =
        storage.recover(config, now()).map_err(|error| std::io::Error::other(error.to_string()))?;
    if let Some(cut) = &report.truncation {
        // A torn tail from a crash: cut it before anything is appended.
        storage.file(&cut.file)?.set_len(cut.valid_len)?;
    }

    let listener = TcpListener::bind(&listen)?;
    listener.set_nonblocking(true)?;
    let poller = Poller::new()?;
    // SAFETY: the listener and every stream are removed from the poller before they drop.
    unsafe { poller.add(&listener, Event::readable(LISTENER))? };
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;

    let mut connections: BTreeMap<usize, Connection> = BTreeMap::new();
    let mut next_conn = 1usize;
    let mut events = Events::new();
    loop {
        // Carry out what the broker asked; storage answers go straight back in.
        while let Some(output) = broker.poll_output() {
            match output {
                Output::Send { conn, bytes } => {
                    if let Some(c) = connections.get_mut(&(conn.0 as usize)) {
                        c.unsent.extend_from_slice(&bytes);
                    }
                }
                Output::PauseRead { conn } | Output::ResumeRead { conn } => {
                    let reading = matches!(output, Output::ResumeRead { .. });
                    if let Some(c) = connections.get_mut(&(conn.0 as usize)) {
                        c.reading = reading;
                    }
                }
                Output::Close { conn } => {
                    if let Some(c) = connections.get_mut(&(conn.0 as usize)) {
                        c.closing = true;
                    }
                }
                Output::Storage(request) => {
                    let done = storage.carry_out(request);
                    if let Some(done) = done {
                        broker.handle_input(now(), Input::Storage(done));
                    }
                }
                Output::Event(event) => eprintln!("{event:?}"),
                // This broker runs without an audit log (`BrokerConfig::audit` is off).
                Output::Audit(_) => {}
            }
        }
        if let Some(reason) = broker.halted() {
            return Err(std::io::Error::other(format!("the broker halted: {reason}")));
        }
        // Write what the sockets take, report it, close what is done, and say what to watch.
        for (&key, c) in connections.iter_mut() {
            let written = write_some(&mut c.stream, &mut c.unsent);
            if written > 0 {
                broker.handle_input(
                    now(),
                    Input::Flushed { conn: ConnId(key as u64), bytes: written as u64 },
                );
            }
            let interest = Event::new(key, c.reading && !c.closing, !c.unsent.is_empty());
            poller.modify(&c.stream, interest)?;
        }
        let done: Vec<usize> = connections
            .iter()
            .filter(|(_, c)| c.closing && c.unsent.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for key in done {
            let c = connections.remove(&key).expect("listed");
            poller.delete(&c.stream)?;
        }

        let timeout = broker
            .poll_timeout()
            .map(|at| Duration::from_nanos(at.as_nanos().saturating_sub(now().as_nanos())));
        events.clear();
        poller.wait(&mut events, timeout)?;
        for event in events.iter() {
            if event.key == LISTENER {
                while let Ok((stream, addr)) = listener.accept() {
                    let stream_addr = Some(addr);
                    stream.set_nonblocking(true)?;
                    stream.set_nodelay(true)?;
                    let key = next_conn;
                    next_conn += 1;
                    unsafe { poller.add(&stream, Event::readable(key))? };
                    connections.insert(
                        key,
                        Connection { stream, unsent: Vec::new(), reading: true, closing: false },
                    );
                    let peer = PeerInfo { addr: stream_addr, ..PeerInfo::default() };
                    broker.handle_input(now(), Input::Accepted { conn: ConnId(key as u64), peer });
                }
                poller.modify(&listener, Event::readable(LISTENER))?;
            } else if event.readable {
                read_some(&mut broker, &mut connections, &poller, event.key, now())?;
            }
        }
        broker.handle_input(now(), Input::Timeout);
    }
}

/// Reads what a connection has; its end (or failure) closes it.
fn read_some(
    broker: &mut Broker,
    connections: &mut BTreeMap<usize, Connection>,
    poller: &Poller,
    key: usize,
    now: Instant,
) -> std::io::Result<()> {
    let Some(c) = connections.get_mut(&key) else { return Ok(()) };
    let mut buffer = [0u8; 64 * 1024];
    loop {
        match c.stream.read(&mut buffer) {
            Ok(n) if n > 0 => {
                let bytes = Bytes::copy_from_slice(&buffer[..n]);
                broker.handle_input(now, Input::Received { conn: ConnId(key as u64), bytes });
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            // The peer closed it, or it failed.
            _ => {
                let c = connections.remove(&key).expect("present");
                poller.delete(&c.stream)?;
                broker.handle_input(now, Input::Closed { conn: ConnId(key as u64) });
                return Ok(());
            }
        }
    }
}

/// Writes as much of `unsent` as the socket takes; returns how much.
fn write_some(stream: &mut TcpStream, unsent: &mut Vec<u8>) -> usize {
    let mut written = 0;
    while written < unsent.len() {
        match stream.write(&unsent[written..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n,
        }
    }
    unsent.drain(..written);
    written
}

/// The log as plain files: one per segment, and the manifest.
struct Storage {
    dir: PathBuf,
    files: BTreeMap<Lsn, File>,
}

impl Storage {
    /// Recovery, one segment in memory at a time: each file is read, handed to the core and
    /// dropped before the next; then the manifest.
    fn recover(
        &self,
        config: BrokerConfig,
        now: Instant,
    ) -> Result<(Broker, RecoveryReport), Box<dyn std::error::Error>> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| parse_segment_file_name(name).is_some())
            .collect();
        names.sort();
        let mut recovery = Recovery::new(config, now);
        for (index, name) in names.iter().enumerate() {
            let bytes = Bytes::from(std::fs::read(self.dir.join(name))?);
            let newest = index + 1 == names.len();
            recovery.handle_segment(SegmentFile { name: name.clone(), bytes }, newest)?;
        }
        let manifest = std::fs::read(self.dir.join(MANIFEST_FILE_NAME)).ok();
        Ok(recovery.finish(manifest.as_deref(), false)?)
    }

    fn file(&self, name: &str) -> std::io::Result<File> {
        OpenOptions::new().create(true).truncate(false).write(true).open(self.dir.join(name))
    }

    /// Carries out one request, in order, and says what the broker must hear of it.
    fn carry_out(&mut self, request: StorageRequest) -> Option<StorageDone> {
        match self.try_carry_out(request.clone()) {
            Ok(done) => done,
            Err(error) => Some(StorageDone::Failed(StorageFailure::new(&request, (&error).into()))),
        }
    }

    fn try_carry_out(&mut self, request: StorageRequest) -> std::io::Result<Option<StorageDone>> {
        match request {
            StorageRequest::CreateSegment { base_lsn, header } => {
                let file = self.file(&segment_file_name(base_lsn))?;
                file.write_all_at(&header, 0)?;
                self.files.insert(base_lsn, file);
                self.sync()?;
                Ok(None)
            }
            StorageRequest::Append { base_lsn, end_lsn, bytes } => {
                // After a restart the newest segment is appended to without being created.
                if !self.files.contains_key(&base_lsn) {
                    let file = self.file(&segment_file_name(base_lsn))?;
                    self.files.insert(base_lsn, file);
                }
                let file = &self.files[&base_lsn];
                let header_len = chute_core::storage::format::SEGMENT_HEADER_LEN as u64;
                file.write_all_at(
                    &bytes,
                    header_len + end_lsn.bytes_since(base_lsn) - bytes.len() as u64,
                )?;
                Ok(Some(StorageDone::Written { through: end_lsn }))
            }
            StorageRequest::Sync { through } => {
                self.sync()?;
                Ok(Some(StorageDone::Synced { through }))
            }
            StorageRequest::DeleteSegment { base_lsn } => {
                self.files.remove(&base_lsn);
                std::fs::remove_file(self.dir.join(segment_file_name(base_lsn)))?;
                Ok(None)
            }
            StorageRequest::WriteManifest { slot_offset, slot } => {
                self.sync()?;
                let manifest = self.file(MANIFEST_FILE_NAME)?;
                manifest.write_all_at(&slot, slot_offset)?;
                manifest.sync_data()?;
                Ok(None)
            }
            // A payload that left memory (docs/STORAGE.md §17). A server reads on a thread of
            // its own, apart from the fsyncs; this example may block.
            StorageRequest::Read { id, base_lsn, offset, len } => {
                let result = self.read(base_lsn, offset, len).map_err(|error| (&error).into());
                Ok(Some(StorageDone::Read { id, result }))
            }
        }
    }

    /// `len` bytes at `offset` of a segment, or fewer where the file ends.
    fn read(&self, base_lsn: Lsn, offset: u64, len: u32) -> std::io::Result<Bytes> {
        let file = File::open(self.dir.join(segment_file_name(base_lsn)))?;
        let mut buffer = vec![0; len as usize];
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read_at(&mut buffer[filled..], offset + filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        buffer.truncate(filled);
        Ok(Bytes::from(buffer))
    }

    /// Every segment's data and the directory's entries on disk.
    fn sync(&self) -> std::io::Result<()> {
        for file in self.files.values() {
            file.sync_data()?;
        }
        File::open(&self.dir)?.sync_all()
    }
}
