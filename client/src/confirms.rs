//! The publishes waiting for their confirms, in sequence order.

use std::collections::VecDeque;

use futures::channel::oneshot;

use crate::error::PublishError;

pub(crate) type ConfirmSender = oneshot::Sender<Result<(), PublishError>>;

/// Publishes take increasing sequence numbers, and confirms mostly arrive in that order (not
/// always: a queue in memory confirms before a durable one's fsync), so a sorted deque does
/// what a map would, without a node per publish.
#[derive(Default)]
pub(crate) struct ConfirmWaiters {
    /// Sorted by sequence number. A settled waiter leaves `None` behind until those before it
    /// are settled too.
    waiting: VecDeque<(u64, Option<ConfirmSender>)>,
}

impl ConfirmWaiters {
    /// `seq` must be larger than every sequence number pushed before.
    pub fn push(&mut self, seq: u64, waiter: ConfirmSender) {
        debug_assert!(self.waiting.back().is_none_or(|(last, _)| *last < seq));
        self.waiting.push_back((seq, Some(waiter)));
    }

    /// Hands `settle` the waiters of `first..=last` that are still waiting.
    pub fn settle(&mut self, first: u64, last: u64, mut settle: impl FnMut(ConfirmSender)) {
        let start = self.waiting.partition_point(|(seq, _)| *seq < first);
        for (seq, waiter) in self.waiting.range_mut(start..) {
            if *seq > last {
                break;
            }
            if let Some(waiter) = waiter.take() {
                settle(waiter);
            }
        }
        while matches!(self.waiting.front(), Some((_, None))) {
            self.waiting.pop_front();
        }
    }

    /// Every waiter still waiting, leaving none.
    pub fn take_all(&mut self) -> impl Iterator<Item = ConfirmSender> {
        std::mem::take(&mut self.waiting).into_iter().filter_map(|(_, waiter)| waiter)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(
        waiters: &mut ConfirmWaiters,
        seqs: std::ops::RangeInclusive<u64>,
    ) -> Vec<oneshot::Receiver<Result<(), PublishError>>> {
        seqs.map(|seq| {
            let (tx, rx) = oneshot::channel();
            waiters.push(seq, tx);
            rx
        })
        .collect()
    }

    /// Out-of-order settling reaches exactly the waiters named, and the deque shrinks once
    /// its front is settled.
    #[test]
    fn settles_ranges_in_any_order() {
        let mut waiters = ConfirmWaiters::default();
        let mut receivers = waiting(&mut waiters, 1..=6);
        let mut settled = Vec::new();
        waiters.settle(3, 4, |tx| settled.push(tx.send(Ok(())).is_ok()));
        assert_eq!(settled, [true, true]);
        assert_eq!(waiters.len(), 6, "1 and 2 still wait at the front");
        waiters.settle(1, 2, |tx| drop(tx.send(Ok(()))));
        assert_eq!(waiters.len(), 2);
        waiters.settle(4, 4, |_| panic!("4 was settled already"));
        waiters.settle(9, 12, |_| panic!("never published"));
        let rest: Vec<_> = waiters.take_all().collect();
        assert_eq!(rest.len(), 2);
        for (k, receiver) in receivers.iter_mut().enumerate().take(4) {
            assert_eq!(receiver.try_recv().unwrap(), Some(Ok(())), "publish {}", k + 1);
        }
    }
}
