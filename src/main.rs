fn main() -> std::process::ExitCode {
    patchops::cli::main()
}
