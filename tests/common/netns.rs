//! A real network for a test or benchmark: a hub network namespace holding one bridge, and one
//! namespace per node joined to the bridge by a veth pair, on a private subnet that exists
//! only inside the namespaces made here (never in the machine's own). Partitions are made on
//! the links (the hub's end of a node's veth set down), slow links with `tc netem` where the
//! kernel has it, else with nftables (loss) and the node's link relays (delay: see
//! [`Net::link_relay`]). Everything is deleted when the [`Net`] is dropped, after a panic too.
//!
//! Needs root and `ip` (iproute2): [`Net::new`] skips loudly without them, and fails instead
//! under `CUBE_REQUIRE_NETNS=1` (as CI runs). Uses std and libc only, so that benchmarks can
//! include it with `#[path]`.

use std::{
    fs::File,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

/// The private subnet inside every [`Net`]: the hub is `.1`, node `i` is `.(i + 2)`. Each
/// `Net` has namespaces of its own, so parallel tests may all use it.
const SUBNET: [u8; 3] = [10, 213, 7];

/// Namespaces made by this process so far, for unique names.
static MADE: AtomicUsize = AtomicUsize::new(0);

/// The hub namespace and its nodes' namespaces.
pub struct Net {
    hub: String,
    nodes: Vec<String>,
    /// Links slowed with the nft fallback (no netem), by node index.
    slowed: Vec<usize>,
    /// Per node, how long its link relays hold each chunk, in ms: 0 unless the link is slowed
    /// on a kernel without netem.
    delays: Vec<Arc<AtomicU64>>,
}

/// Runs `ip ARGS`, panicking with its error output when it fails.
fn ip(args: &[&str]) {
    run("ip", args);
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Why namespaces cannot be made here, or None when they can.
fn unavailable() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("no `ip` command (iproute2): {e}")),
    }
}

impl Net {
    /// A hub namespace with its bridge, or None (printed loudly) when this machine cannot
    /// make namespaces; under `CUBE_REQUIRE_NETNS=1` that is a failure instead.
    pub fn new(test: &str) -> Option<Net> {
        if let Some(why) = unavailable() {
            if std::env::var("CUBE_REQUIRE_NETNS").is_ok_and(|v| v == "1") {
                panic!("{test}: network namespaces are required (CUBE_REQUIRE_NETNS=1): {why}");
            }
            eprintln!("SKIPPED {test}: network namespaces unavailable ({why})");
            return None;
        }
        let made = MADE.fetch_add(1, Ordering::Relaxed);
        let hub = format!("cube-{}-{made}-hub", std::process::id());
        ip(&["netns", "add", &hub]);
        let net = Net {
            hub,
            nodes: Vec::new(),
            slowed: Vec::new(),
            delays: Vec::new(),
        };
        let hub_cidr = format!("{}/24", net.hub_ip());
        ip(&["-n", &net.hub, "link", "set", "lo", "up"]);
        ip(&["-n", &net.hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &net.hub, "addr", "add", &hub_cidr, "dev", "br0"]);
        ip(&["-n", &net.hub, "link", "set", "br0", "up"]);
        Some(net)
    }

