// SPDX-License-Identifier: MIT
/*
 * hcall.c - the hypercall device on GV_PORT_HCALL: guest-driven conversion
 * (pKVM-style share/unshare), a stand-in DMA engine (pin/unpin, dma.c), and the
 * host-I/O device that converts a guest buffer on its own to work on it.
 *
 * Model: the guest executes `inl (%dx)` with the number in rax and the
 * arguments in rdi, rsi, rcx (gv_abi.h). The registers are read with
 * KVM_GET_REGS while the IN is pending, so they are the guest's values
 * before the instruction; the result goes back as the value read, which
 * KVM stores into eax when it completes the IN on the next KVM_RUN.
 *
 * The host-I/O device is device code: it reaches guest memory only through
 * the host view. To work on a private buffer it converts the private pages
 * of the range to shared itself (host-driven, in place), pins them for the
 * duration of the "DMA", transforms the bytes, unpins, and makes exactly
 * those pages private again. A page the guest keeps private is never
 * reachable to it: GV_HC_HOST_READ shows that by reading the host view and
 * returning the fault as -EFAULT.
 */
#include <errno.h>
#include <string.h>

#include <linux/kvm_para.h>

#include "vmm_internal.h"

/* arch/x86/include/uapi/asm/kvm_para.h, "KVM_HC_MAP_GPA_RANGE". */
#define GV_MAP_GPA_PAGE_SZ_MASK  0x3ull         /* 4K, 2M, 1G: a hint       */
#define GV_MAP_GPA_ENCRYPTED     (1ull << 4)    /* to private; 0: to shared */

static int gv_page_range(const struct gv_vm *vm, uint64_t gpa, uint64_t len, uint64_t max,
			 uint64_t *first, uint64_t *end)
{
	if (!len || len > max || gpa >= vm->cfg.mem_size || len > vm->cfg.mem_size - gpa)
		return -EINVAL;
	*first = gpa & ~(GMEM_PAGE_SIZE - 1);
	*end = (gpa + len + GMEM_PAGE_SIZE - 1) & ~(GMEM_PAGE_SIZE - 1);
	return 0;
}

static void gv_transform(uint8_t *p, size_t n, unsigned op)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (op == GV_HOSTIO_UPPER && c >= 'a' && c <= 'z')
			c -= 'a' - 'A';
		else if (op == GV_HOSTIO_ROT13 && c >= 'a' && c <= 'z')
			c = 'a' + (c - 'a' + 13) % 26;
		else if (op == GV_HOSTIO_ROT13 && c >= 'A' && c <= 'Z')
			c = 'A' + (c - 'A' + 13) % 26;
		p[i] = c;
	}
}

/* Convert the pages of [first, end) that are @from to the other state,
 * run by run; on failure put back the runs already converted. With
 * @undo set, @was holds which pages to convert back. */
static int gv_flip_runs(struct gv_vm *vm, uint64_t first, uint64_t end, enum gmem_state from,
			const uint8_t *was, uint8_t *mark)
{
	enum gmem_state to = from == GMEM_PRIVATE ? GMEM_SHARED : GMEM_PRIVATE;
	uint64_t gpa = first;
	int ret = 0;

	while (gpa < end) {
		uint64_t run_end;
		size_t i = (gpa - first) / GMEM_PAGE_SIZE;

		if (was ? !was[i] : gmem_state(vm->g, gpa) != (int)from) {
			gpa += GMEM_PAGE_SIZE;
			continue;
		}
		run_end = gpa + GMEM_PAGE_SIZE;
		while (run_end < end &&
		       (was ? was[(run_end - first) / GMEM_PAGE_SIZE]
			    : gmem_state(vm->g, run_end) == (int)from))
			run_end += GMEM_PAGE_SIZE;
		ret = gv_vm_convert(vm, gpa, run_end - gpa, to, NULL);
		if (ret)
			break;
		if (mark)
			memset(mark + i, 1, (run_end - gpa) / GMEM_PAGE_SIZE);
		gpa = run_end;
	}
	if (ret && mark)
		gv_flip_runs(vm, first, gpa, to, mark, NULL);
	return ret;
}

static int gv_hc_hostio(struct gv_vm *vm, uint64_t gpa, uint64_t len, uint64_t op)
{
	uint8_t was_private[GV_HOSTIO_MAX / GMEM_PAGE_SIZE + 1] = { 0 };
	uint64_t first, end;
	int ret, ret2;

	if (op != GV_HOSTIO_UPPER && op != GV_HOSTIO_ROT13)
		return -EINVAL;
	ret = gv_page_range(vm, gpa, len, GV_HOSTIO_MAX, &first, &end);
	if (ret)
		return ret;
	/* Host-driven: share what the guest has private, in place. */
	ret = gv_flip_runs(vm, first, end, GMEM_PRIVATE, NULL, was_private);
	if (ret)
		return ret;
	/* The "DMA": pinned while the device works on it. */
	ret = gmem_pin(vm->g, first, end - first);
	if (ret)
		goto unshare;
	gv_transform(gmem_host(vm->g, gpa), len, (unsigned)op);
	ret = gmem_unpin(vm->g, first, end - first);
unshare:
	ret2 = gv_flip_runs(vm, first, end, GMEM_SHARED, was_private, NULL);
	return ret ? ret : ret2;
}

