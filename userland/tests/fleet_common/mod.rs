//! Shared parts of the fleet_* tests: the real servers (Debian's nginx and mosquitto, started
//! here on the addresses given, stopped on drop), network namespaces the test creates, the
//! signing keys, the firmware every unit runs, and units as image files with their own state.
//! scripts/deps.sh installs the servers.
#![allow(dead_code)]

use crate::cli_common::*;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A command, inside network namespace `ns` when one is given (`ip netns exec`).
pub fn cmd_in(ns: Option<&str>, program: &str) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// `snapshot ARGS` (in `ns`), asserting exit 0; its stdout.
pub fn tool_ok_in(ns: Option<&str>, args: &[&str]) -> String {
    let o = cmd_in(ns, &bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run snapshot");
    assert!(o.status.success(), "snapshot {args:?}:\n{}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn tool_ok(args: &[&str]) -> String {
    tool_ok_in(None, args)
}

/// `snapshot --device IMG ARGS` (in `ns`).
pub fn run_in(ns: Option<&str>, img: &Path, args: &[&str]) -> Output {
    cmd_in(ns, &bin())
        .arg("--device")
        .arg(img)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run snapshot")
}

/// A loopback port nothing listens on, and one this process has not handed out before: the
/// kernel may give a released port again, and tests run in parallel threads, so two servers
/// (one serving a signed channel, one the unsigned mirror a refusal is tested against) could
/// otherwise get the same port and the test talk to the other test's server.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        if GIVEN.lock().expect("ports").insert(port) {
            return port;
        }
    }
}

