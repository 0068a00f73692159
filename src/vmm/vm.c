// SPDX-License-Identifier: MIT
/*
 * vm.c - a KVM VM with gmem RAM: creation, the memslot, conversions with
 * the memory-attribute mirror, and the two ways the host reaches guest memory.
 *
 * Model: the VM owns one gmem memory, private at start, on the library's
 * best backend (a guest_memfd on the VM's fd where KVM has one, else a
 * memfd), or what cfg.open_mem opens (a restored snapshot), bound to
 * memslot 0: a guest_memfd as the slot's file, a memfd as a plain slot,
 * and the library's KVM view as its userspace address either way (KVM on
 * these kernels reads guest memory through that mapping, which therefore
 * must stay whole). On a plain slot KVM knows nothing of private pages:
 * privacy is the host view's alone, and the guest never takes a memory
 * fault exit.
 * The host view (gmem_host) is what device code may touch; the hypervisor's
 * own accesses use temporary mappings.
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

static int gv_check_config(const struct gv_config *cfg)
{
	if (!cfg->mem_size || cfg->mem_size % GMEM_REGION_SIZE || cfg->mem_size > GV_MAP_LIMIT) {
		gv_set_error("memory size %llu: must be a non-zero multiple of 2 MiB, at most 4 GiB",
			     (unsigned long long)cfg->mem_size);
		return -EINVAL;
	}
	if (!cfg->ncpus || cfg->ncpus > GV_MAX_CPUS) {
		gv_set_error("%u vCPUs: must be 1..%u", cfg->ncpus, GV_MAX_CPUS);
		return -EINVAL;
	}
	if (cfg->policy != GV_POLICY_CONVERT && cfg->policy != GV_POLICY_STOP) {
		gv_set_error("unknown memory-fault policy %d", (int)cfg->policy);
		return -EINVAL;
	}
	if (cfg->accel != GV_ACCEL_KVM && cfg->accel != GV_ACCEL_TEST) {
		gv_set_error("unknown accelerator %d", (int)cfg->accel);
		return -EINVAL;
	}
	return 0;
}

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
static int gv_open_ram(struct gv_vm *vm)
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

int gv_vm_create(const struct gv_config *cfg, struct gv_vm **out)
{
	struct gv_vm *vm;
	unsigned i;
	int ret;

	if (!cfg || !out) {
		gv_set_error("no config");
		return -EINVAL;
	}
	ret = gv_check_config(cfg);
	if (ret)
		return ret;
	vm = calloc(1, sizeof(*vm) + cfg->ncpus * sizeof(vm->cpu[0]));
	if (!vm) {
		gv_set_error("out of memory");
		return -ENOMEM;
	}
	vm->cfg = *cfg;
	vm->accel = cfg->accel == GV_ACCEL_TEST ? &gv_accel_test : &gv_accel_kvm;
	vm->ncpus = cfg->ncpus;
	vm->kvm_fd = vm->vm_fd = -1;
	for (i = 0; i < vm->ncpus; i++)
		vm->cpu[i].fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_mutex_init(&vm->con_lock, NULL);
	gv_dma_init(&vm->dma);
	vm->result.cpu = -1;

	ret = vm->accel->vm_init(vm);
	if (ret)
		goto err;
	ret = gv_open_ram(vm);
	if (ret)
		goto err;
	for (i = 0; i < vm->ncpus; i++) {
		ret = gv_vcpu_create(vm, i);
		if (ret)
			goto err;
	}
	ret = gv_pio_builtin(vm);
	if (ret)
		goto err;
	*out = vm;
	return 0;

err:
	gv_vm_destroy(vm);
	return ret;
}

void gv_vm_destroy(struct gv_vm *vm)
{
	if (!vm)
		return;
	if (vm->started && !vm->joined) {
		gv_vm_stop(vm);
		gv_vm_wait(vm, NULL);
	}
	/* Devices may hold I/O state on the memory: they go first, then the
	 * pins the guest still holds (their unpin may complete a deferred
	 * return to private), then the I/O context (which puts back any
	 * deferred sharing), then the rest. */
	for (unsigned i = vm->nmmio; i-- > 0;)
		if (vm->mmio[i].release)
			vm->mmio[i].release(vm->mmio[i].ctx);
	for (unsigned i = vm->npio; i-- > 0;)
		if (vm->pio[i].release)
			vm->pio[i].release(vm->pio[i].ctx);
	if (vm->g)
		gv_dma_release(vm);
	gmem_io_destroy(vm->io);
	for (unsigned i = 0; i < vm->ncpus; i++)
		gv_vcpu_destroy(&vm->cpu[i]);
	/* The memslot goes with the VM; the memory after both. */
	vm->accel->vm_fini(vm);
	gmem_close(vm->g);
	free(vm->con);
	free(vm->snap_dev_buf);
	pthread_mutex_destroy(&vm->con_lock);
	gv_dma_fini(&vm->dma);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
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