/* Device code reading the host view: a private page is a fault. */
static int gv_hc_host_read(struct gv_vm *vm, uint64_t gpa, uint64_t len)
{
	uint8_t buf[GV_HOST_READ_MAX];
	uint32_t sum = 0;
	int ret;

	if (!len || len > sizeof(buf))
		return -EINVAL;
	ret = gv_dev_read(vm, gpa, buf, len);
	if (ret)
		return ret;
	for (uint64_t i = 0; i < len; i++)
		sum += buf[i];
	return (int)(sum & 0x7fffffff);
}

static int gv_hcall(struct gv_vm *vm, uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2)
{
	switch (nr) {
	case GV_HC_SHARE:
		return gv_vm_convert(vm, a0, a1, GMEM_SHARED, NULL);
	case GV_HC_UNSHARE:
		return gv_vm_convert(vm, a0, a1, GMEM_PRIVATE, NULL);
	case GV_HC_STATE:
		return gmem_state(vm->g, a0);
	case GV_HC_IO_PIN:
		return gv_dma_pin(vm, a0, a1);
	case GV_HC_IO_UNPIN:
		return gv_dma_unpin(vm, a0, a1);
	case GV_HC_HOSTIO:
		return gv_hc_hostio(vm, a0, a1, a2);
	case GV_HC_HOST_READ:
		return gv_hc_host_read(vm, a0, a1);
	default:
		return -ENOSYS;
	}
}

int gv_hcall_in(struct gv_vcpu *vcpu, uint16_t port, void *data, unsigned size, void *ctx)
{
	struct kvm_regs regs;
	int32_t ret;
	int err;

	(void)port, (void)ctx;
	err = gv_vcpu_get_regs(vcpu, &regs);
	if (err)
		return err;
	ret = size == 4 ? gv_hcall(vcpu->vm, regs.rax, regs.rdi, regs.rsi, regs.rcx) : -EINVAL;
	memcpy(data, &ret, size < sizeof(ret) ? size : sizeof(ret));
	return 0;
}

/*
 * KVM_EXIT_HYPERCALL: KVM_HC_MAP_GPA_RANGE, the call Linux guests make to
 * change a range's state (arch/x86 mem_encrypt code, set_memory_decrypted):
 * args = gpa, number of 4 KiB pages, attributes (bit 4: private; bits 0-1:
 * the page size the guest used, a hint). KVM checks alignment and wrapping
 * before it exits, but the test accelerator and a future kernel may not:
 * everything is checked again. The result goes in run->hypercall.ret, which
 * KVM puts in the guest's rax: 0, or a negative errno (-EAGAIN: a page is
 * pinned or mapped by a device; the guest retries, as Linux does).
 */
static int64_t gv_map_gpa_range(struct gv_vm *vm, uint64_t gpa, uint64_t npages,
				uint64_t attrs)
{
	enum gmem_state to = attrs & GV_MAP_GPA_ENCRYPTED ? GMEM_PRIVATE : GMEM_SHARED;
	uint64_t pages_in_ram = vm->cfg.mem_size / GMEM_PAGE_SIZE;

	if (attrs & ~(GV_MAP_GPA_PAGE_SZ_MASK | GV_MAP_GPA_ENCRYPTED) ||
	    (attrs & GV_MAP_GPA_PAGE_SZ_MASK) == GV_MAP_GPA_PAGE_SZ_MASK)
		return -EINVAL;
	if (gpa % GMEM_PAGE_SIZE || !npages || gpa >= vm->cfg.mem_size ||
	    npages > pages_in_ram - gpa / GMEM_PAGE_SIZE)
		return -EINVAL;
	return gv_vm_convert(vm, gpa, npages * GMEM_PAGE_SIZE, to, NULL);
}

int gv_hcall_exit(struct gv_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct gv_vm *vm = vcpu->vm;

	if (run->hypercall.nr != KVM_HC_MAP_GPA_RANGE) {
		/* KVM exits only for the calls the VMM enabled; answer any
		 * other as KVM answers an unknown hypercall. */
		run->hypercall.ret = (uint64_t)-KVM_ENOSYS;
		return 0;
	}
	run->hypercall.ret = (uint64_t)gv_map_gpa_range(vm, run->hypercall.args[0],
							 run->hypercall.args[1],
							 run->hypercall.args[2]);
	if (run->hypercall.ret == 0)
		__atomic_add_fetch(&vm->map_gpa_ranges, 1, __ATOMIC_RELAXED);
	return 0;
}
