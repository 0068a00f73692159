/* SPDX-License-Identifier: MIT */
/*
 * uffd_uapi.h - userfaultfd write-protect and PAGEMAP_SCAN definitions of
 * Linux 6.7, which Debian 12's uapi headers predate.
 */
#ifndef GM_UFFD_UAPI_H
#define GM_UFFD_UAPI_H

#include <stdint.h>
#include <sys/ioctl.h>
#include <linux/userfaultfd.h>

/* Linux 6.7 uapi, which Debian 12's headers predate. */
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#define UFFD_FEATURE_WP_ASYNC       (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN          _IOWR('f', 16, struct pm_scan_arg)
#define PM_SCAN_WP_MATCHING   (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#define PAGE_IS_WRITTEN       (1 << 1)
#endif

#endif /* GM_UFFD_UAPI_H */