/// Waits until `addr:port` (in `ns`) accepts a connection; false if it never does.
fn wait_listening(ns: Option<&str>, addr: &str, port: u16) -> bool {
    for _ in 0..200 {
        let up = match ns {
            None => std::net::TcpStream::connect((addr, port)).is_ok(),
            // bash's /dev/tcp: a connect from inside the namespace.
            Some(_) => cmd_in(ns, "bash")
                .args(["-c", &format!("exec 3<>/dev/tcp/{addr}/{port}")])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        };
        if up {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

fn terminate(child: &mut Child) {
    // SIGTERM: nginx's master stops its workers, mosquitto saves its retained messages.
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let _ = child.wait();
}

/// nginx serving each (address, port, root); stopped on drop.
pub struct Nginx(Child);

impl Nginx {
    pub fn start(prefix: &Path, ns: Option<&str>, sites: &[(&str, u16, &Path)]) -> Self {
        Self::start_tls(prefix, ns, sites, None)
    }

    /// As `start`; with `tls` = (certificate, key) every site speaks HTTPS only.
    pub fn start_tls(
        prefix: &Path,
        ns: Option<&str>,
        sites: &[(&str, u16, &Path)],
        tls: Option<(&Path, &Path)>,
    ) -> Self {
        fs::create_dir_all(prefix.join("logs")).expect("logs");
        let ssl = match tls {
            Some((cert, key)) => format!(
                " ssl; ssl_certificate {}; ssl_certificate_key {}",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let mut servers = String::new();
        for (addr, port, root) in sites {
            servers += &format!(
                "server {{ listen {addr}:{port}{ssl}; root {}; autoindex off; }}\n",
                root.display()
            );
        }
        let conf = format!(
            "user root; worker_processes 1; error_log {p}/logs/error.log; pid {p}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log {p}/logs/access.log; client_body_temp_path {p}/cb; proxy_temp_path {p}/px;\n\
             fastcgi_temp_path {p}/fc; uwsgi_temp_path {p}/uw; scgi_temp_path {p}/sc;\n\
             default_type application/octet-stream;\n{servers}}}\n",
            p = prefix.display()
        );
        let cpath = prefix.join("nginx.conf");
        fs::write(&cpath, conf).expect("nginx.conf");
        let child = cmd_in(ns, "nginx")
            .args(["-p", s(prefix), "-c", s(&cpath), "-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("nginx cannot run ({e}): scripts/deps.sh installs it (nginx-light)")
            });
        let mut n = Nginx(child);
        for (addr, port, _) in sites {
            if !wait_listening(ns, addr, *port) {
                terminate(&mut n.0);
                panic!(
                    "nginx did not listen on {addr}:{port}: {}",
                    fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default()
                );
            }
        }
        n
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

/// Debian's mosquitto on one address and port, anonymous, retained messages persisted in its
/// directory (so they survive a restart), as root (started as root it would switch to the user
/// mosquitto, who cannot write the test's directory); stopped on drop.
pub struct Mosquitto {
    dir: PathBuf,
    /// Logins and the ACL (mosquitto's acl_file text): `None` is an anonymous broker.
    auth: Option<(Vec<(String, String)>, String)>,
    ns: Option<String>,
    pub addr: String,
    pub port: u16,
    child: Option<Child>,
}

impl Mosquitto {
    pub fn start(dir: &Path, ns: Option<&str>, addr: &str, port: u16) -> Self {
        Self::start_with(dir, ns, addr, port, None)
    }

    /// A broker that takes only these users (name, password), each allowed what `acl` says
    /// (mosquitto's acl_file syntax), as a production broker would be set up.
    pub fn start_with_logins(
        dir: &Path,
        addr: &str,
        port: u16,
        users: &[(&str, &str)],
        acl: &str,
    ) -> Self {
        let users = users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        Self::start_with(dir, None, addr, port, Some((users, acl.to_string())))
    }

    fn start_with(
        dir: &Path,
        ns: Option<&str>,
        addr: &str,
        port: u16,
        auth: Option<(Vec<(String, String)>, String)>,
    ) -> Self {
        fs::create_dir_all(dir).expect("mosquitto dir");
        let mut m = Mosquitto {
            dir: dir.to_path_buf(),
            auth,
            ns: ns.map(str::to_string),
            addr: addr.to_string(),
            port,
            child: None,
        };
        m.restart();
        m
    }

    /// `HOST:PORT` for `--mqtt`.
    pub fn url(&self) -> String {
        format!("{}:{}", self.addr, self.port)
    }

    /// Starts it (again, after `stop`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "mosquitto is running");
        let conf = self.dir.join("mosquitto.conf");
        let access = match &self.auth {
            None => "allow_anonymous true\n".to_string(),
            Some((users, acl)) => {
                let (passwd, acl_file) = (self.dir.join("passwd"), self.dir.join("acl"));
                let _ = fs::remove_file(&passwd);
                for (user, password) in users {
                    let mut c = Command::new("mosquitto_passwd");
                    if !passwd.exists() {
                        c.arg("-c");
                    }
                    let o = c
                        .args(["-b", s(&passwd), user, password])
                        .output()
                        .expect("mosquitto_passwd (scripts/deps.sh installs mosquitto)");
                    assert!(o.status.success(), "mosquitto_passwd: {o:?}");
                }
                fs::write(&acl_file, acl).expect("acl");
                format!(
                    "allow_anonymous false\npassword_file {}\nacl_file {}\n",
                    passwd.display(),
                    acl_file.display()
                )
            }
        };
        fs::write(
            &conf,
            format!(
                "user root\nlistener {} {}\n{access}persistence true\npersistence_location {}/\n\
                 log_dest file {}/mosquitto.log\nlog_type all\n",
                self.port,
                self.addr,
                self.dir.display(),
                self.dir.display()
            ),
        )
        .expect("mosquitto.conf");
        // Debian installs it in /usr/sbin, which a test's PATH may lack.
        let program = if Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = cmd_in(self.ns.as_deref(), program)
            .args(["-c", s(&conf)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("mosquitto cannot run ({e}): scripts/deps.sh installs it (mosquitto)")
            });
        self.child = Some(child);
        if !wait_listening(self.ns.as_deref(), &self.addr, self.port) {
            self.stop();
            panic!(
                "mosquitto did not listen on {}: {}",
                self.url(),
                fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
            );
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Network namespaces this test creates (`ip netns add`), deleted on drop (after the servers in
/// them are stopped: declare it before them).
pub struct Netns(Vec<String>);

impl Netns {
    /// Namespaces named `<tag>-<pid>-<name>` for each name, each with its loopback up.
    pub fn new(tag: &str, names: &[&str]) -> Self {
        let mut n = Netns(Vec::new());
        for name in names {
            let full = format!("{tag}-{}-{name}", std::process::id());
            let _ = Command::new("ip").args(["netns", "del", &full]).status();
            sh(&["ip", "netns", "add", &full]);
            n.0.push(full.clone());
            sh(&["ip", "-n", &full, "link", "set", "lo", "up"]);
        }
        n
    }

    pub fn name(&self, i: usize) -> &str {
        &self.0[i]
    }

    /// A veth pair between namespaces `a` and `b` with the given addresses (CIDR).
    pub fn link(&self, a: usize, addr_a: &str, b: usize, addr_b: &str) {
        let (na, nb) = (&self.0[a], &self.0[b]);
        let (va, vb) = (format!("v{a}x{b}"), format!("v{b}x{a}"));
        sh(&[
            "ip", "link", "add", &va, "netns", na, "type", "veth", "peer", "name", &vb, "netns", nb,
        ]);
        for (ns, dev, addr) in [(na, &va, addr_a), (nb, &vb, addr_b)] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
    }

    /// A bridge `br0` in namespace `at`, holding address `addr` (CIDR).
    pub fn bridge(&self, at: usize, addr: &str) {
        let ns = &self.0[at];
        sh(&["ip", "-n", ns, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", "br0"]);
        sh(&["ip", "-n", ns, "link", "set", "br0", "up"]);
    }

    /// A veth pair from namespace `ns` (its end `eth0`, address `addr`) to the bridge in
    /// namespace `at`.
    pub fn plug(&self, ns: usize, addr: &str, at: usize) {
        let (n, b) = (&self.0[ns], &self.0[at]);
        let port = format!("p{ns}");
        sh(&[
            "ip", "link", "add", "eth0", "netns", n, "type", "veth", "peer", "name", &port,
            "netns", b,
        ]);
        sh(&["ip", "-n", b, "link", "set", &port, "master", "br0"]);
        sh(&["ip", "-n", b, "link", "set", &port, "up"]);
        sh(&["ip", "-n", n, "addr", "add", addr, "dev", "eth0"]);
        sh(&["ip", "-n", n, "link", "set", "eth0", "up"]);
    }

    /// Takes namespace `ns`'s `eth0` down (the unit loses the mesh) or up again.
    pub fn cable(&self, ns: usize, up: bool) {
        sh(&[
            "ip",
            "-n",
            &self.0[ns],
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn sh(args: &[&str]) {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (scripts/deps.sh installs iproute2)"));
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let t = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            fs::copy(e.path(), t).expect("copy");
        }
    }
}

/// Two signing keys (a, b) installed in `<d>/keys.d`.
pub struct Keys {
    pub dir: PathBuf,
    pub keys_d: PathBuf,
}

impl Keys {
    pub fn new(d: &Path) -> Self {
        let keys_d = d.join("keys.d");
        fs::create_dir_all(&keys_d).expect("keys.d");
        for k in ["a", "b"] {
            tool_ok(&["bundle", "keygen", s(&d.join(k))]);
            let fp = tool_ok(&["bundle", "fingerprint", s(&d.join(format!("{k}.pub")))]);
            fs::copy(d.join(format!("{k}.pub")), keys_d.join(fp.trim())).expect("install key");
        }
        Keys {
            dir: d.to_path_buf(),
            keys_d,
        }
    }

    /// Signs `f` (a bundle directory or a file) with both keys.
    pub fn sign(&self, f: &Path) {
        for k in ["a", "b"] {
            tool_ok(&[
                "bundle",
                "sign",
                "--key",
                s(&self.dir.join(format!("{k}.sec"))),
                s(f),
            ]);
        }
    }
}

/// The firmware every unit runs: an image with one snapshot (etc/config/network = "base").
pub fn template(d: &Path) -> PathBuf {
    let base = d.join("base");
    fs::create_dir_all(base.join("etc/config")).expect("mkdir");
    fs::write(base.join("etc/config/network"), "base\n").expect("write");
    let t = image(d, "template.img", 2 << 20);
    ok(&t, &["--erase-size", "4096", "format"]);
    ok(
        &t,
        &[
            "--erase-size",
            "4096",
            "commit",
            "--upper",
            s(&base),
            "--no-reboot",
        ],
    );
    t
}

/// The chain id of an image's chain.
pub fn head(img: &Path) -> String {
    tool_ok(&["--device", s(img), "--erase-size", "4096", "bundle", "head"])
        .trim()
        .to_string()
}

/// A signed bundle `version` on top of `base_img`'s chain at `<root>/bundles/<version>`, with a
/// new etc/config/network and `extra` bytes of new files.
pub fn bundle(keys: &Keys, root: &Path, base_img: &Path, version: &str, trial: u16, extra: usize) {
    let up = keys.dir.join(format!("upper-{version}"));
    fs::create_dir_all(up.join("etc/config")).expect("mkdir");
    fs::create_dir_all(up.join("usr/lib/mesh")).expect("mkdir");
    fs::write(up.join("etc/config/network"), format!("{version}\n")).expect("write");
    if extra > 0 {
        fs::write(up.join("usr/lib/mesh/part.bin"), noise(extra, 7)).expect("write");
    }
    let bdir = root.join("bundles").join(version);
    tool_ok(&[
        "--device",
        s(base_img),
        "--erase-size",
        "4096",
        "bundle",
        "create",
        "--base",
        s(base_img),
        "--upper",
        s(&up),
        "-o",
        s(&bdir),
        "--bundle-version",
        version,
        "--trial",
        &trial.to_string(),
    ]);
    keys.sign(&bdir);
}

/// A signed channel manifest `<root>/<channel>.json` listing `bundles`.
pub fn channel(keys: &Keys, root: &Path, published: u64, priority: &str, extra: &[&str]) {
    let mut a = vec![
        "bundle".to_string(),
        "channel".into(),
        "--root".into(),
        s(root).into(),
        "--channel".into(),
        "stable".into(),
        "--priority".into(),
        priority.into(),
        "--published".into(),
        published.to_string(),
    ];
    a.extend(extra.iter().map(|x| x.to_string()));
    tool_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    keys.sign(&root.join("stable.json"));
}

pub struct Unit {
    pub id: String,
    pub img: PathBuf,
    pub state: PathBuf,
}

impl Unit {
    /// Units `unit-00`.. as copies of `template`, each with its own state directory.
    pub fn flash(d: &Path, template: &Path, n: usize) -> Vec<Unit> {
        (0..n)
            .map(|i| {
                let img = d.join(format!("unit{i:02}.img"));
                fs::copy(template, &img).expect("flash unit");
                Unit {
                    id: format!("unit-{i:02}"),
                    img,
                    state: d.join(format!("state{i:02}")),
                }
            })
            .collect()
    }

    /// `snapshot --device IMG --erase-size 4096 ARGS` in `ns`, with this unit's id and state.
    pub fn run(&self, ns: Option<&str>, args: &[&str], unit_args: bool) -> Output {
        let mut a: Vec<&str> = vec!["--erase-size", "4096"];
        a.extend_from_slice(args);
        if unit_args {
            a.extend_from_slice(&["--state", s(&self.state), "--unit-id", &self.id]);
        }
        run_in(ns, &self.img, &a)
    }

    /// `snapshot health --once --no-reboot` with the checks in `conf`, recording its verdict
    /// in this unit's state directory.
    pub fn health(&self, ns: Option<&str>, conf: &Path) -> Output {
        self.run(
            ns,
            &[
                "health",
                "--config",
                s(conf),
                "--once",
                "--no-reboot",
                "--state",
                s(&self.state),
            ],
            false,
        )
    }

    /// `fleet poll` with both keys required, short retries, no reboot.
    pub fn poll(
        &self,
        ns: Option<&str>,
        keys: &Path,
        mirrors: &[String],
        extra: &[&str],
    ) -> Output {
        let mut a: Vec<String> = [
            "fleet",
            "poll",
            "--keys",
            s(keys),
            "--min-sigs",
            "2",
            "--retries",
            "1",
            "--backoff-ms",
            "20",
            "--timeout",
            "3",
            "--no-reboot",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        for m in mirrors {
            a.push("--mirror".into());
            a.push(m.clone());
        }
        a.extend(extra.iter().map(|x| x.to_string()));
        self.run(ns, &a.iter().map(String::as_str).collect::<Vec<_>>(), true)
    }

    /// One boot as PID 1 makes it, for the trial marks: the lowest block on trial spends one
    /// mark (a boot on trial), or, when its allowed boots are spent, its roll-back mark. The
    /// same `snapinit::trial::spend` PID 1 calls (src/init/trial.rs); the boot's own choice of
    /// block is tested with the real PID 1 in tests/init_boot.rs and the QEMU trial scenario.
    pub fn boot(&self) {
        use snapinit::device::DeviceFlash;
        use snapinit::header::Trial;
        let mut flash = DeviceFlash::open(s(&self.img), 4096, true).expect("open image");
        let mut buf = vec![0u8; 64 * 1024];
        let view = snapinit::chain::read_chain(&mut flash, &mut buf);
        if let Some(b) = view
            .snapshots
            .iter()
            .find(|b| matches!(b.header.trial(), Trial::OnTrial { .. }))
        {
            snapinit::trial::spend(&mut flash, b).expect("spend a trial mark");
        }
    }
}

/// The publication time of the tests' channel manifests.
pub const T0: u64 = 1_800_000_000;

/// Keys, the template image, and a mirror tree `<d>/mirror` serving one signed bundle v2 on
/// top of the template's chain (`trial` boots, `extra` bytes of new files), listed in the
/// signed channel published at `T0`.
pub struct OneBundle {
    pub keys: Keys,
    pub template: PathBuf,
    pub root: PathBuf,
}

pub fn one_bundle(d: &Path, trial: u16, extra: usize) -> OneBundle {
    let keys = Keys::new(d);
    let template = template(d);
    let root = d.join("mirror");
    bundle(&keys, &root, &template, "v2", trial, extra);
    channel(&keys, &root, T0, "0", &["bundles/v2"]);
    OneBundle {
        keys,
        template,
        root,
    }
}
