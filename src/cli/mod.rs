//! Command-line glue: argument parsing, password sources, output rendering.
use std::process::ExitCode;

pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
