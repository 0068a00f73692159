// SPDX-License-Identifier: MIT
/*
 * convert.c - guest-driven conversion (pKVM style): the guest shares and
 * unshares its own pages by hypercall and checks that contents survive each
 * conversion in place; bad ranges are refused with -EINVAL; a page the host
 * has pinned for DMA cannot be made private (-EAGAIN) until the DMA ends,
 * and a private page cannot be pinned (-EPERM).
 *
 * Exit status: the number of failed checks. Host-side counts the test
 * expects: 6 successful conversions, 1 pin, 0 pages pinned or shared at the end.
 */
#include "rt.h"

#define NPAGES 4

static uint8_t buf[NPAGES * GV_PAGE] GV_ALIGNED_PAGE;

/* A byte per 64 of each page, enough to see a page swapped or zeroed. */
static void fill(uint8_t *p, unsigned long len, uint8_t seed)
{
	for (unsigned long i = 0; i < len; i += 64)
		p[i] = (uint8_t)(seed + i / 64);
}

static long check(const uint8_t *p, unsigned long len, uint8_t seed)
{
	for (unsigned long i = 0; i < len; i += 64)
		if (p[i] != (uint8_t)(seed + i / 64))
			return (long)i;
	return -1;
}

int guest_main(const struct gv_boot *b)
{
	uint8_t *dma = buf + 3 * GV_PAGE;

	fill(buf, sizeof(buf), 7);
	gv_expect(gv_page_state(buf), 0, "state before sharing (0 = private)");

	/* Share two pages: same contents, same address. */
	gv_expect(gv_share(buf, 2 * GV_PAGE), 0, "share 2 pages");
	gv_expect(gv_page_state(buf + GV_PAGE), 1, "state after sharing");
	gv_expect(check(buf, sizeof(buf), 7), -1, "contents after share (-1 = intact)");

	/* Write while shared, make private again: the write stays. */
	fill(buf, 2 * GV_PAGE, 42);
	gv_expect(gv_unshare(buf, 2 * GV_PAGE), 0, "unshare 2 pages");
	gv_expect(check(buf, 2 * GV_PAGE, 42), -1, "contents after unshare");
	gv_expect(gv_page_state(buf), 0, "state after unshare");

	/* Bad ranges change nothing. */
	gv_expect(gv_share(buf + 1, GV_PAGE), -EINVAL, "share unaligned");
	gv_expect(gv_share((void *)b->mem_size, GV_PAGE), -EINVAL, "share past RAM");
	gv_expect(gv_share(buf, 0), -EINVAL, "share empty");

	/* A private page cannot be pinned for DMA. */
	gv_expect(gv_hcall(GV_HC_IO_PIN, (unsigned long)dma, GV_PAGE, 0), -EPERM,
		  "pin a private page");

	/* The forbidden case: unshare a page the host has pinned. */
	gv_expect(gv_share(dma, GV_PAGE), 0, "share the DMA page");
	gv_expect(gv_hcall(GV_HC_IO_PIN, (unsigned long)dma, GV_PAGE, 0), 0, "host pins it");
	gv_expect(gv_unshare(dma, GV_PAGE), -EAGAIN, "unshare a pinned page");
	gv_expect(gv_page_state(dma), 1, "still shared after the refusal");
	gv_expect(gv_hcall(GV_HC_IO_UNPIN, (unsigned long)dma, GV_PAGE, 0), 0, "DMA ends");
	gv_expect(gv_unshare(dma, GV_PAGE), 0, "unshare after the DMA");
	gv_expect(check(buf + 2 * GV_PAGE, 2 * GV_PAGE, 7 + 2 * GV_PAGE / 64), -1,
		  "untouched pages intact");

	/* Converting to the state a range has is not an error. */
	gv_expect(gv_unshare(buf, NPAGES * GV_PAGE), 0, "unshare private pages");
	gv_expect(gv_share(buf + GV_PAGE, GV_PAGE), 0, "share one page again");
	gv_expect(gv_unshare(buf + GV_PAGE, GV_PAGE), 0, "and unshare it");

	gv_printf("convert: %d failure(s)\n", gv_failures());
	return gv_failures();
}
