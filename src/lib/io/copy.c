// SPDX-License-Identifier: MIT
/*
 * copy.c - the copies the I/O paths make on the way to a destination that
 * is cold: the guest after a device read, a memory target after a device
 * write.
 *
 * Model: a device's DMA writes memory without reading it first and without
 * filling the CPU's caches; non-temporal stores do the same from the CPU.
 * For a cold destination a plain store first reads the line it writes
 * (read-for-ownership), so a plain copy moves three lines through memory
 * per line copied (source, destination in, destination out) and a
 * streaming copy two. The bounce path copies twice, but its second copy
 * reads the slot from the cache: with streaming stores a bounced request
 * moves fewer bytes through memory than one plain memcpy of the same data,
 * which pays for the two copies running one after the other. Small copies
 * keep plain stores: partial write-combining buffers cost more than the
 * read-for-ownership saves, and a small destination is often cached. The
 * fence that makes streamed bytes visible is the caller's, once per batch
 * of copies: it waits for every buffered line, and a scattered request
 * copies one page at a time.
 */
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "io.h"

bool gm_io_copy_nt(void *dst, const void *src, uint64_t n)
{
#ifdef __SSE2__
	uint8_t *d = dst;
	const uint8_t *s = src;
	uint64_t head = (16 - ((uintptr_t)d & 15)) & 15;

	if (n < GM_IO_NT_MIN) {
		memcpy(d, s, n);
		return false;
	}
	memcpy(d, s, head);
	d += head;
	s += head;
	n -= head;
	for (; n >= 64; d += 64, s += 64, n -= 64) {
		__m128i a = _mm_loadu_si128((const __m128i *)s);
		__m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
		__m128i c = _mm_loadu_si128((const __m128i *)(s + 32));
		__m128i e = _mm_loadu_si128((const __m128i *)(s + 48));

		_mm_stream_si128((__m128i *)d, a);
		_mm_stream_si128((__m128i *)(d + 16), b);
		_mm_stream_si128((__m128i *)(d + 32), c);
		_mm_stream_si128((__m128i *)(d + 48), e);
	}
	memcpy(d, s, n);
	return true;
#else
	memcpy(dst, src, n);
	return false;
#endif
}

void gm_io_copy_fence(void)
{
#ifdef __SSE2__
	/* Streaming stores are weakly ordered: without the fence another
	 * thread told "done" could still read stale bytes. */
	_mm_sfence();
#endif
}
