// SPDX-License-Identifier: MIT
/*
 * out.c - a snapshot file being written, front to back.
 *
 * Model: a snapshot is written once and read back, if ever, by a restore
 * that may be in another process much later. Keeping it in the page cache
 * costs a copy of every byte into fresh page-cache pages and, for the
 * final fsync, writeback of all of them; neither helps anyone. So the file
 * is written with direct I/O where its file system supports it (statx
 * STATX_DIOALIGN), as QEMU's mapped-ram migration to a file does with its
 * direct-io option. On this machine (ext4 on virtio-blk) 2 GiB went to the
 * disk at 1.9 GB/s with 1 MiB direct writes and fsync, and at 0.28-1.6
 * GB/s through the page cache (docs/snapshot-perf.md).
 *
 * Direct writes want file offset, length and buffer aligned; the chunks of
 * a snapshot are not. The stream therefore holds back the unaligned tail
 * of each buffer it is given (the carry: off % GM_OUT_ALIGN bytes) and puts
 * it in front of the next one, in the room the caller leaves there. A
 * caller that places its data gm_out_phase() bytes after an aligned address
 * gets it written where it lies; data anywhere else is moved first, which
 * costs a copy in cache and changes nothing in the file. The last carry is
 * written through the page cache by gm_out_finish.
 *
 * Buffered (asked for, or no direct I/O on this file system): writes go to
 * the page cache, and each stretch written is handed to the device at once
 * (sync_file_range), the stream waiting for what is more than GM_WB_WINDOW
 * behind, so the device works while the save goes on rather than all at
 * the final fsync.
 *
 * A direct write refused with EINVAL (a file system whose statx promised
 * more than it does) turns the stream buffered for good and is done again
 * buffered: slower, never wrong. Every write goes through gm_sys_write, so
 * tests can fail or slow down any one of them.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "out.h"
#include "sys.h"

/* Buffered streaming writeback: start it every GM_WB_STEP bytes written, and
 * keep at most GM_WB_WINDOW bytes in flight. */
#define GM_WB_STEP   (4ull << 20)
#define GM_WB_WINDOW (32ull << 20)

bool gm_out_direct_ok(int fd)
{
	struct statx sx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) ||
	    !(sx.stx_mask & STATX_DIOALIGN))
		return false;
	/* Both are powers of two, 0 when the file has no direct I/O. */
	return sx.stx_dio_offset_align && sx.stx_dio_offset_align <= GM_OUT_ALIGN &&
	       sx.stx_dio_mem_align && sx.stx_dio_mem_align <= GM_OUT_ALIGN;
}

/* Turn O_DIRECT on or off for the file; 0 or -errno. */
static int gm_out_set_direct(struct gm_out *o, bool on)
{
	int fl = fcntl(o->fd, F_GETFL);

	if (fl < 0)
		return -errno;
	fl = on ? fl | O_DIRECT : fl & ~O_DIRECT;
	return fcntl(o->fd, F_SETFL, fl) ? -errno : 0;
}

int gm_out_init(struct gm_out *o, int fd, const char *name, bool direct)
{
	*o = (struct gm_out){ .fd = fd, .name = name };
	if (!direct || !gm_out_direct_ok(fd))
		return 0;
	o->carry = gm_sys_guarded_alloc(GM_OUT_ALIGN);   /* a tail of page data */
	if (!o->carry)
		return -ENOMEM;
	if (gm_out_set_direct(o, true)) {
		gm_sys_guarded_free(o->carry);         /* buffered, then */
		o->carry = NULL;
		return 0;
	}
	o->direct = true;
	return 0;
}

void gm_out_destroy(struct gm_out *o)
{
	gm_sys_guarded_free(o->carry);
	o->carry = NULL;
}

size_t gm_out_phase(const struct gm_out *o)
{
	return o->direct ? o->off % GM_OUT_ALIGN : 0;
}

/* A direct write was refused as such: go on buffered. 0 or -errno. */
static int gm_out_fall_back(struct gm_out *o)
{
	int ret = gm_out_set_direct(o, false);

	if (ret) {
		gm_set_error("snapshot: turning off direct I/O on %s: %s", o->name,
			     strerror(-ret));
		return ret;
	}
	o->direct = false;
	return 0;
}

