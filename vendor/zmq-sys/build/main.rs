// Drover patch: the stock build script calls `with_libsodium(None)`, which builds libzmq without
// CURVE. This one hands zeromq-src the libsodium that `libsodium-sys-stable` built (its build
// script exports `DEP_SODIUM_INCLUDE` and `DEP_SODIUM_LIB`), so CURVE is compiled in and linked
// against libsodium, with no system library involved.
use std::env;
use std::path::PathBuf;

pub fn configure() {
    println!("cargo:rerun-if-changed=build/main.rs");
    println!("cargo:rerun-if-env-changed=PROFILE");

    let sodium = |name: &str| {
        let value = env::var_os(name)
            .unwrap_or_else(|| panic!("{} is not set: libsodium-sys-stable did not build", name));
        PathBuf::from(value)
    };
    let libsodium =
        zeromq_src::LibLocation::new(sodium("DEP_SODIUM_LIB"), sodium("DEP_SODIUM_INCLUDE"));
    zeromq_src::Build::new()
        .with_libsodium(Some(libsodium))
        .build();
}

fn main() {
    configure()
}
