// SPDX-License-Identifier: MIT
/*
 * blk.c - a checksum-verified read/write workload on the paravirtual block
 * device (gv_abi.h, src/vmm/pvblk.c), with private data buffers.
 *
 * The guest shares one page for the request ring and nothing else. For
 * each case below it fills private buffers with a pattern (a function of
 * the disk byte offset, so the host can check the image), writes them,
 * reads the sectors back into other private buffers laid out differently,
 * and compares checksums (FNV-1a over 64-bit words) of what it wrote and
 * what it read. After every request it asks the VMM (GV_HC_STATE) whether
 * each page of the request's buffers is still private. Then it reads the
 * disk's last sector (an image shorter than the device's capacity fails
 * here) and posts a request past the end, which the device must refuse.
 *
 * Pattern: the 64-bit word at disk byte offset o is
 * (o ^ BLK_SEED) * 0x9e3779b97f4a7c15 (tests/vm/test_vm_blk.c checks it).
 * Sectors written: 0, 8-15, 16-26, 32-35, 40-55; the disk needs at least
 * BLK_MIN_SECTORS.
 *
 * Console: one "ok"/"FAIL" line per case; exit status: the failures.
 * Cost: ~20 KiB of data each way, word loops: some 50 000 instructions.
 */
#include "rt.h"

#define BLK_SEED        0x676d656d2d626c6bull   /* "gmem-blk" */
#define BLK_MIN_SECTORS 64u
#define BLK_ENTRIES     4u
#define BLK_POISON      0x5a5a5a5a5a5a5a5aull

static uint8_t ring_page[GV_PAGE] GV_ALIGNED_PAGE;     /* shared */
static uint8_t wbuf[4 * GV_PAGE] GV_ALIGNED_PAGE;      /* private */
static uint8_t rbuf[4 * GV_PAGE] GV_ALIGNED_PAGE;      /* private */

static volatile struct gv_blk_ring *const ring = (volatile struct gv_blk_ring *)ring_page;

struct blk_piece {
	uint32_t off, len;      /* in wbuf or rbuf */
};

struct blk_case {
	const char *name;
	uint32_t sector;
	unsigned nw, nr;
	struct blk_piece w[3], r[3];
};

/* Written from one layout, read back into another. */
static const struct blk_case cases[] = {
	{ "512 B", 0, 1, 1, { { 0, 512 } }, { { 0, 512 } } },
	{ "4 KiB", 8, 1, 1, { { 0, 4096 } }, { { 4096, 4096 } } },
	{ "3 segments", 16, 3, 2,
	  { { 512, 1024 }, { 4096, 4096 }, { 3 * 4096 + 1536, 512 } },
	  { { 0, 2048 }, { 2 * 4096, 3584 } } },
	{ "spanning pages", 32, 1, 1, { { 4096 - 1024, 2048 } }, { { 2 * 4096 - 512, 2048 } } },
	{ "8 KiB", 40, 1, 1, { { 4096, 8192 } }, { { 2 * 4096, 8192 } } },
};

static uint32_t blk_in(unsigned reg)
{
	uint32_t v;

	__asm__ volatile("inl %%dx, %%eax" : "=a"(v) : "d"(GV_PORT_BLK + reg) : "memory");
	return v;
}

static void blk_out(unsigned reg, uint32_t v)
{
	__asm__ volatile("outl %%eax, %%dx" : : "a"(v), "d"(GV_PORT_BLK + reg) : "memory");
}

static uint64_t blk_pattern(uint64_t disk_off)
{
	return (disk_off ^ BLK_SEED) * 0x9e3779b97f4a7c15ull;
}

static uint64_t blk_hash(uint64_t h, uint64_t w)
{
	return (h ^ w) * 0x100000001b3ull;
}

/* Post one request, kick, wait for it: the completed slot. */
static volatile struct gv_blk_req *blk_do(uint32_t op, uint64_t sector,
					  const struct gv_blk_seg *segs, unsigned n)
{
	uint32_t idx = ring->avail;
	volatile struct gv_blk_req *q = &ring->slot[idx % BLK_ENTRIES];

	q->sector = sector;
	q->op = op;
	q->nsegs = n;
	for (unsigned i = 0; i < n; i++) {
		q->seg[i].gpa = segs[i].gpa;
		q->seg[i].len = segs[i].len;
	}
	q->error = 0;
	q->bytes = 0;
	q->status = GV_BLK_S_PENDING;
	__asm__ volatile("" : : : "memory");    /* slot before avail (x86: TSO) */
	ring->avail = idx + 1;
	blk_out(GV_BLK_REG_KICK, 0);
	while (ring->used != idx + 1) {
		if (blk_in(GV_BLK_REG_STATUS))
			return q;               /* device stopped: still PENDING */
		gv_pause();
	}
	return q;
}

/* Pages of @segs that are not private (0 when all are). */
static unsigned blk_not_private(const struct gv_blk_seg *segs, unsigned n)
{
	unsigned bad = 0;

	for (unsigned i = 0; i < n; i++) {
		uint64_t p = segs[i].gpa & ~(GV_PAGE - 1);

		for (; p < segs[i].gpa + segs[i].len; p += GV_PAGE)
			bad += gv_page_state((const void *)p) != 0;
	}
	return bad;
}

