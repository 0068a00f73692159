// SPDX-License-Identifier: MIT
/*
 * accel/kvm.c - the KVM accelerator: /dev/kvm, the VM and vCPU fds, the
 * memslot, KVM_RUN, and the signal kick.
 *
 * Model: one thread per vCPU, as in kvmtool. A thread leaves KVM_RUN for an
 * exit vcpu.c handles, or because another thread kicked it: the kicker sets
 * run->immediate_exit (covers a thread about to enter KVM_RUN) and sends
 * GV_SIG_KICK (covers one inside it; the handler does nothing, the point is
 * the -EINTR). Before a pause parks a vCPU it re-enters KVM_RUN with
 * immediate_exit so that KVM completes any pending I/O: only then are its
 * registers consistent (KVM API, "immediate_exit").
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm_para.h>

#include "kvm_uapi.h"
#include "accel.h"

#define GV_SIG_KICK SIGUSR1

static void gv_kvm_kick_handler(int sig)
{
	(void)sig;
}

static pthread_once_t gv_kvm_sig_once = PTHREAD_ONCE_INIT;

static void gv_kvm_sig_install(void)
{
	struct sigaction sa = { .sa_handler = gv_kvm_kick_handler };

	/* No SA_RESTART: the kick must interrupt KVM_RUN. */
	sigemptyset(&sa.sa_mask);
	sigaction(GV_SIG_KICK, &sa, NULL);
}

/* Ask KVM to exit to us on KVM_HC_MAP_GPA_RANGE (a guest converting memory
 * the Linux way). Kernels without it leave the call to KVM, which answers
 * -KVM_ENOSYS: the guest then has the gv_abi.h hypercalls only. */
static void gv_kvm_enable_exit_hypercall(struct gv_vm *vm)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_EXIT_HYPERCALL,
		.args = { 1ull << KVM_HC_MAP_GPA_RANGE },
	};
	int have = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_EXIT_HYPERCALL);

	if (have > 0 && (have & (1 << KVM_HC_MAP_GPA_RANGE)))
		vm->exit_hypercall = !ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap);
}

/* /dev/kvm and the capabilities the VMM cannot do without. Every failure
 * is -EOPNOTSUPP: KVM is missing or unusable here, not a caller mistake. */
static int gv_kvm_vm_init(struct gv_vm *vm)
{
	int ver;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		gv_set_error("/dev/kvm: %s (KVM %s; --accel=test runs the VMM without it)",
			     strerror(errno), errno == ENOENT ? "is not available on this host"
							      : "cannot be used by this user");
		return -EOPNOTSUPP;
	}
	ver = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION) {
		gv_set_error("/dev/kvm: API version %d, want %d", ver, KVM_API_VERSION);
		return -EOPNOTSUPP;
	}
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY2) <= 0) {
		gv_set_error("/dev/kvm: no KVM_CAP_USER_MEMORY2; Linux 6.8 or later is needed");
		return -EOPNOTSUPP;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		gv_set_error("KVM_CREATE_VM: %s (is another hypervisor holding the CPU?)",
			     strerror(errno));
		return -EOPNOTSUPP;
	}
	ver = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (ver < (int)sizeof(struct kvm_run)) {
		gv_set_error("KVM_GET_VCPU_MMAP_SIZE: %d", ver);
		return -EOPNOTSUPP;
	}
	vm->run_size = (size_t)ver;
	gv_kvm_enable_exit_hypercall(vm);
	return 0;
}

/* Slot 0: a guest_memfd as the slot's file, a memfd as a plain slot (KVM
 * then uses the KVM view alone); the KVM view as userspace address. */
static int gv_kvm_ram_bind(struct gv_vm *vm)
{
	struct gm_kvm_userspace_memory_region2 slot = { 0 };

	if (vm->info.backend == GMEM_BACKEND_KVM) {
		slot.flags = KVM_MEM_GUEST_MEMFD;
		slot.guest_memfd = (uint32_t)vm->info.fd;
	}
	slot.memory_size = vm->cfg.mem_size;
	slot.userspace_addr = (uintptr_t)gmem_kvm_view(vm->g);
	if (ioctl(vm->vm_fd, GM_KVM_SET_USER_MEMORY_REGION2, &slot) < 0) {
		int ret = -errno;

		gv_set_error("KVM_SET_USER_MEMORY_REGION2 (guest_memfd %d): %s", vm->info.fd,
			     strerror(errno));
		return ret;
	}
	return 0;
}

static void gv_kvm_vm_fini(struct gv_vm *vm)
{
	/* The memslot goes with the VM; vm.c closes the memory after. */
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
}

