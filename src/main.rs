//! The `herald` binary: parses the command line and hands over to [`herald::cli`].

fn main() -> anyhow::Result<()> {
    herald::cli::main()
}
