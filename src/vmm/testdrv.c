// SPDX-License-Identifier: MIT
/*
 * testdrv.c - the driver side of the test accelerator: what a guest
 * instruction would make KVM report, posted to a vCPU (accel/test.c) and
 * handled by the VMM's own exit dispatch.
 *
 * Each call validates its arguments as KVM's exit would be shaped (sizes 1,
 * 2 or 4 for port I/O, 1..8 bytes of MMIO), fills the kvm_run record as KVM
 * does, and returns the handler's verdict (vmm.h, "The test accelerator's
 * driver"). Guest memory is reached through the memslot mapping, the KVM
 * view, as the guest's own loads and stores are.
 */
#include <errno.h>
#include <string.h>

#include "kvm_uapi.h"
#include "accel/test.h"

struct gv_pio_req {
	uint16_t port;
	uint8_t dir;
	unsigned size;
	uint32_t count;
	const void *out;        /* count * size bytes, or NULL for IN */
	void *in;               /* where IN data goes                  */
};

static int gv_test_vcpu_of(struct gv_vm *vm, unsigned cpu, struct gv_vcpu **out)
{
	if (!vm) {
		gv_set_error("no VM");
		return -EINVAL;
	}
	if (vm->accel != &gv_accel_test) {
		gv_set_error("the VM runs on the %s accelerator, not test", vm->accel->name);
		return -EOPNOTSUPP;
	}
	*out = gv_vm_vcpu(vm, cpu);
	if (!*out) {
		gv_set_error("no vCPU %u (the VM has %u)", cpu, vm->ncpus);
		return -EINVAL;
	}
	return 0;
}

static void gv_pio_fill(struct kvm_run *run, struct kvm_regs *regs, void *ctx)
{
	const struct gv_pio_req *r = ctx;

	(void)regs;
	run->exit_reason = KVM_EXIT_IO;
	run->io.direction = r->dir;
	run->io.size = (uint8_t)r->size;
	run->io.port = r->port;
	run->io.count = r->count;
	run->io.data_offset = GV_TEST_DATA_OFF;
	if (r->out)
		memcpy((uint8_t *)run + GV_TEST_DATA_OFF, r->out, (size_t)r->size * r->count);
}

static void gv_pio_done(const struct kvm_run *run, void *ctx)
{
	const struct gv_pio_req *r = ctx;

	if (r->in)
		memcpy(r->in, (const uint8_t *)run + GV_TEST_DATA_OFF, (size_t)r->size * r->count);
}

static int gv_test_pio(struct gv_vm *vm, unsigned cpu, struct gv_pio_req *r)
{
	struct gv_vcpu *vcpu;
	int ret = gv_test_vcpu_of(vm, cpu, &vcpu);

	if (ret)
		return ret;
	if ((r->size != 1 && r->size != 2 && r->size != 4) || !r->count ||
	    (uint64_t)r->size * r->count > GV_TEST_RUN_SIZE - GV_TEST_DATA_OFF) {
		gv_set_error("port I/O of %u x %u bytes: not what an instruction does",
			     r->count, r->size);
		return -EINVAL;
	}
	return gv_test_post(vcpu, gv_pio_fill, gv_pio_done, r);
}

int gv_test_out(struct gv_vm *vm, unsigned cpu, uint16_t port, unsigned size, uint32_t val)
{
	struct gv_pio_req r = { .port = port, .dir = KVM_EXIT_IO_OUT, .size = size,
				.count = 1, .out = &val };

	return gv_test_pio(vm, cpu, &r);
}

int gv_test_outs(struct gv_vm *vm, unsigned cpu, uint16_t port, unsigned size,
		 const void *buf, uint32_t count)
{
	struct gv_pio_req r = { .port = port, .dir = KVM_EXIT_IO_OUT, .size = size,
				.count = count, .out = buf };

	if (!buf)
		return -EINVAL;
	return gv_test_pio(vm, cpu, &r);
}

int gv_test_in(struct gv_vm *vm, unsigned cpu, uint16_t port, unsigned size, uint32_t *val)
{
	uint32_t v = 0;
	struct gv_pio_req r = { .port = port, .dir = KVM_EXIT_IO_IN, .size = size,
				.count = 1, .in = &v };
	int ret;

	if (!val)
		return -EINVAL;
	ret = gv_test_pio(vm, cpu, &r);
	*val = v;
	return ret;
}

/* ---- the gv_abi.h hypercall: registers, then inl from GV_PORT_HCALL ---- */

struct gv_hcall_req {
	struct gv_pio_req pio;
	uint64_t nr, a0, a1, a2;
	uint32_t value;
};

static void gv_hcall_fill(struct kvm_run *run, struct kvm_regs *regs, void *ctx)
{
	struct gv_hcall_req *h = ctx;

	regs->rax = h->nr;
	regs->rdi = h->a0;
	regs->rsi = h->a1;
	regs->rcx = h->a2;
	regs->rdx = GV_PORT_HCALL;
	gv_pio_fill(run, regs, &h->pio);
}

int gv_test_hypercall(struct gv_vm *vm, unsigned cpu, uint64_t nr, uint64_t a0, uint64_t a1,
		      uint64_t a2, int64_t *result)
{
	struct gv_hcall_req h = {
		.pio = { .port = GV_PORT_HCALL, .dir = KVM_EXIT_IO_IN, .size = 4, .count = 1 },
		.nr = nr, .a0 = a0, .a1 = a1, .a2 = a2,
	};
	struct gv_vcpu *vcpu;
	int ret = gv_test_vcpu_of(vm, cpu, &vcpu);

	if (ret)
		return ret;
	h.pio.in = &h.value;
	ret = gv_test_post(vcpu, gv_hcall_fill, gv_pio_done, &h);
	if (result)
		*result = (int32_t)h.value;
	return ret;
}

