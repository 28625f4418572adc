//! The `paygate` binary: a thin shell over the library's CLI.

/// mimalloc: reading a file allocates a few small strings per cell on one thread and frees
/// them on the rendering thread; glibc's malloc spent about a tenth of a conversion on that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // `paygate batches --json | head` ends quietly when the reader goes away, as Unix tools do,
    // instead of panicking on a broken pipe.
    // SAFETY: restores the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    paygate::cli::main()
}
