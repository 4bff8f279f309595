//! Entry point for `tb-voltar`; see `lib.rs`.
fn main() -> std::process::ExitCode {
    tb_shared::cli::run_tool("tb-voltar", tb_voltar::run)
}
