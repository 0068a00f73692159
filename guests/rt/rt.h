/* SPDX-License-Identifier: MIT */
/*
 * rt.h - the guest runtime: what a guest program of the micro-VMM has
 * instead of a libc.
 *
 * Model: freestanding C, no interrupts, no allocation. Console output and
 * exit go to ports, everything else is a hypercall (gv_abi.h). vCPU 0 runs
 * guest_main() and exits with its return value; the other vCPUs run
 * guest_secondary() (a program that defines none has them halt at once).
 * Each guest instruction costs about 1 µs on hosts whose KVM emulates the
 * guest, so the runtime favours few instructions and few exits: a whole
 * printf line leaves the guest as one string instruction.
 */
#ifndef GV_RT_H
#define GV_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "gv_abi.h"

#define GV_PAGE 4096ul
#define GV_ALIGNED_PAGE __attribute__((aligned(4096)))

#ifndef EINVAL
#define EPERM   1
#define EFAULT  14
#define EAGAIN  11
#define EINVAL  22
#define ENOSYS  38
#endif

struct gv_boot {
	unsigned cpu;           /* this vCPU's index     */
	unsigned ncpus;
	uint64_t mem_size;      /* RAM in bytes           */
};

/* The program. */
int  guest_main(const struct gv_boot *b);
void guest_secondary(const struct gv_boot *b);

static inline void gv_outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void gv_outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void gv_halt(void)
{
	__asm__ volatile("hlt" : : : "memory");
}

static inline void gv_pause(void)
{
	__asm__ volatile("pause" : : : "memory");
}

/* Hypercall: number in rax, arguments in rdi/rsi/rcx, result read back
 * from the port (sign-extended 32-bit). */
static inline long gv_hcall(unsigned long nr, unsigned long a0, unsigned long a1,
			    unsigned long a2)
{
	uint32_t ret;

	__asm__ volatile("inl %%dx, %%eax"
			 : "=a"(ret)
			 : "a"(nr), "D"(a0), "S"(a1), "c"(a2), "d"(GV_PORT_HCALL)
			 : "memory");
	return (long)(int32_t)ret;
}

static inline long gv_share(const void *p, unsigned long len)
{
	return gv_hcall(GV_HC_SHARE, (unsigned long)p, len, 0);
}

static inline long gv_unshare(const void *p, unsigned long len)
{
	return gv_hcall(GV_HC_UNSHARE, (unsigned long)p, len, 0);
}

static inline long gv_page_state(const void *p)
{
	return gv_hcall(GV_HC_STATE, (unsigned long)p, 0, 0);
}

__attribute__((noreturn)) void gv_exit(int status);
void gv_write(const char *s, size_t n);
void gv_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Test helpers: print "ok"/"FAIL" with both sides; failures are counted
 * and guest_main usually returns gv_failures(). */
void gv_expect(long got, long want, const char *what);
int  gv_failures(void);

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int   memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#endif /* GV_RT_H */
