//! `chuted`: the chute broker on tokio.

use std::process::ExitCode;

fn main() -> ExitCode {
    match chute_server_tokio::TokioRuntime::from_env() {
        Ok(runtime) => chute_server::main(runtime, "chuted"),
        Err(err) => {
            eprintln!("chuted: cannot start the tokio runtime: {err}");
            ExitCode::FAILURE
        }
    }
}
