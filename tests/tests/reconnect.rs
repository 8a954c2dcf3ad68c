//! Connections that ride out a server restart: kill -9 and restart under a publisher and a
//! subscriber, the breaker while the server is down, a pool, and GoingAway moving a client to
//! a second server. Each against both servers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chute_client::{
    BreakerPolicy, CommandError, ConnectOptions, Connection, ConnectionEvent, Destination, Error,
    Pool, PoolOptions, PublishError, PublishMessage, QueueOptions,
};
use chute_tests::{id_of, labelled_payload, take_ready, within, Server, ServerBinary};
use futures::executor::block_on;
use futures::StreamExt;

const TIMEOUT: Duration = Duration::from_secs(240);

/// A queue whose dedup window outlasts the test: a message published again after the restart
/// is recognised.
fn dedup_queue() -> QueueOptions {
    QueueOptions { dedup_window_ms: Some(600_000), ..QueueOptions::default() }
}

/// When each kind of connection event was seen, collected on a thread of its own.
#[derive(Default)]
struct EventLog {
    seen: Mutex<Vec<(Instant, ConnectionEvent)>>,
}

impl EventLog {
    fn watch(connection: &Connection) -> Arc<EventLog> {
        let log = Arc::new(EventLog::default());
        let mut events = connection.events();
        let writer = log.clone();
        std::thread::spawn(move || {
            block_on(async {
                while let Some(event) = events.next().await {
                    writer.seen.lock().unwrap().push((Instant::now(), event));
                }
            })
        });
        log
    }

    fn first(
        &self,
        matches: impl Fn(&ConnectionEvent) -> bool,
    ) -> Option<(Instant, ConnectionEvent)> {
        self.seen.lock().unwrap().iter().find(|(_, event)| matches(event)).cloned()
    }

