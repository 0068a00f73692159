// SPDX-License-Identifier: MIT
/*
 * guestmem.c - the VM's RAM and the services every layer above uses on it:
 * opening it and binding memslot 0, conversions with the memory-attribute
 * mirror, and the two ways the host reaches guest memory (device accesses
 * through the host view, the hypervisor's own through temporary mappings).
 *
 * Model: the VM owns one gmem memory, private at start, on the library's
 * best backend (a guest_memfd on the VM's fd where KVM has one, else a
 * memfd), or what cfg.open_mem opens (a restored snapshot), bound to
 * memslot 0: a guest_memfd as the slot's file, a memfd as a plain slot,
 * and the library's KVM view as its userspace address either way (KVM on
 * these kernels reads guest memory through that mapping, which therefore
 * must stay whole). On a plain slot KVM knows nothing of private pages:
 * privacy is the host view's alone, and the guest never takes a memory
 * fault exit. The host view (gmem_host) is what device code may touch.
 *
 * Layer: above the accelerators and the library, below every device, bus,
 * the exit dispatch and vm.c; it calls none of them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kvm_uapi.h"
#include "accel/accel.h"

static gv_ioctl_hook_fn gv_ioctl_hook;

void gv_set_ioctl_hook(gv_ioctl_hook_fn hook)
{
	__atomic_store_n(&gv_ioctl_hook, hook, __ATOMIC_SEQ_CST);
}

static int gv_vm_ioctl(int fd, unsigned long req, void *arg)
{
	gv_ioctl_hook_fn hook = __atomic_load_n(&gv_ioctl_hook, __ATOMIC_SEQ_CST);
	int ret;

	if (hook && hook(fd, req, arg, &ret))
		return ret;
	return ioctl(fd, req, arg);
}

static int gv_set_attributes(struct gv_vm *vm, uint64_t gpa, uint64_t len, enum gmem_state s)
{
	struct gm_kvm_memory_attributes a = {
		.address = gpa, .size = len,
		.attributes = s == GMEM_PRIVATE ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
	};

	if (gv_vm_ioctl(vm->vm_fd, GM_KVM_SET_MEMORY_ATTRIBUTES, &a) < 0)
		return -errno;
	return 0;
}

/* gmem_convert_notify: in-place I/O shared or unshared a range on its own;
 * KVM's attributes must follow, or a guest access there faults as the wrong
 * kind. Called under the memory's lock: only the ioctl, no gmem call. */
static void gv_mirror_io(void *ctx, uint64_t gpa, uint64_t len, enum gmem_state to)
{
	struct gv_vm *vm = ctx;

	if (gv_set_attributes(vm, gpa, len, to))
		__atomic_add_fetch(&vm->mirror_errors, 1, __ATOMIC_RELAXED);
	else
		__atomic_add_fetch(&vm->io_mirrored, 1, __ATOMIC_RELAXED);
}

/* RAM: gmem on this VM (a memfd memory under the test accelerator, which
 * has no VM fd), bound where the guest sees it, and the attribute mirror. */
