// SPDX-License-Identifier: MIT
/*
 * fuzz_snapshot.c - the snapshot reader on hostile files: inspect, verify,
 * and eager and lazy restore, from a file held in a memfd.
 *
 * Input: one mode byte, then the file. Mode bit 0 reads through the
 * direct-I/O ring whatever the size, bit 1 restores lazily, bit 2 restores
 * into a config 2 MiB larger than the file claims (else cfg NULL).
 *
 * Oracles, beyond "no sanitizer report":
 *  - verify accepts ⇒ the cheap inspect accepts and agrees on every field;
 *  - verify refuses ⇒ restore refuses, returns no memory, and says why;
 *  - verify accepts a memory of at most 64 MiB ⇒ restore succeeds, the
 *    restored memory has the claimed size and exactly the claimed number
 *    of shared pages, and a lazy one loads with no error;
 *  - no descriptor is left open by any of it.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "gmem.h"
#include "snapshot/in.h"

#define GM_FUZZ_SNAP_MAX_MEM (64ull << 20)

enum {
	GM_FUZZ_SNAP_RING = 1 << 0,
	GM_FUZZ_SNAP_LAZY = 1 << 1,
	GM_FUZZ_SNAP_CFG = 1 << 2,
};

static unsigned gm_fuzz_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	if (!d)
		return 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static uint64_t gm_fuzz_shared_pages(struct gmem *g, uint64_t size)
{
	uint64_t n = 0;

	for (uint64_t gpa = 0; gpa < size; gpa += GMEM_PAGE_SIZE)
		n += gmem_state(g, gpa) == GMEM_SHARED;
	return n;
}

static void gm_fuzz_restored(struct gmem *g, const struct gmem_snapshot_info *in,
			     unsigned mode)
{
	struct gmem_info gi;
	uint64_t shared;

	GM_FUZZ_CHECK(gmem_info(g, &gi) == 0, "gmem_info");
	GM_FUZZ_CHECK(gi.size == in->size + (mode & GM_FUZZ_SNAP_CFG ? GMEM_REGION_SIZE : 0),
		      "restored %llu bytes, file says %llu", (unsigned long long)gi.size,
		      (unsigned long long)in->size);
	if (mode & GM_FUZZ_SNAP_LAZY) {
		int ret = gmem_snapshot_lazy_wait(g);

		GM_FUZZ_CHECK(ret == 0, "lazy load of a verified file: %d (%s)", ret,
			      gmem_last_error());
	}
	shared = gm_fuzz_shared_pages(g, gi.size);
	GM_FUZZ_CHECK(shared == in->shared_pages, "%llu shared pages restored, file says %llu",
		      (unsigned long long)shared, (unsigned long long)in->shared_pages);
}

static void gm_fuzz_restore(const char *path, const struct gmem_snapshot_info *in,
			    int verified, unsigned mode)
{
	struct gmem_snapshot_opts o = { .flags = mode & GM_FUZZ_SNAP_LAZY ? GMEM_SNAP_LAZY : 0 };
	uint64_t size = verified ? in->size : GMEM_REGION_SIZE;
	struct gmem_config cfg = { .size = size + GMEM_REGION_SIZE,
				   .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1 };
	struct gmem *g = NULL;
	int ret;

	ret = gmem_snapshot_restore_ex(path, mode & GM_FUZZ_SNAP_CFG ? &cfg : NULL, &o, &g);
	if (!verified) {
		GM_FUZZ_CHECK(ret < 0 && !g, "restore accepted what verify refused: %d", ret);
		GM_FUZZ_CHECK(gmem_last_error()[0], "restore refused (%d) without a reason", ret);
		return;
	}
	/* A lazy restore where this kernel has no shmem userfaultfd. */
	if (ret == -EOPNOTSUPP && mode & GM_FUZZ_SNAP_LAZY)
		return;
	GM_FUZZ_CHECK(ret == 0 && g, "restore of a verified file: %d (%s)", ret,
		      gmem_last_error());
	gm_fuzz_restored(g, in, mode);
	gmem_close(g);
}

static void gm_fuzz_agree(const struct gmem_snapshot_info *v, const struct gmem_snapshot_info *q)
{
	GM_FUZZ_CHECK(q->size == v->size && q->shared_pages == v->shared_pages &&
		      q->runs == v->runs && q->chunks == v->chunks &&
		      q->data_chunks == v->data_chunks && q->populated_bytes == v->populated_bytes &&
		      q->stored_bytes == v->stored_bytes && q->file_bytes == v->file_bytes,
		      "inspect and verify disagree");
}

void gm_fuzz_snapshot(const uint8_t *data, size_t size)
{
	struct gmem_snapshot_info v, q;
	unsigned mode, fds = gm_fuzz_open_fds();
	char path[40];
	int fd, verified;

	if (!size)
		return;
	mode = data[0];
	fd = memfd_create("fuzz-snapshot", MFD_CLOEXEC);
	GM_FUZZ_CHECK(fd >= 0, "memfd_create: %s", strerror(errno));
	GM_FUZZ_CHECK(write(fd, data + 1, size - 1) == (ssize_t)(size - 1), "write");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	gm_in_min_file = mode & GM_FUZZ_SNAP_RING ? 0 : GM_IN_MIN_FILE;

	verified = gmem_snapshot_inspect(path, GMEM_SNAP_VERIFY, NULL, &v) == 0;
	if (verified) {
		GM_FUZZ_CHECK(gmem_snapshot_inspect(path, 0, NULL, &q) == 0,
			      "verify accepts, inspect refuses: %s", gmem_last_error());
		gm_fuzz_agree(&v, &q);
	}
	if (!verified || v.size <= GM_FUZZ_SNAP_MAX_MEM)
		gm_fuzz_restore(path, &v, verified, mode);
	gm_in_min_file = GM_IN_MIN_FILE;
	close(fd);
	GM_FUZZ_CHECK(gm_fuzz_open_fds() == fds, "%u descriptors open, were %u",
		      gm_fuzz_open_fds(), fds);
}