static unsigned blk_segs(const struct blk_piece *pc, unsigned n, uint8_t *base,
			 struct gv_blk_seg *segs)
{
	unsigned total = 0;

	for (unsigned i = 0; i < n; i++) {
		segs[i].gpa = (uint64_t)(uintptr_t)(base + pc[i].off);
		segs[i].len = pc[i].len;
		segs[i].reserved = 0;
		total += pc[i].len;
	}
	return total;
}

/* One request and its checks; 0 or 1 failure, reported. */
static int blk_request(const char *name, const char *what, uint32_t op, uint64_t sector,
		       const struct gv_blk_seg *segs, unsigned n, unsigned bytes)
{
	volatile struct gv_blk_req *q = blk_do(op, sector, segs, n);
	unsigned bad = blk_not_private(segs, n);

	if (q->status != GV_BLK_S_OK || q->bytes != bytes || bad) {
		gv_printf("FAIL %s: %s status %u error %d, %u of %u B, %u page(s) not private\n",
			  name, what, q->status, q->error, q->bytes, bytes, bad);
		return 1;
	}
	return 0;
}

static int blk_case(const struct blk_case *c)
{
	struct gv_blk_seg ws[3], rs[3];
	unsigned wlen = blk_segs(c->w, c->nw, wbuf, ws);
	unsigned rlen = blk_segs(c->r, c->nr, rbuf, rs);
	uint64_t off = (uint64_t)c->sector * GV_BLK_SECTOR, hw = 0, hr = 0;

	for (unsigned i = 0; i < c->nw; i++) {
		uint64_t *p = (uint64_t *)(uintptr_t)ws[i].gpa;

		for (unsigned k = 0; k < ws[i].len / 8; k++, off += 8) {
			p[k] = blk_pattern(off);
			hw = blk_hash(hw, p[k]);
		}
	}
	for (unsigned i = 0; i < c->nr; i++) {
		uint64_t *p = (uint64_t *)(uintptr_t)rs[i].gpa;

		for (unsigned k = 0; k < rs[i].len / 8; k++)
			p[k] = BLK_POISON;
	}
	if (blk_request(c->name, "write", GV_BLK_OP_WRITE, c->sector, ws, c->nw, wlen) ||
	    blk_request(c->name, "read", GV_BLK_OP_READ, c->sector, rs, c->nr, rlen))
		return 1;
	for (unsigned i = 0; i < c->nr; i++) {
		const uint64_t *p = (const uint64_t *)(uintptr_t)rs[i].gpa;

		for (unsigned k = 0; k < rs[i].len / 8; k++)
			hr = blk_hash(hr, p[k]);
	}
	if (hr != hw) {
		gv_printf("FAIL %s: checksum read %#lx, written %#lx\n", c->name, hr, hw);
		return 1;
	}
	gv_printf("ok   %s: %u B at sector %u, %u -> %u segment(s), checksum %#lx, "
		  "buffers private\n", c->name, wlen, c->sector, c->nw, c->nr, hw);
	return 0;
}

/* The last sector reads; a request running past it is refused untouched. */
static int blk_edges(uint64_t sectors)
{
	struct gv_blk_seg s = { .gpa = (uint64_t)(uintptr_t)rbuf, .len = GV_BLK_SECTOR };
	volatile struct gv_blk_req *q;
	int fail;

	fail = blk_request("last sector", "read", GV_BLK_OP_READ, sectors - 1, &s, 1,
			   GV_BLK_SECTOR);
	if (!fail)
		gv_printf("ok   last sector: sector %lu reads\n", sectors - 1);

	s.len = 2 * GV_BLK_SECTOR;
	q = blk_do(GV_BLK_OP_READ, sectors - 1, &s, 1);
	if (q->status != GV_BLK_S_BADREQ || q->error != -EINVAL || q->bytes ||
	    blk_not_private(&s, 1)) {
		gv_printf("FAIL past the end: status %u error %d, %u B\n", q->status, q->error,
			  q->bytes);
		return fail + 1;
	}
	gv_printf("ok   past the end: refused (status %u, error %d), buffer private\n",
		  q->status, q->error);
	return fail;
}

int guest_main(const struct gv_boot *b)
{
	uint64_t sectors;
	long ret;
	int fail = 0;

	(void)b;
	ret = gv_share(ring_page, GV_PAGE);
	if (ret) {
		gv_printf("FAIL share the ring: %ld\n", ret);
		return 1;
	}
	blk_out(GV_BLK_REG_RING, (uint32_t)(uintptr_t)ring_page);
	blk_out(GV_BLK_REG_ENTRIES, BLK_ENTRIES);
	ret = (int32_t)blk_in(GV_BLK_REG_STATUS);
	sectors = blk_in(GV_BLK_REG_SECT_LO) | (uint64_t)blk_in(GV_BLK_REG_SECT_HI) << 32;
	if (ret || sectors < BLK_MIN_SECTORS) {
		gv_printf("FAIL device: status %ld, %lu sectors (want >= %u)\n", ret, sectors,
			  BLK_MIN_SECTORS);
		return 1;
	}
	gv_printf("blk: disk of %lu sectors, ring of %u at %p (shared), buffers private\n",
		  sectors, BLK_ENTRIES, ring_page);
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		fail += blk_case(&cases[i]);
	fail += blk_edges(sectors);
	gv_printf("blk: %u requests, %d failure(s)\n", ring->used, fail);
	return fail;
}