int gv_mem_open(struct gv_vm *vm)
{
	struct gmem_config gc = { .size = vm->cfg.mem_size, .backend = GMEM_BACKEND_AUTO,
				  .vm_fd = vm->vm_fd, .flags = 0 };
	int ret, attrs;

	ret = vm->cfg.open_mem ? vm->cfg.open_mem(vm->cfg.open_mem_ctx, vm->vm_fd,
						  vm->cfg.mem_size, &vm->g)
			       : gmem_open(&gc, &vm->g);
	if (ret) {
		gv_set_error("guest memory: %s (%s)", gmem_strerror(ret), gmem_last_error());
		return ret == -ENOENT || ret == -ENODEV ? -EOPNOTSUPP : ret;
	}
	gmem_info(vm->g, &vm->info);
	if (vm->info.size != vm->cfg.mem_size) {
		gv_set_error("guest memory: %llu bytes, the VM wants %llu",
			     (unsigned long long)vm->info.size,
			     (unsigned long long)vm->cfg.mem_size);
		return -EINVAL;
	}
	ret = vm->accel->ram_bind(vm);
	if (ret)
		return ret;
	/* Where the kernel converts in place it keeps the attributes on the
	 * file itself; only a VM with per-VM attributes needs the mirror. */
	attrs = gv_vm_ioctl(vm->vm_fd, KVM_CHECK_EXTENSION,
			    (void *)(uintptr_t)KVM_CAP_MEMORY_ATTRIBUTES);
	vm->attrs = !vm->info.inplace && vm->info.backend == GMEM_BACKEND_KVM && attrs > 0 &&
		    (attrs & KVM_MEMORY_ATTRIBUTE_PRIVATE);
	if (vm->attrs) {
		ret = gv_set_attributes(vm, 0, vm->cfg.mem_size, GMEM_PRIVATE);
		if (ret) {
			gv_set_error("KVM_SET_MEMORY_ATTRIBUTES (all private): %s", strerror(-ret));
			return ret;
		}
		/* A memory from open_mem may hold shared pages: mirror them. */
		for (uint64_t gpa = 0, run; !ret && gpa < vm->cfg.mem_size; gpa += run) {
			int st = gmem_state(vm->g, gpa);

			for (run = GMEM_PAGE_SIZE; gpa + run < vm->cfg.mem_size &&
			     gmem_state(vm->g, gpa + run) == st; run += GMEM_PAGE_SIZE)
				;
			if (st == GMEM_SHARED)
				ret = gv_set_attributes(vm, gpa, run, GMEM_SHARED);
		}
		if (ret) {
			gv_set_error("KVM_SET_MEMORY_ATTRIBUTES (shared runs): %s", strerror(-ret));
			return ret;
		}
		gmem_convert_notify(vm->g, gv_mirror_io, vm);
	}
	return 0;
}

struct gmem *gv_vm_gmem(struct gv_vm *vm)
{
	return vm->g;
}

int gv_vm_fd(const struct gv_vm *vm)
{
	return vm->vm_fd;
}

unsigned gv_vm_ncpus(const struct gv_vm *vm)
{
	return vm->ncpus;
}

uint64_t gv_vm_mem_size(const struct gv_vm *vm)
{
	return vm->cfg.mem_size;
}

int gv_vm_io(struct gv_vm *vm, bool calibrate, struct gmem_io **out)
{
	struct gmem_io_config cfg = { .flags = GMEM_IO_CTX_NO_CALIBRATE };
	struct gmem_io_stats st;
	int ret;

	if (vm->started) {
		gv_set_error("the I/O context must be made before the guest starts");
		return -EBUSY;
	}
	if (!vm->io) {
		ret = gmem_io_create(vm->g, calibrate ? NULL : &cfg, &vm->io);
		if (ret) {
			gv_set_error("gmem_io_create: %s", gmem_strerror(ret));
			return ret;
		}
	} else if (calibrate && !gmem_io_stats(vm->io, &st) && !st.calibrations) {
		ret = gmem_io_calibrate(vm->io);
		if (ret) {
			gv_set_error("gmem_io_calibrate: %s", gmem_strerror(ret));
			return ret;
		}
	}
	*out = vm->io;
	return 0;
}

static bool gv_range_ok(const struct gv_vm *vm, uint64_t gpa, uint64_t len)
{
	return len && gpa < vm->cfg.mem_size && len <= vm->cfg.mem_size - gpa;
}

int gv_vm_convert(struct gv_vm *vm, uint64_t gpa, uint64_t len, enum gmem_state to,
		  uint64_t *busy_gpa)
{
	int ret = gmem_convert(vm->g, gpa, len, to, busy_gpa);

	if (ret || !vm->attrs)
		return ret;
	ret = gv_set_attributes(vm, gpa, len, to);
	if (ret) {
		/* Keep gmem and KVM agreeing: undo the conversion. Going back
		 * to shared cannot be refused; back to private can only be by a
		 * pin taken in between, which then keeps the page shared in
		 * both places as the mirror failed anyway. */
		gmem_convert(vm->g, gpa, len, to == GMEM_SHARED ? GMEM_PRIVATE : GMEM_SHARED,
			     NULL);
		gv_set_error("KVM_SET_MEMORY_ATTRIBUTES: %s", strerror(-ret));
	}
	return ret;
}

