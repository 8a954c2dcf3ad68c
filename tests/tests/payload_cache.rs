//! Payloads beyond `storage.payload_cache_bytes` leave memory and are read back from the log
//! (docs/STORAGE.md §17), most of the messages with them, as cold runs (§18): a backlog far
//! larger than a tiny cache is delivered complete and in order by the server that queued it,
//! and by one restarted after a SIGKILL on the same data directory. Both servers.

use std::time::Duration;

use chute_client::{Connection, QueueOptions};
use chute_tests::{
    for_both_servers, http, labelled_payload, metric, take_ready, within, Server, ServerBinary,
};
use futures::executor::block_on;

/// 2,000 messages of 512 bytes: 1 MB of payload, thirty times the cache.
const MESSAGES: u64 = 2_000;
const PAYLOAD_BYTES: usize = 512;
const CACHE: &str = "storage.payload_cache_bytes=32768";
/// Small segments, so that the backlog spans many and reads cross from one to the next.
const SEGMENT_BYTES: &str = "262144";
const TIMEOUT: Duration = Duration::from_secs(60);

fn start(binary: ServerBinary, data_dir: &std::path::Path) -> Server {
    Server::start_in(binary, data_dir, &["--set", CACHE, "--segment-bytes-max", SEGMENT_BYTES])
}

/// Publishes the backlog to `backlog`, each publish confirmed; returns the ids in order.
async fn publish_backlog(url: &str) -> Vec<String> {
    let connection = Connection::connect(url).await.unwrap();
    connection.declare_queue("backlog", QueueOptions::default()).await.unwrap();
    let mut confirmations = Vec::new();
    let mut ids = Vec::new();
    for n in 0..MESSAGES {
        let id = format!("m{n}");
        confirmations.push(
            connection.publish("backlog", labelled_payload(&id, PAYLOAD_BYTES)).await.unwrap(),
        );
        ids.push(id);
    }
    for confirmation in confirmations {
        confirmation.await.unwrap();
    }
    connection.close().await;
    ids
}

async fn consume_backlog(url: &str) -> Vec<String> {
    let connection = Connection::connect(url).await.unwrap();
    let ids = take_ready(&connection, "backlog", MESSAGES).await;
    connection.close().await;
    ids
}

/// Most of the backlog is cold: held as where its records are, not as messages.
fn assert_mostly_cold(server: &Server) {
    let page = http::get(server.admin_addr.expect("admin on"), "/metrics").body;
    let cold = metric(&page, "chute_payload_cold_messages").expect("the cold series");
    assert!(cold >= (MESSAGES * 9 / 10) as f64, "{cold} of {MESSAGES} messages cold");
}

fn publish(server: &Server) -> Vec<String> {
    let url = server.url();
    within("publishing the backlog", TIMEOUT, move || block_on(publish_backlog(&url)))
}

fn consume(server: &Server) -> Vec<String> {
    let url = server.url();
    within("consuming the backlog", TIMEOUT, move || block_on(consume_backlog(&url)))
}

/// The server that queued the backlog delivers it whole and in order, through reads.
fn a_backlog_beyond_the_cache_is_delivered_in_order(binary: ServerBinary) {
    let data = tempfile::tempdir().expect("temp dir");
    let server = start(binary, data.path());
    let sent = publish(&server);
    assert_mostly_cold(&server);
    assert_eq!(consume(&server), sent);
    server.stop();
}

/// After a SIGKILL the restarted server starts with the payloads beyond the cache on disk, and
/// delivers the backlog whole and in order.
fn a_backlog_beyond_the_cache_survives_a_kill(binary: ServerBinary) {
    let data = tempfile::tempdir().expect("temp dir");
    let mut server = start(binary, data.path());
    let sent = publish(&server);
    server.kill();
    let server = start(binary, data.path());
    assert_mostly_cold(&server);
    assert_eq!(consume(&server), sent);
    server.stop();
}

for_both_servers!(
    a_backlog_beyond_the_cache_is_delivered_in_order,
    a_backlog_beyond_the_cache_survives_a_kill
);