    fn wait_for(&self, what: &str, matches: impl Fn(&ConnectionEvent) -> bool) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((at, _)) = self.first(&matches) {
                return at;
            }
            assert!(Instant::now() < deadline, "no {what} event: {:?}", self.seen.lock().unwrap());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

// ---- kill -9 under a publisher ----

const RESTART_MESSAGES: u64 = 100_000;
/// Confirms awaited at once at most.
const PENDING_MAX: usize = 2_000;

/// What the publisher counted.
#[derive(Debug, Default)]
struct Published {
    calls_ok: u64,
    calls_failed: u64,
    confirmed: u64,
    not_confirmed: Vec<String>,
}

async fn publish_all(connection: Connection, confirmed: Arc<AtomicU64>) -> Published {
    connection.declare_queue("jobs", dedup_queue()).await.expect("declare");
    let destination = Destination::Queue("jobs".into());
    let mut counts = Published::default();
    let mut pending = VecDeque::new();
    for n in 0..RESTART_MESSAGES {
        let message = PublishMessage::new(labelled_payload(&format!("m{n}"), 64));
        match connection.publish_message(&destination, message).await {
            Ok(confirmation) => {
                counts.calls_ok += 1;
                pending.push_back((n, confirmation));
            }
            Err(error) => {
                counts.calls_failed += 1;
                counts.not_confirmed.push(format!("m{n}: {error}"));
            }
        }
        while pending.len() > PENDING_MAX {
            settle(pending.pop_front().unwrap(), &mut counts, &confirmed).await;
        }
    }
    for entry in pending {
        settle(entry, &mut counts, &confirmed).await;
    }
    counts
}

async fn settle(
    (n, confirmation): (u64, chute_client::Confirmation),
    counts: &mut Published,
    confirmed: &AtomicU64,
) {
    match confirmation.await {
        Ok(()) => {
            counts.confirmed += 1;
            confirmed.fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => counts.not_confirmed.push(format!("m{n}: {error}")),
    }
}

/// kill -9 and restart while a client publishes 100,000 messages to a queue with a dedup
/// window: every publish call returns success, every confirm arrives, and the queue holds
/// every message exactly once (those in flight at the kill were published again with the ids
/// the client gave them, and the restarted server's dedup window recognised those it had).
fn restart_under_a_publisher(binary: ServerBinary) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(binary, dir.path(), &[]);
    let (addr, url) = (server.addr, server.url());
    let confirmed = Arc::new(AtomicU64::new(0));
    let connection = block_on(Connection::connect(&url)).expect("connect");
    let events = EventLog::watch(&connection);
    let publisher = {
        let (connection, confirmed) = (connection.clone(), confirmed.clone());
        std::thread::spawn(move || block_on(publish_all(connection, confirmed)))
    };
    let started = Instant::now();
    while confirmed.load(Ordering::Relaxed) < RESTART_MESSAGES / 3 {
        assert!(started.elapsed() < TIMEOUT, "publishing stalled before the kill");
        std::thread::sleep(Duration::from_millis(5));
    }
    let confirmed_at_kill = confirmed.load(Ordering::Relaxed);
    server.kill();
    let killed = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let server = Server::start_in_at(binary, dir.path(), addr, &[]);
    let restarted = Instant::now();
    let counts = within("publishing across the restart", TIMEOUT, move || {
        publisher.join().expect("publisher thread")
    });
    let stats = connection.stats();
    let lost =
        events.wait_for("Disconnected", |e| matches!(e, ConnectionEvent::Disconnected { .. }));
    let back = events.wait_for("Reconnected", |e| matches!(e, ConnectionEvent::Reconnected { .. }));
    eprintln!(
        "{}: {counts:?}; confirmed before the kill {confirmed_at_kill}; server down (kill to \
         listening again) {} ms; client disconnected to reconnected {} ms, of which after the \
         server listened {} ms; {stats:?}",
        binary.name(),
        restarted.duration_since(killed).as_millis(),
        back.duration_since(lost).as_millis(),
        back.saturating_duration_since(restarted).as_millis(),
    );
    assert_eq!(
        counts.calls_failed,
        0,
        "{:?}",
        &counts.not_confirmed[..counts.not_confirmed.len().min(5)]
    );
    assert_eq!(counts.calls_ok, RESTART_MESSAGES);
    assert_eq!(
        counts.confirmed,
        RESTART_MESSAGES,
        "{:?}",
        &counts.not_confirmed[..counts.not_confirmed.len().min(5)]
    );
    assert!(stats.disconnects >= 1 && stats.connections >= 2, "{stats:?}");

    let ids = within("draining the queue", TIMEOUT, move || {
        block_on(async {
            let reader = Connection::connect(&url).await.unwrap();
            let ready = reader.queue_stats("jobs").await.unwrap().ready;
            assert_eq!(ready, RESTART_MESSAGES, "messages in the queue after the restart");
            take_ready(&reader, "jobs", ready).await
        })
    });
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len() as u64, RESTART_MESSAGES, "each message exactly once");
    assert!((0..RESTART_MESSAGES).all(|n| distinct.contains(&format!("m{n}"))));
    drop(server);
}

#[test]
fn restart_under_a_publisher_tokio() {
    restart_under_a_publisher(ServerBinary::Tokio);
}

#[test]
fn restart_under_a_publisher_smol() {
    restart_under_a_publisher(ServerBinary::Smol);
}

// ---- a subscriber across the restart ----

const CONSUMED_MESSAGES: u64 = 3_000;

