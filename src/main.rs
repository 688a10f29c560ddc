fn main() -> std::process::ExitCode {
    // Die quietly when the reader of our output goes away (`patchops … | head`),
    // as other Unix tools do, instead of panicking on a broken pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before
    // any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    patchops::cli::main()
}
