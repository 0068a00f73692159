// SPDX-License-Identifier: MIT
/*
 * accel/user.c - the user accelerator: the guest program's instructions
 * execute on the host CPU, in user mode, in a vCPU thread of this process;
 * the instructions user mode may not execute trap, and each trap becomes
 * the exit KVM would have produced (trap-and-emulate). For the project's
 * own guest programs on hosts without /dev/kvm, so that what they prove by
 * executing (their own loads and stores across conversions, vCPUs running
 * at once, a spinning vCPU kicked out, a fault and its registers) is
 * proven on every host. It is no isolation boundary: a guest on it can do
 * whatever this process can. Never give it a program you do not trust.
 *
 * Model:
 *   - RAM [GV_LOAD_MIN, mem_size) is mapped a second time at host virtual
 *     address == guest-physical address (mremap of the KVM view, which
 *     keeps the same pages), so the identity-mapped guest runs unchanged.
 *     One VM per process may use it (the addresses are the process's).
 *     The boot structures below GV_LOAD_MIN are not mapped: user mode has
 *     no use for them, and a guest touching them is stopped with a report.
 *   - Entering the guest is a signal to the vCPU's own thread whose handler
 *     swaps the interrupted (host) context for the guest's registers;
 *     leaving it is the trap's handler swapping the host context back. The
 *     kernel's sigreturn loads every register at once, so neither stack is
 *     touched: handlers run on an alternate stack of the vCPU's own.
 *   - Traps: IN, OUT, INS/OUTS and HLT raise #GP (SIGSEGV, SI_KERNEL):
 *     KVM_EXIT_IO or KVM_EXIT_HLT. A load or store outside RAM faults at
 *     its address: decoded (MOV forms only) into KVM_EXIT_MMIO. VMCALL
 *     raises #UD (SIGILL): KVM_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE,
 *     else -KVM_ENOSYS in rax as KVM answers. Every other exception has no
 *     IDT to go to: KVM_EXIT_SHUTDOWN, a triple fault, as under KVM.
 *   - The exit is decoded on the vCPU thread after the swap back, not in
 *     the handler; RIP is past the instruction when vcpu.c sees the exit,
 *     and an IN's or MMIO read's value lands in its register in exit_done.
 *   - A kick sets a flag and sends GV_USER_SIG: in the guest, the handler
 *     leaves it (run() returns -EINTR); anywhere else the flag makes the
 *     next run() return -EINTR before entering.
 *   - Guest programs are built -mgeneral-regs-only: the FPU state stays the
 *     host's, as saved and restored by the two signal frames.
 *
 * Lock rule: none of its own. Each vCPU's struct gv_user_vcpu is touched
 * by its thread only, except `kicked` (atomic); its state is read and
 * written by others only while vcpu.c holds the vCPU outside run().
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <linux/kvm_para.h>

#include "kvm_uapi.h"
#include "accel.h"

#define GV_USER_SIG        SIGUSR2
#define GV_USER_RUN_SIZE   8192u
#define GV_USER_DATA_OFF   4096u
#define GV_USER_DATA_MAX   (GV_USER_RUN_SIZE - GV_USER_DATA_OFF)   /* one exit's bytes */
#define GV_USER_ALTSTACK   (256u << 10)
#define GV_USER_INSN_MAX   15u

enum gv_user_where {
	GV_USER_HOST,           /* VMM code: a kick only sets the flag         */
	GV_USER_ENTERING,       /* the entry signal is on its way              */
	GV_USER_GUEST,          /* guest instructions: a trap or kick leaves   */
};

struct gv_user_vcpu {
	struct gv_vcpu_state st;
	atomic_bool kicked;
	enum gv_user_where where;
	bool thread_ready;              /* alternate stack and signal mask set */
	void *altstack;
	/* The host context the entry interrupted, resumed by the next trap. */
	gregset_t host_gregs;
	sigset_t host_mask;
	/* What made the guest leave. */
	int signo, code;
	uint64_t addr;
	/* An exit whose completion waits for exit_done (IN, MMIO read). */
	enum { GV_USER_DONE_NONE, GV_USER_DONE_IN, GV_USER_DONE_MMIO } pending;
	unsigned pending_reg, pending_size;
};

