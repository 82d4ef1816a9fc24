//! The `agentguard` command-line tool; see `agentguard --help`.

fn main() -> std::process::ExitCode {
    agentguard::cli::main()
}
