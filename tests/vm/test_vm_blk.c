// SPDX-License-Identifier: MIT
/*
 * test_vm_blk.c - the paravirtual block device (src/vmm/pvblk.c) under the
 * blk guest (guests/blk.c), on the VM's RAM: the guest's checksum-verified
 * workload through each I/O path against a temporary disk image, the image
 * checked from the host, the gmem and gmem_io counters after the run, and
 * device-level failures (an image shorter than the disk, an injected EIO)
 * reaching the guest as a request status while its buffers stay private.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "pvblk.h"
#include "vt.h"

#define VT_BLK_SECTORS 2048u            /* 1 MiB image                      */
#define VT_BLK_FILL    0xee             /* image bytes the guest never writes */
#define VT_BLK_SEED    0x676d656d2d626c6bull   /* guests/blk.c: BLK_SEED     */

/* Sectors the blk guest writes, case by case (guests/blk.c). */
static const struct { uint32_t sector, count; } vt_blk_written[] = {
	{ 0, 1 }, { 8, 8 }, { 16, 11 }, { 32, 4 }, { 40, 16 },
};
#define VT_BLK_CASES (sizeof(vt_blk_written) / sizeof(vt_blk_written[0]))

/* guests/blk.c: the word at disk byte offset @off. */
static uint64_t vt_blk_pattern(uint64_t off)
{
	return (off ^ VT_BLK_SEED) * 0x9e3779b97f4a7c15ull;
}

static double vt_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A temporary image of @bytes filled with VT_BLK_FILL; the path in @path. */
static void vt_blk_image(char *path, size_t size, uint64_t bytes)
{
	uint8_t *buf = malloc(bytes ? bytes : 1);
	int fd;

	snprintf(path, size, "/tmp/gmem-blk-XXXXXX");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
	cr_assert_not_null(buf);
	memset(buf, VT_BLK_FILL, bytes);
	cr_assert_eq(pwrite(fd, buf, bytes, 0), (ssize_t)bytes, "writing %s: %s", path,
		     strerror(errno));
	close(fd);
	free(buf);
}

/* Expect in @img the guest's pattern over the first @written[i] bytes of
 * each case's sectors and VT_BLK_FILL everywhere else. */
static void vt_blk_expect_image(const uint8_t *img, uint64_t len, const uint64_t *written)
{
	for (uint64_t off = 0; off < len; off += 8) {
		uint64_t got, want = 0x0101010101010101ull * VT_BLK_FILL;

		for (unsigned c = 0; c < VT_BLK_CASES; c++) {
			uint64_t lo = (uint64_t)vt_blk_written[c].sector * GV_BLK_SECTOR;

			if (off >= lo && off < lo + written[c])
				want = vt_blk_pattern(off);
		}
		memcpy(&got, img + off, sizeof(got));
		cr_assert_eq(got, want, "image word at byte %" PRIu64 " (sector %" PRIu64
			     "): %#018" PRIx64 ", want %#018" PRIx64, off, off / GV_BLK_SECTOR,
			     got, want);
	}
}

static void vt_blk_all_written(uint64_t *written)
{
	for (unsigned c = 0; c < VT_BLK_CASES; c++)
		written[c] = (uint64_t)vt_blk_written[c].count * GV_BLK_SECTOR;
}

static void vt_blk_expect_file(const char *path, const uint64_t *written)
{
	size_t len;
	uint8_t *img = vt_read(path, &len);

	vt_blk_expect_image(img, len, written);
	free(img);
}

/* After any blk run: only the ring page shared, nothing pinned or mapped,
 * every gmem conversion either the guest's share of the ring or made by
 * in-place I/O, and no I/O sharing left behind. */
static void vt_blk_expect_memory(struct gv_vm *vm, const struct gv_blk_stats *bs)
{
	struct gmem_stats st = th_stats(gv_vm_gmem(vm));

	TH_EQ(st.shared_pages, 1);
	TH_EQ(st.private_pages, VT_MEM / TH_PAGE - 1);
	TH_EQ(st.pinned_pages, 0);
	TH_EQ(st.kmapped_pages, 0);
	TH_EQ(st.conversions, 1 + bs->io.conversions);
	TH_EQ(bs->io.shared_now, 0);
	TH_EQ(bs->io.deferred, 0);
}

