//! The `mlmodel` binary: see [`mlmodel::cli`].

fn main() -> std::process::ExitCode {
    mlmodel::cli::main()
}
