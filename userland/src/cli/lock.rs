//! One `snapshot` at a time per partition: an flock(2) on a descriptor of the device itself.
//!
//! Writers take it exclusive, readers shared, so a reader never sees a write in progress
//! (harmless anyway: every write is atomic) and two writes never interleave. The lock lives on
//! an open file description of its own, so the MTD driver's close-and-reopen sync does not drop
//! it, and the kernel releases it when the process dies.

use super::error::CliError;
use rustix::fd::OwnedFd;
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Lock {
    _fd: OwnedFd,
}

/// How long to wait for another command's lock: `None` refuses at once.
pub fn acquire(path: &Path, exclusive: bool, wait: Option<Duration>) -> Result<Lock, CliError> {
    let io = |e: Errno| CliError::Lock {
        path: path.to_path_buf(),
        source: e.into(),
    };
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(io)?;
    let op = if exclusive {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    let start = Instant::now();
    let mut told = false;
    loop {
        match rustix::fs::flock(&fd, op) {
            Ok(()) => return Ok(Lock { _fd: fd }),
            Err(Errno::WOULDBLOCK) | Err(Errno::INTR) => {}
            Err(e) => return Err(io(e)),
        }
        let Some(limit) = wait else {
            return Err(CliError::Locked {
                path: path.to_path_buf(),
                waited: None,
            });
        };
        if start.elapsed() >= limit {
            return Err(CliError::Locked {
                path: path.to_path_buf(),
                waited: Some(limit.as_secs()),
            });
        }
        if !told {
            eprintln!(
                "snapshot: {} is busy (another snapshot command); waiting up to {} s",
                path.display(),
                limit.as_secs()
            );
            told = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
