//! Finding the partition by name: an MTD partition on NOR units, a UBI volume on NAND units.

use crate::device::DevicePath;
use crate::{mtd, ubi};

/// The device holding the partition called `name`, given the text of /proc/mtd: its MTD
/// partition, else the UBI volume of that name. gluebi lists every UBI volume in /proc/mtd
/// too; such an entry stands for the volume, so the volume's own device is taken (its MTD view
/// programs whole pages and cannot take the marks).
pub fn partition(proc_mtd: &[u8], name: &str) -> Option<DevicePath> {
    let index = mtd::find_partition(proc_mtd, name);
    if let Some(i) = index.filter(|&i| !mtd::is_ubi_volume(i)) {
        return Some(mtd::dev_path(i));
    }
    // A gluebi entry whose volume is gone from sysfs: `mtd::open` refuses it by name.
    ubi::find_volume(name).or_else(|| index.map(mtd::dev_path))
}
