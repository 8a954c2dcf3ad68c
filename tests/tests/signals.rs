//! Signals on both servers: SIGHUP and SIGPIPE do not kill the server (nor count as a first
//! stop signal), and SIGUSR2 is lame duck: `/readyz` says `draining`, a consumer can still
//! settle what it holds, new connections are refused, and when the window ends the server
//! stops as after SIGTERM (exit 0), with every ack it took on disk.

use std::time::{Duration, Instant};

use chute_client::Connection;
use chute_protocol::QueueOptions;
use chute_tests::{http, take_ready, wait_for, Server, ServerBinary};
use futures::executor::block_on;
use futures::StreamExt;

/// SIGHUP (reload) and SIGPIPE (ignored) leave the server serving; SIGTERM after them is a
/// first stop signal, so the stop is graceful (exit 0, not the 130 of a second signal).
fn unhandled_signals_do_not_kill(binary: ServerBinary) {
    let mut server = Server::start(binary);
    for signal in ["HUP", "PIPE", "HUP"] {
        server.signal(signal);
    }
    std::thread::sleep(Duration::from_millis(200));
    let connection = block_on(Connection::connect(&server.url())).expect("still serving");
    block_on(connection.declare_queue("alive", QueueOptions::default())).expect("still serving");
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

#[test]
fn unhandled_signals_do_not_kill_tokio() {
    unhandled_signals_do_not_kill(ServerBinary::Tokio);
}

#[test]
fn unhandled_signals_do_not_kill_smol() {
    unhandled_signals_do_not_kill(ServerBinary::Smol);
}

const DRAIN_WINDOW_MS: u64 = 1500;

fn lame_duck_lets_a_consumer_finish(binary: ServerBinary) {
    let config = format!(
        "[server]\nlisten = LISTEN\nadmin_listen = ADMIN\ndata_dir = DATA_DIR\n\
         drain_window_ms = {DRAIN_WINDOW_MS}\n"
    );
    let (mut server, _path) = Server::start_with_config(binary, &config);
    let admin = server.admin_addr.unwrap();
    let connection = block_on(Connection::connect(&server.url())).unwrap();
    let mut held = Vec::new();
    block_on(async {
        connection.declare_queue("jobs", QueueOptions::default()).await.unwrap();
        connection.declare_queue("after", QueueOptions::default()).await.unwrap();
        for i in 0..5 {
            connection.publish("jobs", format!("job-{i}")).await.unwrap().await.unwrap();
        }
        let mut deliveries = connection.subscribe("jobs", 5).await.unwrap();
        for _ in 0..5 {
            held.push(deliveries.next().await.expect("a delivery"));
        }
    });

    server.signal("USR2");
    let drain_began = Instant::now();
    wait_for("/readyz to say draining", Duration::from_secs(5), || {
        let answer = http::get(admin, "/readyz");
        (answer.status, answer.body.as_str()) == (503, "draining\n")
    });
    assert!(
        block_on(Connection::connect(&server.url())).is_err(),
        "a new connection was accepted during the drain"
    );
    for delivery in held {
        delivery.ack().expect("an ack during the drain");
    }
    // Still served: a publish is confirmed, so the acks before it are in the synced log.
    block_on(async { connection.publish("after", "late").await.unwrap().await.unwrap() });

    let status = server.wait(Duration::from_millis(DRAIN_WINDOW_MS) + Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        drain_began.elapsed() >= Duration::from_millis(DRAIN_WINDOW_MS),
        "stopped after {:?}, before the window ended",
        drain_began.elapsed()
    );

    let restarted = Server::start_in(binary, &server.data_dir, &[]);
    let (jobs, ids) = block_on(async {
        let connection = Connection::connect(&restarted.url()).await.unwrap();
        let jobs = connection.queue_stats("jobs").await.unwrap();
        let ready = connection.queue_stats("after").await.unwrap().ready;
        (jobs, take_ready(&connection, "after", ready).await)
    });
    assert_eq!((jobs.ready, jobs.delayed, jobs.in_flight), (0, 0, 0), "an acked job came back");
    assert_eq!(ids, ["late"], "the publish confirmed during the drain is kept");
}

#[test]
fn lame_duck_lets_a_consumer_finish_tokio() {
    lame_duck_lets_a_consumer_finish(ServerBinary::Tokio);
}

#[test]
fn lame_duck_lets_a_consumer_finish_smol() {
    lame_duck_lets_a_consumer_finish(ServerBinary::Smol);
}

/// SIGTERM with a consumer subscribed (holding a delivery, and with a message still ready)
/// stops gracefully like one without.
fn sigterm_with_a_consumer_stops_gracefully(binary: ServerBinary) {
    let mut server = Server::start(binary);
    let connection = block_on(Connection::connect(&server.url())).unwrap();
    let _held = block_on(async {
        connection.declare_queue("jobs", QueueOptions::default()).await.unwrap();
        for i in 0..2 {
            connection.publish("jobs", format!("job-{i}")).await.unwrap().await.unwrap();
        }
        let mut deliveries = connection.subscribe("jobs", 1).await.unwrap();
        deliveries.next().await.expect("a delivery")
    });
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

#[test]
fn sigterm_with_a_consumer_stops_gracefully_tokio() {
    sigterm_with_a_consumer_stops_gracefully(ServerBinary::Tokio);
}

#[test]
fn sigterm_with_a_consumer_stops_gracefully_smol() {
    sigterm_with_a_consumer_stops_gracefully(ServerBinary::Smol);
}
