// SPDX-License-Identifier: MIT
/*
 * sys.c - syscall layer with one-shot fault injection (see sys.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sys.h"

struct gm_sys_inject_slot {
	atomic_long armed;      /* calls to let through + 1; 0 = disarmed */
	atomic_int err;
	atomic_ulong calls;
	atomic_ulong delay_ns;  /* every call waits this long first (tests)     */
};

static struct gm_sys_inject_slot gm_sys_slots[GM_SYS_NR];
static _Atomic(gm_sys_ioctl_hook_fn) gm_sys_ioctl_hook;

static void gm_sys_wait(unsigned long ns)
{
	struct timespec t = { .tv_sec = (time_t)(ns / 1000000000ul),
			      .tv_nsec = (long)(ns % 1000000000ul) };

	while (ns && nanosleep(&t, &t) && errno == EINTR)
		;
}

/* Returns the errno to fail with, or 0 to let the call through. */
static int gm_sys_should_fail(enum gm_sys_call call)
{
	struct gm_sys_inject_slot *s = &gm_sys_slots[call];
	long armed;

	atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed);
	gm_sys_wait(atomic_load_explicit(&s->delay_ns, memory_order_relaxed));
	armed = atomic_load_explicit(&s->armed, memory_order_acquire);
	while (armed > 0) {
		if (atomic_compare_exchange_weak(&s->armed, &armed, armed - 1))
			return armed == 1 ? atomic_load(&s->err) : 0;
	}
	return 0;
}

void gm_sys_inject(enum gm_sys_call call, unsigned long skip, int err)
{
	atomic_store(&gm_sys_slots[call].err, err);
	atomic_store_explicit(&gm_sys_slots[call].armed, (long)skip + 1,
			      memory_order_release);
}

void gm_sys_inject_clear(void)
{
	for (int i = 0; i < GM_SYS_NR; i++) {
		atomic_store(&gm_sys_slots[i].armed, 0);
		atomic_store(&gm_sys_slots[i].delay_ns, 0);
	}
}

void gm_sys_set_delay(enum gm_sys_call call, unsigned long ns)
{
	atomic_store(&gm_sys_slots[call].delay_ns, ns);
}

unsigned long gm_sys_count(enum gm_sys_call call)
{
	return atomic_load(&gm_sys_slots[call].calls);
}

#define GM_SYS_INJECT(call, failval)			\
	do {						\
		int e_ = gm_sys_should_fail(call);	\
		if (e_) {				\
			errno = e_;			\
			return failval;			\
		}					\
	} while (0)

void *gm_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	GM_SYS_INJECT(GM_SYS_MMAP, MAP_FAILED);
	return mmap(addr, len, prot, flags, fd, off);
}

int gm_sys_munmap(void *addr, size_t len)
{
	return munmap(addr, len);
}

int gm_sys_madvise(void *addr, size_t len, int advice)
{
	GM_SYS_INJECT(GM_SYS_MADVISE, -1);
	return madvise(addr, len, advice);
}

/* madvise() alone is not enough here: a failure must fail the caller, who
 * then unmaps, so that no guest data is ever mapped unguarded. */
int gm_sys_guard(void *addr, size_t len, bool anon)
{
	if (gm_sys_madvise(addr, len, MADV_DONTDUMP) ||
	    gm_sys_madvise(addr, len, anon ? MADV_WIPEONFORK : MADV_DONTFORK))
		return -errno;
	return 0;
}

/* The length lives in the page in front of the buffer, so that a free
 * needs only the pointer, as free() does; the buffer is page-aligned. */
void *gm_sys_guarded_alloc(size_t len)
{
	size_t total = len + 4096;
	uint8_t *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			     -1, 0);

	if (base == MAP_FAILED)
		return NULL;
	if (gm_sys_guard(base, total, true)) {
		munmap(base, total);
		return NULL;
	}
	*(size_t *)base = total;
	return base + 4096;
}

void gm_sys_guarded_free(void *p)
{
	uint8_t *base;

	if (!p)
		return;
	base = (uint8_t *)p - 4096;
	munmap(base, *(size_t *)base);
}

/*
 * Zero the vector registers. memcpy and the hashes leave page data in
 * them, and a register is written to the stack by whatever saves the whole
 * register file next: the dynamic linker's lazy-binding trampoline
 * (_dl_runtime_resolve_xsavec, on the first call of any function through
 * the PLT, the caller's included) and every signal frame. Found by
 * threat::core_dump_would_hold_no_private_data: page data in a stack frame
 * of gmem_io_rw, spilled there by the trampoline during gmem_io_create
 * after a restore had returned with its last page in the registers, and
 * on a snapshot worker's stack, spilled as the thread ended after its wipe.
 * glibc's AVX-512 string functions use zmm16-31 (no vzeroupper needed), so
 * those are cleared where the CPU has them. All of them are call-clobbered
 * in the SysV ABI: the caller keeps nothing there.
 */
