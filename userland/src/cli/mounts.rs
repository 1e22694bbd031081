//! The JFFS2 mounts of the partition `convert` or `format` works on, made read-only: while
//! convert packs the overlay and stages it at the partition's end, and before a format. A
//! read-write JFFS2 goes on writing (services, its garbage collector) into the very erase
//! blocks convert checked to be free or format erased, and into the files being packed.

use super::error::CliError;
use rustix::mount::{mount_remount, MountFlags};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Linux's major numbers of MTD character devices (`/dev/mtdN` is minor 2N) and of the
/// mtdblock devices a JFFS2 superblock is known by (minor N).
const MTD_CHAR_MAJOR: u32 = 90;
const MTD_BLOCK_MAJOR: u32 = 31;

/// A JFFS2 made read-only here, to be made read-write again if convert stops before it writes.
#[derive(Debug, Default)]
pub struct Frozen {
    target: Option<(PathBuf, MountFlags)>,
}

impl Frozen {
    /// Puts the JFFS2 back as it was (convert refused or was declined: nothing written).
    pub fn thaw(self) {
        if let Some((t, kept)) = self.target {
            if let Err(e) = mount_remount(&t, kept, "") {
                eprintln!(
                    "snapshot: could not make {} read-write again ({e}); `mount -o remount,rw {}` does",
                    t.display(),
                    t.display()
                );
            }
        }
    }
}

/// Makes the read-write JFFS2 mount of the MTD device `dev`, if any, read-only. Nothing to do
/// for an image file, a UBI volume or a JFFS2 that is not mounted or already read-only.
pub fn freeze_jffs2(dev: &Path) -> Result<Frozen, CliError> {
    let Some(index) = mtd_index(dev) else {
        return Ok(Frozen::default());
    };
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some((target, kept)) = jffs2_rw_mount(&table, index) else {
        return Ok(Frozen::default());
    };
    mount_remount(&target, kept | MountFlags::RDONLY, "").map_err(|e| {
        CliError::Refused(format!(
            "the JFFS2 of {} is mounted read-write at {} and cannot be made read-only ({e}): something holds a file there open for writing; stop the services that write to it (or unmount it) and run the command again",
            dev.display(),
            target.display()
        ))
    })?;
    println!(
        "the JFFS2 at {} is read-only from now on, until the reboot",
        target.display()
    );
    Ok(Frozen {
        target: Some((target, kept)),
    })
}

/// N of an MTD character device `/dev/mtdN`, by its device number.
fn mtd_index(dev: &Path) -> Option<u32> {
    let m = std::fs::metadata(dev).ok()?;
    if !m.file_type().is_char_device() {
        return None;
    }
    let rdev = m.rdev();
    (rustix::fs::major(rdev) == MTD_CHAR_MAJOR).then(|| rustix::fs::minor(rdev) / 2)
}

/// The mount point of a read-write JFFS2 on mtdblock `index` in a `/proc/self/mountinfo` text,
/// with the mount's own flags a remount must repeat to keep:
/// `id parent major:minor root mountpoint options [optional...] - fstype source superoptions`.
fn jffs2_rw_mount(mountinfo: &str, index: u32) -> Option<(PathBuf, MountFlags)> {
    let want = format!("{MTD_BLOCK_MAJOR}:{index}");
    mountinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        let (fstype, superopts) = (fields.get(dash + 1)?, fields.get(dash + 3)?);
        let rw = superopts.split(',').any(|o| o == "rw");
        let target = fields.get(4)?;
        let kept = mount_flags(fields.get(5)?) | superblock_flags(superopts);
        (*fstype == "jffs2" && fields.get(2) == Some(&want.as_str()) && rw)
            .then(|| (PathBuf::from(unescape(target)), kept))
    })
}

/// The per-mount flags of mountinfo's options field. A remount sets them all anew: one not
/// repeated is cleared (a `nosuid,nodev,noexec` data mount would come back without them).
/// The access-time mode is repeated too, though the kernel keeps it when none is given.
fn mount_flags(options: &str) -> MountFlags {
    options
        .split(',')
        .map(|o| match o {
            "nosuid" => MountFlags::NOSUID,
            "nodev" => MountFlags::NODEV,
            "noexec" => MountFlags::NOEXEC,
            "noatime" => MountFlags::NOATIME,
            "nodiratime" => MountFlags::NODIRATIME,
            "relatime" => MountFlags::RELATIME,
            "nosymfollow" => MountFlags::NOSYMFOLLOW,
            _ => MountFlags::empty(),
        })
        .fold(MountFlags::empty(), |a, f| a | f)
}

/// The superblock flags a remount sets anew (the kernel's MS_RMT_MASK, beside `ro`), from
/// mountinfo's superblock options: a remount that does not repeat `sync` or `lazytime` clears
/// them, as it does the per-mount flags (`dirsync` it keeps).
fn superblock_flags(superopts: &str) -> MountFlags {
    superopts
        .split(',')
        .map(|o| match o {
            "sync" => MountFlags::SYNCHRONOUS,
            "lazytime" => MountFlags::LAZYTIME,
            _ => MountFlags::empty(),
        })
        .fold(MountFlags::empty(), |a, f| a | f)
}

/// A mountinfo path: space, tab, newline and backslash come as octal escapes (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 0:19 / / rw,noatime - overlay overlayfs:/overlay rw,lowerdir=/,upperdir=/overlay/upper,workdir=/overlay/work
23 22 31:5 / /overlay rw,noatime - jffs2 /dev/mtdblock5 rw
24 22 31:3 / /rom ro,relatime - squashfs /dev/root ro
25 22 31:6 / /mnt/my\\040data rw,nosuid,nodev,noexec,relatime master:2 - jffs2 mtd6 rw
26 22 31:7 / /mnt/old ro shared:4 - jffs2 /dev/mtdblock7 ro
27 22 31:8 / /mnt/sync rw,relatime - jffs2 /dev/mtdblock8 rw,sync,dirsync,lazytime,compr=zlib
";

    #[test]
    fn finds_the_read_write_jffs2_of_the_partition() {
        assert_eq!(
            jffs2_rw_mount(TABLE, 5),
            Some((PathBuf::from("/overlay"), MountFlags::NOATIME))
        );
        // The remounts repeat the mount's own flags: else they come back cleared.
        assert_eq!(
            jffs2_rw_mount(TABLE, 6),
            Some((
                PathBuf::from("/mnt/my data"),
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RELATIME
            ))
        );
        // And the superblock's, which a remount clears as well.
        assert_eq!(
            jffs2_rw_mount(TABLE, 8),
            Some((
                PathBuf::from("/mnt/sync"),
                MountFlags::RELATIME | MountFlags::SYNCHRONOUS | MountFlags::LAZYTIME
            ))
        );
        // Read-only already, another filesystem, or not mounted: nothing to freeze.
        assert_eq!(jffs2_rw_mount(TABLE, 7), None);
        assert_eq!(jffs2_rw_mount(TABLE, 3), None);
        assert_eq!(jffs2_rw_mount(TABLE, 9), None);
        assert_eq!(jffs2_rw_mount("garbage line\n\n", 5), None);
    }

    #[test]
    fn image_files_have_no_mtd_index() {
        let f = std::env::temp_dir().join(format!("snapshot-mounts-{}", std::process::id()));
        std::fs::write(&f, b"x").expect("write");
        assert_eq!(mtd_index(&f), None);
        let _ = std::fs::remove_file(&f);
        assert_eq!(mtd_index(Path::new("/dev/null")), None);
    }
}