/* Write @len bytes of @buf at file offset @at (the file's position). */
static int gm_out_write(struct gm_out *o, const uint8_t *buf, size_t len, uint64_t at)
{
	size_t put = 0;

	while (put < len) {
		ssize_t n = gm_sys_write(o->fd, buf + put, len - put);
		int err = errno, ret;

		if (n < 0 && err == EINTR)
			continue;
		if (n < 0 && err == EINVAL && o->direct) {
			ret = gm_out_fall_back(o);
			if (ret)
				return ret;
			continue;
		}
		if (n < 0) {
			gm_set_error("snapshot: writing %s at offset %llu: %s", o->name,
				     (unsigned long long)(at + put), strerror(err));
			return -err;
		}
		put += (size_t)n;
		/* A short direct write may stop off alignment: go on buffered. */
		if (o->direct && put < len && put % GM_OUT_ALIGN) {
			ret = gm_out_fall_back(o);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* sync_file_range() on [@from, @to): 0, or -errno with the message set.
 * Its errors are the device's and are not reported again by fsync, so they
 * fail the save; a file system without it just loses the streaming. */
static int gm_out_sync_range(struct gm_out *o, uint64_t from, uint64_t to, unsigned how)
{
	int err;

	if (o->wb_off || to <= from ||
	    !sync_file_range(o->fd, (off_t)from, (off_t)(to - from), how))
		return 0;
	err = errno;
	if (err == EINVAL || err == ESPIPE || err == ENOSYS || err == EOPNOTSUPP) {
		o->wb_off = true;
		return 0;
	}
	gm_set_error("snapshot: writing back %s at offset %llu: %s", o->name,
		     (unsigned long long)from, strerror(err));
	return -err;
}

/* Buffered: hand what was written since the last call to the device, and
 * wait for what is more than GM_WB_WINDOW behind the end of the file. */
static int gm_out_writeback(struct gm_out *o)
{
	int ret;

	if (o->off - o->wb_started < GM_WB_STEP)
		return 0;
	ret = gm_out_sync_range(o, o->wb_started, o->off, SYNC_FILE_RANGE_WRITE);
	if (ret)
		return ret;
	o->wb_started = o->off;
	if (o->wb_started - o->wb_waited <= GM_WB_WINDOW)
		return 0;
	ret = gm_out_sync_range(o, o->wb_waited, o->wb_started - GM_WB_WINDOW,
				SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
				SYNC_FILE_RANGE_WAIT_AFTER);
	if (!ret)
		o->wb_waited = o->wb_started - GM_WB_WINDOW;
	return ret;
}

/* Direct: carry + @data as whole blocks, keeping the new tail back. */
static int gm_out_put_direct(struct gm_out *o, uint8_t *room, uint8_t *data, size_t len)
{
	size_t carry = o->off % GM_OUT_ALIGN, total = carry + len, whole;
	uint64_t at = o->off - carry;
	int ret;

	if (data != room + carry)
		memmove(room + carry, data, len);
	memcpy(room, o->carry, carry);
	whole = total / GM_OUT_ALIGN * GM_OUT_ALIGN;      /* direct on entry */
	ret = gm_out_write(o, room, whole, at);
	if (ret)
		return ret;
	if (!o->direct && whole < total) {
		/* Fell back midway: no carry in buffered mode. */
		ret = gm_out_write(o, room + whole, total - whole, at + whole);
		if (ret)
			return ret;
		whole = total;
	}
	memcpy(o->carry, room + whole, total - whole);
	o->off += len;
	return 0;
}

int gm_out_put(struct gm_out *o, uint8_t *room, uint8_t *data, size_t len)
{
	int ret;

	assert(data >= room && data < room + GM_OUT_ALIGN);
	if (o->direct)
		return gm_out_put_direct(o, room, data, len);
	ret = gm_out_write(o, data, len, o->off);
	if (ret)
		return ret;
	o->off += len;
	return gm_out_writeback(o);
}

int gm_out_finish(struct gm_out *o)
{
	size_t carry = gm_out_phase(o);
	int ret;

	if (!o->direct || !carry)
		return 0;
	/* Less than a block: through the page cache, into a page of its own. */
	ret = gm_out_fall_back(o);
	if (!ret)
		ret = gm_out_write(o, o->carry, carry, o->off - carry);
	return ret;
}
