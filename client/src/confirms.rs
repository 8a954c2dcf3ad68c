//! Where each [`Confirmation`](crate::Confirmation) waits: one slot per unconfirmed publish in
//! a table the connection shares with its confirmations.
//!
//! A oneshot channel per publish cost an allocation and a free per message, and its receiver
//! a waker registration of its own; at hundreds of thousands of publishes a second that was a
//! good part of the client's time. Here a publish adds a slot to a deque under the table's
//! own small lock (not the session's, which the I/O holds while it parses what it read), a
//! confirm marks a range of slots done and wakes whoever polled them, and a confirmation takes
//! its result out of its slot.

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use chute_core::seq_slots::SeqSlots;

use crate::error::PublishError;

/// The outcome of one publish, by the session's sequence number.
enum Slot {
    /// Not answered yet; the waker of the task that last polled its confirmation.
    Waiting(Option<Waker>),
    /// Answered; the confirmation has not taken the result yet.
    Done(Result<(), PublishError>),
}

#[derive(Default)]
pub(crate) struct ConfirmTable {
    slots: Mutex<SeqSlots<Slot>>,
}

impl ConfirmTable {
    fn lock(&self) -> MutexGuard<'_, SeqSlots<Slot>> {
        // A panic while holding the lock leaves state we cannot trust; propagate it.
        self.slots.lock().expect("confirm table poisoned")
    }

    /// A slot for the publish numbered `seq`, larger than every number registered before.
    pub fn register(self: &Arc<Self>, seq: u64) -> Confirmation {
        self.lock().insert(seq, Slot::Waiting(None));
        Confirmation { table: self.clone(), seq, taken: false }
    }

    /// The publishes numbered `seqs` have their outcome. Slots whose confirmation was dropped
    /// are gone already and are skipped.
    pub fn resolve(&self, seqs: RangeInclusive<u64>, result: Result<(), PublishError>) {
        let mut wakers = Vec::new();
        {
            let mut slots = self.lock();
            for (_, slot) in slots.range_mut(seqs) {
                if let Slot::Waiting(waker) = std::mem::replace(slot, Slot::Done(result.clone())) {
                    wakers.extend(waker);
                }
            }
        }
        // Woken after the lock is released: a woken task polls its confirmation at once,
        // perhaps on another thread, and would otherwise wait for the rest of the batch.
        for waker in wakers {
            waker.wake();
        }
    }

    /// Every publish still waiting fails with `error` (the connection ended).
    pub fn fail_all(&self, error: &PublishError) {
        let mut wakers = Vec::new();
        {
            let mut slots = self.lock();
            for slot in slots.values_mut() {
                if let Slot::Waiting(waker) = slot {
                    wakers.extend(waker.take());
                    *slot = Slot::Done(Err(error.clone()));
                }
            }
        }
        for waker in wakers {
            waker.wake();
        }
    }

    /// Publishes waiting for their outcome (for tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().values().filter(|slot| matches!(slot, Slot::Waiting(_))).count()
    }
}

/// A publish on its way: resolves when the server confirms it (durably, where the queue
/// promises that) or refuses it.
pub struct Confirmation {
    table: Arc<ConfirmTable>,
    seq: u64,
    /// The result was taken (or the slot is gone): nothing to clean up on drop.
    taken: bool,
}

impl std::fmt::Debug for Confirmation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confirmation").field("seq", &self.seq).finish()
    }
}

impl std::future::Future for Confirmation {
    type Output = Result<(), PublishError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.taken {
            // What a oneshot receiver polled again answered, kept as it was.
            return Poll::Ready(Err(dropped()));
        }
        let mut slots = self.table.lock();
        match slots.get_mut(self.seq) {
            Some(Slot::Waiting(waker)) => {
                match waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Some(Slot::Done(_)) => {
                let Some(Slot::Done(result)) = slots.remove(self.seq) else { unreachable!() };
                drop(slots);
                self.taken = true;
                Poll::Ready(result)
            }
            // Only a slot whose confirmation took it is ever removed.
            None => unreachable!("confirmation slot {} missing", self.seq),
        }
    }
}

impl Drop for Confirmation {
    fn drop(&mut self) {
        if !self.taken {
            // Nobody will take the outcome: free the slot now, or when it comes it finds none.
            self.table.lock().remove(self.seq);
        }
    }
}

fn dropped() -> PublishError {
    PublishError::Unconfirmed {
        code: chute_protocol::ErrorCode::INTERNAL,
        message: "connection dropped".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::future::Future;

    fn refused() -> PublishError {
        PublishError::Unconfirmed { code: chute_protocol::ErrorCode::INTERNAL, message: "x".into() }
    }

    /// A confirm covering a range resolves every confirmation in it, and only those.
    #[test]
    fn resolve_covers_its_range_only() {
        let table = Arc::new(ConfirmTable::default());
        let mut confirmations: Vec<_> = (1..=4).map(|seq| table.register(seq)).collect();
        assert!(confirmations.iter_mut().all(|c| c.now_or_never().is_none()));
        table.resolve(1..=2, Ok(()));
        table.resolve(4..=4, Err(refused()));
        assert_eq!((&mut confirmations[0]).now_or_never(), Some(Ok(())));
        assert_eq!((&mut confirmations[1]).now_or_never(), Some(Ok(())));
        assert_eq!((&mut confirmations[2]).now_or_never(), None);
        assert_eq!((&mut confirmations[3]).now_or_never(), Some(Err(refused())));
    }

    /// The task that polled a confirmation is woken by its confirm.
    #[test]
    fn resolve_wakes_the_poller() {
        let table = Arc::new(ConfirmTable::default());
        let mut confirmation = table.register(7);
        let (waker, woken) = futures_test_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(std::pin::Pin::new(&mut confirmation).poll(&mut cx).is_pending());
        assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 0);
        table.resolve(7..=7, Ok(()));
        assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// A confirmation dropped before its confirm frees its slot: the table does not grow with
    /// publishes nobody awaits.
    #[test]
    fn dropped_confirmations_leave_no_slot() {
        let table = Arc::new(ConfirmTable::default());
        for seq in 1..=1000 {
            drop(table.register(seq));
        }
        table.resolve(1..=1000, Ok(()));
        assert_eq!(table.lock().len(), 0);
        let confirmation = table.register(1001);
        table.resolve(1001..=1001, Ok(()));
        drop(confirmation);
        assert_eq!(table.lock().len(), 0);
    }

    /// When the connection ends, every waiting confirmation fails with its reason; those
    /// already answered keep their answer.
    #[test]
    fn fail_all_fails_only_the_waiting() {
        let table = Arc::new(ConfirmTable::default());
        let mut confirmed = table.register(1);
        let mut waiting = table.register(2);
        table.resolve(1..=1, Ok(()));
        table.fail_all(&refused());
        assert_eq!(table.waiting(), 0);
        assert_eq!((&mut confirmed).now_or_never(), Some(Ok(())));
        assert_eq!((&mut waiting).now_or_never(), Some(Err(refused())));
    }

    fn futures_test_waker() -> (Waker, Arc<std::sync::atomic::AtomicUsize>) {
        struct Count(Arc<std::sync::atomic::AtomicUsize>);
        impl futures::task::ArcWake for Count {
            fn wake_by_ref(arc_self: &Arc<Self>) {
                arc_self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (futures::task::waker(Arc::new(Count(woken.clone()))), woken)
    }
}
