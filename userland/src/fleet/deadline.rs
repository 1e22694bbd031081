//! Time bounds on a peer that may stall on purpose. A socket's read timeout starts again with
//! every byte, so a mirror or broker that sends one byte just inside it holds a reader for
//! hours; and a unit whose poll or health publish never returns never reboots into its update
//! nor out of a failed trial. A [`Deadline`] bounds a whole exchange: a grace period, then a
//! floor on the average rate for a long body (a slow but honest link keeps going, a trickle
//! does not).

use std::io::{Error, ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The slowest average a body may arrive at, after the grace period: 1 KiB/s. A mesh link
/// worth the name is faster; a 16 MiB bundle at this floor still ends within about 4.5 hours.
pub const MIN_RATE: u64 = 1024;

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    grace: Duration,
    /// Bytes per second that extend the deadline; 0: `grace` is all there is.
    min_rate: u64,
}

impl Deadline {
    /// The whole exchange within `grace` from now.
    pub fn within(grace: Duration) -> Self {
        Self::paced(grace, 0)
    }

    /// `grace` from now, plus one second for every `min_rate` bytes received.
    pub fn paced(grace: Duration, min_rate: u64) -> Self {
        Deadline {
            start: Instant::now(),
            grace,
            min_rate,
        }
    }

    fn until(&self, got: u64) -> Instant {
        let earned = match self.min_rate {
            0 => Duration::ZERO,
            r => Duration::from_millis(got.saturating_mul(1000) / r),
        };
        // Far beyond any limit a body has: about 136 years.
        let total = self
            .grace
            .saturating_add(earned)
            .min(Duration::from_secs(1 << 32));
        self.start + total
    }

    /// How long the next read may wait, at most `per_read`, having received `got` bytes; an
    /// error (`TimedOut`) once the deadline has passed.
    pub fn next_read(&self, got: u64, per_read: Duration) -> std::io::Result<Duration> {
        let left = self.until(got).saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.passed(got));
        }
        // A zero socket timeout means "none": the floor is a millisecond.
        Ok(left.min(per_read).max(Duration::from_millis(1)))
    }

    fn passed(&self, got: u64) -> Error {
        let secs = self.start.elapsed().as_secs();
        let detail = match self.min_rate {
            0 => format!("no complete answer within {} s", self.grace.as_secs()),
            r => format!(
                "{got} bytes in {secs} s: slower than {} B/s after {} s",
                r,
                self.grace.as_secs()
            ),
        };
        Error::new(ErrorKind::TimedOut, detail)
    }

    /// Reads from `stream` with each read's timeout cut to what is left; counts into `got`.
    pub fn read(
        &self,
        mut stream: &TcpStream,
        got: &mut u64,
        per_read: Duration,
        buf: &mut [u8],
    ) -> std::io::Result<usize> {
        stream.set_read_timeout(Some(self.next_read(*got, per_read)?))?;
        match stream.read(buf) {
            Ok(n) => {
                *got += n as u64;
                Ok(n)
            }
            // The socket's timeout, cut short by the deadline: say which ran out.
            Err(e) if e.kind() == ErrorKind::WouldBlock && self.until(*got) <= Instant::now() => {
                Err(self.passed(*got))
            }
            Err(e) => Err(e),
        }
    }
}

/// Connects to the first of `addrs` that answers, all of the tries within `timeout`: a name may
/// resolve to many addresses (DNS is not trusted; musl returns up to 48), and one full timeout
/// per address that drops the SYN would hold the caller for that many timeouts. Each address
/// gets an equal share of what is left, so a dead first one (an IPv6 route that goes nowhere)
/// does not starve the next, and one that refuses at once leaves its share to the others.
pub fn connect(
    addrs: impl IntoIterator<Item = std::net::SocketAddr>,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let addrs: Vec<_> = addrs.into_iter().collect();
    let deadline = Deadline::within(timeout);
    let mut last = Error::new(ErrorKind::NotFound, "no address");
    for (i, a) in addrs.iter().enumerate() {
        let left = deadline.next_read(0, timeout)?;
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        match TcpStream::connect_timeout(a, share.max(Duration::from_millis(1))) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A stream read under a [`Deadline`], for decoders that take `impl Read`.
pub struct Paced<'a> {
    pub stream: &'a TcpStream,
    pub deadline: Deadline,
    /// Bytes read under the deadline so far.
    pub got: u64,
    pub per_read: Duration,
}

impl Read for Paced<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.deadline
            .read(self.stream, &mut self.got, self.per_read, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_extends_the_deadline_by_what_arrived() {
        let d = Deadline::paced(Duration::from_secs(2), 1000);
        let t = d.start;
        assert_eq!(d.until(0), t + Duration::from_secs(2));
        assert_eq!(d.until(500), t + Duration::from_millis(2500));
        assert_eq!(d.until(u64::MAX), t + Duration::from_secs(1 << 32));
        let w = Deadline::within(Duration::from_secs(2));
        assert_eq!(w.until(1 << 40), w.start + Duration::from_secs(2));
        let gone = Deadline::within(Duration::ZERO);
        let e = gone.next_read(0, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        let ok = Deadline::within(Duration::from_secs(60));
        assert_eq!(
            ok.next_read(0, Duration::from_secs(1)).ok(),
            Some(Duration::from_secs(1))
        );
    }
}
