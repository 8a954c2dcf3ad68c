//! Client commands. Each validates what the server would refuse anyway, so mistakes surface
//! at the call site, then encodes (or coalesces) its frame.

use chute_protocol::{
    append_postcard, push_to_ranges, Ack, Binding, Close, Credit, Destination, DlqInspect, DlqList,
    DlqRedrive, ErrorCode, FrameKind, Nack, PublishMessage, QueueDeclare, QueueDelete, QueueList,
    QueueOptions, QueuePurge, QueueStatsRequest, Range, Reject, Subscribe, Touch, Unsubscribe,
    BATCH_FRAME_BYTES_TARGET, FRAME_HEADER_LEN, GROUP_KEY_LEN_MAX, HEADERS_MAX, MESSAGE_ID_LEN_MAX,
    NAME_LEN_MAX, PRIORITY_MAX, PUBLISH_BATCH_MAX, RANGES_MAX, REASON_LEN_MAX, REDRIVE_IDS_MAX,
};

use bytes::{Buf, BufMut};

use super::{Client, Pending, State, SubscriptionState};

/// How a subscription takes deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionOptions {
    /// Deliveries the server may send before more credit is granted.
    pub credit: u32,
    /// Overrides the queue's lease.
    pub lease_ms: Option<u32>,
    /// Caps the delivery rate.
    pub rate: Option<chute_protocol::RateLimit>,
    /// Grant one credit back per settled delivery.
    pub auto_credit: bool,
}

/// Why a command was refused before anything was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    #[error("the connection is closed")]
    Closed,
    #[error("{unconfirmed} publishes are unconfirmed, the most allowed; wait for confirms")]
    WindowFull { unconfirmed: u64 },
    #[error("message of about {size} bytes does not fit in a frame of {max} bytes")]
    TooLarge { size: usize, max: u32 },
    #[error("{what} is {len} bytes, longer than {max}")]
    TooLong { what: &'static str, len: usize, max: usize },
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    #[error("delivery tag {0} is not outstanding")]
    UnknownTag(u64),
    #[error("subscription {0} is not active")]
    UnknownSubscription(u32),
    /// The session's circuit breaker is open: the server failed too often in a row. Publishes
    /// fail at once until it lets a trial through.
    #[error("the circuit breaker is open after repeated failures; retry in {retry_in_ms} ms")]
    CircuitOpen { retry_in_ms: u64 },
}

/// Bytes of a `Publish` frame besides its messages' own, generously.
const PUBLISH_OVERHEAD: usize = FRAME_HEADER_LEN + NAME_LEN_MAX + 16;

impl Client {
    fn check_usable(&self) -> Result<(), CommandError> {
        match self.state {
            State::Closed => Err(CommandError::Closed),
            _ => Ok(()),
        }
    }

    fn next_request(&mut self) -> u32 {
        let id = self.next_request_id;
        // 0 means "no reply wanted" on settle frames; never hand it out.
        self.next_request_id = self.next_request_id.checked_add(1).unwrap_or(1);
        id
    }

    fn request<T: serde::Serialize>(
        &mut self,
        kind: FrameKind,
        build: impl FnOnce(u32) -> T,
    ) -> Result<u32, CommandError> {
        self.check_usable()?;
        let request_id = self.next_request();
        let body = build(request_id);
        self.encode(kind, &body);
        Ok(request_id)
    }

    pub fn declare_queue(
        &mut self,
        name: &str,
        options: QueueOptions,
        passive: bool,
    ) -> Result<u32, CommandError> {
        check_len("queue name", name, NAME_LEN_MAX)?;
        let name = name.to_string();
        self.request(FrameKind::QueueDeclare, |request_id| QueueDeclare {
            request_id,
            name,
            options,
            passive,
        })
    }

    pub fn delete_queue(
        &mut self,
        name: &str,
        if_empty: bool,
        if_unused: bool,
    ) -> Result<u32, CommandError> {
        check_len("queue name", name, NAME_LEN_MAX)?;
        let name = name.to_string();
        self.request(FrameKind::QueueDelete, |request_id| QueueDelete {
            request_id,
            name,
            if_empty,
            if_unused,
        })
    }

    pub fn purge_queue(&mut self, name: &str) -> Result<u32, CommandError> {
        check_len("queue name", name, NAME_LEN_MAX)?;
        let name = name.to_string();
        self.request(FrameKind::QueuePurge, |request_id| QueuePurge { request_id, name })
    }

    pub fn bind(&mut self, queue: &str, pattern: &str) -> Result<u32, CommandError> {
        self.binding(FrameKind::Bind, queue, pattern)
    }

    pub fn unbind(&mut self, queue: &str, pattern: &str) -> Result<u32, CommandError> {
        self.binding(FrameKind::Unbind, queue, pattern)
    }

