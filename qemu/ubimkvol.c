// SPDX-License-Identifier: GPL-2.0-only
// Part of snapinit (GPL-2.0-only, as the rest of the repository): a tiny `ubimkvol` for the
// QEMU guests, whose busybox has no UBI applets. Creates one dynamic UBI volume with the
// UBI_IOCMKVOL ioctl of the UBI device's control node.
//
//   ubimkvol UBI_DEV NAME [BYTES|max]     e.g. ubimkvol /dev/ubi0 rootfs_data max
//
// BYTES is rounded up to whole LEBs by the kernel; `max` (the default) takes every free LEB
// (the device's avail_eraseblocks x its LEB size, read from /sys/class/ubi/ubiN/). Prints
// "ubimkvol: volume ID <id> \"<name>\" <bytes> bytes on <dev>" and exits 0, or an error
// and 1. Built static on the host (qemu/build.sh) and put into the guest root as
// /sbin/ubimkvol.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <mtd/ubi-user.h>

// One decimal number from /sys/class/ubi/ubi<num>/<attr>; -1 on any error.
static long long sys_num(int ubi_num, const char *attr)
{
	char path[96];
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/ubi/ubi%d/%s", ubi_num, attr);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%lld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	struct ubi_mkvol_req req;
	const char *dev, *name, *size = "max";
	long long bytes, leb, avail;
	struct stat st;
	int fd, ubi_num;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: ubimkvol UBI_DEV NAME [BYTES|max]\n");
		return 2;
	}
	dev = argv[1];
	name = argv[2];
	if (argc == 4)
		size = argv[3];
	if (strlen(name) > UBI_MAX_VOLUME_NAME) {
		fprintf(stderr, "ubimkvol: name longer than %d bytes\n", UBI_MAX_VOLUME_NAME);
		return 1;
	}

	fd = open(dev, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "ubimkvol: %s: %s\n", dev, strerror(errno));
		return 1;
	}
	// The control node of UBI device N is char major:0 and /sys/class/ubi/ubiN/dev says
	// "major:0"; its minor numbers are volume IDs + 1. The device number is what sysfs
	// names by, so find N by matching the node's dev_t rather than parsing its path.
	ubi_num = -1;
	for (int n = 0; n < 32 && ubi_num < 0; n++) {
		char path[64], buf[32];
		unsigned int maj, min;
		FILE *f;

		snprintf(path, sizeof(path), "/sys/class/ubi/ubi%d/dev", n);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f) && sscanf(buf, "%u:%u", &maj, &min) == 2 &&
		    makedev(maj, min) == st.st_rdev)
			ubi_num = n;
		fclose(f);
	}
	if (ubi_num < 0) {
		fprintf(stderr, "ubimkvol: %s is not a UBI device control node\n", dev);
		return 1;
	}

	leb = sys_num(ubi_num, "eraseblock_size");
	avail = sys_num(ubi_num, "avail_eraseblocks");
	if (leb <= 0 || avail < 0) {
		fprintf(stderr, "ubimkvol: cannot read /sys/class/ubi/ubi%d/\n", ubi_num);
		return 1;
	}
	if (strcmp(size, "max") == 0) {
		bytes = avail * leb;
	} else {
		char *end;

		bytes = strtoll(size, &end, 0);
		if (*end || bytes <= 0) {
			fprintf(stderr, "ubimkvol: bad size '%s'\n", size);
			return 2;
		}
	}
	if (bytes <= 0) {
		fprintf(stderr, "ubimkvol: ubi%d has no free LEBs\n", ubi_num);
		return 1;
	}

	memset(&req, 0, sizeof(req));
	req.vol_id = UBI_VOL_NUM_AUTO;
	req.alignment = 1;
	req.bytes = bytes;
	req.vol_type = UBI_DYNAMIC_VOLUME;
	req.name_len = strlen(name);
	memcpy(req.name, name, req.name_len); // NUL-terminated by the memset
	if (ioctl(fd, UBI_IOCMKVOL, &req) < 0) {
		fprintf(stderr, "ubimkvol: UBI_IOCMKVOL \"%s\" (%lld bytes) on %s: %s\n", name, bytes,
			dev, strerror(errno));
		return 1;
	}
	close(fd);
	printf("ubimkvol: volume ID %d \"%s\" %lld bytes on %s\n", req.vol_id, name, bytes, dev);
	return 0;
}
