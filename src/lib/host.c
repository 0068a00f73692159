// SPDX-License-Identifier: MIT
/*
 * host.c - what this host offers: KVM capabilities, shmem THP mode, hugetlb
 * reserve, memfd_secret, userfaultfd (gmem_probe), and the thread-local
 * reason behind the last error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backend.h"
#include "kvm_uapi.h"
#include "sys.h"
#include "track.h"
#include "uffd_uapi.h"

#define GM_SHMEM_TOP  "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
#define GM_SHMEM_2M   "/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/shmem_enabled"
#define GM_HUGE_TOTAL "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
#define GM_HUGE_FREE  "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"

static __thread char gm_error[256];

void gm_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(gm_error, sizeof(gm_error), fmt, ap);
	va_end(ap);
}

void gm_clear_error(void)
{
	gm_error[0] = 0;
}

const char *gmem_last_error(void)
{
	return gm_error;
}

int gm_kvm_check(int fd, long cap)
{
	int r = gm_sys_ioctl(fd, KVM_CHECK_EXTENSION, (void *)cap);

	return r < 0 ? -errno : r;
}

/* Read a small sysfs file; returns length or -errno. */
static int gm_read_file(const char *path, char *buf, unsigned size)
{
	int fd = gm_sys_open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return (int)n;
}

long gm_sysfs_long(const char *path)
{
	char buf[64];
	int r = gm_read_file(path, buf, sizeof(buf));

	return r < 0 ? r : strtol(buf, NULL, 10);
}

/* The bracketed word of a sysfs choice file: "always [never] deny" -> never. */
static int gm_sysfs_choice(const char *path, char *out, unsigned size)
{
	char buf[128], *l, *r;
	int n = gm_read_file(path, buf, sizeof(buf));

	if (n < 0)
		return n;
	l = strchr(buf, '[');
	r = l ? strchr(l, ']') : NULL;
	if (!l || !r || (unsigned)(r - l - 1) >= size)
		return -EINVAL;
	memcpy(out, l + 1, (size_t)(r - l - 1));
	out[r - l - 1] = 0;
	return 0;
}

/* Effective shmem THP mode for 2 MiB folios of internal shmem (memfd). */
int gm_shmem_thp_mode(char *buf, unsigned size)
{
	int r = gm_sysfs_choice(GM_SHMEM_2M, buf, size);

	if (r == 0 && strcmp(buf, "inherit") != 0)
		return 0;
	return gm_sysfs_choice(GM_SHMEM_TOP, buf, size);
}

bool gm_shmem_thp_allowed(const char *mode)
{
	return !strcmp(mode, "always") || !strcmp(mode, "within_size") ||
	       !strcmp(mode, "advise") || !strcmp(mode, "force");
}

bool gm_kvm_guest_memfd_usable(void)
{
	int kvm = gm_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int gmem, flags, inplace;

	if (kvm < 0)
		return false;
	gmem = gm_kvm_check(kvm, KVM_CAP_GUEST_MEMFD);
	flags = gm_kvm_check(kvm, KVM_CAP_GUEST_MEMFD_FLAGS);
	inplace = gm_kvm_check(kvm, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES);
	close(kvm);
	/* The host must be able to map the file (MMAP) and reach its shared
	 * pages: the kernel converts them (cap 249), or everything starts
	 * shared (INIT_SHARED) and the library's host view enforces states. */
	return gmem > 0 && flags > 0 && (flags & GUEST_MEMFD_FLAG_MMAP) &&
	       (inplace > 0 || (flags & GUEST_MEMFD_FLAG_INIT_SHARED));
}

int gm_inplace_verdict(int ioctl_ret, int err)
{
	if (ioctl_ret == 0)
		return 1;
	switch (err) {
	case ENOTTY:            /* the file has no such ioctl (6.18: none at all) */
	case EINVAL:            /* the number means something else, or refused  */
	case EOPNOTSUPP:
	case ENOSYS:
		return 0;
	default:
		return -err;
	}
}

/*
 * Does the kernel convert guest_memfd pages in place? Asked by behaviour,
 * never by capability number (249 belongs upstream to something else): a
 * one-page guest_memfd is made on @vm_fd and KVM_SET_MEMORY_ATTRIBUTES2
 * sets its page to the state it already has, which changes nothing where
 * the ioctl exists. 1, 0, or -errno when the file could not be made.
 * @how gets one line: what was asked and what the kernel answered.
 */
int gm_kvm_inplace_detect(int vm_fd, uint64_t gmem_caps, char *how, unsigned how_size)
{
	bool shared = gmem_caps & GUEST_MEMFD_FLAG_INIT_SHARED;
	struct gm_kvm_create_guest_memfd req = {
		.size = 4096,
		.flags = GUEST_MEMFD_FLAG_MMAP | (shared ? GUEST_MEMFD_FLAG_INIT_SHARED : 0),
	};
	struct gm_kvm_memory_attributes2 attr = {
		.offset = 0, .size = 4096,
		.attributes = shared ? 0 : KVM_MEMORY_ATTRIBUTE_PRIVATE,
	};
	int fd, r, err, verdict;

	fd = gm_sys_ioctl(vm_fd, GM_KVM_CREATE_GUEST_MEMFD, &req);
	if (fd < 0) {
		err = errno;
		snprintf(how, how_size, "not asked: a 4 KiB guest_memfd could not be made (%s)",
			 strerror(err));
		return -err;
	}
	r = gm_sys_ioctl(fd, GM_KVM_SET_MEMORY_ATTRIBUTES2, &attr);
	err = r ? errno : 0;
	close(fd);
	verdict = gm_inplace_verdict(r, err);
	snprintf(how, how_size, "KVM_SET_MEMORY_ATTRIBUTES2 on a guest_memfd: %s",
		 r == 0 ? "accepted" : strerror(err));
	return verdict;
}