/// A subscriber keeps consuming across kill -9 and a restart: its subscription is made again
/// on the new connection and every message arrives (at least once; deliveries unacked at the
/// kill come again, and settling them on the old connection reports them void).
fn subscriber_across_a_restart(binary: ServerBinary) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(binary, dir.path(), &[]);
    let (addr, url) = (server.addr, server.url());
    block_on(async {
        let admin = Connection::connect(&url).await.unwrap();
        admin.declare_queue("events", dedup_queue()).await.unwrap();
        admin.close().await;
    });
    let received = Arc::new(AtomicU64::new(0));
    let consumer = {
        let (url, received) = (url.clone(), received.clone());
        std::thread::spawn(move || block_on(consume_all(url, received)))
    };
    let publisher = {
        let url = url.clone();
        std::thread::spawn(move || {
            block_on(async {
                let connection = Connection::connect(&url).await.unwrap();
                let destination = Destination::Queue("events".into());
                let mut confirmations = Vec::new();
                for n in 0..CONSUMED_MESSAGES {
                    let message = PublishMessage::new(labelled_payload(&format!("e{n}"), 32));
                    confirmations
                        .push(connection.publish_message(&destination, message).await.unwrap());
                    if n % 100 == 0 {
                        // Spread over the test, so the restart falls in the middle.
                        async_io::Timer::after(Duration::from_millis(10)).await;
                    }
                }
                for confirmation in confirmations {
                    confirmation.await.unwrap();
                }
            })
        })
    };
    let started = Instant::now();
    while received.load(Ordering::Relaxed) < CONSUMED_MESSAGES / 3 {
        assert!(started.elapsed() < TIMEOUT, "consuming stalled before the kill");
        std::thread::sleep(Duration::from_millis(2));
    }
    server.kill();
    std::thread::sleep(Duration::from_millis(200));
    let server = Server::start_in_at(binary, dir.path(), addr, &[]);
    within("publishing", TIMEOUT, move || publisher.join().unwrap());
    let (seen, void) = within("consuming", TIMEOUT, move || consumer.join().unwrap());
    let duplicates: u64 = seen.values().map(|count| count - 1).sum();
    eprintln!(
        "{}: {} distinct of {CONSUMED_MESSAGES}, {duplicates} delivered again, {void} void settles",
        binary.name(),
        seen.len()
    );
    assert_eq!(seen.len() as u64, CONSUMED_MESSAGES, "nothing lost");
    block_on(async {
        let admin = Connection::connect(&server.url()).await.unwrap();
        let stats = admin.queue_stats("events").await.unwrap();
        assert_eq!((stats.ready, stats.in_flight), (0, 0), "{stats:?}");
    });
}

/// Consumes until every message was seen; returns how often each was delivered and how many
/// settles were void.
async fn consume_all(url: String, received: Arc<AtomicU64>) -> (BTreeMap<String, u64>, u64) {
    let connection = Connection::connect(&url).await.unwrap();
    let mut deliveries = connection.subscribe("events", 50).await.unwrap();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut void = 0;
    while (seen.len() as u64) < CONSUMED_MESSAGES {
        let delivery = deliveries.next().await.expect("the subscription carries on");
        *seen.entry(id_of(delivery.payload())).or_default() += 1;
        received.fetch_add(1, Ordering::Relaxed);
        match delivery.ack() {
            Ok(()) => {}
            Err(Error::DeliveryVoid { .. }) => void += 1,
            Err(other) => panic!("ack: {other}"),
        }
    }
    // The last acks go out before the close.
    connection.close().await;
    (seen, void)
}

#[test]
fn subscriber_across_a_restart_tokio() {
    subscriber_across_a_restart(ServerBinary::Tokio);
}

#[test]
fn subscriber_across_a_restart_smol() {
    subscriber_across_a_restart(ServerBinary::Smol);
}

// ---- the breaker ----