/* A VM running the blk guest with the device on @cfg. */
static struct gv_vm *vt_blk_vm(const struct gv_blk_config *cfg, struct gv_blk **blk)
{
	struct gv_vm *vm = vt_vm("blk", 1, GV_POLICY_CONVERT);
	int ret = gv_blk_attach(vm, cfg, blk);

	cr_assert_eq(ret, 0, "gv_blk_attach(%s) = %d (%s): %s",
		     gmem_io_path_name(cfg->io_path), ret, strerror(-ret), gv_last_error());
	return vm;
}

static void vt_blk_run(struct gv_vm *vm, const char *what, struct gv_result *res)
{
	double t0 = vt_now();
	int ret = gv_vm_run(vm, res);

	cr_assert_eq(ret, 0, "gv_vm_run = %d: %s", ret, gv_last_error());
	cr_log_info("blk guest, %s: ran in %.3f s", what, vt_now() - t0);
}

static void vt_blk_workload(enum gmem_io_path path)
{
	struct gv_blk_config cfg = { .io_path = path };
	uint64_t written[VT_BLK_CASES];
	struct gv_blk_stats bs;
	struct gv_result res;
	struct gv_blk *blk;
	struct gv_vm *vm;
	char img[64];

	vt_need_kvm();
	vt_blk_image(img, sizeof(img), VT_BLK_SECTORS * GV_BLK_SECTOR);
	cfg.image = img;
	vm = vt_blk_vm(&cfg, &blk);
	vt_blk_run(vm, gmem_io_path_name(path), &res);
	vt_expect_exit(vm, &res, 0);
	vt_console_has(vm, "blk: disk of 2048 sectors, ring of 4 at ");
	vt_console_has(vm, "ok   512 B: 512 B at sector 0, 1 -> 1 segment(s)");
	vt_console_has(vm, "ok   4 KiB: 4096 B at sector 8, 1 -> 1 segment(s)");
	vt_console_has(vm, "ok   3 segments: 5632 B at sector 16, 3 -> 2 segment(s)");
	vt_console_has(vm, "ok   spanning pages: 2048 B at sector 32, 1 -> 1 segment(s)");
	vt_console_has(vm, "ok   8 KiB: 8192 B at sector 40, 1 -> 1 segment(s)");
	vt_console_has(vm, "ok   last sector: sector 2047 reads\n");
	vt_console_has(vm, "ok   past the end: refused (status 2, error -22), buffer private\n");
	vt_console_has(vm, "blk: 12 requests, 0 failure(s)\n");

	vt_blk_all_written(written);
	vt_blk_expect_file(img, written);

	cr_assert_eq(gv_blk_stats(blk, &bs), 0);
	TH_EQ(bs.sectors, VT_BLK_SECTORS);
	TH_EQ(bs.status, 0);
	TH_EQ(bs.writes, 5);
	TH_EQ(bs.reads, 6);
	TH_EQ(bs.bytes_written, 20480);
	TH_EQ(bs.bytes_read, 20480 + 512);
	TH_EQ(bs.ioerrs, 0);
	TH_EQ(bs.badreqs, 1);
	TH_EQ(bs.io.errors, 0);
	TH_EQ(bs.io.requests[GMEM_IO_AUTO], 0);
	if (path == GMEM_IO_AUTO) {
		TH_EQ(bs.io.requests[GMEM_IO_INPLACE] + bs.io.requests[GMEM_IO_BOUNCE] +
		      bs.io.requests[GMEM_IO_KMAP], 11);
		cr_assert_gt(bs.io.calibrations, 0, "auto ran uncalibrated");
		cr_log_info("auto chose: inplace %" PRIu64 ", bounce %" PRIu64 ", kmap %" PRIu64,
			    bs.io.requests[GMEM_IO_INPLACE], bs.io.requests[GMEM_IO_BOUNCE],
			    bs.io.requests[GMEM_IO_KMAP]);
	} else {
		TH_EQ(bs.io.requests[path], 11);
		TH_EQ(bs.io.calibrations, 0);
	}
	/* Only in-place I/O converts: 2 per whole page of a request's buffer
	 * (4 KiB: 1+1 pages, 3 segments: 1+0, 8 KiB: 2+2, as one run each). */
	if (path == GMEM_IO_INPLACE)
		TH_EQ(bs.io.conversions, 10);
	else if (path != GMEM_IO_AUTO)
		TH_EQ(bs.io.conversions, 0);
	vt_blk_expect_memory(vm, &bs);
	gv_vm_destroy(vm);
	unlink(img);
}

