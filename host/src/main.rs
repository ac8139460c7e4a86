//! The `warden` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    warden::cli::main()
}
