//! Which thread drives which connections. Every connection is driven on the thread that uses
//! it (`Connection::connect_driven`, its driver polled beside the work), so a thread that holds
//! several connections reads and writes all their sockets itself.
//!
//! - **One queue (W1–W4):** a thread per producer and per consumer, as `chute bench` has always
//!   run them, so these figures stay comparable with the blocks measured before; with at most a
//!   handful of connections the threads cost little.
//! - **Several queues (W5):** 64 × 64 connections on as many threads would measure the kernel's
//!   scheduler on a 2-core machine (every batch a context switch among 128 runnable threads),
//!   not the broker. So the queues are dealt round-robin over one thread per CPU, the number of
//!   worker threads tokio's runtime gives the peer harness's 128 tasks; each thread drives every
//!   producer and consumer of its queues. Each queue's producer and consumer then share a
//!   thread (no cross-thread wake between them in the client), and every thread holds the same
//!   number of queues, so no queue is favoured by where it runs: the fairness figure is the
//!   broker's.

use crate::bench::workload::Workload;

/// One connection of the run: a producer or a consumer, by its index in the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Consumer(u32),
    Producer(u32),
}

/// The connections each thread drives, in the order the threads start: threads holding only
/// consumers first, so that consumers wait before the first publish, as in the harness.
pub fn threads(workload: &Workload, cpus: usize) -> Vec<Vec<Role>> {
    if workload.queues == 1 {
        let consumers = (0..workload.consumers).map(|j| vec![Role::Consumer(j)]);
        let producers = (0..workload.producers).map(|k| vec![Role::Producer(k)]);
        return consumers.chain(producers).collect();
    }
    let count = cpus.clamp(1, workload.queues as usize);
    let mut threads = vec![Vec::new(); count];
    let consumers =
        (0..workload.consumers).map(|j| (workload.queue_of_consumer(j), Role::Consumer(j)));
    let producers =
        (0..workload.producers).map(|k| (workload.queue_of_producer(k), Role::Producer(k)));
    for (queue, role) in consumers.chain(producers) {
        threads[queue as usize % count].push(role);
    }
    threads
}

/// The number of CPUs this process may use (1 if unknown).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workload::Preset;

    #[test]
    fn one_queue_gets_a_thread_per_connection_consumers_first() {
        use Role::*;
        assert_eq!(threads(&Preset::W1.workload(), 2), [[Consumer(0)], [Producer(0)]]);
        let w4 = threads(&Preset::W4.workload(), 2);
        assert_eq!(w4.len(), 8);
        assert!(w4[..4].iter().all(|t| matches!(t[..], [Consumer(_)])), "{w4:?}");
        assert!(w4[4..].iter().all(|t| matches!(t[..], [Producer(_)])), "{w4:?}");
    }

    /// W5 on 2 CPUs: two threads of 32 queues each, every queue's producer and consumer on the
    /// same thread, every connection on exactly one thread.
    #[test]
    fn several_queues_are_dealt_over_one_thread_per_cpu() {
        let w5 = Preset::W5.workload();
        let placed = threads(&w5, 2);
        assert_eq!(placed.len(), 2);
        assert!(placed.iter().all(|t| t.len() == 64), "32 queues × (1 producer + 1 consumer)");
        for (at, thread) in placed.iter().enumerate() {
            for role in thread {
                let queue = match *role {
                    Role::Consumer(j) => w5.queue_of_consumer(j),
                    Role::Producer(k) => w5.queue_of_producer(k),
                };
                assert_eq!(queue as usize % 2, at, "{role:?} of queue {queue}");
            }
        }
        let mut all: Vec<Role> = placed.concat();
        all.sort_by_key(|r| match *r {
            Role::Consumer(j) => (0, j),
            Role::Producer(k) => (1, k),
        });
        all.dedup();
        assert_eq!(all.len(), 128, "each connection once");
    }

    /// Never more threads than queues, never none.
    #[test]
    fn thread_count_is_bounded_by_the_queues() {
        let two_queues = crate::bench::workload::Workload {
            queues: 2,
            producers: 2,
            consumers: 2,
            ..Preset::W1.workload()
        };
        assert_eq!(threads(&two_queues, 16).len(), 2);
        assert_eq!(threads(&two_queues, 0).len(), 1);
    }
}
