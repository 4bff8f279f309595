//! Entry point for `tb-restore`; see `lib.rs`.
fn main() -> std::process::ExitCode {
    tb_shared::cli::run_tool("tb-restore", tb_restore::run)
}