/// With the server down, failed reconnects open the breaker and publishes fail at once with
/// `CircuitOpen`; once the server is back, a trial publish is confirmed and the breaker
/// closes.
fn breaker_opens_while_the_server_is_down(binary: ServerBinary) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(binary, dir.path(), &[]);
    let (addr, url) = (server.addr, server.url());
    let mut options = ConnectOptions {
        breaker: Some(BreakerPolicy { failures_max: 3, open_ms: 300 }),
        ..ConnectOptions::default()
    };
    options.reconnect.backoff.base_ms = 20;
    options.reconnect.backoff.max_ms = 100;
    let connection = block_on(Connection::connect_with(&url, options)).unwrap();
    let events = EventLog::watch(&connection);
    block_on(connection.declare_queue("orders", dedup_queue())).unwrap();
    block_on(async { connection.publish("orders", "before").await.unwrap().await.unwrap() });

    server.kill();
    let connection_down = connection.clone();
    let refused = within("the breaker to open", Duration::from_secs(30), move || {
        block_on(async {
            loop {
                match connection_down.publish("orders", "while down").await {
                    Err(PublishError::Command(CommandError::CircuitOpen { retry_in_ms })) => {
                        return retry_in_ms
                    }
                    // Taken, to be sent once a connection opens; the breaker has not opened yet.
                    Ok(_) => {
                        async_io::Timer::after(Duration::from_millis(10)).await;
                    }
                    Err(other) => panic!("{other}"),
                };
            }
        })
    });
    assert!(refused <= 300);
    events.wait_for("BreakerOpened", |e| matches!(e, ConnectionEvent::BreakerOpened { .. }));

    let server = Server::start_in_at(binary, dir.path(), addr, &[]);
    let connection_up = connection.clone();
    within("a publish after the restart", Duration::from_secs(30), move || {
        block_on(async {
            loop {
                match connection_up.publish("orders", "after").await {
                    Ok(confirmation) => return confirmation.await.unwrap(),
                    Err(PublishError::Command(CommandError::CircuitOpen { .. })) => {
                        async_io::Timer::after(Duration::from_millis(20)).await;
                    }
                    Err(other) => panic!("{other}"),
                }
            }
        })
    });
    events.wait_for("BreakerClosed", |e| matches!(e, ConnectionEvent::BreakerClosed));
    let stats = connection.stats();
    assert!(stats.breaker_opens >= 1 && stats.breaker_rejections >= 1, "{stats:?}");
    drop(server);
}

#[test]
fn breaker_opens_while_the_server_is_down_tokio() {
    breaker_opens_while_the_server_is_down(ServerBinary::Tokio);
}

#[test]
fn breaker_opens_while_the_server_is_down_smol() {
    breaker_opens_while_the_server_is_down(ServerBinary::Smol);
}

// ---- a pool ----

fn pool_options() -> PoolOptions {
    PoolOptions { size_max: 3, size_min: 1, ..PoolOptions::default() }
}

/// Checkouts and round-robin publishes from many tasks, then a restart: the pool's
/// connections come back and it serves again. `run` is the runtime (tokio or smol).
fn pool_survives_a_restart(binary: ServerBinary, run: fn(futures::future::BoxFuture<'static, ()>)) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(binary, dir.path(), &[]);
    let (addr, url) = (server.addr, server.url());
    let pool = block_on(Pool::new(&url, pool_options())).unwrap();
    block_on(async {
        pool.get().await.unwrap().declare_queue("web", dedup_queue()).await.unwrap()
    });
    let burst = |pool: Pool, tag: &'static str| -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move {
            let tasks = (0..20).map(|task| {
                let pool = pool.clone();
                async move {
                    let destination = Destination::Queue("web".into());
                    let message =
                        PublishMessage::new(labelled_payload(&format!("{tag}{task}"), 16));
                    let confirmation = pool.publish(&destination, message).await.unwrap();
                    confirmation.await.unwrap();
                    let checked_out = pool.get().await.unwrap();
                    checked_out.queue_stats("web").await.unwrap();
                }
            });
            futures::future::join_all(tasks).await;
        })
    };
    run(burst(pool.clone(), "a"));
    let before = pool.metrics();
    assert!(before.size <= 3 && before.opened >= 1, "{before:?}");

    server.kill();
    std::thread::sleep(Duration::from_millis(200));
    let server = Server::start_in_at(binary, dir.path(), addr, &[]);
    let pool_after = pool.clone();
    within("the pool after the restart", Duration::from_secs(60), move || {
        run(burst(pool_after, "b"))
    });
    let after = pool.metrics();
    assert_eq!(after.in_use, 0, "{after:?}");
    assert!(after.size <= 3, "{after:?}");
    let ready =
        block_on(async { pool.get().await.unwrap().queue_stats("web").await.unwrap().ready });
    assert_eq!(ready, 40, "each publish once, before and after the restart");
    drop(server);
}