/* The VM owning the fixed window, and the handlers' view of their thread. */
static _Atomic(struct gv_vm *) gv_user_owner;
static size_t gv_user_window;           /* bytes mapped at GV_LOAD_MIN, or 0 */
static __thread struct gv_user_vcpu *gv_user_self __attribute__((tls_model("initial-exec")));

static const int gv_user_traps[] = { SIGSEGV, SIGILL, SIGBUS, SIGFPE, SIGTRAP };
static struct sigaction gv_user_old[sizeof(gv_user_traps) / sizeof(gv_user_traps[0])];
static pthread_once_t gv_user_sig_once = PTHREAD_ONCE_INIT;

static struct gv_user_vcpu *gv_uv(const struct gv_vcpu *vcpu)
{
	return vcpu->accel;
}

/* ---- register sets ------------------------------------------------------ */

static void gv_user_regs_to_greg(const struct kvm_regs *r, greg_t *g)
{
	g[REG_RAX] = (greg_t)r->rax; g[REG_RBX] = (greg_t)r->rbx;
	g[REG_RCX] = (greg_t)r->rcx; g[REG_RDX] = (greg_t)r->rdx;
	g[REG_RSI] = (greg_t)r->rsi; g[REG_RDI] = (greg_t)r->rdi;
	g[REG_RSP] = (greg_t)r->rsp; g[REG_RBP] = (greg_t)r->rbp;
	g[REG_R8] = (greg_t)r->r8;   g[REG_R9] = (greg_t)r->r9;
	g[REG_R10] = (greg_t)r->r10; g[REG_R11] = (greg_t)r->r11;
	g[REG_R12] = (greg_t)r->r12; g[REG_R13] = (greg_t)r->r13;
	g[REG_R14] = (greg_t)r->r14; g[REG_R15] = (greg_t)r->r15;
	g[REG_RIP] = (greg_t)r->rip;
	/* The arithmetic flags are the guest's; the kernel keeps IF and IOPL. */
	g[REG_EFL] = (greg_t)(r->rflags | 2);
}

static void gv_user_greg_to_regs(const greg_t *g, struct kvm_regs *r)
{
	r->rax = (uint64_t)g[REG_RAX]; r->rbx = (uint64_t)g[REG_RBX];
	r->rcx = (uint64_t)g[REG_RCX]; r->rdx = (uint64_t)g[REG_RDX];
	r->rsi = (uint64_t)g[REG_RSI]; r->rdi = (uint64_t)g[REG_RDI];
	r->rsp = (uint64_t)g[REG_RSP]; r->rbp = (uint64_t)g[REG_RBP];
	r->r8 = (uint64_t)g[REG_R8];   r->r9 = (uint64_t)g[REG_R9];
	r->r10 = (uint64_t)g[REG_R10]; r->r11 = (uint64_t)g[REG_R11];
	r->r12 = (uint64_t)g[REG_R12]; r->r13 = (uint64_t)g[REG_R13];
	r->r14 = (uint64_t)g[REG_R14]; r->r15 = (uint64_t)g[REG_R15];
	r->rip = (uint64_t)g[REG_RIP];
	r->rflags = (uint64_t)g[REG_EFL];
}

/* kvm_regs in x86 register-number order (ModRM reg field, REX.R/B). */
static __u64 *gv_user_gpr(struct kvm_regs *r, unsigned n)
{
	__u64 *order[16] = { &r->rax, &r->rcx, &r->rdx, &r->rbx, &r->rsp, &r->rbp,
				&r->rsi, &r->rdi, &r->r8, &r->r9, &r->r10, &r->r11,
				&r->r12, &r->r13, &r->r14, &r->r15 };

	return order[n & 15];
}

/* ---- the signal handlers ------------------------------------------------ */

/* The guest's mask: only what leaves it may arrive there. */
static void gv_user_guest_mask(sigset_t *m)
{
	sigfillset(m);
	sigdelset(m, GV_USER_SIG);
	for (size_t i = 0; i < sizeof(gv_user_traps) / sizeof(gv_user_traps[0]); i++)
		sigdelset(m, gv_user_traps[i]);
}

static void gv_user_enter(struct gv_user_vcpu *uv, ucontext_t *uc)
{
	memcpy(uv->host_gregs, uc->uc_mcontext.gregs, sizeof(uv->host_gregs));
	uv->host_mask = uc->uc_sigmask;
	gv_user_regs_to_greg(&uv->st.regs, uc->uc_mcontext.gregs);
	gv_user_guest_mask(&uc->uc_sigmask);
	uv->where = GV_USER_GUEST;
}