/* ---- KVM_EXIT_HYPERCALL ------------------------------------------------- */

struct gv_vmcall_req {
	uint64_t nr;
	uint64_t args[6];
	uint64_t ret;
};

static void gv_vmcall_fill(struct kvm_run *run, struct kvm_regs *regs, void *ctx)
{
	const struct gv_vmcall_req *v = ctx;

	(void)regs;
	run->exit_reason = KVM_EXIT_HYPERCALL;
	run->hypercall.nr = v->nr;
	memcpy(run->hypercall.args, v->args, sizeof(v->args));
	run->hypercall.longmode = 1;
}

static void gv_vmcall_done(const struct kvm_run *run, void *ctx)
{
	struct gv_vmcall_req *v = ctx;

	v->ret = run->hypercall.ret;
}

int gv_test_vmcall(struct gv_vm *vm, unsigned cpu, uint64_t nr, const uint64_t args[6],
		   int64_t *result)
{
	struct gv_vmcall_req v = { .nr = nr };
	struct gv_vcpu *vcpu;
	int ret = gv_test_vcpu_of(vm, cpu, &vcpu);

	if (ret)
		return ret;
	if (args)
		memcpy(v.args, args, sizeof(v.args));
	ret = gv_test_post(vcpu, gv_vmcall_fill, gv_vmcall_done, &v);
	if (result)
		*result = (int64_t)v.ret;
	return ret;
}

/* ---- MMIO, memory faults, HLT -------------------------------------------- */

struct gv_mmio_req {
	uint64_t gpa;
	bool write;
	void *data;
	unsigned len;
};

static void gv_mmio_fill(struct kvm_run *run, struct kvm_regs *regs, void *ctx)
{
	const struct gv_mmio_req *m = ctx;

	(void)regs;
	run->exit_reason = KVM_EXIT_MMIO;
	run->mmio.phys_addr = m->gpa;
	run->mmio.len = m->len;
	run->mmio.is_write = m->write;
	if (m->write)
		memcpy(run->mmio.data, m->data, m->len);
}

static void gv_mmio_done(const struct kvm_run *run, void *ctx)
{
	const struct gv_mmio_req *m = ctx;

	if (!m->write)
		memcpy(m->data, run->mmio.data, m->len);
}

int gv_test_mmio(struct gv_vm *vm, unsigned cpu, uint64_t gpa, bool write, void *data,
		 unsigned len)
{
	struct gv_mmio_req m = { .gpa = gpa, .write = write, .data = data, .len = len };
	struct gv_vcpu *vcpu;
	int ret = gv_test_vcpu_of(vm, cpu, &vcpu);

	if (ret)
		return ret;
	if (!data || !len || len > 8) {
		gv_set_error("MMIO of %u bytes: an access is 1..8 bytes", len);
		return -EINVAL;
	}
	return gv_test_post(vcpu, gv_mmio_fill, gv_mmio_done, &m);
}

static void gv_fault_fill(struct kvm_run *run, struct kvm_regs *regs, void *ctx)
{
	const struct gm_kvm_memory_fault *mf = ctx;

	(void)regs;
	run->exit_reason = KVM_EXIT_MEMORY_FAULT;
	memcpy(&run->hw, mf, sizeof(*mf));      /* first member of the exit union */
}

int gv_test_memory_fault(struct gv_vm *vm, unsigned cpu, uint64_t gpa, uint64_t size,
			 bool private_access)
{
	struct gm_kvm_memory_fault mf = {
		.flags = private_access ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0,
		.gpa = gpa, .size = size,
	};
	struct gv_vcpu *vcpu;
	int ret = gv_test_vcpu_of(vm, cpu, &vcpu);

	if (ret)
		return ret;
	return gv_test_post(vcpu, gv_fault_fill, NULL, &mf);
}

static void gv_halt_fill(struct kvm_run *run, struct kvm_regs *regs, void *ctx)
{
	(void)regs, (void)ctx;
	run->exit_reason = KVM_EXIT_HLT;
}

int gv_test_halt(struct gv_vm *vm, unsigned cpu)
{
	struct gv_vcpu *vcpu;
	int ret = gv_test_vcpu_of(vm, cpu, &vcpu);

	if (ret)
		return ret;
	return gv_test_post(vcpu, gv_halt_fill, NULL, NULL);
}

/* ---- the guest's own memory accesses -------------------------------------- */

static int gv_test_mem(struct gv_vm *vm, uint64_t gpa, void *buf, size_t len, bool write)
{
	uint8_t *view;

	if (!vm || (!buf && len) || gpa > vm->cfg.mem_size || len > vm->cfg.mem_size - gpa) {
		gv_set_error("guest access [%#llx, +%#zx): outside RAM",
			     (unsigned long long)gpa, len);
		return -EINVAL;
	}
	if (vm->accel != &gv_accel_test) {
		gv_set_error("the VM runs on the %s accelerator, not test", vm->accel->name);
		return -EOPNOTSUPP;
	}
	view = gmem_kvm_view(vm->g);
	if (!view)
		return -EFAULT;
	if (write)
		memcpy(view + gpa, buf, len);
	else
		memcpy(buf, view + gpa, len);
	return 0;
}

int gv_test_mem_write(struct gv_vm *vm, uint64_t gpa, const void *buf, size_t len)
{
	return gv_test_mem(vm, gpa, (void *)buf, len, true);
}

int gv_test_mem_read(struct gv_vm *vm, uint64_t gpa, void *buf, size_t len)
{
	return gv_test_mem(vm, gpa, buf, len, false);
}
