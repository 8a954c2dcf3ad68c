//! One webhook receiver: a bounded queue of notifications and a task that POSTs them, one at
//! a time, with a timeout per attempt, retries with exponential backoff and full jitter
//! (core's `retry_delay_ms`), and a circuit breaker (core's `Breaker`). The broker task only
//! ever pushes into the queue, which never waits: when it is full the oldest notification is
//! dropped and counted, so a dead receiver costs the broker nothing and the newest news
//! (often the resolution of what was dropped) is what gets through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant as StdInstant;

use bytes::Bytes;
use chute_core::policy::backoff::retry_delay_ms;
use chute_core::policy::breaker::Breaker;
use chute_core::rng::Rng;
use chute_core::Instant;
use futures::future::{self, Either};
use http_body_util::{BodyExt, Full};
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::Request;
use smol_hyper::rt::FuturesIo;

use crate::config::alerts::{ReceiverSettings, WebhookTarget};
use crate::runtime::Runtime;

/// What happened to a receiver's notifications, for `/metrics`.
#[derive(Debug, Default)]
pub struct ReceiverCounters {
    /// Accepted by the receiver (a 2xx answer).
    pub delivered: AtomicU64,
    /// Attempts that failed (error, timeout, non-2xx) and were retried.
    pub retried: AtomicU64,
    /// Notifications given up after `attempts_max` attempts.
    pub failed: AtomicU64,
    /// Notifications dropped from a full queue (the oldest first).
    pub dropped: AtomicU64,
}

/// The broker task's handle on a receiver. Dropping it closes the queue: the task stops
/// without sending what is left (the receiver was removed or changed).
#[derive(Debug)]
pub struct Webhook {
    queue: async_channel::Sender<Bytes>,
    counters: Arc<ReceiverCounters>,
    name: String,
}

impl Webhook {
    /// Starts the receiver's task on `runtime`.
    pub fn start<R: Runtime>(
        runtime: &R,
        settings: &ReceiverSettings,
        counters: Arc<ReceiverCounters>,
    ) -> Webhook {
        let target = settings.target().expect("checked with the configuration");
        let (queue, pending) = async_channel::bounded(settings.queue_max as usize);
        let sender = Sender {
            runtime: runtime.clone(),
            settings: settings.clone(),
            target,
            counters: counters.clone(),
            breaker: Breaker::new(),
            started: StdInstant::now(),
            rng: Rng::new(seed()),
        };
        runtime.spawn(sender.run(pending));
        Webhook { queue, counters, name: settings.name.clone() }
    }

    /// Queues a notification; never waits. A full queue drops its oldest.
    pub fn notify(&self, body: Bytes) {
        if let Ok(Some(_oldest)) = self.queue.force_send(body) {
            let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(receiver = %self.name, dropped, "alert notification dropped: the receiver's queue is full");
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// A seed for the jitter; any value works, different ones spread receivers apart.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => StdInstant::now().elapsed().as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15,
    }
}

/// The receiver's task.
struct Sender<R: Runtime> {
    runtime: R,
    settings: ReceiverSettings,
    target: WebhookTarget,
    counters: Arc<ReceiverCounters>,
    breaker: Breaker,
    /// The breaker's clock starts here.
    started: StdInstant,
    rng: Rng,
}

impl<R: Runtime> Sender<R> {
    async fn run(mut self, pending: async_channel::Receiver<Bytes>) {
        while let Ok(body) = pending.recv().await {
            self.deliver(body, &pending).await;
        }
    }

