//! Mirrors and brokers that stall, trickle or answer for other bytes, on 127.0.0.1: a unit's
//! poll and health publish end within their timeouts whatever the peer does (a socket's read
//! timeout alone restarts with every byte), and a resumed download never splices bytes from
//! the wrong offset. docs/FLEET.md, "Trust".

mod cli_common;
mod fleet_common;

use cli_common::*;
use fleet_common::*;
use snapshot::fleet::http::{Client, HttpError};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A server on 127.0.0.1: every connection is handed to `h` in a thread of its own, with the
/// request head already read.
fn serve(h: impl Fn(TcpStream, String) + Copy + Send + 'static) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match c.read(&mut b) {
                        Ok(1) => head.push(b[0]),
                        _ => return,
                    }
                }
                h(c, String::from_utf8_lossy(&head).into_owned());
            });
        }
    });
    port
}

/// Runs `f` in a thread; its result, or None when it has not returned after `secs`.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs)).ok()
}

fn client(secs: u64) -> Client {
    Client {
        timeout: Duration::from_secs(secs),
        https_fetch: Vec::new(),
    }
}

/// One byte every 400 ms, forever: never slower than the 1 s read timeout.
fn drip(mut c: TcpStream, first: &[u8]) {
    let _ = c.write_all(first);
    loop {
        thread::sleep(Duration::from_millis(400));
        if c.write_all(b"a").is_err() {
            return;
        }
    }
}

#[test]
fn a_mirror_trickling_its_headers_is_left_within_the_timeout() {
    let port = serve(|c, _| drip(c, b"HTTP/1.0 200 OK\r\nX-Slow: "));
    let url = format!("http://127.0.0.1:{port}/stable.json");
    // 16 KiB of headers at one byte per 0.4 s would take 109 minutes.
    let r = within(20, move || {
        client(1).get(&url, 0, 64 * 1024, &mut Vec::new())
    })
    .expect("GET with a 1 s timeout still reading headers after 20 s");
    let e = r.expect_err("a trickle is no reply");
    assert!(
        matches!(&e, HttpError::Net { source, .. } if source.kind() == std::io::ErrorKind::TimedOut),
        "{e}"
    );
    eprintln!("{e}");
}

#[test]
fn a_mirror_trickling_its_body_is_left_and_what_arrived_is_kept() {
    let port = serve(|c, _| drip(c, b"HTTP/1.0 200 OK\r\n\r\n"));
    let url = format!("http://127.0.0.1:{port}/stable.json");
    let (r, out) = within(20, move || {
        let mut out = Vec::new();
        let r = client(1).get(&url, 0, 64 * 1024, &mut out);
        (r, out)
    })
    .expect("GET with a 1 s timeout still reading the body after 20 s");
    let e = r.expect_err("a trickle below the floor rate is cut");
    assert!(
        matches!(&e, HttpError::Net { source, .. } if source.kind() == std::io::ErrorKind::TimedOut),
        "{e}"
    );
    // Kept for a resume (from another mirror).
    assert!(!out.is_empty() && out.iter().all(|&b| b == b'a'), "{out:?}");
}

/// An https:// mirror is fetched by an external program (uclient-fetch on OpenWrt) whose own
/// timeout restarts with every byte: a fetch that trickles, hangs without a byte, or closes
/// its output and hangs, is cut by the same deadline as plain HTTP (before, the poll waited
/// on the pipe, or for the fetcher's exit, for ever).
#[test]
fn an_https_fetch_that_trickles_or_hangs_is_left_within_the_timeout() {
    for script in [
        "while :; do printf a; sleep 0.4; done",
        "exec sleep 600",
        // Closes its output, then hangs: the wait for its exit is bounded too.
        "printf a; exec >&-; exec sleep 600",
    ] {
        let c = Client {
            timeout: Duration::from_secs(1),
            https_fetch: ["sh", "-c", script, "fetch"].map(String::from).to_vec(),
        };
        let started = Instant::now();
        let r = within(20, move || {
            c.get(
                "https://127.0.0.1:9/stable.json",
                0,
                64 * 1024,
                &mut Vec::new(),
            )
        })
        .unwrap_or_else(|| {
            panic!("{script}: an https GET with a 1 s timeout still waiting after 20 s")
        });
        let e = r.expect_err("a trickle or silence is no reply");
        assert!(
            matches!(&e, HttpError::Net { source, .. } if source.kind() == std::io::ErrorKind::TimedOut),
            "{script}: {e}"
        );
        eprintln!("{script}: {e} (after {:?})", started.elapsed());
    }
}