static void gv_user_leave(struct gv_user_vcpu *uv, ucontext_t *uc, int signo,
			  const siginfo_t *si)
{
	gv_user_greg_to_regs(uc->uc_mcontext.gregs, &uv->st.regs);
	uv->signo = signo;
	uv->code = si ? si->si_code : 0;
	uv->addr = si ? (uint64_t)(uintptr_t)si->si_addr : 0;
	memcpy(uc->uc_mcontext.gregs, uv->host_gregs, sizeof(uv->host_gregs));
	uc->uc_sigmask = uv->host_mask;
	uv->where = GV_USER_HOST;
}

/* A trap that is not a guest's: to whoever had the signal before us. */
static void gv_user_chain(int signo, siginfo_t *si, void *ctx)
{
	for (size_t i = 0; i < sizeof(gv_user_traps) / sizeof(gv_user_traps[0]); i++) {
		struct sigaction *old = &gv_user_old[i];

		if (gv_user_traps[i] != signo)
			continue;
		if (old->sa_flags & SA_SIGINFO) {
			old->sa_sigaction(signo, si, ctx);
		} else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
			old->sa_handler(signo);
		} else {
			/* The fault comes back at once and takes its default. */
			sigaction(signo, old, NULL);
		}
	}
}

static void gv_user_trap(int signo, siginfo_t *si, void *ctx)
{
	struct gv_user_vcpu *uv = gv_user_self;

	if (!uv || uv->where != GV_USER_GUEST) {
		gv_user_chain(signo, si, ctx);
		return;
	}
	gv_user_leave(uv, ctx, signo, si);
}

static void gv_user_sig(int signo, siginfo_t *si, void *ctx)
{
	struct gv_user_vcpu *uv = gv_user_self;

	(void)si;
	if (!uv)
		return;
	if (uv->where == GV_USER_ENTERING) {
		if (atomic_load(&uv->kicked))
			uv->where = GV_USER_HOST;       /* run() returns -EINTR */
		else
			gv_user_enter(uv, ctx);
	} else if (uv->where == GV_USER_GUEST) {
		gv_user_leave(uv, ctx, signo, NULL);
	}
	/* In VMM code a kick has already set the flag. */
}

static void gv_user_sig_install(void)
{
	struct sigaction sa = { .sa_sigaction = gv_user_trap,
				.sa_flags = SA_SIGINFO | SA_ONSTACK };

	sigfillset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(gv_user_traps) / sizeof(gv_user_traps[0]); i++)
		sigaction(gv_user_traps[i], &sa, &gv_user_old[i]);
	sa.sa_sigaction = gv_user_sig;
	sigaction(GV_USER_SIG, &sa, NULL);
}

/* ---- the VM ------------------------------------------------------------- */

static int gv_user_vm_init(struct gv_vm *vm)
{
	struct gv_vm *none = NULL;

	if (!atomic_compare_exchange_strong(&gv_user_owner, &none, vm)) {
		gv_set_error("the user accelerator runs one VM per process, and one runs");
		return -EBUSY;
	}
	vm->kvm_fd = vm->vm_fd = -1;
	vm->run_size = GV_USER_RUN_SIZE;
	vm->exit_hypercall = true;
	pthread_once(&gv_user_sig_once, gv_user_sig_install);
	return 0;
}

/* RAM again at guest-physical == host-virtual: claim the range (fails if
 * anything of the process is there), then move a duplicate of the KVM
 * view's pages onto it. */
