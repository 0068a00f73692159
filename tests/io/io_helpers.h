/* SPDX-License-Identifier: MIT */
/*
 * io_helpers.h - helpers of the I/O suites (suite "io"): guest bytes read
 * and written whatever the page states, checksums that print both sides,
 * and a snapshot of every page's state and the pin/kmap counts so a test can
 * say "as it found it" in one call.
 */
#ifndef TH_IO_HELPERS_H
#define TH_IO_HELPERS_H

#include <stdint.h>
#include <sys/uio.h>

#include "helpers.h"

#define IO_MEM (16 * TH_MIB)

/* Guest bytes through temporary mappings (any state). */
void io_guest_write(struct gmem *g, uint64_t gpa, const void *buf, uint64_t len);
void io_guest_read(struct gmem *g, uint64_t gpa, void *buf, uint64_t len);
/* Fill the whole memory with a pattern from @seed (guard bytes). */
void io_guest_fill(struct gmem *g, uint32_t seed);
void io_rand_bytes(void *buf, uint64_t len, uint64_t seed);
uint64_t io_fnv(const void *buf, uint64_t len);

/* The bytes of @segs, concatenated, read from the guest. */
void io_gather(struct gmem *g, const struct gmem_io_seg *segs, unsigned n, uint8_t *out);
uint64_t io_total(const struct gmem_io_seg *segs, unsigned n);

/* got == want over @len bytes: fails printing both checksums and the first
 * differing byte. */
void io_expect_bytes(const char *what, const uint8_t *got, const uint8_t *want,
		     uint64_t len);

/* Every page's state plus the pinned/kmapped/shared counts. */
struct io_picture {
	uint8_t *state;
	uint64_t npages, shared, pinned, kmapped;
};
struct io_picture io_picture(const struct gmem *g);
void io_expect_picture(const char *when, const struct io_picture *before,
		       const struct gmem *g);
void io_picture_free(struct io_picture *p);

/* A context without calibration (fast); skips nothing. */
struct gmem_io *io_ctx(struct gmem *g, uint64_t pool, uint32_t slot, unsigned flags);

extern const enum gmem_io_path io_paths[4];

#endif /* TH_IO_HELPERS_H */
