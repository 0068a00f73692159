// SPDX-License-Identifier: MIT
/*
 * backend_memfd.c - guest memory in a memfd (shmem), for hosts without KVM
 * guest_memfd. With GMEM_F_HUGE the file gets 2 MiB backing from shmem THP
 * where shmem_enabled allows it, else from reserved hugetlb pages (whose
 * mappings cannot be split, so the mapping granule becomes 2 MiB), else open
 * fails naming the setting to change: never a silent downgrade.
 */
#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend.h"
#include "sys.h"

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21u << 26)
#endif

/* Pick 2 MiB backing for a memfd of @size bytes. */
static int gm_memfd_huge(struct gm_backing *b, uint64_t size, unsigned *mfd_flags)
{
	char mode[16] = "";
	long free_pages;

	if (gm_shmem_thp_mode(mode, sizeof(mode)) == 0 && gm_shmem_thp_allowed(mode)) {
		b->huge = GMEM_HUGE_THP;
		b->thp_advise = !strcmp(mode, "advise");
		b->granule = 4096;
		return 0;
	}
	free_pages = gm_hugepages_free();
	if (free_pages > 0 && (uint64_t)free_pages >= size / GMEM_REGION_SIZE) {
		b->huge = GMEM_HUGE_HUGETLB;
		b->granule = GMEM_REGION_SIZE;
		*mfd_flags |= MFD_HUGETLB | MFD_HUGE_2MB;
		return 0;
	}
	gm_set_error("no 2 MiB backing: shmem THP is '%s' (set "
		     "/sys/kernel/mm/transparent_hugepage/shmem_enabled to advise or "
		     "within_size) and %ld hugetlb pages are free (set vm.nr_hugepages "
		     "to at least %llu)", mode[0] ? mode : "unknown",
		     free_pages < 0 ? 0 : free_pages,
		     (unsigned long long)(size / GMEM_REGION_SIZE));
	return -EOPNOTSUPP;
}

static int gm_memfd_open(struct gm_backing *b, const struct gmem_config *cfg)
{
	unsigned mfd_flags = MFD_CLOEXEC;
	int ret, fd;

	b->huge = GMEM_HUGE_NONE;
	b->granule = 4096;
	if (cfg->flags & GMEM_F_HUGE) {
		ret = gm_memfd_huge(b, cfg->size, &mfd_flags);
		if (ret)
			return ret;
	}
	fd = gm_sys_memfd_create("gmem", mfd_flags);
	if (fd < 0) {
		ret = -errno;
		gm_set_error("memfd_create: %s", strerror(errno));
		return ret;
	}
	if (gm_sys_ftruncate(fd, (off_t)cfg->size)) {
		ret = -errno;
		gm_set_error("sizing the memfd to %llu bytes: %s",
			     (unsigned long long)cfg->size, strerror(errno));
		close(fd);
		return ret;
	}
	b->fd = fd;
	/* THP backing stays mapped-only: written, its pages could come small
	 * where an advised mapping would have faulted them in huge. */
	b->writable = b->huge == GMEM_HUGE_NONE;
	return 0;
}

static void gm_memfd_close(struct gm_backing *b)
{
	close(b->fd);
}

const struct gm_backend_ops gm_backend_memfd = {
	.name = "memfd",
	.open = gm_memfd_open,
	.close = gm_memfd_close,
	.set_private = NULL,
};

int gm_backing_discard(struct gm_backing *b, uint64_t off, uint64_t len)
{
	if (gm_sys_fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			     (off_t)off, (off_t)len))
		return -errno;
	return 0;
}