/// The external fetcher's other ends: a failure keeps what it said on stderr, a flood past the
/// size limit is cut there, and a fetcher writing far more to stderr than a pipe holds is not
/// blocked by it (only its first 4 KiB are kept).
#[test]
fn an_https_fetchers_failure_flood_and_chatter() {
    let get = |script: &str| {
        let c = Client {
            timeout: Duration::from_secs(5),
            https_fetch: ["sh", "-c", script, "fetch"].map(String::from).to_vec(),
        };
        let script = script.to_string();
        within(20, move || {
            let mut out = Vec::new();
            let r = c.get("https://127.0.0.1:9/x", 0, 64 * 1024, &mut out);
            (r, out)
        })
        .unwrap_or_else(|| panic!("{script}: still waiting after 20 s"))
    };
    let (r, _) = get("echo 'certificate not trusted' >&2; exit 5");
    match r {
        Err(HttpError::Fetcher { stderr, .. }) => {
            assert_eq!(stderr, "certificate not trusted")
        }
        other => panic!("{other:?}"),
    }
    let (r, _) = get("exec yes");
    assert!(matches!(r, Err(HttpError::TooLarge { .. })), "{r:?}");
    let (r, out) = get("head -c 1000000 /dev/zero >&2; printf body");
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(out, b"body");
    // stderr that never ends: the deadline still ends the fetch.
    let (r, _) = get("printf body; exec yes >&2");
    assert!(
        matches!(&r, Err(HttpError::Net { source, .. }) if source.kind() == std::io::ErrorKind::TimedOut),
        "{r:?}"
    );
}

const BODY: &[u8; 20] = b"ABCDEFGHIJKLMNOPQRST";

/// A resume from byte 10 of BODY against a mirror that answers `reply` to the range it was
/// asked for: the result and what the buffer then holds.
fn resume(reply: &'static [u8]) -> (Result<(), HttpError>, Vec<u8>) {
    let port = serve(move |mut c, req| {
        assert!(req.contains("Range: bytes=10-"), "{req}");
        let _ = c.write_all(reply);
    });
    let mut out = BODY[..10].to_vec();
    let r = client(2).get(&format!("http://127.0.0.1:{port}/p"), 10, 20, &mut out);
    (r, out)
}

#[test]
fn a_206_for_other_bytes_is_not_spliced_on() {
    // The server answers 206 from byte 0 (and says so).
    let (r, out) = resume(
        b"HTTP/1.0 206 Partial Content\r\nContent-Range: bytes 0-9/20\r\nContent-Length: 10\r\n\r\nABCDEFGHIJ",
    );
    assert!(matches!(r, Err(HttpError::Malformed { .. })), "{r:?}");
    assert_eq!(
        out,
        BODY[..10],
        "the bytes that were right are kept, nothing added"
    );
}

#[test]
fn a_206_without_content_range_is_a_broken_mirror_not_a_too_large_bundle() {
    // A server that ignores Range but still says 206: the whole body.
    let (r, out) =
        resume(b"HTTP/1.0 206 Partial Content\r\nContent-Length: 20\r\n\r\nABCDEFGHIJKLMNOPQRST");
    // TooLarge would be a refusal (exit 22) and stop trying other mirrors.
    assert!(matches!(r, Err(HttpError::Malformed { .. })), "{r:?}");
    assert_eq!(out, BODY[..10]);
}

#[test]
fn a_206_from_the_right_byte_is_appended() {
    let (r, out) = resume(
        b"HTTP/1.0 206 Partial Content\r\nContent-Range: bytes 10-19/20\r\nContent-Length: 10\r\n\r\nKLMNOPQRST",
    );
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(out, BODY);
}