Test(vm, blk_inplace)
{
	vt_blk_workload(GMEM_IO_INPLACE);
}

Test(vm, blk_bounce)
{
	vt_blk_workload(GMEM_IO_BOUNCE);
}

Test(vm, blk_kmap)
{
	vt_blk_workload(GMEM_IO_KMAP);
}

Test(vm, blk_auto)
{
	vt_blk_workload(GMEM_IO_AUTO);
}

static const enum gmem_io_path vt_blk_paths[] = {
	GMEM_IO_INPLACE, GMEM_IO_BOUNCE, GMEM_IO_KMAP, GMEM_IO_AUTO,
};

/* The device says the disk has 128 sectors; the image ends where the
 * guest's writes end (56 sectors). Reading the last sector comes back
 * short: the guest sees an I/O error, its buffer private. */
Test(vm, blk_image_shorter_than_disk)
{
	vt_need_kvm();
	for (unsigned i = 0; i < sizeof(vt_blk_paths) / sizeof(vt_blk_paths[0]); i++) {
		struct gv_blk_config cfg = { .sectors = 128, .io_path = vt_blk_paths[i] };
		const char *name = gmem_io_path_name(vt_blk_paths[i]);
		uint64_t written[VT_BLK_CASES];
		struct gv_blk_stats bs;
		struct gv_result res;
		struct gv_blk *blk;
		struct gv_vm *vm;
		char img[64];

		vt_blk_image(img, sizeof(img), 56 * GV_BLK_SECTOR);
		cfg.image = img;
		vm = vt_blk_vm(&cfg, &blk);
		vt_blk_run(vm, name, &res);
		vt_expect_exit(vm, &res, 1);
		vt_console_has(vm, "blk: disk of 128 sectors");
		vt_console_has(vm, "ok   8 KiB: 8192 B at sector 40");
		vt_console_has(vm, "FAIL last sector: read status 1 error -5, 0 of 512 B, "
				   "0 page(s) not private\n");
		vt_console_has(vm, "ok   past the end: refused");
		vt_console_has(vm, "blk: 12 requests, 1 failure(s)\n");
		cr_assert_eq(gv_blk_stats(blk, &bs), 0);
		TH_EQ(bs.ioerrs, 1);
		TH_EQ(bs.io.short_transfers, 1);
		TH_EQ(bs.status, 0);
		vt_blk_expect_memory(vm, &bs);
		gv_vm_destroy(vm);

		vt_blk_all_written(written);
		vt_blk_expect_file(img, written);
		unlink(img);
	}
}

/* A memory disk whose device writes fail with EIO in [fail_at, fail_end):
 * a write running into that range moves the bytes before it, then fails. */
struct vt_faulty_disk {
	uint8_t *mem;
	uint64_t len;
	uint64_t fail_at, fail_end;
	unsigned eios;
};

static int64_t vt_faulty_io(void *opaque, enum gmem_io_dir dir, const struct iovec *iov,
			    int iovcnt, uint64_t off)
{
	struct vt_faulty_disk *d = opaque;
	uint64_t moved = 0, end = d->len;

	if (dir == GMEM_IO_WRITE && off >= d->fail_at && off < d->fail_end) {
		d->eios++;
		return -EIO;
	}
	if (dir == GMEM_IO_WRITE && off < d->fail_at)
		end = d->fail_at;
	for (int i = 0; i < iovcnt && off < end; i++) {
		uint64_t n = iov[i].iov_len < end - off ? iov[i].iov_len : end - off;

		if (dir == GMEM_IO_READ)
			memcpy(iov[i].iov_base, d->mem + off, n);
		else
			memcpy(d->mem + off, iov[i].iov_base, n);
		off += n;
		moved += n;
	}
	return (int64_t)moved;
}

/* EIO in the middle of the 3-segment write (after 2048 of its 5632 bytes):
 * the guest gets status IOERR, -EIO and the 2048 bytes that moved; every
 * page of the buffer is private again, whatever the path. */