#if defined(__x86_64__)
#define GM_SYS_VEC_CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", \
			    "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

static void gm_sys_regs_wipe(void)
{
	/* 0: SSE2, 1: AVX, 2: AVX-512F; a load of libgcc's CPU model each. */
	int level = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx") ? 1 : 0;

	if (level == 2)
		__asm__ volatile(
			"vpxord %%zmm16, %%zmm16, %%zmm16\n\tvpxord %%zmm17, %%zmm17, %%zmm17\n\t"
			"vpxord %%zmm18, %%zmm18, %%zmm18\n\tvpxord %%zmm19, %%zmm19, %%zmm19\n\t"
			"vpxord %%zmm20, %%zmm20, %%zmm20\n\tvpxord %%zmm21, %%zmm21, %%zmm21\n\t"
			"vpxord %%zmm22, %%zmm22, %%zmm22\n\tvpxord %%zmm23, %%zmm23, %%zmm23\n\t"
			"vpxord %%zmm24, %%zmm24, %%zmm24\n\tvpxord %%zmm25, %%zmm25, %%zmm25\n\t"
			"vpxord %%zmm26, %%zmm26, %%zmm26\n\tvpxord %%zmm27, %%zmm27, %%zmm27\n\t"
			"vpxord %%zmm28, %%zmm28, %%zmm28\n\tvpxord %%zmm29, %%zmm29, %%zmm29\n\t"
			"vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31\n\t"
			"vpxord %%zmm0, %%zmm0, %%zmm0\n\tvpxord %%zmm1, %%zmm1, %%zmm1\n\t"
			"vpxord %%zmm2, %%zmm2, %%zmm2\n\tvpxord %%zmm3, %%zmm3, %%zmm3\n\t"
			"vpxord %%zmm4, %%zmm4, %%zmm4\n\tvpxord %%zmm5, %%zmm5, %%zmm5\n\t"
			"vpxord %%zmm6, %%zmm6, %%zmm6\n\tvpxord %%zmm7, %%zmm7, %%zmm7\n\t"
			"vzeroall"
			::: GM_SYS_VEC_CLOBBERS);
	else if (level == 1)
		__asm__ volatile("vzeroall"
			::: GM_SYS_VEC_CLOBBERS);
	else
		__asm__ volatile(
			"pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\tpxor %%xmm2, %%xmm2\n\t"
			"pxor %%xmm3, %%xmm3\n\tpxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t"
			"pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\tpxor %%xmm8, %%xmm8\n\t"
			"pxor %%xmm9, %%xmm9\n\tpxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t"
			"pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\tpxor %%xmm14, %%xmm14\n\t"
			"pxor %%xmm15, %%xmm15"
			::: GM_SYS_VEC_CLOBBERS);
}
#else
static void gm_sys_regs_wipe(void)
{
}
#endif

void __attribute__((noinline)) gm_sys_stack_wipe(void)
{
	uint8_t pad[GM_SYS_STACK_WIPE];

	explicit_bzero(pad, sizeof(pad));
	__asm__ volatile("" : : "r"(pad) : "memory");
	gm_sys_regs_wipe();
}

int gm_sys_fallocate(int fd, int mode, off_t off, off_t len)
{
	GM_SYS_INJECT(GM_SYS_FALLOCATE, -1);
	return fallocate(fd, mode, off, len);
}

void gm_sys_set_ioctl_hook(gm_sys_ioctl_hook_fn hook)
{
	atomic_store(&gm_sys_ioctl_hook, hook);
}

int gm_sys_ioctl(int fd, unsigned long req, void *arg)
{
	gm_sys_ioctl_hook_fn hook = atomic_load(&gm_sys_ioctl_hook);
	int ret;

	GM_SYS_INJECT(GM_SYS_IOCTL, -1);
	if (hook && hook(fd, req, arg, &ret))
		return ret;
	return ioctl(fd, req, arg);
}

int gm_sys_ftruncate(int fd, off_t len)
{
	GM_SYS_INJECT(GM_SYS_FTRUNCATE, -1);
	return ftruncate(fd, len);
}

int gm_sys_memfd_create(const char *name, unsigned flags)
{
	GM_SYS_INJECT(GM_SYS_MEMFD, -1);
	return memfd_create(name, flags);
}

ssize_t gm_sys_write(int fd, const void *buf, size_t len)
{
	GM_SYS_INJECT(GM_SYS_WRITE, -1);
	return write(fd, buf, len);
}

int gm_sys_open(const char *path, int flags)
{
	GM_SYS_INJECT(GM_SYS_OPEN, -1);
	return open(path, flags);
}
