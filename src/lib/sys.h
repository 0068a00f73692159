/* SPDX-License-Identifier: MIT */
/*
 * sys.h - the one layer through which libgmem reaches the kernel.
 *
 * Every syscall the library makes on guest memory goes through here, so a
 * test can make the Nth call of a kind fail with a chosen errno and check
 * that the library leaves states, contents and mappings as they were.
 * Functions return what the syscall returns, with errno set, except where
 * noted; the injection state is atomic so any thread may call them.
 */
#ifndef GM_SYS_H
#define GM_SYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum gm_sys_call {
	GM_SYS_MMAP,
	GM_SYS_MADVISE,
	GM_SYS_FALLOCATE,
	GM_SYS_IOCTL,
	GM_SYS_FTRUNCATE,
	GM_SYS_MEMFD,
	GM_SYS_OPEN,
	GM_SYS_WRITE,           /* snapshot files                              */
	GM_SYS_NR
};

void *gm_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int gm_sys_munmap(void *addr, size_t len);          /* never injected: teardown */
int gm_sys_madvise(void *addr, size_t len, int advice);
/* Keep a mapping that can hold guest data out of core dumps (MADV_DONTDUMP)
 * and out of every child: a file mapping is not inherited (MADV_DONTFORK),
 * a private anonymous buffer (@anon) is inherited empty (MADV_WIPEONFORK:
 * pointers to it stay valid in the child, the data does not come along).
 * 0 or -errno (two gm_sys_madvise calls, so injectable). Every mapping of
 * guest data the library makes is guarded before it is used. */
int gm_sys_guard(void *addr, size_t len, bool anon);
/* malloc() for buffers that hold guest data: page-aligned, guarded as
 * above, and unmapped (not left in the heap) when freed. NULL on failure. */
void *gm_sys_guarded_alloc(size_t len);
void  gm_sys_guarded_free(void *p);
/* Zero GM_SYS_STACK_WIPE bytes of dead stack below the caller. Hashing and
 * copying page data leave pieces of it there (libxxhash's XXH3 does, found
 * by threat::core_dump_would_hold_no_private_data), and a stack is in every
 * core dump: each call that moves page data wipes before it returns, and
 * each of its threads before it ends (glibc keeps freed thread stacks).
 * The vector registers are zeroed too (sys.c says why). */
#define GM_SYS_STACK_WIPE (64u << 10)
void gm_sys_stack_wipe(void);
int gm_sys_fallocate(int fd, int mode, off_t off, off_t len);
int gm_sys_ioctl(int fd, unsigned long req, void *arg);
int gm_sys_ftruncate(int fd, off_t len);
int gm_sys_memfd_create(const char *name, unsigned flags);
int gm_sys_open(const char *path, int flags);
ssize_t gm_sys_write(int fd, const void *buf, size_t len);

/* Make the call of kind @call fail with @err once @skip more calls of that
 * kind have gone through (skip = 0: the very next one). One shot. */
void gm_sys_inject(enum gm_sys_call call, unsigned long skip, int err);
/* Make every call of kind @call wait @ns first (0: no wait): a test's stand-in
 * for a slow device. gm_sys_inject_clear() removes every delay too. */
void gm_sys_set_delay(enum gm_sys_call call, unsigned long ns);
void gm_sys_inject_clear(void);
/* Tests: offer every ioctl to @hook first. The hook returns true when it
 * answered the call itself (*ret is then the result, errno set on -1) and
 * false to let the kernel answer. This is how the tests stand in for kernel
 * features this host lacks (in-place conversion, cap 249). NULL removes it. */
typedef bool (*gm_sys_ioctl_hook_fn)(int fd, unsigned long req, void *arg, int *ret);
void gm_sys_set_ioctl_hook(gm_sys_ioctl_hook_fn hook);

/* Calls of kind @call made so far by the process (for tests to aim). */
unsigned long gm_sys_count(enum gm_sys_call call);

#endif /* GM_SYS_H */
