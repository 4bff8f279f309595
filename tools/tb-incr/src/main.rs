//! Entry point for `tb-incr`; see `lib.rs`.
fn main() -> std::process::ExitCode {
    tb_shared::cli::run_tool("tb-incr", tb_incr::run)
}