    fn binding(
        &mut self,
        kind: FrameKind,
        queue: &str,
        pattern: &str,
    ) -> Result<u32, CommandError> {
        check_len("queue name", queue, NAME_LEN_MAX)?;
        check_len("pattern", pattern, NAME_LEN_MAX)?;
        let (queue, pattern) = (queue.to_string(), pattern.to_string());
        self.request(kind, |request_id| Binding { request_id, queue, pattern })
    }

    pub fn list_queues(&mut self, after: Option<String>, limit: u32) -> Result<u32, CommandError> {
        self.request(FrameKind::QueueList, |request_id| QueueList { request_id, after, limit })
    }

    pub fn queue_stats(&mut self, name: &str) -> Result<u32, CommandError> {
        check_len("queue name", name, NAME_LEN_MAX)?;
        let name = name.to_string();
        self.request(FrameKind::QueueStats, |request_id| QueueStatsRequest { request_id, name })
    }

    pub fn dlq_list(
        &mut self,
        queue: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<u32, CommandError> {
        check_len("queue name", queue, NAME_LEN_MAX)?;
        let queue = queue.to_string();
        self.request(FrameKind::DlqList, |request_id| DlqList { request_id, queue, after, limit })
    }

    pub fn dlq_inspect(&mut self, queue: &str, dead_id: u64) -> Result<u32, CommandError> {
        check_len("queue name", queue, NAME_LEN_MAX)?;
        let queue = queue.to_string();
        self.request(FrameKind::DlqInspect, |request_id| DlqInspect { request_id, queue, dead_id })
    }

    /// Redrives the named dead letters, or all of them when `dead_ids` is empty.
    pub fn dlq_redrive(&mut self, queue: &str, dead_ids: Vec<u64>) -> Result<u32, CommandError> {
        check_len("queue name", queue, NAME_LEN_MAX)?;
        if dead_ids.len() > REDRIVE_IDS_MAX {
            return Err(CommandError::TooLong {
                what: "dead_ids",
                len: dead_ids.len(),
                max: REDRIVE_IDS_MAX,
            });
        }
        let queue = queue.to_string();
        self.request(FrameKind::DlqRedrive, |request_id| DlqRedrive { request_id, queue, dead_ids })
    }

    /// Queues a message for publishing and returns its sequence number; a `Confirmed` or
    /// `PublishFailed` event for that number follows.
    pub fn publish(
        &mut self,
        destination: &Destination,
        mandatory: bool,
        message: PublishMessage,
    ) -> Result<u64, CommandError> {
        self.publish_ref(destination, mandatory, &message)
    }

    /// [`Client::publish`] that leaves the message with the caller: it is encoded at once, so
    /// a caller that must publish it again on another connection keeps it without a copy.
    pub fn publish_ref(
        &mut self,
        destination: &Destination,
        mandatory: bool,
        message: &PublishMessage,
    ) -> Result<u64, CommandError> {
        self.check_usable()?;
        if self.window_full() {
            return Err(CommandError::WindowFull { unconfirmed: self.unconfirmed });
        }
        check_message(message)?;
        let start = self.publish_body.len();
        append_postcard(message, &mut self.publish_body).expect("a message always encodes");
        let size = self.publish_body.len() - start;
        let frame_max = self.frame_size_max();
        if size + PUBLISH_OVERHEAD > frame_max as usize {
            self.publish_body.truncate(start);
            return Err(CommandError::TooLarge { size, max: frame_max });
        }
        self.join_publish_batch(destination, mandatory, start, size);
        let seq = self.next_publish_seq;
        self.next_publish_seq += 1;
        self.unconfirmed += 1;
        Ok(seq)
    }

    /// Counts the message just encoded (the last `size` bytes of `publish_body`, from
    /// `start`) into the pending batch, first sending the batch before it if the message
    /// does not belong with it (another destination, or no room).
    fn join_publish_batch(
        &mut self,
        destination: &Destination,
        mandatory: bool,
        start: usize,
        size: usize,
    ) {
        let batch_max =
            self.server.as_ref().map_or(PUBLISH_BATCH_MAX, |s| s.limits.publish_batch_max as usize);
        let frame_max = self.frame_size_max() as usize;
        let fits = match &self.pending {
            Pending::Publish { destination: d, mandatory: m, count } => {
                d == destination
                    && *m == mandatory
                    && *count < batch_max
                    && start + size + PUBLISH_OVERHEAD <= frame_max.min(BATCH_FRAME_BYTES_TARGET)
            }
            _ => false,
        };
        if !fits {
            match std::mem::take(&mut self.pending) {
                Pending::Publish { destination, mandatory, count } => {
                    self.encode_publish_batch(&destination, mandatory, count, start);
                }
                other => {
                    self.pending = other;
                    self.flush_pending();
                }
            }
            let destination = destination.clone();
            self.pending = Pending::Publish { destination, mandatory, count: 0 };
        }
        if let Pending::Publish { count, .. } = &mut self.pending {
            *count += 1;
        }
    }

    /// Writes a `Publish` frame of the first `count` messages of `publish_body` (its first
    /// `body_len` bytes) and takes them out of it. The body is what postcard writes for
    /// [`chute_protocol::Publish`]: the destination, the flag, the number of messages, then the messages.
    fn encode_publish_batch(
        &mut self,
        destination: &Destination,
        mandatory: bool,
        count: usize,
        body_len: usize,
    ) {
        let start = self.out.len();
        self.out.put_bytes(0, FRAME_HEADER_LEN);
        append_postcard(destination, &mut self.out).expect("a destination always encodes");
        append_postcard(&mandatory, &mut self.out).expect("a flag always encodes");
        // A sequence's length is a varint, the same bytes as a varint u64 of the same value.
        append_postcard(&(count as u64), &mut self.out).expect("a count always encodes");
        self.out.extend_from_slice(&self.publish_body[..body_len]);
        self.publish_body.advance(body_len);
        let len = self.out.len() - start - FRAME_HEADER_LEN;
        assert!(len <= self.frame_size_max() as usize, "a publish batch outgrew its frame");
        let header = &mut self.out[start..start + FRAME_HEADER_LEN];
        header[..4].copy_from_slice(&(len as u32).to_be_bytes());
        header[4] = FrameKind::Publish as u8;
        header[5] = 0;
    }

    /// Subscribes to a queue with `credit` deliveries in advance. With `auto_credit`, each
    /// settled delivery grants one credit back, so at most `credit` are ever unsettled.
    /// Returns (request id, subscription id).
    pub fn subscribe(
        &mut self,
        queue: &str,
        credit: u32,
        lease_ms: Option<u32>,
        auto_credit: bool,
    ) -> Result<(u32, u32), CommandError> {
        self.subscribe_with(
            queue,
            SubscriptionOptions { credit, lease_ms, rate: None, auto_credit },
        )
    }

    /// Subscribes with every option; see [`SubscriptionOptions`].
    pub fn subscribe_with(
        &mut self,
        queue: &str,
        options: SubscriptionOptions,
    ) -> Result<(u32, u32), CommandError> {
        check_len("queue name", queue, NAME_LEN_MAX)?;
        let subscription = self.next_subscription;
        self.next_subscription += 1;
        let queue = queue.to_string();
        let request_id = self.request(FrameKind::Subscribe, |request_id| Subscribe {
            request_id,
            subscription,
            queue,
            credit: options.credit,
            lease_ms: options.lease_ms,
            rate: options.rate,
        })?;
        let state = SubscriptionState { auto_credit: options.auto_credit, credit_owed: 0 };
        self.subscriptions.insert(subscription, state);
        Ok((request_id, subscription))
    }

    pub fn grant_credit(&mut self, subscription: u32, credit: u32) -> Result<(), CommandError> {
        self.check_usable()?;
        let sub = self
            .subscriptions
            .get_mut(&subscription)
            .ok_or(CommandError::UnknownSubscription(subscription))?;
        sub.credit_owed = sub.credit_owed.saturating_add(credit);
        Ok(())
    }

    /// Stops granting credit on every subscription (automatic credit included): the server
    /// is going away, and deliveries it sends now would only return to their queues with an
    /// attempt counted when the connection closes (§5.7).
    pub fn withhold_credit(&mut self) {
        self.credit_withheld = true;
    }

    pub fn unsubscribe(&mut self, subscription: u32) -> Result<u32, CommandError> {
        if self.subscriptions.remove(&subscription).is_none() {
            return Err(CommandError::UnknownSubscription(subscription));
        }
        self.request(FrameKind::Unsubscribe, |request_id| Unsubscribe { request_id, subscription })
    }

    /// Acks a delivery. Consecutive acks share one frame.
    pub fn ack(&mut self, tag: u64) -> Result<(), CommandError> {
        self.check_usable()?;
        self.settle(tag)?;
        let full = matches!(&self.pending, Pending::Acks(ranges) if ranges.len() >= RANGES_MAX);
        if full || !matches!(self.pending, Pending::Acks(_)) {
            self.flush_pending();
            self.pending = Pending::Acks(Vec::new());
        }
        if let Pending::Acks(ranges) = &mut self.pending {
            push_to_ranges(ranges, tag);
        }
        Ok(())
    }

    /// A failed attempt: the server retries the message after its backoff, or `delay_ms`.
    pub fn nack(
        &mut self,
        tag: u64,
        delay_ms: Option<u64>,
        reason: Option<String>,
    ) -> Result<(), CommandError> {
        self.check_usable()?;
        if let Some(reason) = &reason {
            check_len("reason", reason, REASON_LEN_MAX)?;
        }
        self.settle(tag)?;
        self.encode(
            FrameKind::Nack,
            &Nack { request_id: 0, ranges: vec![Range::one(tag)], delay_ms, reason },
        );
        Ok(())
    }

    /// Dead-letters the message now with reason `rejected` and this text.
    pub fn reject(&mut self, tag: u64, reason: String) -> Result<(), CommandError> {
        self.check_usable()?;
        check_len("reason", &reason, REASON_LEN_MAX)?;
        self.settle(tag)?;
        self.encode(
            FrameKind::Reject,
            &Reject { request_id: 0, ranges: vec![Range::one(tag)], reason },
        );
        Ok(())
    }

    /// Extends a delivery's lease.
    pub fn touch(&mut self, tag: u64, lease_ms: Option<u32>) -> Result<(), CommandError> {
        self.check_usable()?;
        if !self.outstanding.contains(tag) {
            return Err(CommandError::UnknownTag(tag));
        }
        self.encode(
            FrameKind::Touch,
            &Touch { request_id: 0, ranges: vec![Range::one(tag)], lease_ms },
        );
        Ok(())
    }

    /// Sends `Close`; a `Closed` event follows.
    pub fn close(&mut self) {
        if self.state == State::Closed {
            return;
        }
        // Behind an unfinished login only `Close` may follow: what waits for it is dropped.
        self.discard_held_commands();
        let close = Close { code: ErrorCode::NORMAL_CLOSE, message: "done".into() };
        self.encode_login(FrameKind::Close, &close);
        self.finish(ErrorCode::NORMAL_CLOSE, "client closed".into(), true);
    }

    /// Forgets an outstanding delivery and owes its subscription one credit if automatic.
    fn settle(&mut self, tag: u64) -> Result<(), CommandError> {
        let subscription = self.outstanding.remove(tag).ok_or(CommandError::UnknownTag(tag))?;
        if let Some(sub) = self.subscriptions.get_mut(&subscription) {
            if sub.auto_credit {
                sub.credit_owed += 1;
            }
        }
        Ok(())
    }

    pub(super) fn flush_pending(&mut self) {
        match std::mem::take(&mut self.pending) {
            Pending::Nothing => {}
            Pending::Publish { destination, mandatory, count } => {
                let body_len = self.publish_body.len();
                self.encode_publish_batch(&destination, mandatory, count, body_len);
            }
            Pending::Acks(ranges) => {
                self.encode_now(FrameKind::Ack, &Ack { request_id: 0, ranges })
            }
        }
    }

    pub(super) fn flush_credit(&mut self) {
        if self.credit_withheld {
            return;
        }
        let owed: Vec<(u32, u32)> = self
            .subscriptions
            .iter_mut()
            .filter(|(_, sub)| sub.credit_owed > 0)
            .map(|(id, sub)| (*id, std::mem::take(&mut sub.credit_owed)))
            .collect();
        for (subscription, credit) in owed {
            self.encode_now(FrameKind::Credit, &Credit { subscription, credit });
        }
    }

    pub(super) fn frame_size_max(&self) -> u32 {
        self.server
            .as_ref()
            .map_or(chute_protocol::FRAME_SIZE_MAX_DEFAULT, |s| s.limits.frame_size_max)
    }
}

pub(super) fn check_len(what: &'static str, value: &str, max: usize) -> Result<(), CommandError> {
    if value.len() > max {
        return Err(CommandError::TooLong { what, len: value.len(), max });
    }
    Ok(())
}

/// The rules the server's decoder and publish checks apply, so a bad message fails here rather
/// than closing the connection or failing later.
pub(super) fn check_message(message: &PublishMessage) -> Result<(), CommandError> {
    let invalid = |text: String| Err(CommandError::InvalidMessage(text));
    if message.headers.len() > HEADERS_MAX {
        return invalid(format!("{} headers; at most {HEADERS_MAX}", message.headers.len()));
    }
    if message.priority > PRIORITY_MAX {
        return invalid(format!("priority {} is above {PRIORITY_MAX}", message.priority));
    }
    if let Some(id) = &message.id {
        check_len("message id", id, MESSAGE_ID_LEN_MAX)?;
    }
    if let Some(group) = &message.group {
        check_len("group key", group, GROUP_KEY_LEN_MAX)?;
    }
    for header in &message.headers {
        check_len("header name", &header.name, NAME_LEN_MAX)?;
    }
    Ok(())
}