fn on_tokio(work: futures::future::BoxFuture<'static, ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(work);
}

fn on_smol(work: futures::future::BoxFuture<'static, ()>) {
    smol::block_on(work);
}

#[test]
fn pool_survives_a_restart_tokio_server_tokio_runtime() {
    pool_survives_a_restart(ServerBinary::Tokio, on_tokio);
}

#[test]
fn pool_survives_a_restart_smol_server_smol_runtime() {
    pool_survives_a_restart(ServerBinary::Smol, on_smol);
}

/// A checkout waits at most `checkout_timeout` when every connection is taken.
#[test]
fn pool_checkout_times_out_when_all_are_taken() {
    let server = Server::start(ServerBinary::Tokio);
    let options = PoolOptions {
        size_max: 1,
        checkout_timeout: Duration::from_millis(200),
        ..PoolOptions::default()
    };
    block_on(async {
        let pool = Pool::new(&server.url(), options).await.unwrap();
        let held = pool.get().await.unwrap();
        let started = Instant::now();
        assert!(matches!(pool.get().await, Err(Error::TimedOut { after_ms: 200 })));
        assert!(started.elapsed() >= Duration::from_millis(200));
        let metrics = pool.metrics();
        assert_eq!((metrics.size, metrics.in_use, metrics.waits, metrics.timeouts), (1, 1, 1, 1));
        drop(held);
        let again = pool.get().await.unwrap();
        assert!(again.is_connected());
    });
}

// ---- GoingAway ----

/// SIGTERM to the server a client is on: it says GoingAway, and the client, given a second
/// server in its address list, moves there, declares its queue again and publishes on.
fn going_away_moves_to_the_second_server(binary: ServerBinary) {
    let first = Server::start(binary);
    let second = Server::start(binary);
    let url = format!("chute://{},{}", first.addr, second.addr);
    let connection = block_on(Connection::connect(&url)).unwrap();
    let events = EventLog::watch(&connection);
    block_on(async {
        connection.declare_queue("moving", dedup_queue()).await.unwrap();
        for n in 0..50 {
            connection.publish("moving", format!("a{n}")).await.unwrap().await.unwrap();
        }
    });
    let stopped = first.stop();
    assert!(stopped.success());
    let second_addr = second.addr.to_string();
    events.wait_for("GoingAway", |e| matches!(e, ConnectionEvent::GoingAway { .. }));
    events.wait_for(
        "Reconnected to the second server",
        |e| matches!(e, ConnectionEvent::Reconnected { addr, .. } if *addr == second_addr),
    );
    let after = connection.clone();
    within("publishing on the second server", Duration::from_secs(30), move || {
        block_on(async {
            for n in 0..50 {
                after.publish("moving", format!("b{n}")).await.unwrap().await.unwrap();
            }
        })
    });
    let on_second = block_on(async {
        let direct = Connection::connect(&second.url()).await.unwrap();
        direct.queue_stats("moving").await.unwrap()
    });
    assert_eq!(on_second.ready, 50, "the queue was declared again there, and took the rest");
}

#[test]
fn going_away_moves_to_the_second_server_tokio() {
    going_away_moves_to_the_second_server(ServerBinary::Tokio);
}

#[test]
fn going_away_moves_to_the_second_server_smol() {
    going_away_moves_to_the_second_server(ServerBinary::Smol);
}
