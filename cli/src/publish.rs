//! `chute publish QUEUE [MESSAGE]`

use std::io::BufRead;

use bytes::Bytes;
use chute_client::Connection;
use clap::Args;

#[derive(Args)]
pub struct PublishArgs {
    pub queue: String,
    /// The message; without it (and without --count), each line of stdin is one message.
    pub message: Option<String>,
    /// Publish this many generated messages instead.
    #[arg(long, conflicts_with = "message")]
    pub count: Option<u64>,
    /// Size of each generated message, in bytes.
    #[arg(long, default_value_t = 256, requires = "count")]
    pub size: usize,
}

pub async fn run(connection: &Connection, args: PublishArgs) -> Result<(), String> {
    let payloads: Box<dyn Iterator<Item = Result<Bytes, String>>> =
        match (&args.message, args.count) {
            (Some(message), _) => Box::new(std::iter::once(Ok(Bytes::from(message.clone())))),
            (None, Some(count)) => Box::new((0..count).map(move |i| Ok(generated(i, args.size)))),
            (None, None) => Box::new(
                std::io::stdin()
                    .lock()
                    .lines()
                    .map(|line| line.map(Bytes::from).map_err(|e| format!("reading stdin: {e}"))),
            ),
        };
    let mut confirmations = Vec::new();
    let mut published = 0u64;
    for payload in payloads {
        let confirmation =
            connection.publish(&args.queue, payload?).await.map_err(|e| e.to_string())?;
        confirmations.push(confirmation);
        published += 1;
        // Resolve confirms as we go so memory stays flat for large counts.
        if confirmations.len() >= 4096 {
            for confirmation in confirmations.drain(..) {
                confirmation.await.map_err(|e| e.to_string())?;
            }
        }
    }
    for confirmation in confirmations {
        confirmation.await.map_err(|e| e.to_string())?;
    }
    eprintln!("published {published} messages to {} (all confirmed)", args.queue);
    Ok(())
}

/// A payload of `size` bytes that starts with its sequence number, so consumers can check.
fn generated(index: u64, size: usize) -> Bytes {
    let mut payload = format!("{index:>12} ").into_bytes();
    payload.resize(size, b'.');
    payload.truncate(size);
    Bytes::from(payload)
}
