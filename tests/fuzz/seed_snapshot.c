// SPDX-License-Identifier: MIT
/*
 * seed_snapshot.c - writes the seed corpus of the snapshot target:
 * gmem-fuzz-seed-snapshot DIR. Each seed is a mode byte (fuzz_snapshot.c)
 * and a valid snapshot of a small memory: empty, mixed states, random and
 * compressible data, a page at each end, saved raw and compressed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gmem.h"

static int seed_fill(struct gmem *g, unsigned kind)
{
	uint8_t *kv = gmem_kvm_view(g);
	uint64_t x = 0x9e3779b97f4a7c15ull * (kind + 1), size = 2ull << 20;

	if (kind & 1) {
		memset(kv, 0x11, 4096);
		memset(kv + size - 4096, 0x22, 4096);
	}
	if (kind & 2)
		for (unsigned i = 0; i < 3 * 4096; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			kv[40 * 4096 + i] = (uint8_t)x;
		}
	if (kind & 4)
		memset(kv + 100 * 4096, 0x5a, 8 * 4096);
	if (kind & 1 && gmem_convert(g, 64 * 4096, 64 * 4096, GMEM_SHARED, NULL))
		return -1;
	if (kind & 2 && gmem_convert(g, 300 * 4096, 4096, GMEM_SHARED, NULL))
		return -1;
	return 0;
}

static int seed_write(const char *dir, unsigned n, unsigned mode, const char *snap)
{
	char path[4096], buf[1 << 16];
	int in = open(snap, O_RDONLY), out;
	ssize_t got;
	uint8_t m = (uint8_t)mode;

	snprintf(path, sizeof(path), "%s/seed-%02u", dir, n);
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (in < 0 || out < 0 || write(out, &m, 1) != 1)
		return -1;
	while ((got = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)got) != got)
			return -1;
	close(in);
	close(out);
	return got < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct gmem_config cfg = { .size = 2u << 20, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1 };
	char snap[4096];
	unsigned n = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	snprintf(snap, sizeof(snap), "%s/.tmp.snap", argv[1]);
	for (unsigned kind = 0; kind < 8; kind++) {
		for (unsigned z = 0; z < 2; z++) {
			struct gmem *g;

			if (gmem_open(&cfg, &g) || seed_fill(g, kind) ||
			    gmem_snapshot_save(g, snap, z ? GMEM_SNAP_COMPRESS_ALL : 0) ||
			    seed_write(argv[1], n, (kind + z) & 7, snap)) {
				fprintf(stderr, "seed %u: %s\n", n, gmem_last_error());
				return 1;
			}
			gmem_close(g);
			n++;
		}
	}
	unlink(snap);
	printf("%u seeds in %s\n", n, argv[1]);
	return 0;
}
