/* SPDX-License-Identifier: MIT */
/*
 * out.h - a snapshot file being written, front to back (out.c).
 *
 * Direct I/O when the file system offers it, the page cache otherwise; the
 * bytes in the file are the same either way. Callers hand over buffers with
 * GM_OUT_ALIGN bytes of room in front (see gm_out_put), which is where the
 * unaligned tail of the previous buffer goes in direct mode.
 */
#ifndef GM_SNAP_OUT_H
#define GM_SNAP_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Alignment of file offsets, lengths and buffers for direct writes: the
 * page size, which covers every file system's direct I/O alignment up to
 * it (ext4 on this machine: 512) and keeps the last, buffered, write in a
 * page no direct write touched. */
#define GM_OUT_ALIGN 4096u

struct gm_out {
	int fd;
	const char *name;       /* the file, for messages                      */
	uint64_t off;           /* bytes handed over: the file's size at the end */
	bool direct;            /* writes bypass the page cache                 */
	uint8_t *carry;         /* direct: the off % GM_OUT_ALIGN bytes handed
				 * over and not yet written (aligned buffer)    */
	uint64_t wb_started;    /* buffered: bytes handed to writeback          */
	uint64_t wb_waited;     /* buffered: bytes known written to the device  */
	bool wb_off;            /* the file system has no sync_file_range       */
};

/* Start writing the empty file @fd (@name for messages), with direct I/O if
 * @direct and the file system supports it. 0 or -ENOMEM. */
int gm_out_init(struct gm_out *o, int fd, const char *name, bool direct);
void gm_out_destroy(struct gm_out *o);

/* Whether direct I/O with GM_OUT_ALIGN is possible on @fd's file system
 * (reads too: in.c). */
bool gm_out_direct_ok(int fd);

/* Where the next buffer's data should start after a GM_OUT_ALIGN-aligned
 * address to be written without being moved first. */
size_t gm_out_phase(const struct gm_out *o);

/* Append @len bytes at @data. @room is GM_OUT_ALIGN-aligned, @data lies in
 * [@room, @room + GM_OUT_ALIGN), and [@room, @room + GM_OUT_ALIGN + @len) is
 * the caller's to be overwritten: the data may be moved within it, and the
 * carry is placed in front of it. 0, or -errno with the message set. */
int gm_out_put(struct gm_out *o, uint8_t *room, uint8_t *data, size_t len);

/* Write what is still carried; the file is then complete (not synced). */
int gm_out_finish(struct gm_out *o);

#endif /* GM_SNAP_OUT_H */
