// SPDX-License-Identifier: MIT
/*
 * test_kvm.c - gmem memory bound to a KVM memslot, with a guest running
 * from private pages.
 *
 * The VMM side of the contract: the guest_memfd from gmem_info() and the KVM
 * view from gmem_kvm_view() go into KVM_SET_USER_MEMORY_REGION2; a tiny
 * real-mode guest placed in private memory through a temporary mapping runs,
 * writes a private page, and the host sees the write only through gmem_kmap
 * while the host view of that page still faults.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"
#include "kvm_uapi.h"

#define KT_SIZE      (2 * TH_MIB)
#define KT_CODE_GPA  0x0000ull
#define KT_DATA_GPA  0x2000ull

struct kt_vm {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
	struct gmem *g;
};

static void kt_vm_open(struct kt_vm *t)
{
	const char *why = th_kvm_unavailable();
	struct gmem_config cfg = { .size = KT_SIZE, .backend = GMEM_BACKEND_KVM };
	int ret;

	if (why)
		cr_skip_test("%s", why);
	t->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	cr_assert_geq(t->kvm, 0);
	t->vm = ioctl(t->kvm, KVM_CREATE_VM, 0);
	cr_assert_geq(t->vm, 0, "KVM_CREATE_VM: %s", strerror(errno));
	cfg.vm_fd = t->vm;
	ret = gmem_open(&cfg, &t->g);
	cr_assert_eq(ret, 0, "gmem_open on the caller's VM: %s (%s)", gmem_strerror(ret),
		     gmem_last_error());
}

static void kt_bind(struct kt_vm *t)
{
	struct gmem_info info;
	struct gm_kvm_userspace_memory_region2 slot = { 0 };
	int ret;

	cr_assert_eq(gmem_info(t->g, &info), 0);
	cr_assert_eq(info.vm_fd, t->vm, "guest_memfd made on vm %d, want %d", info.vm_fd, t->vm);
	slot.slot = 0;
	slot.flags = KVM_MEM_GUEST_MEMFD;
	slot.guest_phys_addr = 0;
	slot.memory_size = KT_SIZE;
	slot.userspace_addr = (uintptr_t)gmem_kvm_view(t->g);
	slot.guest_memfd = (uint32_t)info.fd;
	slot.guest_memfd_offset = 0;
	ret = ioctl(t->vm, GM_KVM_SET_USER_MEMORY_REGION2, &slot);
	cr_assert_eq(ret, 0, "KVM_SET_USER_MEMORY_REGION2 (guest_memfd %d, uaddr %p): %s",
		     info.fd, gmem_kvm_view(t->g), strerror(errno));
}

static void kt_vcpu(struct kt_vm *t)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = KT_CODE_GPA, .rflags = 2 };

	t->vcpu = ioctl(t->vm, KVM_CREATE_VCPU, 0);
	cr_assert_geq(t->vcpu, 0, "KVM_CREATE_VCPU: %s", strerror(errno));
	t->run_size = (size_t)ioctl(t->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	t->run = mmap(NULL, t->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, t->vcpu, 0);
	cr_assert_neq(t->run, MAP_FAILED);
	cr_assert_eq(ioctl(t->vcpu, KVM_GET_SREGS, &sregs), 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0;
	sregs.ds.selector = 0;
	cr_assert_eq(ioctl(t->vcpu, KVM_SET_SREGS, &sregs), 0);
	cr_assert_eq(ioctl(t->vcpu, KVM_SET_REGS, &regs), 0);
}

static void kt_close(struct kt_vm *t)
{
	munmap(t->run, t->run_size);
	close(t->vcpu);
	gmem_close(t->g);
	close(t->vm);
	close(t->kvm);
}

/* Place @code at @gpa through a temporary mapping: the page stays private. */
static void kt_load(struct gmem *g, uint64_t gpa, const uint8_t *code, size_t len)
{
	uint8_t *w = gmem_kmap(g, gpa);

	cr_assert_not_null(w, "gmem_kmap: %s", strerror(errno));
	memcpy(w, code, len);
	gmem_kunmap(g, w);
}

Test(kvm, guest_runs_from_private_memory)
{
	/* 16-bit: mov al, 0x42; mov [0x2000], al; hlt */
	static const uint8_t code[] = { 0xb0, 0x42, 0xa2, 0x00, 0x20, 0xf4 };
	struct kt_vm t = { 0 };
	uint8_t *w;

	kt_vm_open(&t);
	kt_bind(&t);
	kt_load(t.g, KT_CODE_GPA, code, sizeof(code));
	kt_vcpu(&t);
	cr_assert_eq(gmem_state(t.g, KT_CODE_GPA), GMEM_PRIVATE);
	cr_assert_eq(ioctl(t.vcpu, KVM_RUN, 0), 0, "KVM_RUN: %s", strerror(errno));
	cr_assert_eq(t.run->exit_reason, KVM_EXIT_HLT, "exit reason %u, want HLT (%u)",
		     t.run->exit_reason, KVM_EXIT_HLT);
	/* The guest's write reached its private page... */
	cr_assert_eq(gmem_state(t.g, KT_DATA_GPA), GMEM_PRIVATE);
	w = gmem_kmap(t.g, KT_DATA_GPA);
	cr_assert_not_null(w);
	cr_assert_eq(w[0], 0x42, "guest wrote %#x, host sees %#x", 0x42, w[0]);
	gmem_kunmap(t.g, w);
	/* ...which the host view still cannot read. */
	cr_assert_eq(th_read_faults(gmem_host(t.g, KT_DATA_GPA)), 1,
		     "host view read a private page the guest wrote");
	kt_close(&t);
}

Test(kvm, host_shares_guest_page_in_place)
{
	/* 16-bit: mov al, [0x2000]; inc al; mov [0x2000], al; hlt */
	static const uint8_t code[] = { 0xa0, 0x00, 0x20, 0xfe, 0xc0, 0xa2, 0x00, 0x20, 0xf4 };
	struct kt_vm t = { 0 };
	volatile uint8_t *h;

	kt_vm_open(&t);
	kt_bind(&t);
	kt_load(t.g, KT_CODE_GPA, code, sizeof(code));
	kt_vcpu(&t);
	/* Host-driven: share the guest's page, write it, make it private. */
	cr_assert_eq(gmem_convert(t.g, KT_DATA_GPA, TH_PAGE, GMEM_SHARED, NULL), 0);
	h = gmem_host(t.g, KT_DATA_GPA);
	h[0] = 0x10;
	cr_assert_eq(gmem_convert(t.g, KT_DATA_GPA, TH_PAGE, GMEM_PRIVATE, NULL), 0);
	cr_assert_eq(ioctl(t.vcpu, KVM_RUN, 0), 0, "KVM_RUN: %s", strerror(errno));
	cr_assert_eq(t.run->exit_reason, KVM_EXIT_HLT, "exit reason %u", t.run->exit_reason);
	/* Share again: the guest's increment is there, same page, same gpa. */
	cr_assert_eq(gmem_convert(t.g, KT_DATA_GPA, TH_PAGE, GMEM_SHARED, NULL), 0);
	cr_assert_eq(h[0], 0x11, "host reads %#x after the guest ran, want 0x11", h[0]);
	kt_close(&t);
}
