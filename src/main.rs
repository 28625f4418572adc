//! The `paygate` binary: a thin shell over the library's CLI.

fn main() -> std::process::ExitCode {
    // `paygate batches --json | head` ends quietly when the reader goes away, as Unix tools do,
    // instead of panicking on a broken pipe.
    // SAFETY: restores the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    paygate::cli::main()
}
