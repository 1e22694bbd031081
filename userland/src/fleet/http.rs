//! A small blocking HTTP/1.0 GET client for mirrors: plain `http://host[:port]/path` URLs, a
//! connect and read timeout, a body size limit, and `Range` requests for resuming. Everything it
//! fetches is signed, so it needs no TLS (as Gluon's autoupdater serves its mirrors); an
//! `https://` mirror is fetched through an external program instead, OpenWrt's `uclient-fetch`
//! by default (it brings the TLS library the firmware already has), with the same size limit.
//!
//! HTTP/1.0 keeps the reply simple: no chunked encoding, the body ends at close (and must match
//! `Content-Length` when the server sends one).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

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
    /// appended. Empty: `uclient-fetch -q -T <timeout> -O -`.
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
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (hostport, 80),
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
        let host = u.host.trim_start_matches('[').trim_end_matches(']');
        let addrs = (host, u.port).to_socket_addrs().map_err(net)?;
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let mut s = stream.ok_or_else(|| net(last))?;
        s.set_read_timeout(Some(self.timeout)).map_err(net)?;
        s.set_write_timeout(Some(self.timeout)).map_err(net)?;
        let range = if from > 0 {
            format!("Range: bytes={from}-\r\n")
        } else {
            String::new()
        };
        write!(
            s,
            "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: snapshot-fleet\r\n{range}Connection: close\r\n\r\n",
            u.path, u.host
        )
        .map_err(net)?;
        // Headers: at most 16 KiB.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 * 1024 {
                return Err(HttpError::Malformed {
                    url: url.into(),
                    detail: "headers too long",
                });
            }
            match s.read(&mut byte).map_err(net)? {
                0 => {
                    return Err(HttpError::Malformed {
                        url: url.into(),
                        detail: "closed in the headers",
                    })
                }
                _ => head.push(byte[0]),
            }
        }
        let head = String::from_utf8_lossy(&head);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or(HttpError::Malformed {
                url: url.into(),
                detail: "no status line",
            })?;
        let mut length = None;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<u64>().ok();
                }
            }
        }
        match status {
            200 => out.clear(),
            206 if from > 0 => {}
            _ => {
                return Err(HttpError::Status {
                    url: url.into(),
                    status,
                })
            }
        }
        let start = out.len() as u64;
        if let Some(n) = length {
            if start + n > limit {
                return Err(HttpError::TooLarge {
                    url: url.into(),
                    limit,
                });
            }
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            let k = match s.read(&mut buf) {
                Ok(k) => k,
                // What arrived is kept: the caller resumes from there.
                Err(e) => return Err(net(e)),
            };
            if k == 0 {
                break;
            }
            if out.len() as u64 + k as u64 > limit {
                return Err(HttpError::TooLarge {
                    url: url.into(),
                    limit,
                });
            }
            out.extend_from_slice(&buf[..k]);
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

impl Client {
    /// `https://` through the external fetcher. It cannot resume (uclient-fetch continues only
    /// into a file), so it restarts `out`; the limit holds all the same: the fetcher is killed
    /// once it has written more than `limit` bytes.
    fn get_https(&self, url: &str, limit: u64, out: &mut Vec<u8>) -> Result<(), HttpError> {
        use std::process::{Command, Stdio};
        let argv: Vec<String> = if self.https_fetch.is_empty() {
            [
                "uclient-fetch",
                "-q",
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
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut buf = [0u8; 16 * 1024];
        let read = loop {
            match stdout.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(k) if out.len() as u64 + k as u64 > limit => {
                    break Err(HttpError::TooLarge {
                        url: url.into(),
                        limit,
                    })
                }
                Ok(k) => out.extend_from_slice(&buf[..k]),
                Err(source) => {
                    break Err(HttpError::Net {
                        url: url.into(),
                        source,
                    })
                }
            }
        };
        if read.is_err() {
            let _ = child.kill();
        }
        drop(stdout);
        let done = child.wait_with_output().map_err(|source| HttpError::Net {
            url: url.into(),
            source,
        })?;
        read?;
        if !done.status.success() {
            out.clear();
            return Err(HttpError::Fetcher {
                url: url.into(),
                program,
                status: done.status,
                stderr: String::from_utf8_lossy(&done.stderr)
                    .trim()
                    .chars()
                    .take(300)
                    .collect(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:8080/a/b.json").expect("url");
        assert_eq!((u.host, u.port, u.path), ("127.0.0.1", 8080, "/a/b.json"));
        let u = parse_url("http://mirror").expect("url");
        assert_eq!((u.host, u.port, u.path), ("mirror", 80, "/"));
        assert!(parse_url("https://x/").is_none());
        assert!(parse_url("http://x:y/").is_none());
    }
}
