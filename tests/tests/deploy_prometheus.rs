//! deploy/prometheus/chute-alerts.yml names only metrics a real server exports: a server with
//! a queue that has seen traffic (publishes, a delivery, an ack, a dead letter, a refusal) is
//! scraped, and every `chute_*` name in the rules' expressions must be on the page (a
//! histogram's `_bucket`, `_count` and `_sum` count as its base name).

use std::path::PathBuf;

use chute_client::{Connection, QueueOptions};
use chute_tests::{http, Server, ServerBinary};
use futures::executor::block_on;

/// The `chute_*` metric names in the rules' `expr:` lines.
fn names_in_rules() -> Vec<String> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/chute-alerts.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("expr:"))
        .flat_map(|expr| {
            expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("chute_"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether `name` is a series on the page, or a histogram's series whose base is.
fn exported(page: &str, name: &str) -> bool {
    let series = page.lines().filter(|line| !line.starts_with('#'));
    let is_series = |line: &str, name: &str| {
        line.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    };
    if series.clone().any(|line| is_series(line, name)) {
        return true;
    }
    let base = ["_bucket", "_count", "_sum"].iter().find_map(|suffix| name.strip_suffix(suffix));
    base.is_some_and(|base| page.contains(&format!("# TYPE {base} histogram")))
}

#[test]
fn every_metric_the_rules_use_is_exported() {
    let server = Server::start(ServerBinary::Tokio);
    let connection = block_on(Connection::connect(&server.url())).unwrap();
    let options = QueueOptions { messages_max: Some(2), ..QueueOptions::default() };
    block_on(connection.declare_queue("jobs", options)).unwrap();
    for k in 0..3 {
        // The third is refused: the queue is full.
        let _ =
            block_on(async { connection.publish("jobs", format!("m-{k}")).await.unwrap().await });
    }
    let page = http::get(server.admin_addr.unwrap(), "/metrics").body;
    let names = names_in_rules();
    assert!(names.len() >= 8, "the rules name few metrics: {names:?}");
    let missing: Vec<&String> = names.iter().filter(|name| !exported(&page, name)).collect();
    assert!(missing.is_empty(), "named in chute-alerts.yml but not exported: {missing:?}\n{page}");
    drop(connection);
    assert!(server.stop().success());
}
