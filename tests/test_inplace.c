// SPDX-License-Identifier: MIT
/*
 * test_inplace.c - the kernel in-place conversion path (cap 249).
 *
 * This host's kernel lacks cap 249, so a test double answers for it through
 * the syscall layer's ioctl hook: it reports cap 249, records every
 * KVM_SET_MEMORY_ATTRIBUTES2 the library issues, keeps the kernel's view of
 * each page's attribute, and refuses a to-private change over a page it is
 * told is referenced, with EAGAIN and error_offset as the posted series
 * does. The guest_memfd itself is real. What is checked is the library's
 * side of the contract: creation flags, the ioctl's arguments, how refusals
 * map to -EAGAIN and busy_gpa, and that the host view stays one mapping.
 */
#include <errno.h>
#include <string.h>

#include "helpers.h"
#include "internal.h"
#include "kvm_uapi.h"
#include "sys.h"

#define IP_SIZE  (4 * TH_MIB)
#define IP_PAGES (IP_SIZE / TH_PAGE)

static struct {
	uint64_t create_flags;          /* flags of the last KVM_CREATE_GUEST_MEMFD */
	unsigned calls;                 /* KVM_SET_MEMORY_ATTRIBUTES2 calls        */
	struct gm_kvm_memory_attributes2 last;
	bool priv[IP_PAGES];            /* the kernel's attribute per page         */
	int64_t referenced;             /* offset the "kernel" finds pinned, or -1 */
} ip;

static bool ip_hook(int fd, unsigned long req, void *arg, int *ret)
{
	(void)fd;
	if (req == KVM_CHECK_EXTENSION &&
	    (long)(uintptr_t)arg == KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES) {
		*ret = 1;
		return true;
	}
	if (req == GM_KVM_CREATE_GUEST_MEMFD) {
		ip.create_flags = ((struct gm_kvm_create_guest_memfd *)arg)->flags;
		return false;           /* the real kernel makes the file */
	}
	if (req != GM_KVM_SET_MEMORY_ATTRIBUTES2)
		return false;
	struct gm_kvm_memory_attributes2 *a = arg;
	bool to_priv = a->attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE;

	ip.calls++;
	ip.last = *a;
	if (to_priv && ip.referenced >= 0 && (uint64_t)ip.referenced >= a->offset &&
	    (uint64_t)ip.referenced < a->offset + a->size) {
		a->error_offset = (uint64_t)ip.referenced;
		errno = EAGAIN;
		*ret = -1;
		return true;
	}
	for (uint64_t p = a->offset / TH_PAGE; p < (a->offset + a->size) / TH_PAGE; p++)
		ip.priv[p] = to_priv;
	*ret = 0;
	return true;
}

static struct gmem *ip_open(unsigned flags)
{
	memset(&ip, 0, sizeof(ip));
	ip.referenced = -1;
	for (uint64_t p = 0; p < IP_PAGES; p++)
		ip.priv[p] = !(flags & GMEM_F_INIT_SHARED);
	gm_sys_set_ioctl_hook(ip_hook);
	return th_open(GMEM_BACKEND_KVM, IP_SIZE, flags);
}

Test(inplace, opens_without_init_shared_and_one_mapping)
{
	struct gmem *g = ip_open(0);
	struct gmem_info info;
	struct gmem_stats st;

	gmem_info(g, &info);
	cr_assert_eq(info.inplace, 1, "library did not take the cap 249 path");
	cr_assert_eq(ip.create_flags & GUEST_MEMFD_FLAG_INIT_SHARED, 0,
		     "private memory created INIT_SHARED (flags %#llx)",
		     (unsigned long long)ip.create_flags);
	cr_assert_neq(ip.create_flags & GUEST_MEMFD_FLAG_MMAP, 0);
	gmem_stats(g, &st);
	cr_assert_eq(st.view_mappings, 1, "host view has %llu mappings, want 1",
		     (unsigned long long)st.view_mappings);
	gmem_close(g);
	gm_sys_set_ioctl_hook(NULL);
}

Test(inplace, init_shared_asks_the_kernel_for_it)
{
	struct gmem *g = ip_open(GMEM_F_INIT_SHARED);

	cr_assert_neq(ip.create_flags & GUEST_MEMFD_FLAG_INIT_SHARED, 0);
	cr_assert_eq(gmem_state(g, 0), GMEM_SHARED);
	gmem_close(g);
	gm_sys_set_ioctl_hook(NULL);
}