#[test]
fn a_body_complete_by_its_length_is_not_waited_past() {
    // Every byte and its Content-Length, then the connection stays open for 10 s.
    let port = serve(|mut c, _| {
        let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 20\r\n\r\n");
        let _ = c.write_all(BODY);
        thread::sleep(Duration::from_secs(10));
    });
    let t = Instant::now();
    let mut out = Vec::new();
    let r = client(5).get(&format!("http://127.0.0.1:{port}/p"), 0, 20, &mut out);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(out, BODY);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "waited {:?} for a close",
        t.elapsed()
    );
}

#[test]
fn ipv6_literal_mirrors_without_a_port() {
    // Nothing listens on [::1]:80 here: a network error, not a URL this client cannot read.
    let r = client(1).get("http://[::1]/stable.json", 0, 10, &mut Vec::new());
    assert!(matches!(r, Err(HttpError::Net { .. })), "{r:?}");
}

// ---- MQTT ----

/// A broker on 127.0.0.1 that reads the CONNECT, answers `connack`, reads one more packet
/// when `then_read`, and then sends `drip` every 400 ms, forever.
fn stalling_broker(connack: &'static [u8], then_read: bool, drip: &'static [u8]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            thread::spawn(move || {
                let mut b = [0u8; 4096];
                let _ = c.read(&mut b); // CONNECT
                let _ = c.write_all(connack);
                if then_read {
                    let _ = c.read(&mut b);
                }
                loop {
                    thread::sleep(Duration::from_millis(400));
                    if c.write_all(drip).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Accepts the connection, then answers the PUBLISH with a PINGRESP every 400 ms.
fn pingresp_broker() -> u16 {
    stalling_broker(&[0x20, 0x02, 0x00, 0x00], true, &[0xD0, 0x00])
}

/// Announces a CONNACK of 200,000 bytes (remaining length c0 9a 0c) and drips it.
fn slow_connack_broker() -> u16 {
    stalling_broker(&[0x20, 0xc0, 0x9a, 0x0c], false, &[0])
}

#[test]
fn a_broker_answering_pingresps_forever_does_not_hold_a_publish() {
    use snapshot::fleet::mqtt::Session;
    let port = pingresp_broker();
    let r = within(20, move || {
        let mut s = Session::connect(
            &format!("127.0.0.1:{port}"),
            "x",
            None,
            Duration::from_secs(1),
        )?;
        s.publish_retained("snapinit/u/state", b"{}")
    })
    .expect("publish_retained (1 s timeout) still waiting after 20 s");
    let e = r.expect_err("no PUBACK ever came");
    eprintln!("{e}");
}

#[test]
fn a_broker_trickling_its_connack_does_not_hold_a_connect() {
    use snapshot::fleet::mqtt::Session;
    let port = slow_connack_broker();
    let r = within(20, move || {
        Session::connect(
            &format!("127.0.0.1:{port}"),
            "x",
            None,
            Duration::from_secs(1),
        )
        .map(|_| ())
    })
    .expect("connect (1 s timeout) still waiting for CONNACK after 20 s");
    let e = r.expect_err("no CONNACK ever completed");
    eprintln!("{e}");
}

/// A broker that takes the CONNECT and the SUBSCRIBE, acknowledges both, then sends `flood`
/// over and over as fast as the reader takes it, and never the reader's end marker.
fn flooding_broker(flood: &'static [u8]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            thread::spawn(move || {
                let mut b = [0u8; 4096];
                let _ = c.read(&mut b); // CONNECT
                let _ = c.write_all(&[0x20, 0x02, 0x00, 0x00]);
                // SUBSCRIBE (remaining length < 128): its packet id in bytes 2 and 3.
                let Ok(n) = c.read(&mut b) else { return };
                if n < 4 {
                    return;
                }
                let _ = c.write_all(&[0x90, 0x04, b[2], b[3], 0x00, 0x00]);
                let many = flood.repeat(4096);
                while c.write_all(&many).is_ok() {}
            });
        }
    });
    port
}

