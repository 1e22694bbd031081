//! A small blocking HTTP/1.0 GET client for mirrors: plain `http://host[:port]/path` URLs (an
//! IPv6 host in brackets), time bounds a trickling server cannot stretch (deadline.rs), a body
//! size limit, and `Range` requests for resuming. Everything it fetches is signed, so it needs
//! no TLS (as Gluon's autoupdater serves its mirrors); an `https://` mirror is fetched through
//! an external program instead, OpenWrt's `uclient-fetch` by default (it brings the TLS library
//! the firmware already has), with the same size limit.
//!
//! HTTP/1.0 keeps the reply simple: no chunked encoding; the body ends at `Content-Length` when
//! the server sends one, else at close.

use super::deadline::{self, Deadline, MIN_RATE};
use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::time::Duration;

/// The most header bytes taken.
const HEAD_MAX: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0:?} is not an http://host[:port]/path URL")]
    BadUrl(String),
    #[error("{url}: {source}")]
    Net {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: malformed reply ({0})", .detail)]
    Malformed { url: String, detail: &'static str },
    #[error("{url}: more than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: the connection closed after {got} of {want} bytes")]
    Short { url: String, got: u64, want: u64 },
    #[error("{url}: cannot run {program:?} for https: {source} (install uclient-fetch, or set --https-fetch)")]
    NoFetcher {
        url: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: {program:?} failed ({status}): {stderr}")]
    Fetcher {
        url: String,
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

pub struct Client {
    pub timeout: Duration,
    /// The program (and its first arguments) that fetches `https://` URLs to stdout; the URL is
    /// appended. Empty: `uclient-fetch -T <timeout> -O -`.
    pub https_fetch: Vec<String>,
}

struct Url<'a> {
    host: &'a str,
    port: u16,
    path: &'a str,
}

fn parse_url(url: &str) -> Option<Url<'_>> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.strip_prefix('[') {
        // An IPv6 literal, `[addr]` or `[addr]:port`.
        Some(rest) => {
            let (addr, tail) = rest.split_once(']')?;
            let port = match tail {
                "" => 80,
                t => t.strip_prefix(':')?.parse().ok()?,
            };
            (addr, port)
        }
        None => match hostport.split_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, 80),
        },
    };
    if host.is_empty() || path.contains([' ', '\r', '\n']) {
        return None;
    }
    Some(Url { host, port, path })
}

