//! `chuted-smol`: the chute broker on smol.

use std::process::ExitCode;

fn main() -> ExitCode {
    chute_server::main(chute_server_smol::SmolRuntime, "chuted-smol")
}
