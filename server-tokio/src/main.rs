//! `chuted`: the chute broker on tokio.

use std::process::ExitCode;

use chute_server_tokio::{TokioFlags, TokioRuntime};

fn main() -> ExitCode {
    chute_server::main_with_flags("chuted", |flags: TokioFlags| {
        TokioRuntime::new(usize::from(flags.tokio_threads))
    })
}
