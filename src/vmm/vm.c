// SPDX-License-Identifier: MIT
/*
 * vm.c - a KVM VM with gmem RAM: creation and teardown, loading a guest,
 * what the VM reports. The top of src/vmm: it calls every layer below
 * (guestmem.c for RAM, vcpu.c, the buses, boot.c) and none calls it.
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
	if (cfg->accel != GV_ACCEL_KVM && cfg->accel != GV_ACCEL_TEST &&
	    cfg->accel != GV_ACCEL_USER) {
		gv_set_error("unknown accelerator %d", (int)cfg->accel);
		return -EINVAL;
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
	vm->accel = cfg->accel == GV_ACCEL_TEST ? &gv_accel_test
		    : cfg->accel == GV_ACCEL_USER ? &gv_accel_user : &gv_accel_kvm;
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
	ret = gv_mem_open(vm);
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

const char *gv_accel_name(const struct gv_vm *vm)
{
	return vm->accel->name;
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
