//! The `vault` binary: parse the command line, run it, map the result to an exit code.
#![forbid(unsafe_code)]
fn main() -> std::process::ExitCode {
    vault::cli::main()
}