    /// The hub's address (on its bridge).
    pub fn hub_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 1)
    }

    /// The hub namespace's name (for `ip netns exec`).
    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// A new node namespace linked to the bridge; returns its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let name = format!("{}-n{i}", self.hub.trim_end_matches("-hub"));
        ip(&["netns", "add", &name]);
        self.nodes.push(name.clone());
        self.delays.push(Arc::default());
        let port = format!("v{i}");
        let cidr = format!("{}/24", self.node_ip(i));
        let hub = self.hub.as_str();
        ip(&[
            "-n", hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ]);
        ip(&["-n", hub, "link", "set", &port, "master", "br0"]);
        ip(&["-n", hub, "link", "set", &port, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&["-n", &name, "addr", "add", &cidr, "dev", "eth0"]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        i
    }

    /// Node `i`'s address.
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 2 + i as u8)
    }

    /// Node `i`'s namespace name.
    pub fn node(&self, i: usize) -> &str {
        &self.nodes[i]
    }

    /// A command that runs `program` inside namespace `ns`.
    pub fn command(ns: &str, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]).arg(program);
        command
    }

    /// Cuts node `i` off: the hub's end of its link goes down.
    pub fn partition(&self, i: usize) {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "down"]);
    }

    /// Joins node `i` again.
    pub fn heal(&self, i: usize) {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "up"]);
    }

    /// Slows node `i`'s link both ways: `delay_ms` of delay and `loss_percent` of packets
    /// lost, with `tc netem`. Returns what was applied: on a kernel without netem (it is a
    /// module some kernels leave out) the loss comes from nftables and the delay from the
    /// node's link relays ([`Net::link_relay`]), which only connections through them feel,
    /// and the answer says so.
    pub fn slow(&mut self, i: usize, delay_ms: u32, loss_percent: u32) -> String {
        let delay = format!("{delay_ms}ms");
        let loss = format!("{loss_percent}%");
        let ends = [
            (self.hub.clone(), format!("v{i}")),
            (self.nodes[i].clone(), "eth0".to_string()),
        ];
        let netem = |ns: &str, dev: &str| {
            Command::new("tc")
                .args(["-n", ns, "qdisc", "replace", "dev", dev, "root", "netem"])
                .args(["delay", &delay, "loss", &loss])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if ends.iter().all(|(ns, dev)| netem(ns, dev)) {
            return format!("netem: {delay} delay, {loss} loss each way");
        }
        // No netem: drop `loss_percent` of the packets in and out of the node's namespace
        // (not on its loopback, where its link relays meet its processes), and hold every
        // chunk through its link relays `delay_ms`.
        let node = self.nodes[i].clone();
        run(
            "ip",
            &[
                "netns", "exec", &node, "nft", "add", "table", "inet", "cube",
            ],
        );
        for (hook, device) in [("input", "iifname"), ("output", "oifname")] {
            let rule = format!("meta {device} != lo numgen random mod 100 < {loss_percent} drop");
            let chain = format!("{{ type filter hook {hook} priority 0; }}");
            run(
                "ip",
                &[
                    "netns", "exec", &node, "nft", "add", "chain", "inet", "cube", hook, &chain,
                ],
            );
            let args = [
                "netns", "exec", &node, "nft", "add", "rule", "inet", "cube", hook,
            ];
            let mut args: Vec<&str> = args.to_vec();
            args.extend(rule.split(' '));
            run("ip", &args);
        }
        self.slowed.push(i);
        self.delays[i].store(u64::from(delay_ms), Ordering::Relaxed);
        format!(
            "no netem in this kernel: {loss} loss each way (nftables), {delay} delay each way in \
             the node's link relays (user space)"
        )
    }

    /// Node `i`'s link at full speed again.
    pub fn unslow(&mut self, i: usize) {
        self.delays[i].store(0, Ordering::Relaxed);
        for (ns, dev) in [
            (self.hub.clone(), format!("v{i}")),
            (self.nodes[i].clone(), "eth0".into()),
        ] {
            let _ = Command::new("tc")
                .args(["-n", &ns, "qdisc", "del", "dev", &dev, "root"])
                .output();
        }
        if let Some(at) = self.slowed.iter().position(|n| *n == i) {
            self.slowed.remove(at);
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.nodes[i],
                    "nft",
                    "delete",
                    "table",
                    "inet",
                    "cube",
                ],
            );
        }
    }

    /// A relay from the machine's own loopback into the hub: connections to the returned
    /// address (127.0.0.1) are carried to `target` inside the hub namespace, so a test's
    /// clients reach a manager there without any address of the subnet in the machine's own
    /// namespace. Runs until the process ends.
    pub fn relay(&self, target: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let netns = namespace(&self.hub);
        std::thread::spawn(move || {
            // This thread, and the sockets it makes, are in the hub from here on; the
            // listener was made before, in the machine's namespace.
            enter(&netns);
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = server.set_nodelay(true);
                let _ = client.set_nodelay(true);
                let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || copy(client, server));
                std::thread::spawn(move || copy(server2, client2));
            }
        });
        local
    }
}

impl Net {
    /// A relay inside node `i`'s namespace: connections to `listen` there are carried to
    /// `target`, each chunk held for the link's delay (0 unless [`Net::slow`] set one on a
    /// kernel without netem) before it is passed on, in order. A node whose traffic to and
    /// from the hub goes through two of these has a delayed link wherever netem is missing.
    /// Runs until the process ends.
    pub fn link_relay(&self, i: usize, listen: SocketAddr, target: SocketAddr) {
        let netns = namespace(&self.nodes[i]);
        let delay = self.delays[i].clone();
        let (bound, is_bound) = mpsc::channel();
        std::thread::spawn(move || {
            enter(&netns);
            let listener = match TcpListener::bind(listen) {
                Ok(listener) => listener,
                Err(e) => {
                    let _ = bound.send(Err(e));
                    return;
                }
            };
            let _ = bound.send(Ok(()));
            for client in listener.incoming().map_while(Result::ok) {
                let delay = delay.clone();
                // Its own thread: a connect across a cut link waits for TCP to give up.
                std::thread::spawn(move || {
                    let Ok(server) = TcpStream::connect(target) else {
                        return;
                    };
                    let _ = server.set_nodelay(true);
                    let _ = client.set_nodelay(true);
                    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone())
                    else {
                        return;
                    };
                    let back = delay.clone();
                    std::thread::spawn(move || copy_delayed(server2, client2, back));
                    copy_delayed(client, server, delay);
                });
            }
        });
        is_bound
            .recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("link relay on {listen}: {e}"));
    }
}

impl Net {
    /// The time from the hub to a server at `target` and back: a connection, a few bytes that
    /// are not what it speaks, and the first byte of its answer (or its close).
    pub fn round_trip(&self, target: SocketAddr) -> Duration {
        let netns = namespace(&self.hub);
        std::thread::spawn(move || {
            enter(&netns);
            let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(10)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let start = Instant::now();
            stream.write_all(b"ping\r\n\r\n").unwrap();
            let _ = stream.read(&mut [0u8; 1]);
            start.elapsed()
        })
        .join()
        .unwrap()
    }
}

/// The namespace file of `ns`, for [`enter`].
fn namespace(ns: &str) -> File {
    File::open(Path::new("/run/netns").join(ns)).unwrap()
}

/// Moves the calling thread (and the sockets it makes from then on) into `netns`.
fn enter(netns: &File) {
    // SAFETY: setns(2) on an open namespace file; it changes only this thread.
    let entered = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Copies `from` to `to` as [`copy`] does, each chunk written `delay` ms after it was read.
fn copy_delayed(mut from: TcpStream, mut to: TcpStream, delay: Arc<AtomicU64>) {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        for (at, bytes) in due {
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        let at = Instant::now() + Duration::from_millis(delay.load(Ordering::Relaxed));
        if n == 0 || chunks.send((at, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(chunks);
    let _ = writer.join();
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// Copies `from` to `to` until either ends, then shuts both down.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of every veth pair, and with it the other end.
        for ns in self.nodes.iter().chain(std::iter::once(&self.hub)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