const char *gv_accel_name(const struct gv_vm *vm)
{
	return vm->accel->name;
}

uint64_t gv_vm_mem_size(const struct gv_vm *vm)
{
	return vm->cfg.mem_size;
}

void gv_vm_paths(const struct gv_vm *vm, struct gv_paths *p)
{
	p->inplace = vm->info.inplace;
	p->dmap_removal = vm->info.dmap_removal;
	p->attributes = vm->attrs;
	p->io_mirrored = __atomic_load_n(&vm->io_mirrored, __ATOMIC_RELAXED);
	p->mirror_errors = __atomic_load_n(&vm->mirror_errors, __ATOMIC_RELAXED);
	p->map_gpa_range = vm->exit_hypercall;
	p->map_gpa_ranges = __atomic_load_n(&vm->map_gpa_ranges, __ATOMIC_RELAXED);
	p->accel = vm->accel->name;
	p->conversion = vm->info.inplace
		? "inplace: the kernel converts the guest_memfd (KVM_SET_MEMORY_ATTRIBUTES2)"
		: "host view: the library maps and unmaps shared runs; KVM uses the KVM view";
}

void gv_vm_limits(struct gv_vm *vm, struct gv_limits *lim)
{
	struct gmem_stats st = { 0 };

	*lim = (struct gv_limits){
		.dma_ranges = GV_DMA_RANGES,
		.dma_max_bytes = GV_DMA_MAX_BYTES,
		.dma_pins_max = GV_DMA_PINS_MAX,
		.view_mapping_budget = vm->info.view_mapping_budget,
		.hostio_max = GV_HOSTIO_MAX,
		.host_read_max = GV_HOST_READ_MAX,
	};
	pthread_mutex_lock(&vm->dma.lock);
	lim->dma_ranges_held = vm->dma.held;
	lim->dma_ranges_peak = vm->dma.peak;
	lim->dma_refused = vm->dma.refused;
	pthread_mutex_unlock(&vm->dma.lock);
	if (!gmem_stats(vm->g, &st))
		lim->view_mappings = st.view_mappings;
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
static int gv_hv_zero(struct gv_vm *vm, uint64_t gpa, uint64_t len)
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

int gv_vm_load_elf(struct gv_vm *vm, const void *buf, size_t len)
{
	struct gv_elf_image img;
	int ret;

	if (vm->loaded || vm->started) {
		gv_set_error("a guest is already loaded");
		return -EBUSY;
	}
	ret = gv_elf_parse(buf, len, vm->cfg.mem_size, vm->ncpus, &img);
	if (ret)
		return ret;
	ret = gv_boot_write_tables(vm);
	if (ret)
		return ret;
	for (unsigned i = 0; i < img.nseg; i++) {
		const struct gv_elf_seg *s = &img.seg[i];

		ret = gv_hv_write(vm, s->gpa, (const uint8_t *)buf + s->offset, s->filesz);
		if (!ret && s->memsz > s->filesz)
			ret = gv_hv_zero(vm, s->gpa + s->filesz, s->memsz - s->filesz);
		if (ret) {
			gv_set_error("writing segment %u at %#llx: %s", i,
				     (unsigned long long)s->gpa, strerror(-ret));
			return ret;
		}
	}
	for (unsigned i = 0; i < vm->ncpus; i++) {
		ret = gv_boot_vcpu(&vm->cpu[i], img.entry);
		if (ret)
			return ret;
	}
	vm->entry = img.entry;
	vm->loaded = true;
	return 0;
}

/* Read the whole file: a mapping would SIGBUS if the file shrank under us. */
static int gv_read_file(const char *path, uint8_t **out, size_t *outlen)
{
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		gv_set_error("%s: %s", path, strerror(errno));
		return ret;
	}
	for (;;) {
		ssize_t n;

		if (len == cap) {
			uint8_t *nb;

			if (cap >= GV_ELF_MAX_SIZE) {
				gv_set_error("%s: larger than any guest program (%llu MiB)", path,
					     GV_ELF_MAX_SIZE >> 20);
				ret = -ENOEXEC;
				goto err;
			}
			cap = cap ? cap * 2 : 64 * 1024;
			nb = realloc(buf, cap);
			if (!nb) {
				gv_set_error("%s: out of memory", path);
				ret = -ENOMEM;
				goto err;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			gv_set_error("%s: %s", path, strerror(errno));
			goto err;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	*out = buf;
	*outlen = len;
	return 0;

err:
	free(buf);
	close(fd);
	return ret;
}

int gv_vm_load_file(struct gv_vm *vm, const char *path)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret;

	ret = gv_read_file(path, &buf, &len);
	if (ret)
		return ret;
	ret = gv_vm_load_elf(vm, buf, len);
	if (ret == -ENOEXEC || ret == -EFBIG) {
		/* Say which file: the parser only knows bytes. */
		char why[512];

		snprintf(why, sizeof(why), "%s", gv_last_error());
		gv_set_error("%s: %s", path, why);
	}
	free(buf);
	return ret;
}