/* In-place conversion by behaviour, on a VM made for the question. */
static void gm_probe_inplace(struct gmem_probe *p, int kvm)
{
	int vm, r;

	if (!p->guest_memfd || !p->gmem_mmap) {
		snprintf(p->inplace_how, sizeof(p->inplace_how),
			 "not asked: no mappable guest_memfd");
		return;
	}
	vm = gm_sys_ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		snprintf(p->inplace_how, sizeof(p->inplace_how),
			 "not asked: KVM_CREATE_VM: %s", strerror(errno));
		return;
	}
	r = gm_kvm_inplace_detect(vm, p->guest_memfd_flags, p->inplace_how,
				  sizeof(p->inplace_how));
	p->inplace_conversion = r > 0;
	close(vm);
}

static void gm_probe_kvm(struct gmem_probe *p)
{
	int kvm = gm_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC), r;

	p->kvm = kvm >= 0;
	if (kvm < 0) {
		snprintf(p->inplace_how, sizeof(p->inplace_how), "not asked: no /dev/kvm (%s)",
			 strerror(errno));
		return;
	}
	p->kvm_api_version = gm_sys_ioctl(kvm, KVM_GET_API_VERSION, NULL);
	p->user_memory2 = gm_kvm_check(kvm, KVM_CAP_USER_MEMORY2) > 0;
	p->guest_memfd = gm_kvm_check(kvm, KVM_CAP_GUEST_MEMFD) > 0;
	r = gm_kvm_check(kvm, KVM_CAP_GUEST_MEMFD_FLAGS);
	p->guest_memfd_flags = r > 0 ? (uint64_t)r : 0;
	p->gmem_mmap = !!(p->guest_memfd_flags & GUEST_MEMFD_FLAG_MMAP);
	p->gmem_init_shared = !!(p->guest_memfd_flags & GUEST_MEMFD_FLAG_INIT_SHARED);
	p->gmem_no_direct_map = !!(p->guest_memfd_flags & GUEST_MEMFD_FLAG_NO_DIRECT_MAP);
	p->inplace_cap_hint = gm_kvm_check(kvm, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES) > 0;
	gm_probe_inplace(p, kvm);
	r = gm_kvm_check(kvm, KVM_CAP_MEMORY_ATTRIBUTES);
	p->memory_attributes = r > 0 ? (uint64_t)r : 0;
	r = gm_kvm_check(kvm, KVM_CAP_VM_TYPES);
	p->vm_types = r > 0 ? (uint64_t)r : 0;
	close(kvm);
}

static int gm_probe_memfd_secret(void)
{
#ifdef SYS_memfd_secret
	int fd = (int)syscall(SYS_memfd_secret, 0);

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
#else
	return 0;
#endif
}

static int gm_probe_userfaultfd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* UFFD_USER_MODE_ONLY */);

	if (fd < 0)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

bool gm_track_host_supports(void)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_WP_UNPOPULATED |
			    UFFD_FEATURE_WP_ASYNC,
	};
	struct pm_scan_arg a = { .size = sizeof(a) };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK), pm;
	bool ok;

	if (fd < 0)
		return false;
	ok = !ioctl(fd, UFFDIO_API, &api);
	close(fd);
	pm = ok ? open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC) : -1;
	if (pm < 0)
		return false;
	/* An empty scan: the ioctl exists (Linux 6.7). */
	ok = !ioctl(pm, PAGEMAP_SCAN, &a);
	close(pm);
	return ok;
}

int gmem_probe(struct gmem_probe *p)
{
	long free_huge;

	if (!p)
		return -EINVAL;
	memset(p, 0, sizeof(*p));
	gm_probe_kvm(p);
	if (gm_shmem_thp_mode(p->shmem_thp, sizeof(p->shmem_thp)))
		p->shmem_thp[0] = 0;
	p->hugepages_total = gm_sysfs_long(GM_HUGE_TOTAL);
	free_huge = gm_sysfs_long(GM_HUGE_FREE);
	p->hugepages_free = free_huge;
	p->memfd_secret = gm_probe_memfd_secret();
	p->userfaultfd = gm_probe_userfaultfd();
	p->max_map_count = gm_sysfs_long("/proc/sys/vm/max_map_count");
	/* guest_memfd: KVM writes it directly, no mapping of ours sees it. */
	p->track = !gm_kvm_guest_memfd_usable() && gm_track_host_supports() ? GMEM_TRACK_PAGEMAP
									     : GMEM_TRACK_NONE;
	p->auto_backend = gm_kvm_guest_memfd_usable() ? GMEM_BACKEND_KVM : GMEM_BACKEND_MEMFD;
	if (gm_shmem_thp_allowed(p->shmem_thp))
		p->auto_huge = GMEM_HUGE_THP;
	else if (free_huge > 0)
		p->auto_huge = GMEM_HUGE_HUGETLB;
	else
		p->auto_huge = GMEM_HUGE_NONE;
	return 0;
}

long gm_hugepages_free(void)
{
	return gm_sysfs_long(GM_HUGE_FREE);
}
