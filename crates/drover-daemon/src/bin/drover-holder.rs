//! The `drover-holder` executable: `drover-holder spawner` (whose forks are the holders), or
//! `drover-holder hold DIR` / `pooled DIR` (what a spawner that cannot fork starts).
//!
//! It lives in this package so the daemon's tests have it built beside them; installed beside
//! `drover`, `drover serve` runs the spawner with it (the `drover` executable's hidden `holder`
//! subcommand does the same, in a larger process). It uses `drover_holder` alone: linking the
//! daemon would bring libzmq's libstdc++ into the spawner (and the holders forked from it).

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|role| role == "spawner") {
        drover_holder::ignored::handle_ignored_without_runtime();
    }
    drover_holder::main(&[], &args)
}
