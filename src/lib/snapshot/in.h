/* SPDX-License-Identifier: MIT */
/*
 * in.h - a snapshot file read front to back with direct I/O, into a ring
 * that its readers use in place (in.c).
 */
#ifndef GM_SNAP_IN_H
#define GM_SNAP_IN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ring size and read size. The bytes held (from the lower of the parser's
 * last request and the loaders' hold) up to the end of a request may span
 * GM_IN_MAX bytes: restore.c's queued jobs and one more chunk fit. One
 * request is at most GM_IN_SPILL bytes: a chunk header, or a payload of
 * up to ZSTD_compressBound(GM_SNAP_CHUNK_MAX) bytes. */
#define GM_IN_RING    (16u << 20)
#define GM_IN_BLOCK   (1u << 20)
#define GM_IN_MAX     (GM_IN_RING - 2 * GM_IN_BLOCK)
#define GM_IN_SPILL   (GM_IN_BLOCK + (64u << 10))
#define GM_IN_SLOTS   (GM_IN_RING / GM_IN_BLOCK)
/* Reads in flight: one thread each. One was not enough to keep the disk
 * busy while the loaders kept both CPUs busy: each read waited for a CPU
 * before the next could start. 1 MiB reads, four in flight, read fastest
 * here (1.1-1.9 GB/s; 4 MiB reads, two in flight: 1.0-1.4). */
#define GM_IN_THREADS 4
/* Smaller files are read through the page cache: setting up the ring and
 * its threads costs about what direct reads save on them. Restoring an
 * 11 MiB file took 14.6 ms direct against 13.7 buffered, 43 MiB 36.4
 * against 37.9, 85 MiB (8 GiB at 1 %) 88 against 99 (means of 8-12
 * interleaved rounds, cold cache; with the ring in shmem pages, before it
 * went to huge pages, 11 MiB took 28-43 ms direct against 18-22). */
#define GM_IN_MIN_FILE (64ull << 20)
/* GM_IN_MIN_FILE unless a test lowers it; rings opened so far (tests). */
extern uint64_t gm_in_min_file;
extern unsigned long gm_in_opened;

struct gm_in {
	int fd;                 /* the file, O_DIRECT                          */
	uint64_t size;          /* its size                                    */
	uint8_t *map;           /* the mapping that holds the ring             */
	size_t map_len;
	uint8_t *ring;          /* GM_IN_RING bytes, then GM_IN_SPILL more that
				 * repeat its start: any request is contiguous */
	pthread_t thread[GM_IN_THREADS];        /* read ahead                   */
	unsigned nthreads;
	pthread_mutex_t mu;
	pthread_cond_t room;    /* readers: lo moved far enough, or stop       */
	pthread_cond_t data;    /* the parser: hi or err changed               */
	unsigned room_waiting;  /* readers waiting on room                     */
	bool data_waiting;      /* the parser waits on data                    */
	uint64_t hi;            /* file bytes [0, hi) have been read            */
	uint64_t next;          /* the next block to read starts here          */
	uint64_t slot_done[GM_IN_SLOTS];        /* per ring slot: 1 + the block
						 * read into it, 0 if none    */
	uint64_t walk_lo;       /* the parser needs nothing before this        */
	uint64_t jobs_lo;       /* nor do the loaders: bytes before the lower
				 * of the two may be overwritten              */
	int err;                /* the reading thread's failure (-errno)        */
	bool stop;
};

/* Start reading @path (@size bytes) with direct I/O: 0, -EOPNOTSUPP when
 * the file system has no direct I/O (read it buffered then), or -errno;
 * on failure there is nothing to close. */
int gm_in_open(struct gm_in *in, int fd, uint64_t size);
void gm_in_close(struct gm_in *in);

/* File bytes [@off, @off + @n) at the returned address, waiting for them to
 * be read; NULL and *@err on a read error. Called by the parser, which
 * needs nothing before @off from now on. @n <= GM_IN_SPILL, @off + @n <=
 * the file's size, and @off + @n - min(@off, the loaders' hold) <=
 * GM_IN_MAX. The bytes stay there while the parser or the loaders (see
 * gm_in_jobs_need) need them. */
const uint8_t *gm_in_get(struct gm_in *in, uint64_t off, size_t n, int *err);

/* The loaders need nothing before @lo (UINT64_MAX: nothing at all). */
void gm_in_jobs_need(struct gm_in *in, uint64_t lo);

#endif /* GM_SNAP_IN_H */
