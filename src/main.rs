//! The `paygate` binary: a thin shell over the library's CLI.

/// mimalloc: reading a file allocates a few small strings per cell on one thread and frees
/// them on the rendering thread; glibc's malloc spent about a tenth of a conversion on that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options `arena_eager_commit` and `purge_delay` (mimalloc.h, v3), which the Rust
/// bindings do not name.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory is committed as it is used and given back as soon as it is freed, so that a daemon
/// that converted a million rows returns to its idle size (by default mimalloc keeps its arenas
/// committed: 39 MB idle instead of 22, measured). These are defaults: `MIMALLOC_*`
/// variables in the environment still win. Run as a constructor, before the Rust runtime's
/// first allocation (mimalloc creates its arenas lazily, at the first allocation).
#[cfg(target_os = "linux")]
extern "C" fn tune_allocator() {
    // SAFETY: plain setters of mimalloc's option defaults, called before any Rust allocation
    // or thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0);
    }
}

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

fn main() -> std::process::ExitCode {
    // `paygate batches --json | head` ends quietly when the reader goes away, as Unix tools do,
    // instead of panicking on a broken pipe.
    // SAFETY: restores the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    paygate::cli::main()
}