impl Client {
    /// GETs `url` from byte `from` on, appending the body to `out`, which must not grow past
    /// `limit` bytes in all. A server that ignores the range (status 200) restarts `out`.
    pub fn get(
        &self,
        url: &str,
        from: u64,
        limit: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), HttpError> {
        if url.starts_with("https://") {
            return self.get_https(url, limit, out);
        }
        let u = parse_url(url).ok_or_else(|| HttpError::BadUrl(url.to_string()))?;
        let net = |source| HttpError::Net {
            url: url.to_string(),
            source,
        };
        let addrs = (u.host, u.port).to_socket_addrs().map_err(net)?;
        let s = deadline::connect(addrs, self.timeout).map_err(net)?;
        s.set_write_timeout(Some(self.timeout)).map_err(net)?;
        let range = if from > 0 {
            format!("Range: bytes={from}-\r\n")
        } else {
            String::new()
        };
        write!(
            &s,
            "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: snapshot-fleet\r\n{range}Connection: close\r\n\r\n",
            u.path,
            host_header(&u)
        )
        .map_err(net)?;
        let malformed = |detail| HttpError::Malformed {
            url: url.into(),
            detail,
        };
        // Headers: at most 16 KiB, all of them within the timeout.
        let deadline = Deadline::within(self.timeout);
        let mut head = Vec::new();
        let mut got = 0;
        let mut buf = [0u8; 16 * 1024];
        let body_at = loop {
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if head.len() > HEAD_MAX {
                return Err(malformed("headers too long"));
            }
            let room = (HEAD_MAX + 4 - head.len()).min(buf.len());
            match deadline.read(&s, &mut got, self.timeout, &mut buf[..room]) {
                Ok(0) => return Err(malformed("closed in the headers")),
                Ok(k) => head.extend_from_slice(&buf[..k]),
                Err(e) => return Err(net(e)),
            }
        };
        let early = head.split_off(body_at);
        let head = String::from_utf8_lossy(&head);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or(malformed("no status line"))?;
        let mut length = None;
        let mut range_start = None;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let k = k.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<u64>().ok();
                } else if k.eq_ignore_ascii_case("content-range") {
                    range_start = content_range_start(v);
                }
            }
        }
        match status {
            200 => out.clear(),
            // Appended only when it starts where `out` ends: a reply for other bytes (a cache
            // or server that answers 206 from 0) would splice a wrong payload together.
            206 if from > 0 && range_start == Some(from) && out.len() as u64 == from => {}
            206 if from > 0 => return Err(malformed("a 206 reply for other bytes than asked")),
            _ => {
                return Err(HttpError::Status {
                    url: url.into(),
                    status,
                })
            }
        }
        let start = out.len() as u64;
        let too_large = || HttpError::TooLarge {
            url: url.into(),
            limit,
        };
        if let Some(n) = length {
            if start.saturating_add(n) > limit {
                return Err(too_large());
            }
        }
        // The body: at least MIN_RATE on average after the timeout; it ends at Content-Length
        // (a server that keeps the connection open after it is not waited for), else at close.
        let deadline = Deadline::paced(self.timeout, MIN_RATE);
        let mut got = 0;
        let mut chunk = early.as_slice();
        loop {
            let want = length.map_or(u64::MAX, |n| n - (out.len() as u64 - start));
            if want == 0 {
                break;
            }
            if chunk.is_empty() {
                let k = match deadline.read(&s, &mut got, self.timeout, &mut buf) {
                    Ok(k) => k,
                    // What arrived is kept: the caller resumes from there.
                    Err(e) => return Err(net(e)),
                };
                if k == 0 {
                    break;
                }
                chunk = &buf[..k];
            }
            let take = chunk.len().min(usize::try_from(want).unwrap_or(usize::MAX));
            if out.len() as u64 + take as u64 > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
        }
        let got = out.len() as u64 - start;
        if let Some(want) = length {
            if got != want {
                return Err(HttpError::Short {
                    url: url.into(),
                    got,
                    want,
                });
            }
        }
        Ok(())
    }
}

/// `Host:` as RFC 9110 has it: an IPv6 literal in brackets, the port unless it is 80.
fn host_header(u: &Url<'_>) -> String {
    let host = if u.host.contains(':') {
        format!("[{}]", u.host)
    } else {
        u.host.to_string()
    };
    match u.port {
        80 => host,
        p => format!("{host}:{p}"),
    }
}

/// The first byte of `Content-Range: bytes FIRST-LAST/TOTAL`.
fn content_range_start(v: &str) -> Option<u64> {
    let spec = v.trim().strip_prefix("bytes")?.trim_start();
    let (first, _) = spec.split_once('-')?;
    first.trim().parse().ok()
}

impl Client {
    /// `https://` through the external fetcher. It cannot resume (uclient-fetch continues only
    /// into a file), so it fetches from byte 0; the limit holds all the same: the fetcher is
    /// killed once it has written more than `limit` bytes. What `out` holds already (bytes
    /// earlier plain-HTTP mirrors brought) is replaced only by as much or more: an https
    /// mirror that fails must not throw away the download so far, which the next pass resumes
    /// over plain HTTP.
    fn get_https(&self, url: &str, limit: u64, out: &mut Vec<u8>) -> Result<(), HttpError> {
        let mut fresh = Vec::new();
        let r = self.fetch_https(url, limit, &mut fresh);
        // Even a fetcher that exits 0 may bring less (a short copy): the longer start stays,
        // and the caller finds it short and resumes.
        if fresh.len() >= out.len() {
            *out = fresh;
        }
        r
    }