/// docs/FLEET.md: a collection of retained messages takes at most 100,000 of them. Counted
/// by distinct topic only, a broker sending one unit's state again and again (or PINGRESPs),
/// faster than the floor rate of 1 KiB/s, held `fleet status --mqtt` for ever: each KiB it
/// sent moved the deadline on by a second.
#[test]
fn a_broker_repeating_one_message_forever_does_not_hold_a_collection() {
    use snapshot::fleet::mqtt::Session;
    // PUBLISH, QoS 0, topic "snapinit/u/state" (16 bytes), payload "x".
    const STATE: &[u8] = b"\x30\x13\x00\x10snapinit/u/stateX";
    const PINGRESP: &[u8] = &[0xD0, 0x00];
    for flood in [STATE, PINGRESP] {
        let port = flooding_broker(flood);
        let r = within(60, move || {
            let mut s = Session::connect(
                &format!("127.0.0.1:{port}"),
                "x",
                None,
                Duration::from_secs(1),
            )?;
            s.collect_retained("snapinit/+/state", "snapinit/x/end")
        })
        .unwrap_or_else(|| panic!("{flood:?}: collect_retained still reading after 60 s"));
        let e = r.expect_err("the end marker never came");
        eprintln!("{e}");
    }
}

// ---- the real binary, with the flags the OpenWrt scripts use ----

