/* SPDX-License-Identifier: MIT */
/*
 * backend.h - the guest memory file and what the kernel does with it.
 *
 * A backend creates the file (a KVM guest_memfd or a memfd), says what the
 * host view may do with it (mapping granule, THP advice) and, where the
 * kernel converts in place (cap 249), converts ranges itself. Everything else
 * (host view, states, pins) is common code in gmem.c.
 */
#ifndef GM_BACKEND_H
#define GM_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "gmem.h"

struct gm_backing {
	enum gmem_backend kind;
	int fd;                 /* guest memory file                               */
	int vm_fd;              /* KVM VM of the guest_memfd, or -1                */
	int own_vm_fd;          /* VM created by the backend (closed at close)     */
	enum gmem_huge huge;
	uint64_t granule;       /* smallest mappable unit: 4 KiB or 2 MiB          */
	uint64_t gmem_flags;    /* guest_memfd creation flags                      */
	bool thp_advise;        /* file mappings need MADV_HUGEPAGE to be huge     */
	bool inplace;           /* kernel converts in place: one host mapping      */
	bool dmap_real;         /* kernel removes the file from its direct map     */
	bool writable;          /* pwrite() fills the file in small pages, as a
				 * fault would: shmem without huge pages (not
				 * hugetlbfs, not guest_memfd)                     */
};

struct gm_backend_ops {
	const char *name;
	int  (*open)(struct gm_backing *b, const struct gmem_config *cfg);
	void (*close)(struct gm_backing *b);
	/* Kernel in-place conversion (inplace backings only). On -EAGAIN,
	 * *busy_off is the first offset the kernel found referenced. */
	int  (*set_private)(struct gm_backing *b, uint64_t off, uint64_t len, bool priv,
			    uint64_t *busy_off);
};

extern const struct gm_backend_ops gm_backend_kvm;
extern const struct gm_backend_ops gm_backend_memfd;

/* Free the backing of [off, off + len): reads return zero afterwards. */
int gm_backing_discard(struct gm_backing *b, uint64_t off, uint64_t len);

/* Host facts shared by probe and the backends. */
int  gm_kvm_check(int fd, long cap);               /* >= 0, or -errno          */
int  gm_shmem_thp_mode(char *buf, unsigned size);  /* 0 or -errno              */
bool gm_shmem_thp_allowed(const char *mode);
long gm_sysfs_long(const char *path);              /* value, or -errno         */
long gm_hugepages_free(void);                      /* free 2 MiB hugetlb pages */
bool gm_kvm_guest_memfd_usable(void);
/* In-place conversion found by behaviour on @vm_fd (backend_kvm.c): 1, 0,
 * or -errno when it could not be asked; @how says what was asked and
 * answered. @gmem_caps: KVM_CAP_GUEST_MEMFD_FLAGS. */
int  gm_kvm_inplace_detect(int vm_fd, uint64_t gmem_caps, char *how, unsigned how_size);
/* The verdict of that ioctl (pure): 1 it exists, 0 it does not
 * (ENOTTY, EINVAL, EOPNOTSUPP, ENOSYS), -errno for any other answer. */
int  gm_inplace_verdict(int ioctl_ret, int err);

/* Thread-local reason for the last failure, for gmem_last_error(). */
void gm_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void gm_clear_error(void);

#endif /* GM_BACKEND_H */
