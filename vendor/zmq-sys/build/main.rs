// Drover patch: the stock build script calls `with_libsodium(None)`, which builds libzmq without
// CURVE. This one hands zeromq-src the libsodium that `libsodium-sys-stable` built (its build
// script exports `DEP_SODIUM_INCLUDE` and `DEP_SODIUM_LIB`), so CURVE is compiled in and linked
// against libsodium, with no system library involved.
use std::env;
use std::path::PathBuf;

// Drover patch: the platform features libzmq's CMake build detects on Linux (glibc >= 2.17)
// that zeromq-src leaves out; see `configure`.
const LINUX_FEATURES: &[&str] = &[
    "ZMQ_HAVE_EVENTFD",
    "ZMQ_HAVE_EVENTFD_CLOEXEC",
    "ZMQ_IOTHREAD_POLLER_USE_EPOLL_CLOEXEC",
    "ZMQ_HAVE_SOCK_CLOEXEC",
    "ZMQ_HAVE_O_CLOEXEC",
    "HAVE_ACCEPT4",
    "ZMQ_HAVE_SO_KEEPALIVE",
    "ZMQ_HAVE_TCP_KEEPCNT",
    "ZMQ_HAVE_TCP_KEEPIDLE",
    "ZMQ_HAVE_TCP_KEEPINTVL",
    "HAVE_CLOCK_GETTIME",
];

pub fn configure() {
    println!("cargo:rerun-if-changed=build/main.rs");
    println!("cargo:rerun-if-env-changed=PROFILE");
    println!("cargo:rerun-if-env-changed=CXXFLAGS");

    let sodium = |name: &str| {
        let value = env::var_os(name)
            .unwrap_or_else(|| panic!("{} is not set: libsodium-sys-stable did not build", name));
        PathBuf::from(value)
    };
    let libsodium =
        zeromq_src::LibLocation::new(sodium("DEP_SODIUM_LIB"), sodium("DEP_SODIUM_INCLUDE"));
    // Drover patch: zeromq-src's Linux build defines none of the features CMake would detect,
    // so libzmq falls back to socketpairs for its signalers (a syscall pair per wake-up where an
    // eventfd does one), leaves its epoll descriptor inheritable by spawned processes, and
    // compiles `ZMQ_TCP_KEEPALIVE*` into no-ops. Every Linux we build for has these; `cc` reads
    // `CXXFLAGS` from this process's environment when zeromq-src compiles libzmq.
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let mut flags = env::var("CXXFLAGS").unwrap_or_default();
        for define in LINUX_FEATURES {
            flags.push_str(" -D");
            flags.push_str(define);
        }
        env::set_var("CXXFLAGS", flags);
    }
    zeromq_src::Build::new()
        .with_libsodium(Some(libsodium))
        .build();
}

fn main() {
    configure()
}
