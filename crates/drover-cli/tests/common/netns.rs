//! Hosts in network namespaces joined by veth links, for tests of daemons on other machines.
//! CI runs as root; these need `ip` (iproute2, installed by `scripts/setup-test-env`) and fail
//! loudly without it.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{drover_bin, signal, TIMEOUT};

/// Run `ip` with these arguments; the test fails if it does.
pub fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace: one host.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: char) -> Netns {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("drf{}{role}{n}", std::process::id() % 100_000);
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// A command run inside this host.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes its ends of the veth pairs, and with them the peers.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth link between two hosts, a /30 of its own: `left` and `right` are the addresses.
pub struct Link {
    pub left: Ipv4Addr,
    pub right: Ipv4Addr,
    left_ns: String,
    left_if: String,
}

impl Link {
    pub fn new(left: &Netns, right: &Netns) -> Link {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = std::process::id() % 100_000;
        // Interface names are at most 15 bytes.
        let left_if = format!("fl{id}x{n}");
        let right_if = format!("fr{id}x{n}");
        // 10.(150 + id % 100).(n).0/30, unique in this process.
        let net = [10u8, 150 + (id % 100) as u8, n as u8];
        let left_ip = Ipv4Addr::new(net[0], net[1], net[2], 1);
        let right_ip = Ipv4Addr::new(net[0], net[1], net[2], 2);
        ip(&[
            "link",
            "add",
            &left_if,
            "netns",
            &left.name,
            "type",
            "veth",
            "peer",
            "name",
            &right_if,
            "netns",
            &right.name,
        ]);
        for (ns, iface, addr) in [
            (&left.name, &left_if, left_ip),
            (&right.name, &right_if, right_ip),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", iface]);
            ip(&["-n", ns, "link", "set", iface, "up"]);
        }
        Link {
            left: left_ip,
            right: right_ip,
            left_ns: left.name.clone(),
            left_if,
        }
    }

    /// Take the link down (`false`) or bring it back up (`true`), on the left host's side.
    pub fn set_up(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.left_ns, "link", "set", &self.left_if, state]);
    }
}

/// `drover serve` inside a host, its control and PUB sockets bound to `addr`.
pub struct NetnsDaemon {
    pub child: Child,
    pub control: SocketAddr,
    pub publish: SocketAddr,
    state_dir: std::path::PathBuf,
}

impl NetnsDaemon {
    pub fn start(host: &Netns, addr: Ipv4Addr, state_dir: &Path, work_dir: &Path) -> NetnsDaemon {
        let mut child = host
            .command(drover_bin())
            .args(["serve", "--control", &format!("tcp://{addr}:0")])
            .args(["--pub", &format!("tcp://{addr}:0"), "--http", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--work-dir")
            .arg(work_dir)
            .env("DROVER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start drover serve in a namespace");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the ready line");
        assert!(line.starts_with("drover ready "), "ready line: {line:?}");
        let field = |name: &str| -> SocketAddr {
            let value = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in {line:?}"));
            value
                .trim_start_matches("tcp://")
                .parse()
                .expect("an address")
        };
        let control = field("control=");
        let publish = field("pub=");
        assert_eq!(control.ip(), addr, "bound to the host's address: {line}");
        NetnsDaemon {
            child,
            control,
            publish,
            state_dir: state_dir.to_path_buf(),
        }
    }

    /// SIGKILL, as a crash or a lost machine would, and reap it.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NetnsDaemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), "TERM");
        }
        let deadline = Instant::now() + TIMEOUT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // After a crash, its agents would run on under their holders.
        super::leftovers::kill_holders(&self.state_dir);
    }
}