    /// Tries `body` until it is accepted, `attempts_max` attempts failed, or the receiver is
    /// closed.
    async fn deliver(&mut self, body: Bytes, pending: &async_channel::Receiver<Bytes>) {
        let name = &self.settings.name;
        for attempt in 1..=self.settings.attempts_max {
            self.wait_for_breaker().await;
            if pending.is_closed() {
                return;
            }
            self.breaker.on_delivery(self.now());
            match self.attempt(body.clone()).await {
                Ok(()) => {
                    self.breaker.on_success();
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(receiver = %name, attempt, "alert notification delivered");
                    return;
                }
                Err(error) if attempt == self.settings.attempts_max => {
                    self.breaker.on_failure(self.now(), &self.settings.breaker);
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(receiver = %name, attempt, %error, "alert notification given up");
                }
                Err(error) => {
                    self.breaker.on_failure(self.now(), &self.settings.breaker);
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    let delay_ms = retry_delay_ms(&self.settings.backoff, attempt, &mut self.rng);
                    tracing::info!(receiver = %name, attempt, %error, delay_ms, "alert notification failed; retrying");
                    self.sleep_ms(delay_ms).await;
                }
            }
        }
    }

    /// While the breaker is open, sends nothing: sleeps until it half-opens.
    async fn wait_for_breaker(&self) {
        while !self.breaker.allows_delivery(self.now()) {
            let until = self.breaker.reopens_at().expect("an open breaker says when it reopens");
            let wait_ms = until.saturating_since(self.now()).as_millis() as u64;
            self.sleep_ms(wait_ms.max(1)).await;
        }
    }

    /// One POST within the timeout.
    async fn attempt(&self, body: Bytes) -> Result<(), String> {
        let deadline =
            StdInstant::now() + std::time::Duration::from_millis(self.settings.timeout_ms.into());
        let post = Box::pin(post(&self.runtime, &self.target, body));
        let timeout = Box::pin(self.runtime.sleep_until(deadline));
        match future::select(post, timeout).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => Err(format!("no answer within {} ms", self.settings.timeout_ms)),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.started.elapsed().as_nanos() as u64)
    }

    async fn sleep_ms(&self, ms: u64) {
        let until = StdInstant::now() + std::time::Duration::from_millis(ms);
        self.runtime.sleep_until(until).await;
    }
}

/// POSTs `body` as JSON to `target` over HTTP/1.1 on a fresh connection; `Ok` on a 2xx.
async fn post<R: Runtime>(runtime: &R, target: &WebhookTarget, body: Bytes) -> Result<(), String> {
    let stream = runtime
        .connect(&target.host, target.port)
        .await
        .map_err(|error| format!("cannot connect to {}: {error}", target.authority))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(FuturesIo::new(stream))
        .await
        .map_err(|error| format!("HTTP handshake: {error}"))?;
    let request = Request::post(target.path.as_str())
        .header(HOST, target.authority.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("chute/", env!("CARGO_PKG_VERSION")))
        .header(CONNECTION, "close")
        .body(Full::new(body))
        .map_err(|error| format!("request: {error}"))?;
    let exchange = Box::pin(async move {
        let response = sender.send_request(request).await.map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        // Read the answer whole, so the receiver sees its connection closed cleanly.
        let _ = response.into_body().collect().await;
        match status.is_success() {
            true => Ok(()),
            false => Err(format!("answered {status}")),
        }
    });
    // The connection is driven beside the exchange; the exchange's end is what counts.
    match future::select(exchange, connection).await {
        Either::Left((result, _)) => result,
        Either::Right((Ok(()), exchange)) => exchange.await,
        Either::Right((Err(error), _)) => Err(format!("connection: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full queue drops its oldest notification and counts it; the broker never waits.
    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let (queue, pending) = async_channel::bounded(2);
        let counters = Arc::new(ReceiverCounters::default());
        let webhook = Webhook { queue, counters: counters.clone(), name: "ops".into() };
        for body in ["first", "second", "third"] {
            webhook.notify(Bytes::from(body));
        }
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(pending.try_recv().unwrap(), "second");
        assert_eq!(pending.try_recv().unwrap(), "third");
        drop(webhook);
        assert!(pending.is_closed(), "dropping the handle stops the sender");
    }
}
