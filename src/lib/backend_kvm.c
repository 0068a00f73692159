// SPDX-License-Identifier: MIT
/*
 * backend_kvm.c - guest memory in a KVM guest_memfd.
 *
 * The file is created on the caller's VM, or on a VM of our own when vm_fd is
 * -1. Kernels like 6.18 offer MMAP and INIT_SHARED but no conversion: the
 * file is made mappable and shared (so the host can reach it at all) and the
 * library enforces private/shared in its host view. Where the kernel offers
 * direct-map removal (flag bit 2) it is asked for; where it converts in place
 * (found by issuing the ioctl, gm_kvm_inplace_detect: capability 249 is only
 * a hint), conversions go to KVM_SET_MEMORY_ATTRIBUTES2 on the file and the
 * kernel itself refuses to make a referenced page private.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "kvm_uapi.h"
#include "sys.h"

static int gm_kvm_vm(struct gm_backing *b, int vm_fd)
{
	int kvm, vm;

	if (vm_fd >= 0) {
		b->vm_fd = vm_fd;
		return 0;
	}
	kvm = gm_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		int err = -errno;

		gm_set_error("cannot open /dev/kvm: %s", strerror(errno));
		return err;
	}
	vm = gm_sys_ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		int err = -errno;

		gm_set_error("KVM_CREATE_VM failed: %s", strerror(errno));
		close(kvm);
		return err;
	}
	close(kvm);
	b->vm_fd = b->own_vm_fd = vm;
	return 0;
}

/* guest_memfd creation flags for @cfg given the kernel's @caps mask. */
static int gm_kvm_flags(struct gm_backing *b, const struct gmem_config *cfg, int caps)
{
	uint64_t f = GUEST_MEMFD_FLAG_MMAP;

	if (caps <= 0 || !(caps & GUEST_MEMFD_FLAG_MMAP)) {
		gm_set_error("guest_memfd cannot be mapped by the host here "
			     "(KVM_CAP_GUEST_MEMFD_FLAGS lacks MMAP)");
		return -EOPNOTSUPP;
	}
	if (b->inplace) {
		if (cfg->flags & GMEM_F_INIT_SHARED)
			f |= GUEST_MEMFD_FLAG_INIT_SHARED;
	} else if (caps & GUEST_MEMFD_FLAG_INIT_SHARED) {
		/* No kernel conversion: the host must reach every page, and the
		 * library keeps private pages out of its own view. */
		f |= GUEST_MEMFD_FLAG_INIT_SHARED;
	} else {
		gm_set_error("guest_memfd offers neither INIT_SHARED nor in-place "
			     "conversion (cap 249): the host could not reach shared pages");
		return -EOPNOTSUPP;
	}
	if (caps & GUEST_MEMFD_FLAG_NO_DIRECT_MAP) {
		f |= GUEST_MEMFD_FLAG_NO_DIRECT_MAP;
		b->dmap_real = true;
	}
	b->gmem_flags = f;
	return 0;
}

static int gm_kvm_open(struct gm_backing *b, const struct gmem_config *cfg)
{
	struct gm_kvm_create_guest_memfd req = { .size = cfg->size };
	char how[128];
	int ret, caps, fd;

	if (cfg->flags & GMEM_F_HUGE) {
		gm_set_error("guest_memfd has no 2 MiB folios on this kernel; "
			     "use the memfd backend for GMEM_F_HUGE");
		return -EOPNOTSUPP;
	}
	ret = gm_kvm_vm(b, cfg->vm_fd);
	if (ret)
		return ret;
	if (gm_kvm_check(b->vm_fd, KVM_CAP_GUEST_MEMFD) <= 0) {
		gm_set_error("KVM has no guest_memfd (KVM_CAP_GUEST_MEMFD)");
		ret = -EOPNOTSUPP;
		goto err_vm;
	}
	caps = gm_kvm_check(b->vm_fd, KVM_CAP_GUEST_MEMFD_FLAGS);
	b->inplace = caps > 0 &&
		     gm_kvm_inplace_detect(b->vm_fd, (uint64_t)caps, how, sizeof(how)) > 0;
	ret = gm_kvm_flags(b, cfg, caps);
	if (ret)
		goto err_vm;
	req.flags = b->gmem_flags;
	fd = gm_sys_ioctl(b->vm_fd, GM_KVM_CREATE_GUEST_MEMFD, &req);
	if (fd < 0) {
		ret = -errno;
		gm_set_error("KVM_CREATE_GUEST_MEMFD (size %llu, flags %#llx): %s",
			     (unsigned long long)req.size, (unsigned long long)req.flags,
			     strerror(errno));
		goto err_vm;
	}
	/* The kernel makes it without close-on-exec: a program the VMM execs
	 * would inherit the whole guest. */
	if (fcntl(fd, F_SETFD, FD_CLOEXEC)) {
		ret = -errno;
		gm_set_error("guest_memfd: FD_CLOEXEC: %s", strerror(errno));
		close(fd);
		goto err_vm;
	}
	b->fd = fd;
	b->granule = 4096;
	b->huge = GMEM_HUGE_NONE;
	return 0;

err_vm:
	if (b->own_vm_fd >= 0)
		close(b->own_vm_fd);
	b->own_vm_fd = b->vm_fd = -1;
	return ret;
}

static void gm_kvm_close(struct gm_backing *b)
{
	close(b->fd);
	if (b->own_vm_fd >= 0)
		close(b->own_vm_fd);
}

static int gm_kvm_set_private(struct gm_backing *b, uint64_t off, uint64_t len, bool priv,
			      uint64_t *busy_off)
{
	struct gm_kvm_memory_attributes2 req = {
		.offset = off,
		.size = len,
		.attributes = priv ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
	};

	if (gm_sys_ioctl(b->fd, GM_KVM_SET_MEMORY_ATTRIBUTES2, &req) == 0)
		return 0;
	if (errno == EAGAIN && busy_off)
		*busy_off = req.error_offset;
	return -errno;
}

const struct gm_backend_ops gm_backend_kvm = {
	.name = "kvm",
	.open = gm_kvm_open,
	.close = gm_kvm_close,
	.set_private = gm_kvm_set_private,
};
