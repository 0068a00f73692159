// SPDX-License-Identifier: MIT
/*
 * snap_th.c - see snap_th.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "snap_th.h"

const char *snap_tmpdir(void)
{
	static char dir[64];

	snprintf(dir, sizeof(dir), "/tmp/gmem-snap-XXXXXX");
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	return dir;
}

static int snap_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb, (void)flag, (void)f;
	return remove(p);
}

void snap_rmdir(const char *dir)
{
	nftw(dir, snap_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *snap_file(const char *dir, const char *name, unsigned slot)
{
	static char buf[4][256];

	snprintf(buf[slot & 3], sizeof(buf[0]), "%s/%s", dir, name);
	return buf[slot & 3];
}

static uint64_t snap_rng(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

static void snap_random_states(struct gmem *g, uint64_t *rng, uint64_t npages)
{
	uint64_t pos = 0;
	int to = (int)(snap_rng(rng) & 1);

	while (pos < npages) {
		uint64_t len = 1 + snap_rng(rng) % 300;
		int ret;

		if (len > npages - pos)
			len = npages - pos;
		ret = gmem_convert(g, pos * TH_PAGE, len * TH_PAGE, to ? GMEM_SHARED : GMEM_PRIVATE,
				   NULL);
		cr_assert_eq(ret, 0, "convert pages %llu+%llu to %d: %d (%s)",
			     (unsigned long long)pos, (unsigned long long)len, to, ret,
			     gmem_last_error());
		pos += len;
		to = !to;
	}
}

uint64_t snap_randomize(struct gmem *g, uint64_t seed, unsigned fill_pct)
{
	struct gmem_info in;
	uint64_t rng = seed * 0x9e3779b97f4a7c15ull + 1, npages, filled = 0;
	uint8_t *kv = gmem_kvm_view(g);

	gmem_info(g, &in);
	npages = in.size / TH_PAGE;
	snap_random_states(g, &rng, npages);
	for (uint64_t p = 0; p < npages; p++) {
		uint64_t r = snap_rng(&rng);
		uint64_t *w = (uint64_t *)(kv + p * TH_PAGE);

		if (r % 100 >= fill_pct)
			continue;
		filled++;
		if (r % 7 == 0) {               /* populated, all zero */
			w[0] = 0;
			continue;
		}
		/* Half random, half a pattern: compressible like real memory. */
		for (unsigned i = 0; i < TH_PAGE / 16; i++)
			w[i] = snap_rng(&rng);
		for (unsigned i = TH_PAGE / 16; i < TH_PAGE / 8; i++)
			w[i] = p * 0x100000001ull + i;
	}
	return filled;
}

/* cachestat(2): the file's cached pages in a range (guest_memfd has no
 * SEEK_DATA, and mincore over 1 TiB takes seconds). */
struct snap_cachestat_range {
	uint64_t off, len;
};

struct snap_cachestat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

uint64_t snap_populated_pages(struct gmem *g)
{
	struct gmem_info in;
	uint64_t n = 0;

	gmem_info(g, &in);
	if (in.backend == GMEM_BACKEND_MEMFD) {
		off_t pos = 0, data, hole;

		while ((data = lseek(in.fd, pos, SEEK_DATA)) >= 0) {
			hole = lseek(in.fd, data, SEEK_HOLE);
			n += (uint64_t)(hole - data) / TH_PAGE;
			pos = hole;
		}
		return n;
	}
	struct snap_cachestat_range r = { 0, in.size };
	struct snap_cachestat cs;

	cr_assert_eq(syscall(451 /* cachestat */, in.fd, &r, &cs, 0), 0, "cachestat: %s",
		     strerror(errno));
	return cs.nr_cache;
}

void snap_expect_same(struct gmem *a, struct gmem *b)
{
	struct gmem_info ia, ib;
	const uint8_t *ka = gmem_kvm_view(a), *kb = gmem_kvm_view(b);

	gmem_info(a, &ia);
	gmem_info(b, &ib);
	cr_assert_geq(ib.size, ia.size, "restored size %llu < saved %llu",
		      (unsigned long long)ib.size, (unsigned long long)ia.size);
	for (uint64_t gpa = 0; gpa < ia.size; gpa += TH_PAGE) {
		int sa = gmem_state(a, gpa), sb = gmem_state(b, gpa);

		cr_assert_eq(sa, sb, "gpa %#llx: state saved %d, restored %d",
			     (unsigned long long)gpa, sa, sb);
		if (memcmp(ka + gpa, kb + gpa, TH_PAGE)) {
			for (unsigned i = 0; i < TH_PAGE; i++)
				cr_assert_eq(ka[gpa + i], kb[gpa + i],
					     "gpa %#llx+%u: saved %#x, restored %#x",
					     (unsigned long long)gpa, i, ka[gpa + i], kb[gpa + i]);
		}
	}
}

unsigned snap_open_fds(void)
{
	return th_dir_entries("/proc/self/fd");
}

unsigned snap_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	unsigned n = 0;
	int c;

	cr_assert_not_null(f);
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

uint8_t *snap_slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	uint8_t *buf;

	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(fstat(fd, &sb), 0);
	buf = malloc((size_t)sb.st_size + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(pread(fd, buf, (size_t)sb.st_size, 0), sb.st_size, "short read of %s", path);
	close(fd);
	*len = (size_t)sb.st_size;
	return buf;
}

void snap_spit(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, buf, len), (ssize_t)len, "short write of %s", path);
	close(fd);
}
