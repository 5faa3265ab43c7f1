//! The `drover-holder` executable: `drover-holder spawner` or `drover-holder hold DIR`.
//!
//! It lives in this package so the daemon's tests have it built beside them; installed beside
//! `drover`, `drover serve` runs holders with it (the `drover` executable's hidden `holder`
//! subcommand does the same, in a larger process). It uses `drover_holder` alone: linking the
//! daemon would bring libzmq's libstdc++ into every holder.

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|role| role == "spawner") {
        drover_holder::ignored::handle_ignored_without_runtime();
    }
    drover_holder::main(&[], &args)
}