/* process_vm_{read,write}v on ourselves: the kernel walks the host view with
 * the mapping's own permissions and reports a private page as EFAULT instead
 * of a signal, so device code can try and fail safely. */
static int gv_dev_xfer(struct gv_vm *vm, uint64_t gpa, void *buf, size_t len, bool write)
{
	struct iovec local = { .iov_base = buf, .iov_len = len };
	struct iovec remote = { .iov_len = len };
	ssize_t n;

	if (!gv_range_ok(vm, gpa, len))
		return -EINVAL;
	remote.iov_base = gmem_host(vm->g, gpa);
	if (!remote.iov_base)
		return -EINVAL;
	n = write ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0)
		  : process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	if (n < 0)
		return errno == EFAULT ? -EFAULT : -errno;
	return (size_t)n == len ? 0 : -EFAULT;
}

int gv_dev_read(struct gv_vm *vm, uint64_t gpa, void *buf, size_t len)
{
	return gv_dev_xfer(vm, gpa, buf, len, false);
}

int gv_dev_write(struct gv_vm *vm, uint64_t gpa, const void *buf, size_t len)
{
	return gv_dev_xfer(vm, gpa, (void *)buf, len, true);
}

/* One page's worth of a hypervisor access. Where the kernel refuses
 * temporary mappings of private pages (in-place conversion), the page is
 * shared for the copy and made private again. */
static int gv_hv_page(struct gv_vm *vm, uint64_t gpa, void *buf, size_t n, bool write)
{
	uint64_t page = gpa & ~(GMEM_PAGE_SIZE - 1);
	uint8_t *p = gmem_kmap(vm->g, gpa);
	int ret, state;

	if (p) {
		if (write)
			memcpy(p, buf, n);
		else
			memcpy(buf, p, n);
		gmem_kunmap(vm->g, p);
		return 0;
	}
	if (errno != EOPNOTSUPP)
		return -errno;
	state = gmem_state(vm->g, page);
	if (state < 0)
		return state;
	if (state == GMEM_PRIVATE) {
		ret = gv_vm_convert(vm, page, GMEM_PAGE_SIZE, GMEM_SHARED, NULL);
		if (ret)
			return ret;
	}
	p = gmem_host(vm->g, gpa);
	if (write)
		memcpy(p, buf, n);
	else
		memcpy(buf, p, n);
	if (state == GMEM_PRIVATE)
		return gv_vm_convert(vm, page, GMEM_PAGE_SIZE, GMEM_PRIVATE, NULL);
	return 0;
}

static int gv_hv_xfer(struct gv_vm *vm, uint64_t gpa, void *buf, size_t len, bool write)
{
	uint8_t *b = buf;

	if (!len)
		return 0;
	if (!gv_range_ok(vm, gpa, len))
		return -EINVAL;
	while (len) {
		size_t n = GMEM_PAGE_SIZE - (gpa & (GMEM_PAGE_SIZE - 1));
		int ret;

		if (n > len)
			n = len;
		ret = gv_hv_page(vm, gpa, b, n, write);
		if (ret)
			return ret;
		gpa += n;
		b += n;
		len -= n;
	}
	return 0;
}

int gv_hv_read(struct gv_vm *vm, uint64_t gpa, void *buf, size_t len)
{
	return gv_hv_xfer(vm, gpa, buf, len, false);
}

int gv_hv_write(struct gv_vm *vm, uint64_t gpa, const void *buf, size_t len)
{
	return gv_hv_xfer(vm, gpa, (void *)buf, len, true);
}

/* Zero [gpa, gpa + len) through the hypervisor path, a page at a time. */
int gv_hv_zero(struct gv_vm *vm, uint64_t gpa, uint64_t len)
{
	static const uint8_t zero[GMEM_PAGE_SIZE];

	while (len) {
		uint64_t n = GMEM_PAGE_SIZE - (gpa & (GMEM_PAGE_SIZE - 1));
		int ret;

		if (n > len)
			n = len;
		ret = gv_hv_write(vm, gpa, zero, n);
		if (ret)
			return ret;
		gpa += n;
		len -= n;
	}
	return 0;
}