    fn fetch_https(&self, url: &str, limit: u64, out: &mut Vec<u8>) -> Result<(), HttpError> {
        use std::process::{Command, Stdio};
        let argv: Vec<String> = if self.https_fetch.is_empty() {
            // Not quiet (-q): uclient-fetch then says nothing of the status a server refused
            // with (`HTTP error NNN` is printed only without it), and its exit, 8, is the same
            // for every status. Its other lines (progress, `Connecting to`) are drained.
            [
                "uclient-fetch",
                "-T",
                &self.timeout.as_secs().max(1).to_string(),
                "-O",
                "-",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        } else {
            self.https_fetch.clone()
        };
        let program = argv[0].clone();
        let mut child = Command::new(&program)
            .args(&argv[1..])
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| HttpError::NoFetcher {
                url: url.into(),
                program: program.clone(),
                source,
            })?;
        out.clear();
        // The fetcher's own timeout (uclient-fetch -T) restarts with every byte, like a
        // socket's: its output and its exit are waited for under the same deadline and floor
        // rate as plain HTTP (poll(2) on both pipes), and it is killed when they run out.
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let net = |source| HttpError::Net {
            url: url.into(),
            source,
        };
        let deadline = Deadline::paced(self.timeout, MIN_RATE);
        let mut pipes = match Pipes::new(stdout, stderr) {
            Ok(p) => p,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(net(e));
            }
        };
        let mut got = 0u64;
        let mut read = loop {
            let wait = match deadline.next_read(got, self.timeout) {
                Ok(w) => w,
                Err(e) => break Err(net(e)),
            };
            match pipes.wait(wait, out) {
                Ok(Output::End) => break Ok(()),
                Ok(Output::Data(k)) => {
                    got += k as u64;
                    if out.len() as u64 > limit {
                        break Err(HttpError::TooLarge {
                            url: url.into(),
                            limit,
                        });
                    }
                }
                // Cut short by the deadline (the next check says so), or no byte at all
                // for a whole timeout.
                Ok(Output::Idle) => {
                    break Err(net(match deadline.next_read(got, self.timeout) {
                        Err(e) => e,
                        Ok(_) => std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("{program} sent nothing for {} s", self.timeout.as_secs()),
                        ),
                    }))
                }
                Err(e) => break Err(net(e)),
            }
        };
        // Its exit too: a fetcher that closes its output and then hangs is killed like one
        // that trickles.
        while read.is_ok() {
            pipes.drain_stderr();
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) => match deadline.next_read(got, self.timeout) {
                    Ok(w) => std::thread::sleep(w.min(Duration::from_millis(20))),
                    Err(e) => read = Err(net(e)),
                },
                Err(e) => read = Err(net(e)),
            }
        }
        if read.is_err() {
            let _ = child.kill();
        }
        let status = child.wait().map_err(net)?;
        read?;
        if !status.success() {
            out.clear();
            pipes.drain_stderr();
            let stderr = String::from_utf8_lossy(&pipes.err_kept).into_owned();
            // uclient-fetch says which status a server refused with only on stderr; read as
            // a status, a missing `.sig` over https is an unsigned file (19), as over http,
            // not a mirror that does not answer (25).
            if let Some(status) = fetcher_status(&stderr) {
                return Err(HttpError::Status {
                    url: url.into(),
                    status,
                });
            }
            return Err(HttpError::Fetcher {
                url: url.into(),
                program,
                status,
                stderr: stderr.trim().chars().take(300).collect(),
            });
        }
        Ok(())
    }
}

/// The HTTP status in uclient-fetch's `HTTP error NNN` line (its exit code, 8, is the same for
/// every status; the line is not printed with `-q`).
fn fetcher_status(stderr: &str) -> Option<u16> {
    stderr.lines().find_map(|l| {
        let code = l.trim().strip_prefix("HTTP error ")?;
        code.parse().ok().filter(|c| (100..600).contains(c))
    })
}

/// What one wait on the fetcher's stdout brought.
enum Output {
    /// Bytes appended (0: a wake-up with nothing to read).
    Data(usize),
    /// stdout ended.
    End,
    /// Nothing for the whole wait.
    Idle,
}

