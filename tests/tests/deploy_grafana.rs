//! deploy/grafana/chute.json: an importable dashboard whose every query reads series a running
//! server exports (a renamed metric would otherwise leave a panel silently empty).

use std::collections::BTreeSet;
use std::path::Path;

use chute_tests::{
    chute, for_both_servers, http, promql_metric_names, scraped_metric_names, Server, ServerBinary,
};
use serde_json::Value;

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/chute.json");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana/chute.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel, those inside rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// The metric names each panel's queries and each query variable's `label_values(...)` read.
fn metric_names_used(dashboard: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target with an expr");
            let found = promql_metric_names(expr);
            assert!(!found.is_empty(), "no metric in {expr:?} ({})", panel["title"]);
            names.extend(found);
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("templating") {
        if variable["type"] == "query" {
            let query = variable["query"]["query"].as_str().expect("a variable query");
            let metric = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.split_once(','))
                .map(|(metric, _)| metric.trim())
                .unwrap_or_else(|| panic!("not label_values(metric, label): {query:?}"));
            names.insert(metric.to_string());
        }
    }
    names
}

/// The dashboard is importable as shared dashboards are: a datasource input every panel and
/// query uses, a schema version, the `queue` variable from `chute_queue_messages`.
#[test]
fn dashboard_is_importable_with_a_datasource_input() {
    let dashboard = dashboard();
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 39);
    assert!(dashboard["id"].is_null(), "an exported dashboard carries no id");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let queue = variables.iter().find(|v| v["name"] == "queue").expect("a queue variable");
    assert_eq!(queue["query"]["query"], "label_values(chute_queue_messages, queue)");
    for panel in panels(&dashboard).into_iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", panel["title"]);
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", panel["title"]);
        }
    }
}

/// A server with a queue that has seen publishes, deliveries, acks and a sync exports every
/// series the dashboard reads.
fn every_metric_the_dashboard_reads_is_exported(binary: ServerBinary) {
    let server = Server::start(binary);
    for args in [
        &["queue", "declare", "jobs"][..],
        &["publish", "jobs", "--count", "20", "--size", "64"],
        &["consume", "jobs", "--count", "5"],
    ] {
        let output = chute(&server, args, None);
        assert!(output.status.success(), "chute {args:?}: {output:?}");
    }
    let page = http::get(server.admin_addr.expect("admin endpoint"), "/metrics").body;
    let exported = scraped_metric_names(&page);
    let used = metric_names_used(&dashboard());
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "the dashboard reads {missing:?}, not on the page:\n{page}");
}

for_both_servers!(every_metric_the_dashboard_reads_is_exported);
