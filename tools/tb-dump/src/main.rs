//! Entry point for `tb-dump`; see `lib.rs`.
fn main() -> std::process::ExitCode {
    tb_shared::cli::run_tool("tb-dump", tb_dump::run)
}
