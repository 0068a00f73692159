// SPDX-License-Identifier: MIT
/*
 * report.c - what the VMM says when something fails: the per-thread last
 * error of a failing call, names of stop and exit reasons, and the register
 * dump that goes with a guest fault.
 */
#include <stdio.h>
#include <string.h>

#include "kvm_uapi.h"
#include "vmm_internal.h"

static __thread char gv_err[512];

void gv_vset_error(const char *fmt, va_list ap)
{
	vsnprintf(gv_err, sizeof(gv_err), fmt, ap);
}

void gv_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	gv_vset_error(fmt, ap);
	va_end(ap);
}

const char *gv_last_error(void)
{
	return gv_err;
}

const char *gv_stop_name(enum gv_stop why)
{
	switch (why) {
	case GV_STOP_NONE:      return "none";
	case GV_STOP_EXIT:      return "exit";
	case GV_STOP_HALT:      return "halt";
	case GV_STOP_FAULT:     return "fault";
	case GV_STOP_ERROR:     return "error";
	case GV_STOP_REQUESTED: return "stopped";
	}
	return "?";
}

const char *gv_exit_name(uint32_t r)
{
	switch (r) {
	case KVM_EXIT_UNKNOWN:        return "UNKNOWN";
	case KVM_EXIT_EXCEPTION:      return "EXCEPTION";
	case KVM_EXIT_IO:             return "IO";
	case KVM_EXIT_HYPERCALL:      return "HYPERCALL";
	case KVM_EXIT_DEBUG:          return "DEBUG";
	case KVM_EXIT_HLT:            return "HLT";
	case KVM_EXIT_MMIO:           return "MMIO";
	case KVM_EXIT_IRQ_WINDOW_OPEN: return "IRQ_WINDOW_OPEN";
	case KVM_EXIT_SHUTDOWN:       return "SHUTDOWN (triple fault)";
	case KVM_EXIT_FAIL_ENTRY:     return "FAIL_ENTRY";
	case KVM_EXIT_INTR:           return "INTR";
	case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
	case KVM_EXIT_SYSTEM_EVENT:   return "SYSTEM_EVENT";
	case KVM_EXIT_MEMORY_FAULT:   return "MEMORY_FAULT";
	}
	return "other";
}

/* Append to a bounded buffer, never past its end. */
static void gv_cat(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void gv_cat(char *buf, size_t size, const char *fmt, ...)
{
	size_t used = strnlen(buf, size);
	va_list ap;

	if (used + 1 >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + used, size - used, fmt, ap);
	va_end(ap);
}

static void gv_cat_seg(char *buf, size_t size, const char *name, const struct kvm_segment *s)
{
	gv_cat(buf, size, "  %-3s sel %04x base %016llx limit %08x type %x%s%s%s\n", name,
	       s->selector, (unsigned long long)s->base, s->limit, s->type,
	       s->present ? " P" : " NP", s->l ? " L" : "", s->db ? " DB" : "");
}

void gv_format_regs(char *buf, size_t size, const struct kvm_regs *r,
		    const struct kvm_sregs *s)
{
	if (r) {
		gv_cat(buf, size,
		       "  rip %016llx  rsp %016llx  rflags %08llx\n"
		       "  rax %016llx  rbx %016llx  rcx %016llx  rdx %016llx\n"
		       "  rsi %016llx  rdi %016llx  rbp %016llx\n"
		       "  r8  %016llx  r9  %016llx  r10 %016llx  r11 %016llx\n"
		       "  r12 %016llx  r13 %016llx  r14 %016llx  r15 %016llx\n",
		       r->rip, r->rsp, r->rflags, r->rax, r->rbx, r->rcx, r->rdx, r->rsi,
		       r->rdi, r->rbp, r->r8, r->r9, r->r10, r->r11, r->r12, r->r13,
		       r->r14, r->r15);
	}
	if (s) {
		gv_cat(buf, size,
		       "  cr0 %016llx  cr2 %016llx  cr3 %016llx  cr4 %016llx\n"
		       "  efer %016llx  gdt %016llx/%x  idt %016llx/%x\n",
		       s->cr0, s->cr2, s->cr3, s->cr4, s->efer, s->gdt.base, s->gdt.limit,
		       s->idt.base, s->idt.limit);
		gv_cat_seg(buf, size, "cs", &s->cs);
		gv_cat_seg(buf, size, "ss", &s->ss);
		gv_cat_seg(buf, size, "ds", &s->ds);
		gv_cat_seg(buf, size, "tr", &s->tr);
	}
}
