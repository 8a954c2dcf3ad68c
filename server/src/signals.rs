//! The signal thread: signals become events for the broker task.
//!
//! - SIGINT, SIGTERM: graceful stop; a second one exits at once (status 130).
//! - SIGHUP: reload the configuration (the outcome is logged by the broker task).
//! - SIGUSR2: lame duck: clients are told to go away over `server.drain_window_ms`, then the
//!   server stops as after SIGTERM.
//!
//! Other signals keep their default action, except SIGPIPE, which is ignored: a client that
//! hangs up must cost an `EPIPE` on its socket, never the process. SIGQUIT still dumps core.

use std::io;

use futures::channel::mpsc;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};

use crate::event_loop::LoopEvent;

/// Ignores SIGPIPE. Rust's runtime already does so before `main` in a binary; the server says
/// it itself so that it does not depend on how it was started (another `main`, a test
/// harness, or the `-Zon-broken-pipe` option some day).
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code; it only tells
    // the kernel to discard the signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Starts the thread that turns signals into events. From now on SIGHUP and SIGUSR2 no longer
/// kill the process (their default action).
pub fn install(events: mpsc::Sender<LoopEvent>) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR2])?;
    std::thread::Builder::new().name("chute-signals".into()).spawn(move || {
        let mut events = events;
        let mut stops = 0;
        for signal in signals.forever() {
            let event = match signal {
                SIGHUP => {
                    // Nobody waits for the answer: the broker task logs the outcome.
                    let (reply, _) = futures::channel::oneshot::channel();
                    LoopEvent::Reload(reply)
                }
                SIGUSR2 => LoopEvent::Drain { window_ms: None, reply: None },
                _ => {
                    stops += 1;
                    if stops > 1 {
                        eprintln!("second signal {signal}: exiting now");
                        std::process::exit(130);
                    }
                    LoopEvent::Shutdown
                }
            };
            // The broker task is gone only when the server is stopping anyway.
            let _ = futures::executor::block_on(futures::SinkExt::send(&mut events, event));
        }
    })?;
    Ok(())
}