static int gv_user_ram_bind(struct gv_vm *vm)
{
	size_t len = vm->cfg.mem_size - GV_LOAD_MIN;
	uint8_t *view = gmem_kvm_view(vm->g);
	void *at, *p;

	at = mmap((void *)(uintptr_t)GV_LOAD_MIN, len, PROT_NONE,
		  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_NORESERVE, -1, 0);
	if (at == MAP_FAILED) {
		gv_set_error("user accelerator: [%#llx, %#llx) of this process is in use: %s",
			     (unsigned long long)GV_LOAD_MIN,
			     (unsigned long long)vm->cfg.mem_size, strerror(errno));
		return -EADDRINUSE;
	}
	p = mremap(view + GV_LOAD_MIN, 0, len, MREMAP_MAYMOVE | MREMAP_FIXED, at);
	if (p == MAP_FAILED) {
		int err = errno;

		munmap(at, len);
		gv_set_error("user accelerator: mapping RAM at its guest address: %s",
			     strerror(err));
		return -err;
	}
	/* The guest's code runs from it: its pages are the guest's to use
	 * (W^X is the guest's page tables' business, which user mode lacks). */
	if (mprotect(p, len, PROT_READ | PROT_WRITE | PROT_EXEC)) {
		int err = errno;

		munmap(p, len);
		gv_set_error("user accelerator: making RAM executable: %s", strerror(err));
		return -err;
	}
	/* Guest data, like every mapping of it: not in dumps, not in children. */
	madvise(p, len, MADV_DONTDUMP);
	madvise(p, len, MADV_DONTFORK);
	gv_user_window = len;
	return 0;
}

static void gv_user_vm_fini(struct gv_vm *vm)
{
	struct gv_vm *me = vm;

	if (atomic_load(&gv_user_owner) != vm)
		return;
	if (gv_user_window)
		munmap((void *)(uintptr_t)GV_LOAD_MIN, gv_user_window);
	gv_user_window = 0;
	atomic_compare_exchange_strong(&gv_user_owner, &me, NULL);
}

static int gv_user_vcpu_init(struct gv_vcpu *vcpu)
{
	struct gv_user_vcpu *uv = calloc(1, sizeof(*uv));

	if (!uv) {
		gv_set_error("vCPU %u: out of memory", vcpu->id);
		return -ENOMEM;
	}
	vcpu->run = aligned_alloc(4096, GV_USER_RUN_SIZE);
	if (!vcpu->run) {
		free(uv);
		gv_set_error("vCPU %u: out of memory", vcpu->id);
		return -ENOMEM;
	}
	memset(vcpu->run, 0, GV_USER_RUN_SIZE);
	uv->st.regs.rflags = 2;
	uv->st.mp.mp_state = KVM_MP_STATE_RUNNABLE;
	vcpu->accel = uv;
	return 0;
}

static void gv_user_vcpu_fini(struct gv_vcpu *vcpu)
{
	free(vcpu->accel);
	vcpu->accel = NULL;
	free(vcpu->run);
	vcpu->run = NULL;
}

static int gv_user_vcpu_cpuid(struct gv_vcpu *vcpu)
{
	(void)vcpu;
	return 0;       /* CPUID is the host's: user mode executes it */
}

/* On the vCPU's thread, once: the alternate stack the handlers run on
 * (never the guest's stack, which is guest memory) and the signals. */