Test(inplace, convert_goes_to_the_kernel)
{
	struct gmem *g = ip_open(0);
	uint64_t gpa = 3 * TH_PAGE, len = 5 * TH_PAGE;

	cr_assert_eq(gmem_convert(g, gpa, len, GMEM_SHARED, NULL), 0);
	cr_assert_eq(ip.calls, 1);
	cr_assert_eq(ip.last.offset, gpa, "offset %#llx, want %#llx",
		     (unsigned long long)ip.last.offset, (unsigned long long)gpa);
	cr_assert_eq(ip.last.size, len);
	cr_assert_eq(ip.last.attributes, 0);
	for (uint64_t p = 0; p < IP_PAGES; p++)
		cr_assert_eq(ip.priv[p], gmem_state(g, p * TH_PAGE) == GMEM_PRIVATE,
			     "page %llu: kernel and library disagree", (unsigned long long)p);
	cr_assert_eq(gmem_convert(g, gpa, len, GMEM_PRIVATE, NULL), 0);
	cr_assert_eq(ip.last.attributes, KVM_MEMORY_ATTRIBUTE_PRIVATE);
	/* Nothing to change: the kernel is not asked. */
	cr_assert_eq(gmem_convert(g, gpa, len, GMEM_PRIVATE, NULL), 0);
	cr_assert_eq(ip.calls, 2, "%u ioctls, want 2", ip.calls);
	gmem_close(g);
	gm_sys_set_ioctl_hook(NULL);
}

Test(inplace, kernel_refusal_reports_busy_page_and_changes_nothing)
{
	struct gmem *g = ip_open(0);
	uint64_t busy = 0;
	struct gmem_stats before, after;
	int ret;

	cr_assert_eq(gmem_convert(g, 0, TH_MIB, GMEM_SHARED, NULL), 0);
	gmem_stats(g, &before);
	/* A reference the library does not know of (a device's own GUP). */
	ip.referenced = 7 * TH_PAGE;
	ret = gmem_convert(g, 0, TH_MIB, GMEM_PRIVATE, &busy);
	cr_assert_eq(ret, -EAGAIN, "got %d, want -EAGAIN", ret);
	cr_assert_eq(busy, 7 * TH_PAGE, "busy_gpa %#llx, want %#llx",
		     (unsigned long long)busy, 7 * TH_PAGE);
	gmem_stats(g, &after);
	cr_assert_eq(after.shared_pages, before.shared_pages);
	cr_assert_eq(gmem_state(g, 0), GMEM_SHARED);
	ip.referenced = -1;
	cr_assert_eq(gmem_convert(g, 0, TH_MIB, GMEM_PRIVATE, &busy), 0);
	gmem_close(g);
	gm_sys_set_ioctl_hook(NULL);
}

Test(inplace, library_pins_are_refused_before_the_kernel)
{
	struct gmem *g = ip_open(0);
	uint64_t busy = 0;
	unsigned calls;

	cr_assert_eq(gmem_convert(g, 0, TH_MIB, GMEM_SHARED, NULL), 0);
	cr_assert_eq(gmem_pin(g, 9 * TH_PAGE, TH_PAGE), 0);
	calls = ip.calls;
	cr_assert_eq(gmem_convert(g, 0, TH_MIB, GMEM_PRIVATE, &busy), -EAGAIN);
	cr_assert_eq(busy, 9 * TH_PAGE);
	cr_assert_eq(ip.calls, calls, "kernel asked although a pin was known");
	cr_assert_eq(gmem_unpin(g, 9 * TH_PAGE, TH_PAGE), 0);
	gmem_close(g);
	gm_sys_set_ioctl_hook(NULL);
}

Test(inplace, kmap_of_private_page_is_refused)
{
	struct gmem *g = ip_open(0);

	errno = 0;
	cr_assert_null(gmem_kmap(g, 0));
	cr_assert_eq(errno, EOPNOTSUPP, "errno %d, want EOPNOTSUPP", errno);
	gmem_close(g);
	gm_sys_set_ioctl_hook(NULL);
}
