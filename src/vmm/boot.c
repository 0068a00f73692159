// SPDX-License-Identifier: MIT
/*
 * boot.c - 64-bit long mode from the first instruction: boot structures in
 * guest memory and the start state of each vCPU.
 *
 * Model (as the kernel's KVM selftests do it): no firmware, no real mode.
 * The VMM writes a GDT (null, 64-bit code, data, 64-bit TSS), an empty TSS,
 * and identity page tables with 2 MiB pages over the first 4 GiB (PML4 ->
 * one PDPT -> four page directories) into [0, GV_LOAD_MIN), all of it in
 * PRIVATE memory through the hypervisor path (temporary mappings): the
 * guest never shares its page tables and the host view never sees them.
 * Each vCPU then gets CR0.PE|PG, CR4.PAE, EFER.LME|LMA, a 64-bit CS, flat
 * data segments, a busy TSS, no IDT (exceptions triple-fault and are
 * reported), its own stack at the top of RAM, and the CPUID KVM supports
 * (KVM refuses EFER.LME unless CPUID says long mode).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "accel/accel.h"

#define PTE_P   (1ull << 0)
#define PTE_RW  (1ull << 1)
#define PTE_PS  (1ull << 7)

#define CR0_PE  (1ull << 0)
#define CR0_MP  (1ull << 1)
#define CR0_ET  (1ull << 4)
#define CR0_NE  (1ull << 5)
#define CR0_WP  (1ull << 16)
#define CR0_PG  (1ull << 31)
#define CR4_PAE (1ull << 5)
#define CR4_OSFXSR     (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)

#define GV_TSS_LIMIT 0x67

static int gv_boot_gdt(struct gv_vm *vm)
{
	uint64_t gdt[5] = {
		0,
		0x00af9b000000ffffull,  /* 0x08: code, 64-bit (L), present, DPL 0 */
		0x00cf93000000ffffull,  /* 0x10: data, 4 GiB flat, writable       */
	};
	uint64_t base = GV_TSS_GPA;

	/* 0x18: 64-bit available TSS, a 16-byte descriptor. */
	gdt[3] = GV_TSS_LIMIT | ((base & 0xffffff) << 16) | (0x89ull << 40) |
		 (((base >> 24) & 0xff) << 56);
	gdt[4] = base >> 32;
	return gv_hv_write(vm, GV_GDT_GPA, gdt, sizeof(gdt));
}

static int gv_boot_paging(struct gv_vm *vm)
{
	uint64_t *pd = calloc(4 * 512, sizeof(*pd));
	uint64_t pml4[512] = { 0 }, pdpt[512] = { 0 };
	int ret;

	if (!pd)
		return -ENOMEM;
	pml4[0] = GV_PDPT_GPA | PTE_P | PTE_RW;
	for (unsigned i = 0; i < 4; i++)
		pdpt[i] = (GV_PD_GPA + i * GMEM_PAGE_SIZE) | PTE_P | PTE_RW;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i * GMEM_REGION_SIZE) | PTE_P | PTE_RW | PTE_PS;
	ret = gv_hv_write(vm, GV_PML4_GPA, pml4, sizeof(pml4));
	if (!ret)
		ret = gv_hv_write(vm, GV_PDPT_GPA, pdpt, sizeof(pdpt));
	if (!ret)
		ret = gv_hv_write(vm, GV_PD_GPA, pd, 4 * 512 * sizeof(*pd));
	free(pd);
	return ret;
}

int gv_boot_write_tables(struct gv_vm *vm)
{
	static const uint8_t tss[GV_TSS_LIMIT + 1];
	int ret;

	ret = gv_boot_gdt(vm);
	if (!ret)
		ret = gv_hv_write(vm, GV_TSS_GPA, tss, sizeof(tss));
	if (!ret)
		ret = gv_boot_paging(vm);
	if (ret)
		gv_set_error("writing the boot page tables and GDT: %s", strerror(-ret));
	return ret;
}

/* The accelerator's CPUID for this vCPU (KVM's supported set, with the
 * vCPU's APIC ID). */
int gv_boot_cpuid(struct gv_vcpu *vcpu)
{
	return vcpu->vm->accel->vcpu_cpuid(vcpu);
}

static void gv_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = code ? 0 : 1, .s = 1, .l = code ? 1 : 0, .g = 1,
	};
}

int gv_boot_vcpu(struct gv_vcpu *vcpu, uint64_t entry)
{
	struct gv_vm *vm = vcpu->vm;
	struct gv_vcpu_state st;
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rip = entry, .rflags = 2,
		.rsp = vm->cfg.mem_size - (uint64_t)vcpu->id * GV_STACK_SIZE,
		.rdi = vcpu->id, .rsi = vm->ncpus, .rdx = vm->cfg.mem_size,
	};
	int ret;

	ret = gv_boot_cpuid(vcpu);
	if (ret)
		return ret;
	ret = vm->accel->get_state(vcpu, &st);
	if (ret)
		goto err;
	sregs = st.sregs;
	gv_seg(&sregs.cs, GV_SEL_CODE, 0xb, true);
	gv_seg(&sregs.ds, GV_SEL_DATA, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){ .base = GV_TSS_GPA, .limit = GV_TSS_LIMIT,
					 .selector = GV_SEL_TSS, .type = 0xb, .present = 1 };
	sregs.ldt = (struct kvm_segment){ .type = 0x2, .unusable = 1 };
	sregs.gdt.base = GV_GDT_GPA;
	sregs.gdt.limit = 5 * 8 - 1;
	/* No IDT: an exception becomes a triple fault the VMM reports. */
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sregs.cr3 = GV_PML4_GPA;
	sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	sregs.efer = EFER_LME | EFER_LMA;
	st.sregs = sregs;
	st.regs = regs;
	ret = vm->accel->set_state(vcpu, &st);
	if (!ret)
		return 0;
err:
	gv_set_error("vCPU %u: setting up long mode: %s", vcpu->id, strerror(-ret));
	return ret;
}
