//! Entry point for `tb-check`; see `lib.rs`.
fn main() -> std::process::ExitCode {
    tb_shared::cli::run_tool("tb-check", tb_check::run)
}
