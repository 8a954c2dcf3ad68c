//! Dead-letter queues from the client: list and inspect entries without consuming them, and
//! redrive them to the queues they came from. Every call names the dead-letter queue itself,
//! not a queue that sends to it.

use chute_core::client::Response;
use chute_protocol::{DeadLetter, DeadLetterSummary, LIST_PAGE_MAX, REDRIVE_IDS_MAX};

use crate::connection::{done_count, unexpected, Connection};
use crate::error::Error;

impl Connection {
    /// Every dead letter `queue` holds, oldest first (paging through the server's lists).
    /// Payloads are left out; [`Connection::dlq_inspect`] fetches one with its payload.
    pub async fn dlq_list(&self, queue: &str) -> Result<Vec<DeadLetterSummary>, Error> {
        let mut all: Vec<DeadLetterSummary> = Vec::new();
        loop {
            let after = all.last().map(|entry| entry.dead_id);
            let page_max = LIST_PAGE_MAX as u32;
            match self.request(|m, now| m.dlq_list(now, queue, after, page_max)).await? {
                Response::DlqList(page) => {
                    // An empty page that claims more would loop forever; trust the emptiness.
                    let progressed = !page.entries.is_empty();
                    all.extend(page.entries);
                    if !page.more || !progressed {
                        return Ok(all);
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// One dead letter of `queue`, with its headers and payload. Fails with
    /// `no-such-dead-letter` if it is gone (redriven, purged).
    pub async fn dlq_inspect(&self, queue: &str, dead_id: u64) -> Result<DeadLetter, Error> {
        match self.request(|m, now| m.dlq_inspect(now, queue, dead_id)).await? {
            Response::DlqInspect(entry) => Ok(*entry),
            other => Err(unexpected(other)),
        }
    }

    /// Moves dead letters of `queue` back to their source queues with attempts reset, and
    /// returns how many moved. An empty `dead_ids` moves every entry; ids that no longer exist
    /// are skipped. More ids than one request carries are sent in several requests.
    pub async fn dlq_redrive(&self, queue: &str, dead_ids: Vec<u64>) -> Result<u64, Error> {
        if dead_ids.is_empty() {
            return done_count(self.request(|m, now| m.dlq_redrive(now, queue, Vec::new())).await?);
        }
        let mut moved = 0;
        for chunk in dead_ids.chunks(REDRIVE_IDS_MAX) {
            // A chunk is never empty, so it never means "all".
            let ids = chunk.to_vec();
            moved += done_count(self.request(|m, now| m.dlq_redrive(now, queue, ids)).await?)?;
        }
        Ok(moved)
    }
}
