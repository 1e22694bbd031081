//! One `snapshot` at a time per partition: an flock(2) on a descriptor of the device itself.
//!
//! Writers take it exclusive, readers shared, so a reader never sees a write in progress
//! (harmless anyway: every write is atomic) and two writes never interleave. The lock lives on
//! an open file description of its own, so the MTD driver's close-and-reopen sync does not drop
//! it, and the kernel releases it when the process dies.
//!
//! A UBI volume is the exception: UBI counts every open descriptor of the volume, and an atomic
//! LEB change needs the writer's to be the only one (else EBUSY). Its lock is taken on the
//! volume's sysfs directory instead, which names the same volume and opens nothing of it.

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
    let fd = match ubi_sys_dir(path) {
        Some(dir) => rustix::fs::open(
            dir.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ),
        None => rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()),
    }
    .map_err(io)?;
    let op = if exclusive {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    let once = || match rustix::fs::flock(&fd, op) {
        Ok(()) => Ok(()),
        Err(Errno::WOULDBLOCK) | Err(Errno::INTR) => Err(CliError::Locked {
            path: path.to_path_buf(),
            waited: None,
        }),
        Err(e) => Err(io(e)),
    };
    while_busy(wait, Duration::from_millis(50), &mut || {}, once)?;
    Ok(Lock { _fd: fd })
}

/// Runs `attempt` (refused with `Locked` while another command holds the lock) until it is
/// not refused so or `wait` has passed (`None`: refused at once; `Duration::MAX`: no limit),
/// calling `between` at every `tick` of the wait: `health` pets a watchdog there, which the
/// lock's wait (30 s by default) would leave unpetted that long.
pub fn while_busy<T>(
    wait: Option<Duration>,
    tick: Duration,
    between: &mut dyn FnMut(),
    mut attempt: impl FnMut() -> Result<T, CliError>,
) -> Result<T, CliError> {
    let start = Instant::now();
    let mut told = false;
    loop {
        match attempt() {
            Err(CliError::Locked { path, .. }) => {
                let Some(limit) = wait else {
                    return Err(CliError::Locked { path, waited: None });
                };
                if start.elapsed() >= limit {
                    return Err(CliError::Locked {
                        path,
                        waited: Some(limit.as_secs()),
                    });
                }
                if !told {
                    let until = if limit == Duration::MAX {
                        "until it is done".to_string()
                    } else {
                        format!("up to {} s", limit.as_secs())
                    };
                    eprintln!(
                        "snapshot: {} is busy (another snapshot command); waiting {until}",
                        path.display(),
                    );
                    told = true;
                }
                between();
                std::thread::sleep(tick);
            }
            done => return done,
        }
    }
}

/// The sysfs directory of `path` when it is a UBI volume's character device.
fn ubi_sys_dir(path: &Path) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(path).ok()?;
    if !m.file_type().is_char_device() || !snapinit::ubi::is_volume(m.rdev()) {
        return None;
    }
    Some(snapinit::ubi::sys_dir(m.rdev()).as_str().to_owned())
}