static int gv_user_thread_setup(struct gv_user_vcpu *uv)
{
	stack_t ss = { .ss_size = GV_USER_ALTSTACK };
	sigset_t m;

	uv->altstack = mmap(NULL, GV_USER_ALTSTACK, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (uv->altstack == MAP_FAILED) {
		uv->altstack = NULL;
		return -ENOMEM;
	}
	ss.ss_sp = uv->altstack;
	if (sigaltstack(&ss, NULL)) {
		munmap(uv->altstack, GV_USER_ALTSTACK);
		uv->altstack = NULL;
		return -errno;
	}
	sigemptyset(&m);
	sigaddset(&m, GV_USER_SIG);
	for (size_t i = 0; i < sizeof(gv_user_traps) / sizeof(gv_user_traps[0]); i++)
		sigaddset(&m, gv_user_traps[i]);
	pthread_sigmask(SIG_UNBLOCK, &m, NULL);
	gv_user_self = uv;
	uv->thread_ready = true;
	return 0;
}

static void gv_user_thread_end(struct gv_vcpu *vcpu)
{
	struct gv_user_vcpu *uv = gv_uv(vcpu);
	stack_t off = { .ss_flags = SS_DISABLE };
	sigset_t m;

	if (!uv->thread_ready)
		return;
	sigemptyset(&m);
	sigaddset(&m, GV_USER_SIG);
	pthread_sigmask(SIG_BLOCK, &m, NULL);
	gv_user_self = NULL;
	sigaltstack(&off, NULL);
	munmap(uv->altstack, GV_USER_ALTSTACK);
	uv->altstack = NULL;
	uv->thread_ready = false;
}

/* ---- decoding the instruction that trapped ------------------------------ */

struct gv_user_insn {
	uint8_t b[GV_USER_INSN_MAX];
	unsigned n;             /* bytes readable at rip */
};

static bool gv_user_in_window(const struct gv_vm *vm, uint64_t a, uint64_t len)
{
	return a >= GV_LOAD_MIN && len <= vm->cfg.mem_size && a <= vm->cfg.mem_size - len;
}

static void gv_user_fetch(const struct gv_vm *vm, uint64_t rip, struct gv_user_insn *in)
{
	in->n = 0;
	while (in->n < GV_USER_INSN_MAX && gv_user_in_window(vm, rip + in->n, 1)) {
		in->b[in->n] = *(const volatile uint8_t *)(uintptr_t)(rip + in->n);
		in->n++;
	}
}

static void gv_user_shutdown(struct kvm_run *run)
{
	run->exit_reason = KVM_EXIT_SHUTDOWN;
}

/* IN, OUT, INS, OUTS, HLT: what raises #GP in user mode. */
static void gv_user_decode_gp(struct gv_vcpu *vcpu, const struct gv_user_insn *in)
{
	struct gv_user_vcpu *uv = gv_uv(vcpu);
	struct kvm_regs *r = &uv->st.regs;
	struct kvm_run *run = vcpu->run;
	uint8_t *data = (uint8_t *)run + GV_USER_DATA_OFF;
	unsigned i = 0, size = 4;
	bool rep = false;
	uint32_t count;

	for (; i < in->n && (in->b[i] == 0x66 || in->b[i] == 0xf3); i++) {
		rep |= in->b[i] == 0xf3;
		size = in->b[i] == 0x66 ? 2 : size;
	}
	if (i >= in->n)
		return gv_user_shutdown(run);
	run->io.data_offset = GV_USER_DATA_OFF;
	run->io.count = 1;
	switch (in->b[i]) {
	case 0xf4:
		run->exit_reason = KVM_EXIT_HLT;
		r->rip += i + 1;
		return;
	case 0xe4: case 0xe5: case 0xe6: case 0xe7:     /* port in imm8 */
		if (i + 1 >= in->n)
			return gv_user_shutdown(run);
		run->io.port = in->b[i + 1];
		run->io.size = (in->b[i] & 1) ? size : 1;
		run->io.direction = (in->b[i] & 2) ? KVM_EXIT_IO_OUT : KVM_EXIT_IO_IN;
		r->rip += i + 2;
		break;
	case 0xec: case 0xed: case 0xee: case 0xef:     /* port in dx */
		run->io.port = (uint16_t)r->rdx;
		run->io.size = (in->b[i] & 1) ? size : 1;
		run->io.direction = (in->b[i] & 2) ? KVM_EXIT_IO_OUT : KVM_EXIT_IO_IN;
		r->rip += i + 1;
		break;
	case 0x6e: case 0x6f:                           /* OUTS from [rsi] */
		run->io.port = (uint16_t)r->rdx;
		run->io.size = (in->b[i] & 1) ? size : 1;
		run->io.direction = KVM_EXIT_IO_OUT;
		count = rep ? (uint32_t)(r->rcx < GV_USER_DATA_MAX ? r->rcx : GV_USER_DATA_MAX) : 1;
		count = count > GV_USER_DATA_MAX / run->io.size ? GV_USER_DATA_MAX / run->io.size
								  : count;
		if (!count) {                           /* rep with rcx 0: a no-op */
			r->rip += i + 1;
			run->exit_reason = KVM_EXIT_INTR;
			return;
		}
		if (!gv_user_in_window(vcpu->vm, r->rsi, (uint64_t)count * run->io.size))
			return gv_user_shutdown(run);
		memcpy(data, (const void *)(uintptr_t)r->rsi, count * run->io.size);
		run->io.count = count;
		r->rsi += (uint64_t)count * run->io.size;
		if (rep)
			r->rcx -= count;
		if (!rep || !r->rcx)
			r->rip += i + 1;
		run->exit_reason = KVM_EXIT_IO;
		return;
	default:
		return gv_user_shutdown(run);
	}
	run->exit_reason = KVM_EXIT_IO;
	if (run->io.direction == KVM_EXIT_IO_OUT) {
		memcpy(data, &r->rax, run->io.size);
	} else {
		uv->pending = GV_USER_DONE_IN;
		uv->pending_size = run->io.size;
	}
}

/* A load or store outside RAM: MOV r/m <-> r (88, 89, 8A, 8B) with
 * register-indirect or displacement addressing, as device accessors
 * compile. Anything else is a fault KVM could have emulated but we do not:
 * reported as a shutdown. */
static void gv_user_decode_mmio(struct gv_vcpu *vcpu, const struct gv_user_insn *in,
				uint64_t addr)
{
	struct gv_user_vcpu *uv = gv_uv(vcpu);
	struct kvm_regs *r = &uv->st.regs;
	struct kvm_run *run = vcpu->run;
	unsigned i = 0, size = 4, rex = 0, modrm, mod, rm, reg, len;
	uint8_t op;

	if (i < in->n && in->b[i] == 0x66) {
		size = 2;
		i++;
	}
	if (i < in->n && (in->b[i] & 0xf0) == 0x40)
		rex = in->b[i++];
	if (i + 1 >= in->n)
		return gv_user_shutdown(run);
	op = in->b[i];
	modrm = in->b[i + 1];
	mod = modrm >> 6;
	rm = modrm & 7;
	if ((op & 0xfc) != 0x88 || mod == 3 || rm == 4 || (mod == 0 && rm == 5))
		return gv_user_shutdown(run);
	len = i + 2 + (mod == 1 ? 1 : mod == 2 ? 4 : 0);
	if (len > in->n)
		return gv_user_shutdown(run);
	if (!(op & 1))
		size = 1;
	else if (rex & 8)
		size = 8;
	reg = ((rex & 4) << 1) | ((modrm >> 3) & 7);
	if (size == 1 && !rex && reg >= 4)
		return gv_user_shutdown(run);           /* AH..BH: not ours */
	run->exit_reason = KVM_EXIT_MMIO;
	run->mmio.phys_addr = addr;
	run->mmio.len = size;
	run->mmio.is_write = !(op & 2);
	if (run->mmio.is_write) {
		memcpy(run->mmio.data, gv_user_gpr(r, reg), size);
	} else {
		uv->pending = GV_USER_DONE_MMIO;
		uv->pending_reg = reg;
		uv->pending_size = size;
	}
	r->rip += len;
}

/* VMCALL: KVM_HC_MAP_GPA_RANGE goes to the VMM, other numbers get what KVM
 * answers (-KVM_ENOSYS) without an exit. Returns false for no exit. */
static bool gv_user_decode_ud(struct gv_vcpu *vcpu, const struct gv_user_insn *in)
{
	struct kvm_regs *r = &gv_uv(vcpu)->st.regs;
	struct kvm_run *run = vcpu->run;

	if (in->n < 3 || in->b[0] != 0x0f || in->b[1] != 0x01 || in->b[2] != 0xc1) {
		gv_user_shutdown(run);
		return true;
	}
	r->rip += 3;
	if (r->rax != KVM_HC_MAP_GPA_RANGE || !vcpu->vm->exit_hypercall) {
		r->rax = (uint64_t)-KVM_ENOSYS;
		return false;
	}
	run->exit_reason = KVM_EXIT_HYPERCALL;
	run->hypercall.nr = r->rax;
	run->hypercall.args[0] = r->rbx;
	run->hypercall.args[1] = r->rcx;
	run->hypercall.args[2] = r->rdx;
	run->hypercall.args[3] = r->rsi;
	return true;
}

/* Turn the trap into an exit; false when the guest just goes on. */
static bool gv_user_decode(struct gv_vcpu *vcpu)
{
	struct gv_user_vcpu *uv = gv_uv(vcpu);
	struct gv_user_insn in;

	memset(vcpu->run, 0, sizeof(*vcpu->run));
	uv->pending = GV_USER_DONE_NONE;
	gv_user_fetch(vcpu->vm, uv->st.regs.rip, &in);
	if (uv->signo == SIGSEGV && uv->code == SI_KERNEL) {
		gv_user_decode_gp(vcpu, &in);
		return vcpu->run->exit_reason != KVM_EXIT_INTR;
	}
	/* Only what lies outside RAM is MMIO; a fault inside it (below the
	 * window, which is not mapped) stays a fault. */
	if ((uv->signo == SIGSEGV || uv->signo == SIGBUS) && uv->code != SI_KERNEL &&
	    uv->addr >= vcpu->vm->cfg.mem_size) {
		gv_user_decode_mmio(vcpu, &in, uv->addr);
		return true;
	}
	if (uv->signo == SIGILL)
		return gv_user_decode_ud(vcpu, &in);
	gv_user_shutdown(vcpu->run);
	return true;
}

/* ---- running ------------------------------------------------------------ */

static int gv_user_run(struct gv_vcpu *vcpu)
{
	struct gv_user_vcpu *uv = gv_uv(vcpu);
	int ret;

	if (!uv->thread_ready) {
		ret = gv_user_thread_setup(uv);
		if (ret)
			return ret;
	}
	for (;;) {
		if (atomic_load(&uv->kicked))
			return -EINTR;
		uv->where = GV_USER_ENTERING;
		uv->signo = 0;
		/* Delivered before tgkill returns; comes back here on the next trap. */
		syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), GV_USER_SIG);
		if (uv->where != GV_USER_HOST)
			return -EIO;            /* the entry signal never came */
		if (!uv->signo)
			return -EINTR;          /* kicked before it entered */
		if (uv->signo == GV_USER_SIG) {
			vcpu->run->exit_reason = KVM_EXIT_INTR;
			return -EINTR;
		}
		if (gv_user_decode(vcpu))
			return 0;
	}
}