Test(vm, blk_injected_eio)
{
	vt_need_kvm();
	for (unsigned i = 0; i < sizeof(vt_blk_paths) / sizeof(vt_blk_paths[0]); i++) {
		struct vt_faulty_disk d = { .len = VT_BLK_SECTORS * GV_BLK_SECTOR,
					    .fail_at = 20 * GV_BLK_SECTOR,
					    .fail_end = 27 * GV_BLK_SECTOR };
		struct gmem_io_target t = { .kind = GMEM_IO_CALLBACK, .fn = vt_faulty_io,
					    .opaque = &d };
		struct gv_blk_config cfg = { .target = &t, .sectors = VT_BLK_SECTORS,
					     .io_path = vt_blk_paths[i] };
		const char *name = gmem_io_path_name(vt_blk_paths[i]);
		uint64_t written[VT_BLK_CASES];
		struct gv_blk_stats bs;
		struct gv_result res;
		struct gv_blk *blk;
		struct gv_vm *vm;

		d.mem = malloc(d.len);
		cr_assert_not_null(d.mem);
		memset(d.mem, VT_BLK_FILL, d.len);
		vm = vt_blk_vm(&cfg, &blk);
		vt_blk_run(vm, name, &res);
		vt_expect_exit(vm, &res, 1);
		vt_console_has(vm, "FAIL 3 segments: write status 1 error -5, 2048 of 5632 B, "
				   "0 page(s) not private\n");
		vt_console_has(vm, "ok   spanning pages: 2048 B at sector 32");
		vt_console_has(vm, "ok   last sector: sector 2047 reads\n");
		/* The 3-segment case stops at its write: 11 requests. */
		vt_console_has(vm, "blk: 11 requests, 1 failure(s)\n");
		TH_EQ(d.eios, 1);
		cr_assert_eq(gv_blk_stats(blk, &bs), 0);
		TH_EQ(bs.ioerrs, 1);
		TH_EQ(bs.io.errors, 1);
		TH_EQ(bs.writes, 4);
		vt_blk_expect_memory(vm, &bs);
		gv_vm_destroy(vm);

		vt_blk_all_written(written);
		written[2] = 2048;
		vt_blk_expect_image(d.mem, d.len, written);
		free(d.mem);
	}
}

Test(vm, blk_attach_refusals)
{
	struct gmem_io_target t = { .kind = GMEM_IO_MEMORY };
	struct gv_blk_config both = { .image = "/dev/null", .target = &t, .sectors = 8 };
	struct gv_blk_config none = { .sectors = 8 };
	struct gv_blk_config nosize = { .target = &t };
	struct gv_blk_config badpath = { .target = &t, .sectors = 8, .io_path = 9 };
	struct gv_blk_config missing = { .image = "/nonexistent/gmem-disk.img" };
	struct gv_blk_config mem = { .target = &t, .sectors = 8 };
	struct gv_blk *blk;
	struct gv_vm *vm = vt_vm_any(NULL, 1, GV_POLICY_CONVERT);
	struct gv_result res;

	TH_EQ(gv_blk_attach(vm, &both, &blk), -EINVAL);
	TH_EQ(gv_blk_attach(vm, &none, &blk), -EINVAL);
	TH_EQ(gv_blk_attach(vm, &nosize, &blk), -EINVAL);
	TH_EQ(gv_blk_attach(vm, &badpath, &blk), -EINVAL);
	TH_EQ(gv_blk_attach(vm, &missing, &blk), -ENOENT);
	cr_assert_not_null(strstr(gv_last_error(), "/nonexistent/gmem-disk.img"), "%s",
			   gv_last_error());
	TH_EQ(gv_blk_attach(vm, &mem, &blk), 0);
	TH_EQ(gv_blk_attach(vm, &mem, &blk), -EEXIST);          /* ports taken */
	cr_assert_eq(gv_vm_load_file(vm, vt_guest_path("hello")), 0, "%s", gv_last_error());
	vt_finish(vm, &res);
	mem.port = 0x530;
	TH_EQ(gv_blk_attach(vm, &mem, &blk), -EBUSY);           /* after start */
	gv_vm_destroy(vm);
}
