//! A chute client on a hand-written, single-threaded event loop: the sans-IO `Session` (the
//! logic `chute-client` runs on: reconnects, republishing, retries) driven over a std
//! `TcpStream` with the `polling` crate. It declares a queue, publishes messages, consumes
//! them back, and prints what it did.
//!
//! ```text
//! cargo run -p chute-core --example client_event_loop -- 127.0.0.1:4770 jobs 1000
//! ```

// An example is a driver: it owns the sockets, files and clock that the core itself may
// not touch (core/clippy.toml).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use chute_core::client::{
    Session, SessionConfig, SessionEvent, SessionInput, SessionOutput, SubscriptionOptions,
};
use chute_core::Instant;
use chute_protocol::{Destination, PublishMessage, QueueOptions};
use polling::{Event, Events, Poller};

const SOCKET: usize = 1;

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:4770".into());
    let queue = args.next().unwrap_or_else(|| "jobs".into());
    let count: u64 =
        args.next().map_or(Ok(1000), |n| n.parse()).map_err(|e| format!("count: {e}"))?;

    let started = StdInstant::now();
    let now = || Instant::from_nanos(started.elapsed().as_nanos() as u64);
    let mut session = Session::new(SessionConfig::default(), now());
    // Commands are taken before the connection is up; the session sends them once it is.
    session
        .declare_queue(now(), &queue, QueueOptions::default(), false)
        .map_err(|e| e.to_string())?;
    let options =
        SubscriptionOptions { credit: 100, lease_ms: None, rate: None, auto_credit: true };
    session.subscribe(now(), &queue, options).map_err(|e| e.to_string())?;
    let destination = Destination::Queue(queue.clone());
    let (mut published, mut confirmed, mut consumed) = (0u64, 0u64, 0u64);

    let poller = Poller::new().map_err(|e| e.to_string())?;
    let mut socket: Option<TcpStream> = None;
    let mut unsent: Vec<u8> = Vec::new();
    let mut events = Events::new();
    while consumed < count || confirmed < count {
        // Hand over messages while the session's window has room.
        while published < count && !session.window_full() {
            let message = PublishMessage::new(Bytes::from(format!("message {published}")));
            session.publish(now(), &destination, false, message).map_err(|e| e.to_string())?;
            published += 1;
        }
        while let Some(output) = session.poll_output() {
            match output {
                SessionOutput::Connect { .. } => {
                    let input = match connect(&address) {
                        Ok(stream) => {
                            // SAFETY: the stream is removed from the poller before it drops.
                            unsafe { poller.add(&stream, Event::readable(SOCKET)) }
                                .map_err(|e| e.to_string())?;
                            socket = Some(stream);
                            unsent.clear();
                            SessionInput::TransportUp
                        }
                        Err(reason) => SessionInput::ConnectFailed { reason },
                    };
                    session.handle_input(now(), input);
                }
                SessionOutput::Send(bytes) => unsent.extend_from_slice(&bytes),
                SessionOutput::Close => {
                    if let Some(mut stream) = socket.take() {
                        let _ = stream.write_all(&unsent);
                        let _ = poller.delete(&stream);
                    }
                }
                SessionOutput::Event(event) => match event {
                    SessionEvent::Confirmed(range) => confirmed += u64::from(range.count),
                    SessionEvent::Deliveries { epoch, deliveries, .. } => {
                        for delivery in deliveries {
                            consumed += 1;
                            // A delivery of a lost connection is void: it comes again.
                            let _ = session.ack(epoch, delivery.tag);
                        }
                    }
                    SessionEvent::Closed { reason } => {
                        return Err(format!("session ended: {reason:?}"))
                    }
                    // Connection changes are worth a line; answers to the two requests are not.
                    SessionEvent::Response { .. } => {}
                    other => eprintln!("{other:?}"),
                },
            }
        }
        let Some(stream) = socket.as_mut() else {
            wait_for_timer(&session, now());
            session.handle_input(now(), SessionInput::Timeout);
            continue;
        };
        write_some(stream, &mut unsent);
        poller
            .modify(&*stream, Event::new(SOCKET, true, !unsent.is_empty()))
            .map_err(|e| e.to_string())?;
        let timeout = session
            .poll_timeout()
            .map(|at| Duration::from_nanos(at.as_nanos().saturating_sub(now().as_nanos())));
        events.clear();
        poller.wait(&mut events, timeout).map_err(|e| e.to_string())?;
        if events.iter().any(|event| event.readable) {
            if let Some(input) = read_some(stream) {
                if matches!(input, SessionInput::TransportClosed { .. }) {
                    let _ = poller.delete(&*stream);
                    socket = None;
                }
                session.handle_input(now(), input);
            }
        }
        session.handle_input(now(), SessionInput::Timeout);
    }
    session.close();
    while let Some(output) = session.poll_output() {
        if let (SessionOutput::Send(bytes), Some(stream)) = (output, socket.as_mut()) {
            let _ = stream.set_nonblocking(false);
            let _ = stream.write_all(&bytes);
        }
    }
    println!("published {published}, confirmed {confirmed}, consumed {consumed} on {queue}");
    Ok(())
}

fn connect(address: &str) -> Result<TcpStream, String> {
    let addr = address.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// What the socket has: bytes, or its end.
fn read_some(stream: &mut TcpStream) -> Option<SessionInput> {
    let mut buffer = vec![0u8; 64 * 1024];
    match stream.read(&mut buffer) {
        Ok(0) => Some(SessionInput::TransportClosed { reason: "closed by the server".into() }),
        Ok(n) => Some(SessionInput::Received(Bytes::from(buffer).slice(..n))),
        Err(error) if error.kind() == ErrorKind::WouldBlock => None,
        Err(error) => Some(SessionInput::TransportClosed { reason: error.to_string() }),
    }
}

/// Writes as much of `unsent` as the socket takes.
fn write_some(stream: &mut TcpStream, unsent: &mut Vec<u8>) {
    let mut written = 0;
    while written < unsent.len() {
        match stream.write(&unsent[written..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n,
        }
    }
    unsent.drain(..written);
}

/// Sleeps until the session's timer (between connection attempts there is no socket).
fn wait_for_timer(session: &Session, now: Instant) {
    if let Some(at) = session.poll_timeout() {
        std::thread::sleep(Duration::from_nanos(at.as_nanos().saturating_sub(now.as_nanos())));
    }
}