static void gv_user_exit_done(struct gv_vcpu *vcpu, int ret)
{
	struct gv_user_vcpu *uv = gv_uv(vcpu);
	const struct kvm_run *run = vcpu->run;
	__u64 v = 0;

	(void)ret;
	switch (uv->pending) {
	case GV_USER_DONE_IN:
		if (run->io.count != 1)
			break;
		memcpy(&v, (const uint8_t *)run + run->io.data_offset, uv->pending_size);
		gv_accel_load_reg(&uv->st.regs.rax, v, uv->pending_size);
		break;
	case GV_USER_DONE_MMIO:
		memcpy(&v, run->mmio.data, uv->pending_size);
		gv_accel_load_reg(gv_user_gpr(&uv->st.regs, uv->pending_reg), v,
				  uv->pending_size);
		break;
	case GV_USER_DONE_NONE:
		if (run->exit_reason == KVM_EXIT_HYPERCALL)
			uv->st.regs.rax = run->hypercall.ret;
		break;
	}
	uv->pending = GV_USER_DONE_NONE;
}

static void gv_user_kick(struct gv_vcpu *vcpu)
{
	struct gv_user_vcpu *uv = gv_uv(vcpu);

	atomic_store(&uv->kicked, true);
	if (vcpu->spawned && !pthread_equal(vcpu->thread, pthread_self()))
		pthread_kill(vcpu->thread, GV_USER_SIG);
}

