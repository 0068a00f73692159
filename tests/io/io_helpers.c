// SPDX-License-Identifier: MIT
/*
 * io_helpers.c - see io_helpers.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io_helpers.h"

const enum gmem_io_path io_paths[4] = { GMEM_IO_INPLACE, GMEM_IO_BOUNCE, GMEM_IO_KMAP,
					GMEM_IO_AUTO };

static void io_guest_rw(struct gmem *g, uint64_t gpa, uint8_t *buf, uint64_t len, bool wr)
{
	while (len) {
		uint64_t in = gpa & (TH_PAGE - 1), n = TH_PAGE - in < len ? TH_PAGE - in : len;
		uint8_t *p = gmem_kmap(g, gpa);

		cr_assert_not_null(p, "gmem_kmap(%#llx): %s", (unsigned long long)gpa,
				   strerror(errno));
		if (wr)
			memcpy(p, buf, n);
		else
			memcpy(buf, p, n);
		gmem_kunmap(g, p);
		gpa += n;
		buf += n;
		len -= n;
	}
}

void io_guest_write(struct gmem *g, uint64_t gpa, const void *buf, uint64_t len)
{
	io_guest_rw(g, gpa, (uint8_t *)buf, len, true);
}

void io_guest_read(struct gmem *g, uint64_t gpa, void *buf, uint64_t len)
{
	io_guest_rw(g, gpa, buf, len, false);
}

void io_rand_bytes(void *buf, uint64_t len, uint64_t seed)
{
	uint8_t *b = buf;
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (uint64_t i = 0; i < len; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		b[i] = (uint8_t)((x * 0x2545f4914f6cdd1dull) >> 56);
	}
}

void io_guest_fill(struct gmem *g, uint32_t seed)
{
	uint8_t *buf = malloc(TH_MIB);

	cr_assert_not_null(buf);
	for (uint64_t at = 0; at < IO_MEM; at += TH_MIB) {
		io_rand_bytes(buf, TH_MIB, seed + at);
		io_guest_write(g, at, buf, TH_MIB);
	}
	free(buf);
}

uint64_t io_fnv(const void *buf, uint64_t len)
{
	const uint8_t *b = buf;
	uint64_t h = 0xcbf29ce484222325ull;

	for (uint64_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

uint64_t io_total(const struct gmem_io_seg *segs, unsigned n)
{
	uint64_t t = 0;

	for (unsigned i = 0; i < n; i++)
		t += segs[i].len;
	return t;
}

void io_gather(struct gmem *g, const struct gmem_io_seg *segs, unsigned n, uint8_t *out)
{
	for (unsigned i = 0; i < n; i++) {
		io_guest_read(g, segs[i].gpa, out, segs[i].len);
		out += segs[i].len;
	}
}

void io_expect_bytes(const char *what, const uint8_t *got, const uint8_t *want,
		     uint64_t len)
{
	uint64_t hg = io_fnv(got, len), hw = io_fnv(want, len), i = 0;

	if (hg == hw && !memcmp(got, want, len))
		return;
	while (i < len && got[i] == want[i])
		i++;
	cr_assert_fail("%s: checksum %#018llx, want %#018llx over %llu bytes; "
		       "first difference at byte %llu: got %#x, want %#x",
		       what, (unsigned long long)hg, (unsigned long long)hw,
		       (unsigned long long)len, (unsigned long long)i,
		       i < len ? got[i] : 0, i < len ? want[i] : 0);
}

struct io_picture io_picture(const struct gmem *g)
{
	struct gmem_stats st = th_stats(g);
	struct io_picture p = { .npages = st.size / TH_PAGE, .shared = st.shared_pages,
				.pinned = st.pinned_pages, .kmapped = st.kmapped_pages };

	p.state = malloc(p.npages);
	cr_assert_not_null(p.state);
	for (uint64_t i = 0; i < p.npages; i++)
		p.state[i] = (uint8_t)gmem_state(g, i * TH_PAGE);
	return p;
}

void io_expect_picture(const char *when, const struct io_picture *before,
		       const struct gmem *g)
{
	struct io_picture now = io_picture(g);

	for (uint64_t i = 0; i < now.npages; i++)
		cr_assert_eq(now.state[i], before->state[i],
			     "%s: page %#llx is %s, was %s", when,
			     (unsigned long long)(i * TH_PAGE),
			     now.state[i] ? "shared" : "private",
			     before->state[i] ? "shared" : "private");
	cr_assert_eq(now.shared, before->shared, "%s: %llu shared pages, were %llu", when,
		     (unsigned long long)now.shared, (unsigned long long)before->shared);
	cr_assert_eq(now.pinned, before->pinned, "%s: %llu pinned pages, were %llu", when,
		     (unsigned long long)now.pinned, (unsigned long long)before->pinned);
	cr_assert_eq(now.kmapped, before->kmapped, "%s: %llu kmapped pages, were %llu",
		     when, (unsigned long long)now.kmapped,
		     (unsigned long long)before->kmapped);
	io_picture_free(&now);
}

void io_picture_free(struct io_picture *p)
{
	free(p->state);
	p->state = NULL;
}

struct gmem_io *io_ctx(struct gmem *g, uint64_t pool, uint32_t slot, unsigned flags)
{
	struct gmem_io_config cfg = { .pool_size = pool, .slot_size = slot,
				      .flags = flags | GMEM_IO_CTX_NO_CALIBRATE };
	struct gmem_io *io = NULL;
	int ret = gmem_io_create(g, &cfg, &io);

	cr_assert_eq(ret, 0, "gmem_io_create = %d (%s)", ret, gmem_strerror(ret));
	return io;
}
