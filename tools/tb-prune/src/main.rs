//! Entry point for `tb-prune`; see `lib.rs`.
fn main() -> std::process::ExitCode {
    tb_shared::cli::run_tool("tb-prune", tb_prune::run)
}