static void gv_user_rearm(struct gv_vcpu *vcpu)
{
	atomic_store(&gv_uv(vcpu)->kicked, false);
}

/* exit_done completed the last exit: nothing is pending at a pause. */
static void gv_user_complete(struct gv_vcpu *vcpu)
{
	(void)vcpu;
}

static int gv_user_get_regs(struct gv_vcpu *vcpu, struct kvm_regs *regs)
{
	*regs = gv_uv(vcpu)->st.regs;
	return 0;
}

static int gv_user_get_state(struct gv_vcpu *vcpu, struct gv_vcpu_state *st)
{
	*st = gv_uv(vcpu)->st;
	return 0;
}

static int gv_user_set_state(struct gv_vcpu *vcpu, const struct gv_vcpu_state *st)
{
	gv_uv(vcpu)->st = *st;
	return 0;
}

const struct gv_accel_ops gv_accel_user = {
	.name = "user",
	.vm_init = gv_user_vm_init,
	.ram_bind = gv_user_ram_bind,
	.vm_fini = gv_user_vm_fini,
	.vcpu_init = gv_user_vcpu_init,
	.vcpu_fini = gv_user_vcpu_fini,
	.vcpu_cpuid = gv_user_vcpu_cpuid,
	.run = gv_user_run,
	.exit_done = gv_user_exit_done,
	.kick = gv_user_kick,
	.rearm = gv_user_rearm,
	.complete = gv_user_complete,
	.thread_end = gv_user_thread_end,
	.get_regs = gv_user_get_regs,
	.get_state = gv_user_get_state,
	.set_state = gv_user_set_state,
};