/// Runs `snapshot ARGS`; its exit code, or None when it was still running after `secs` (killed).
fn run_for(secs: u64, args: &[&str]) -> Option<Option<i32>> {
    let mut c = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if let Some(st) = c.try_wait().expect("wait") {
            return Some(st.code());
        }
        thread::sleep(Duration::from_millis(100));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

fn unit(d: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let t = template(d);
    let keys = d.join("keys.d");
    std::fs::create_dir_all(&keys).expect("keys.d");
    (t, keys)
}

#[test]
fn the_health_scripts_publish_ends_on_a_broker_that_never_acks() {
    require_root();
    let sc = scratch();
    let d = sc.path();
    let (img, _) = unit(d);
    let port = pingresp_broker();
    let broker = format!("127.0.0.1:{port}");
    // Exactly snapshot-fleet.sh's health mode ("one try, 5 s"): its reboot waits on this.
    let code = run_for(
        40,
        &[
            "--device",
            s(&img),
            "--erase-size",
            "4096",
            "fleet",
            "publish",
            "--mqtt",
            &broker,
            "--retries",
            "0",
            "--timeout",
            "5",
            "--state",
            s(&d.join("state")),
            "--unit-id",
            "u1",
        ],
    )
    .expect("`fleet publish --retries 0 --timeout 5` still running after 40 s");
    assert_ne!(code, Some(0));
}

#[test]
fn a_poll_ends_on_a_trickling_mirror() {
    require_root();
    let sc = scratch();
    let d = sc.path();
    let (img, keys) = unit(d);
    let port = serve(|c, _| drip(c, b"HTTP/1.0 200 OK\r\n\r\n"));
    let code = run_for(
        40,
        &[
            "--device",
            s(&img),
            "--erase-size",
            "4096",
            "fleet",
            "poll",
            "--keys",
            s(&keys),
            "--mirror",
            &format!("http://127.0.0.1:{port}/fleet"),
            "--retries",
            "0",
            "--timeout",
            "3",
            "--no-reboot",
            "--state",
            s(&d.join("state")),
            "--unit-id",
            "u1",
        ],
    )
    .expect("`fleet poll --retries 0 --timeout 3` still running after 40 s");
    // No mirror answered (exit 25), flash untouched.
    assert_eq!(code, Some(25));
}

/// Listeners on 127.0.0.1-8 (one port) whose accept queues are full: the kernel drops every
/// further SYN, so a connect to any of them hangs as to a host that is gone; on 127.0.0.9, the
/// same port, a server that answers 404. python3 (as scripts/deps.sh installs), as std's
/// listener has no backlog of 0. Killed on drop.
struct DeadAddresses(std::process::Child, u16);

impl DeadAddresses {
    fn start() -> Self {
        let mut c = Command::new("python3")
            .arg("-c")
            .arg(
                "import socket, sys, time\n\
                 held, port = [], 0\n\
                 for i in range(1, 9):\n\
                 \x20   l = socket.socket(); l.bind(('127.0.0.%d' % i, port)); l.listen(0)\n\
                 \x20   port = l.getsockname()[1]\n\
                 \x20   c = socket.socket(); c.connect(('127.0.0.%d' % i, port)); held += [l, c]\n\
                 live = socket.socket(); live.bind(('127.0.0.9', port)); live.listen(8)\n\
                 print(port, flush=True)\n\
                 while True:\n\
                 \x20   c, _ = live.accept(); r = b''\n\
                 \x20   while b'\\r\\n\\r\\n' not in r: r += c.recv(4096)\n\
                 \x20   c.sendall(b'HTTP/1.0 404 Not Found\\r\\nContent-Length: 0\\r\\n\\r\\n'); c.close()\n",
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (scripts/deps.sh installs it)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(c.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("port");
        let port = line.trim().parse().expect("a port");
        DeadAddresses(c, port)
    }
}

impl Drop for DeadAddresses {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A mirror's (or broker's) name that resolves to 8 addresses, none answering: the connect
/// is bounded by the timeout as a whole, not once per address (DNS is not trusted, and a name
/// may give dozens). `unshare -m` and a bind mount give the poll its own /etc/hosts.
#[test]
fn a_name_with_many_dead_addresses_is_left_within_the_timeout() {
    require_root();
    let sc = scratch();
    let d = sc.path();
    let (img, keys) = unit(d);
    let dead = DeadAddresses::start();
    let hosts = d.join("hosts");
    let names: String = (1..=8)
        .map(|i| format!("127.0.0.{i} mirror.test\n"))
        .collect();
    std::fs::write(&hosts, names).expect("hosts");
    std::fs::write(
        d.join("hosts.live"),
        "127.0.0.1 mirror.test\n127.0.0.9 mirror.test\n",
    )
    .expect("hosts");
    let port = dead.1.to_string();
    let mirror = format!("http://mirror.test:{port}/fleet");
    let broker = format!("mirror.test:{port}");
    let state = d.join("state");
    let common = ["--device", s(&img), "--erase-size", "4096", "fleet"];
    let unit_args = ["--retries", "0", "--timeout", "2", "--state", s(&state)];
    let poll = vec![
        "poll",
        "--keys",
        s(&keys),
        "--mirror",
        &mirror,
        "--no-reboot",
    ];
    for (what, hosts, args, code) in [
        ("poll", &hosts, poll.clone(), 25),
        ("publish", &hosts, vec!["publish", "--mqtt", &broker], 26),
        // A dead first address does not starve the next one: the mirror there is reached.
        ("poll past a dead address", &d.join("hosts.live"), poll, 25),
    ] {
        let t = Instant::now();
        let o = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
            .arg(hosts)
            .arg(bin())
            .args(common)
            .args(&args)
            .args(unit_args)
            .args(["--unit-id", "u1"])
            .stdin(Stdio::null())
            .output()
            .expect("run unshare");
        let took = t.elapsed();
        assert_eq!(o.status.code(), Some(code), "{what}: {}", show(&o));
        // 2 s for the connect, not 8 x 2 s.
        assert!(
            took < Duration::from_secs(6),
            "{what}: {took:?} to give up on 8 dead addresses with a 2 s timeout"
        );
        if what == "poll past a dead address" {
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("HTTP status 404"),
                "{what}: {}",
                show(&o)
            );
        }
        eprintln!("{what}: exit {code} after {took:?}");
    }
}

/// Serves the files under `root` as `/fleet/...`, honouring `Range: bytes=N-`, but a link
/// that drops: every connection ends after at most `cut` bytes of body (the headers announce
/// the whole rest).
fn dropping_mirror(root: std::path::PathBuf, cut: usize) -> u16 {
    let root: &'static Path = Box::leak(root.into_boxed_path());
    serve(move |c, head| answer(c, &head, root, |_| true, cut))
}

/// One mirror on a link that drops the connection every 16 KiB, polled as the OpenWrt service
/// polls (`--retries 0`: its loop does the waiting): each connection brings bytes, the next
/// resumes from there, and the bundle gets through. Before, the first cut ended the poll (25)
/// and the bytes that had arrived were dropped with it, so the next poll started again from
/// byte 0 and a payload larger than what the link carries between drops never arrived.
#[test]
fn a_link_that_drops_every_16_kib_still_brings_the_bundle_in_one_poll() {
    require_root();
    let sc = scratch();
    let d = sc.path();
    let b = one_bundle(d, 2, 64 * 1024);
    let u = Unit::flash(d, &b.template, 1).pop().expect("unit");
    let port = dropping_mirror(b.root.clone(), 16 * 1024);
    let o = poll_once(&u, &b, &[port]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("bundle v2 applied as snapshot 2"),
        "{}",
        show(&o)
    );
}

/// `fleet poll` of unit `u` as the OpenWrt service runs it (`--retries 0`), trusting `b`'s
/// keys (2 signatures), over `ports`' mirrors on 127.0.0.1, at time T0, without a reboot.
fn poll_once(u: &Unit, b: &OneBundle, ports: &[u16]) -> std::process::Output {
    let mirrors: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/fleet"))
        .collect();
    let mut args = vec![
        "fleet",
        "poll",
        "--keys",
        s(&b.keys.keys_d),
        "--min-sigs",
        "2",
    ];
    for m in &mirrors {
        args.extend(["--mirror", m.as_str()]);
    }
    let now = T0.to_string();
    args.extend([
        "--retries",
        "0",
        "--timeout",
        "3",
        "--no-reboot",
        "--now",
        &now,
    ]);
    u.run(None, &args, true)
}

/// Answers `head`'s GET from the files under `root` (`/fleet/...`), honouring `Range:
/// bytes=N-`; 404 for what is missing or what `serves` leaves out. The connection ends after
/// at most `cut` bytes of body (the headers announce the whole rest).
fn answer(mut c: TcpStream, head: &str, root: &Path, serves: impl Fn(&str) -> bool, cut: usize) {
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let file = root.join(path.trim_start_matches("/fleet/"));
    let Some(body) = serves(path).then(|| std::fs::read(file).ok()).flatten() else {
        let _ = c.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let from: usize = head
        .split("Range: bytes=")
        .nth(1)
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let rest = &body[from.min(body.len())..];
    let reply = if from > 0 {
        format!(
            "HTTP/1.0 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\nContent-Length: {}\r\n\r\n",
            body.len() - 1,
            body.len(),
            rest.len()
        )
    } else {
        format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", rest.len())
    };
    let _ = c.write_all(reply.as_bytes());
    let _ = c.write_all(&rest[..rest.len().min(cut)]);
}

/// A mirror that serves the channel and the manifests but answers the payload with `200 OK`
/// and an error page (as a misconfigured server does), and a good mirror that has only the
/// payload: the poll takes the channel from the first, the payload's first bytes too, and
/// resumes on the second after them. The spliced payload fails its hash; fetched again whole
/// from each mirror in turn, it comes from the good one. Before, the poll ended with 20 every
/// time, however good the other mirror.
#[test]
fn a_mirror_answering_the_payload_with_an_error_page_does_not_spoil_a_good_one() {
    require_root();
    let sc = scratch();
    let d = sc.path();
    let b = one_bundle(d, 2, 4096);
    let u = Unit::flash(d, &b.template, 1).pop().expect("unit");
    let root: &'static Path = Box::leak(b.root.clone().into_boxed_path());
    let soft = serve(move |mut c, head| {
        if head.contains("/payload") {
            let page = b"<html>temporarily unavailable</html>";
            let _ = write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                page.len()
            );
            let _ = c.write_all(page);
        } else {
            answer(c, &head, root, |_| true, usize::MAX);
        }
    });
    let good = serve(move |c, head| answer(c, &head, root, |p| p.contains("/payload"), usize::MAX));
    let o = poll_once(&u, &b, &[soft, good]);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("fetching it again whole"), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("bundle v2 applied as snapshot 2"),
        "{}",
        show(&o)
    );
}

/// A channel signed with a `published` past the largest signed 64-bit time (a signer's slip):
/// the unit does not take the bundle yet and says so. Before, `published as i64` took it for a
/// time before 1970, and every unit took the bundle at once, whatever the rollout.
#[test]
fn a_channel_published_past_i64_time_is_not_taken_yet() {
    require_root();
    let sc = scratch();
    let d = sc.path();
    let b = one_bundle(d, 2, 4096);
    channel(
        &b.keys,
        &b.root,
        u64::MAX - 10,
        "0",
        &["--expires-days", "0", "bundles/v2"],
    );
    let u = Unit::flash(d, &b.template, 1).pop().expect("unit");
    let port = dropping_mirror(b.root.clone(), usize::MAX);
    let o = poll_once(&u, &b, &[port]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("waiting: bundle v2 rolls out"),
        "{}",
        show(&o)
    );
}

/// A mirror whose copy of the payload is whole but damaged (same size, one byte changed: a
/// failing disk, a bad sync) and a good mirror: the poll takes the channel and the payload
/// from the first, finds the hash wrong, and fetches it again whole from each mirror, each copy
/// checked on its own. Before, only a copy resumed across mirrors was fetched again: a damaged
/// copy from the first mirror ended the poll with 20 however good the other.
#[test]
fn a_mirror_with_a_damaged_copy_of_the_payload_does_not_spoil_a_good_one() {
    require_root();
    let sc = scratch();
    let d = sc.path();
    let b = one_bundle(d, 2, 4096);
    let u = Unit::flash(d, &b.template, 1).pop().expect("unit");
    let root: &'static Path = Box::leak(b.root.clone().into_boxed_path());
    let damaged = serve(move |mut c, head| {
        if head.contains("/payload") {
            let file = root.join(
                head.split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches("/fleet/"),
            );
            let mut body = std::fs::read(file).unwrap_or_default();
            if let Some(x) = body.get_mut(100) {
                *x ^= 0x55;
            }
            let _ = write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(&body);
        } else {
            answer(c, &head, root, |_| true, usize::MAX);
        }
    });
    let good = serve(move |c, head| answer(c, &head, root, |p| p.contains("/payload"), usize::MAX));
    let o = poll_once(&u, &b, &[damaged, good]);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("as fetched does not match its SHA-256"),
        "{}",
        show(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("bundle v2 applied as snapshot 2"),
        "{}",
        show(&o)
    );
}

/// A plain-HTTP mirror that cuts every connection after 512 bytes of the payload and an
/// https mirror whose fetcher fails: each pass brings 512 bytes more from the first, and the
/// second's failure keeps them, so the download completes. Before, the https attempt emptied
/// the buffer first, the pass had brought nothing, and the poll ended with 25.
#[test]
fn a_failing_https_mirror_keeps_what_plain_http_brought() {
    require_root();
    let sc = scratch();
    let d = sc.path();
    let b = one_bundle(d, 2, 4096);
    let u = Unit::flash(d, &b.template, 1).pop().expect("unit");
    let root: &'static Path = Box::leak(b.root.clone().into_boxed_path());
    let cutting = serve(move |c, head| {
        let cut = if head.contains("/payload") {
            512
        } else {
            usize::MAX
        };
        answer(c, &head, root, |_| true, cut);
    });
    let payload = std::fs::read_dir(root.join("bundles/v2"))
        .expect("bundle dir")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name().to_string_lossy().starts_with("payload")
                && e.metadata().is_ok_and(|m| m.len() > 1024)
        });
    assert!(payload, "the payload must take several passes");
    let http = format!("http://127.0.0.1:{cutting}/fleet");
    let now = T0.to_string();
    let o = u.run(
        None,
        &[
            "fleet",
            "poll",
            "--keys",
            s(&b.keys.keys_d),
            "--min-sigs",
            "2",
            "--mirror",
            &http,
            "--mirror",
            "https://mirror.invalid/fleet",
            "--https-fetch",
            "false",
            "--in-order",
            "--retries",
            "0",
            "--timeout",
            "3",
            "--no-reboot",
            "--now",
            &now,
        ],
        true,
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("bundle v2 applied as snapshot 2"),
        "{}",
        show(&o)
    );
}