/// The external fetcher's stdout and stderr, non-blocking, read as they become ready.
struct Pipes {
    stdout: std::process::ChildStdout,
    /// `None` once at its end.
    stderr: Option<std::process::ChildStderr>,
    /// The first 4 KiB of stderr, for the error message; the rest is read and dropped, so a
    /// chatty fetcher never blocks on a full pipe.
    err_kept: Vec<u8>,
}

impl Pipes {
    fn new(
        stdout: std::process::ChildStdout,
        stderr: std::process::ChildStderr,
    ) -> std::io::Result<Self> {
        rustix::io::ioctl_fionbio(&stdout, true)?;
        rustix::io::ioctl_fionbio(&stderr, true)?;
        Ok(Pipes {
            stdout,
            stderr: Some(stderr),
            err_kept: Vec::new(),
        })
    }

    /// Waits up to `wait` for stdout, then reads one buffer of it into `out`.
    fn wait(&mut self, wait: Duration, out: &mut Vec<u8>) -> std::io::Result<Output> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let timeout = Timespec::try_from(wait).map_err(std::io::Error::other)?;
        // Both pipes: a fetcher blocked on a full stderr would never write stdout again.
        let (woke, out_ready) = {
            let mut fds = vec![PollFd::new(&self.stdout, PollFlags::IN)];
            if let Some(err) = &self.stderr {
                fds.push(PollFd::new(err, PollFlags::IN));
            }
            match poll(&mut fds, Some(&timeout)) {
                Ok(n) => (n > 0, !fds[0].revents().is_empty()),
                Err(rustix::io::Errno::INTR) => return Ok(Output::Data(0)),
                Err(e) => return Err(e.into()),
            }
        };
        self.drain_stderr();
        if !woke {
            return Ok(Output::Idle);
        }
        if !out_ready {
            return Ok(Output::Data(0));
        }
        let mut buf = [0u8; 16 * 1024];
        match self.stdout.read(&mut buf) {
            Ok(0) => Ok(Output::End),
            Ok(k) => {
                out.extend_from_slice(&buf[..k]);
                Ok(Output::Data(k))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Output::Data(0))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads what stderr has now, at most 64 KiB per call (a writer that never stops must
    /// not hold the reader here), keeping its first 4 KiB.
    fn drain_stderr(&mut self) {
        let Some(err) = &mut self.stderr else {
            return;
        };
        let mut buf = [0u8; 4096];
        for _ in 0..16 {
            match err.read(&mut buf) {
                Ok(0) => {
                    self.stderr = None;
                    return;
                }
                Ok(k) => {
                    let room = 4096usize.saturating_sub(self.err_kept.len());
                    self.err_kept.extend_from_slice(&buf[..k.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_from_uclient_fetchs_stderr() {
        assert_eq!(fetcher_status("HTTP error 404\n"), Some(404));
        assert_eq!(
            fetcher_status("Connection reset\nHTTP error 503"),
            Some(503)
        );
        for none in [
            "",
            "HTTP error",
            "HTTP error 4040",
            "Connection error: x",
            "HTTP error 099",
        ] {
            assert_eq!(fetcher_status(none), None, "{none:?}");
        }
    }

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:8080/a/b.json").expect("url");
        assert_eq!((u.host, u.port, u.path), ("127.0.0.1", 8080, "/a/b.json"));
        let u = parse_url("http://mirror").expect("url");
        assert_eq!((u.host, u.port, u.path), ("mirror", 80, "/"));
        assert!(parse_url("https://x/").is_none());
        assert!(parse_url("http://x:y/").is_none());
        let u = parse_url("http://[::1]/a").expect("url");
        assert_eq!((u.host, u.port, u.path), ("::1", 80, "/a"));
        let u = parse_url("http://[fd00::1]:8080").expect("url");
        assert_eq!((u.host, u.port, u.path), ("fd00::1", 8080, "/"));
        for bad in [
            "http://[::1/a",
            "http://[::1]x/",
            "http://[::1]:/",
            "http://a:1:2/",
        ] {
            assert!(parse_url(bad).is_none(), "{bad}");
        }
        assert_eq!(content_range_start(" bytes 10-19/20"), Some(10));
        assert_eq!(content_range_start("bytes */20"), None);
    }
}