static int gv_kvm_vcpu_init(struct gv_vcpu *vcpu)
{
	struct gv_vm *vm = vcpu->vm;
	void *run;
	int ret;

	vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, vcpu->id);
	if (vcpu->fd < 0) {
		ret = -errno;
		gv_set_error("KVM_CREATE_VCPU %u: %s", vcpu->id, strerror(errno));
		return ret;
	}
	run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (run == MAP_FAILED) {
		ret = -errno;
		gv_set_error("mapping vCPU %u's kvm_run: %s", vcpu->id, strerror(errno));
		return ret;
	}
	vcpu->run = run;
	return 0;
}

static void gv_kvm_vcpu_fini(struct gv_vcpu *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, vcpu->vm->run_size);
	if (vcpu->fd >= 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
}

/* The CPUID KVM supports, with this vCPU's APIC ID in leaves 1, 0xb, 0x1f. */
static int gv_kvm_vcpu_cpuid(struct gv_vcpu *vcpu)
{
	unsigned n = 256;
	struct kvm_cpuid2 *c;
	int ret = 0;

	for (;;) {
		c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = n;
		if (ioctl(vcpu->vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			break;
		ret = -errno;
		free(c);
		if (ret != -E2BIG || n >= 4096)
			goto fail;
		n *= 2;
	}
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 1)
			e->ebx = (e->ebx & 0x00ffffff) | (vcpu->id << 24);
		if (e->function == 0xb || e->function == 0x1f)
			e->edx = vcpu->id;
	}
	ret = ioctl(vcpu->fd, KVM_SET_CPUID2, c) ? -errno : 0;
	free(c);
	if (!ret)
		return 0;
fail:
	gv_set_error("vCPU %u: KVM_SET_CPUID2: %s", vcpu->id, strerror(-ret));
	return ret;
}

static int gv_kvm_run(struct gv_vcpu *vcpu)
{
	if (ioctl(vcpu->fd, KVM_RUN, 0) == 0)
		return 0;
	return errno == EINTR || errno == EAGAIN ? -EINTR : -errno;
}

static void gv_kvm_kick(struct gv_vcpu *vcpu)
{
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (!pthread_equal(vcpu->thread, pthread_self()))
		pthread_kill(vcpu->thread, GV_SIG_KICK);
}

static void gv_kvm_complete(struct gv_vcpu *vcpu)
{
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	ioctl(vcpu->fd, KVM_RUN, 0);
	__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
}

static void gv_kvm_rearm(struct gv_vcpu *vcpu)
{
	__atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
}

static void gv_kvm_pre_start(struct gv_vm *vm)
{
	(void)vm;
	pthread_once(&gv_kvm_sig_once, gv_kvm_sig_install);
}

static int gv_kvm_get_regs(struct gv_vcpu *vcpu, struct kvm_regs *regs)
{
	return ioctl(vcpu->fd, KVM_GET_REGS, regs) ? -errno : 0;
}

static int gv_kvm_get_state(struct gv_vcpu *vcpu, struct gv_vcpu_state *st)
{
	if (ioctl(vcpu->fd, KVM_GET_REGS, &st->regs) ||
	    ioctl(vcpu->fd, KVM_GET_SREGS, &st->sregs) ||
	    ioctl(vcpu->fd, KVM_GET_FPU, &st->fpu) || ioctl(vcpu->fd, KVM_GET_MP_STATE, &st->mp))
		return -errno;
	return 0;
}

static int gv_kvm_set_state(struct gv_vcpu *vcpu, const struct gv_vcpu_state *st)
{
	/* sregs first: they set the mode the general registers live in. */
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &st->sregs) ||
	    ioctl(vcpu->fd, KVM_SET_REGS, &st->regs) ||
	    ioctl(vcpu->fd, KVM_SET_FPU, &st->fpu) || ioctl(vcpu->fd, KVM_SET_MP_STATE, &st->mp))
		return -errno;
	return 0;
}

const struct gv_accel_ops gv_accel_kvm = {
	.name = "kvm",
	.vm_init = gv_kvm_vm_init,
	.ram_bind = gv_kvm_ram_bind,
	.vm_fini = gv_kvm_vm_fini,
	.vcpu_init = gv_kvm_vcpu_init,
	.vcpu_fini = gv_kvm_vcpu_fini,
	.vcpu_cpuid = gv_kvm_vcpu_cpuid,
	.run = gv_kvm_run,
	.kick = gv_kvm_kick,
	.rearm = gv_kvm_rearm,
	.complete = gv_kvm_complete,
	.pre_start = gv_kvm_pre_start,
	.get_regs = gv_kvm_get_regs,
	.get_state = gv_kvm_get_state,
	.set_state = gv_kvm_set_state,
};
