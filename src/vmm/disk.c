// SPDX-License-Identifier: MIT
/*
 * disk.c - the disk image behind a block device (see disk.h).
 *
 * The image is opened once, read-write and close-on-exec; a second
 * descriptor with O_DIRECT serves the requests whose buffers and offset are
 * aligned (gmem_io_target_file picks per call). A file whose size is not a
 * whole number of sectors is served to its last whole sector.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"
#include "vmm_internal.h"

static int gv_disk_size(int fd, const char *path, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		gv_set_error("disk image %s: %s", path, strerror(errno));
		return -errno;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0) {
			gv_set_error("disk image %s: BLKGETSIZE64: %s", path, strerror(errno));
			return -errno;
		}
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		gv_set_error("disk image %s: not a regular file or block device", path);
		return -EINVAL;
	}
	*size = (uint64_t)st.st_size;
	return 0;
}

static int gv_disk_open_image(struct gv_disk *d, const char *path, uint64_t *size)
{
	int ret;

	d->fd = open(path, O_RDWR | O_CLOEXEC);
	if (d->fd < 0) {
		ret = -errno;
		gv_set_error("disk image %s: %s", path, strerror(errno));
		return ret;
	}
	ret = gv_disk_size(d->fd, path, size);
	if (ret)
		return ret;
	/* Not every filesystem takes O_DIRECT (EINVAL): then buffered only. */
	d->dfd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	ret = gmem_io_target_file(&d->t, d->fd, d->dfd);
	if (ret)
		gv_set_error("disk image %s: %s", path, gmem_strerror(ret));
	return ret;
}

int gv_disk_open(struct gv_disk *d, const char *image, const struct gmem_io_target *target,
		 uint64_t sectors)
{
	uint64_t size = 0;
	int ret;

	memset(d, 0, sizeof(*d));
	d->fd = d->dfd = -1;
	if (!image == !target || (target && !sectors)) {
		gv_set_error("disk: give an image, or a target with a capacity");
		return -EINVAL;
	}
	if (image) {
		ret = gv_disk_open_image(d, image, &size);
		if (ret) {
			gv_disk_close(d);
			return ret;
		}
	} else {
		d->t = *target;
	}
	d->sectors = sectors ? sectors : size / GV_DISK_SECTOR;
	return 0;
}

void gv_disk_close(struct gv_disk *d)
{
	if (d->dfd >= 0)
		close(d->dfd);
	if (d->fd >= 0)
		close(d->fd);
	d->fd = d->dfd = -1;
}

int64_t gv_disk_rw(struct gv_disk *d, struct gmem_io *io, enum gmem_io_path path, bool write,
		   const struct gmem_io_seg *segs, unsigned nsegs, uint64_t sector,
		   uint64_t *done)
{
	struct gmem_io_req r = {
		.dir = write ? GMEM_IO_WRITE : GMEM_IO_READ,
		.path = path,
		.nsegs = nsegs,
		.segs = segs,
		.target = &d->t,
		.off = sector * GV_DISK_SECTOR,
	};
	int64_t n = gmem_io_rw(io, &r);

	*done = r.done;
	return n;
}
