//! The `paygate` binary: a thin shell over the library's CLI.

fn main() -> std::process::ExitCode {
    paygate::cli::main()
}
