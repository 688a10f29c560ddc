// Plans, validation and the server allocate per manifest field and per
// machine; mimalloc does that faster than glibc's malloc and returns less
// fragmented memory (see BENCHMARKS.md, plan and apply).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (libmimalloc-sys
/// names no constant for it); a unit test holds the number to the default
/// that `options.c` gives it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Die quietly when the reader of our output goes away (`patchops … | head`),
    // as other Unix tools do, instead of panicking on a broken pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before
    // any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Freed memory goes back to the system after 5 s instead of 1 s: a
    // plan frees and reallocates hundreds of megabytes in bursts, and
    // returning them meanwhile cost a 100,000-object plan a third of its
    // time in the kernel. A long-running server still returns idle memory.
    // SAFETY: mimalloc's options are plain atomics, safe to set any time.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 5000);
    }
    patchops::cli::main()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_the_header_names() {
        // options.c: `{ 1000, ..., MI_OPTION_LEGACY(purge_delay, reset_delay) }`
        // (the header's comment still says 10). The test harness does not
        // run `main`, so the option is at its default here.
        // SAFETY: reading an option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 1000);
    }
}
