//! `chute consume QUEUE`

use chute_client::{Connection, Delivery, SubscribeOptions};
use clap::Args;
use futures::StreamExt;

#[derive(Args)]
pub struct ConsumeArgs {
    pub queue: String,
    /// Stop after this many messages (default: run until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
    /// One JSON object per message, one per line.
    #[arg(long)]
    pub json: bool,
    /// Deliveries held unacked at once.
    #[arg(long, default_value_t = 100)]
    pub prefetch: u32,
}

pub async fn run(connection: &Connection, args: ConsumeArgs) -> Result<(), String> {
    let wanted = args.count.unwrap_or(u64::MAX);
    if wanted == 0 {
        return Ok(());
    }
    // Grant exactly `wanted` credit in total, so no message beyond it is delivered (and then
    // requeued with an attempt counted when we leave).
    let mut granted = wanted.min(u64::from(args.prefetch.max(1)));
    let options = SubscribeOptions { prefetch: granted as u32, auto_credit: false, lease_ms: None };
    let mut deliveries =
        connection.subscribe_with(&args.queue, options).await.map_err(|e| e.to_string())?;
    let mut received = 0u64;
    while received < wanted {
        let Some(delivery) = deliveries.next().await else {
            let reason = connection.closed_reason().map(|e| e.to_string());
            return Err(reason.unwrap_or_else(|| format!("subscription to {} ended", args.queue)));
        };
        print_delivery(&delivery, args.json);
        delivery.ack().map_err(|e| e.to_string())?;
        received += 1;
        if granted < wanted {
            deliveries.grant_credit(1).map_err(|e| e.to_string())?;
            granted += 1;
        }
    }
    Ok(())
}

fn print_delivery(delivery: &Delivery, json: bool) {
    let payload = delivery.payload();
    if !json {
        println!("{}", String::from_utf8_lossy(payload));
        return;
    }
    let mut value = serde_json::json!({
        "tag": delivery.tag(),
        "attempt": delivery.attempt(),
        "redelivered": delivery.redelivered(),
        "id": delivery.message_id(),
        "published_unix_ms": delivery.published_unix_ms(),
        "priority": delivery.priority(),
        "group": delivery.group(),
        "headers": delivery
            .headers()
            .iter()
            .map(|h| (h.name.clone(), String::from_utf8_lossy(&h.value).into_owned().into()))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
    });
    match std::str::from_utf8(payload) {
        Ok(text) => value["payload"] = text.into(),
        Err(_) => {
            value["payload_hex"] =
                payload.iter().map(|b| format!("{b:02x}")).collect::<String>().into()
        }
    }
    println!("{value}");
}
