/* SPDX-License-Identifier: MIT */
/*
 * helpers.h - shared helpers of the Criterion test suite.
 *
 * TH_TEST(suite, name) defines one test per backend (name_kvm, name_memfd);
 * the body sees `backend`. th_open() skips the test, with the reason, when
 * the backend cannot be had here (no /dev/kvm, no guest_memfd).
 */
#ifndef TH_HELPERS_H
#define TH_HELPERS_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gmem.h>

#define TH_PAGE 4096ull
#define TH_MIB  (1ull << 20)

#define TH_TEST(suite, name, ...)                                              \
	static void suite##_##name##_body(enum gmem_backend backend);          \
	Test(suite, name##_kvm, ##__VA_ARGS__)                                 \
	{                                                                      \
		suite##_##name##_body(GMEM_BACKEND_KVM);                       \
	}                                                                      \
	Test(suite, name##_memfd, ##__VA_ARGS__)                               \
	{                                                                      \
		suite##_##name##_body(GMEM_BACKEND_MEMFD);                     \
	}                                                                      \
	static void suite##_##name##_body(enum gmem_backend backend)

/* got == want as integers, printing both sides (and hex, for addresses). */
#define TH_EQ(got, want)                                                       \
	do {                                                                   \
		long long g_ = (long long)(got), w_ = (long long)(want);       \
		cr_assert_eq(g_, w_, "%s = %lld (%#llx), want %s = %lld (%#llx)", \
			     #got, g_, (unsigned long long)g_, #want, w_,       \
			     (unsigned long long)w_);                           \
	} while (0)

/* gmem_stats() of @g; fails the test if the call fails. */
struct gmem_stats th_stats(const struct gmem *g);

/* Why /dev/kvm cannot be used here, or NULL when it can. */
const char *th_kvm_device_unavailable(void);

/* Why KVM guest_memfd cannot be used here, or NULL when it can. */
const char *th_kvm_unavailable(void);

/* Open @size bytes on @backend with @flags; skips the test when the
 * backend is unavailable, fails it on any other error. */
struct gmem *th_open(enum gmem_backend backend, uint64_t size, unsigned flags);

/* Fill page @gpa through a temporary mapping with a pattern from @seed,
 * and check it the same way (works whatever the page's state). */
void th_fill(struct gmem *g, uint64_t gpa, uint64_t len, uint32_t seed);
bool th_check(struct gmem *g, uint64_t gpa, uint64_t len, uint32_t seed);

/* 1 if reading @addr faults (SIGSEGV or SIGBUS), 0 if it reads. */
int th_read_faults(const volatile void *addr);
/* 1 if writing @addr faults. */
int th_write_faults(volatile void *addr);

/* Read @len bytes at @addr through /proc/self/mem: bytes read, or -errno. */
long th_procmem_read(const void *addr, void *buf, size_t len);

/* Entries of directory @path other than "." and ".." (files in a scratch
 * directory, descriptors in /proc/self/fd). */
unsigned th_dir_entries(const char *path);

/* Mappings (VMAs) of this process that overlap [addr, addr + len). */
unsigned th_vmas_in(const void *addr, size_t len);

/* Sum of a field (e.g. "FilePmdMapped:") over the smaps entries that
 * overlap [addr, addr + len), in kB. */
long th_smaps_kb(const void *addr, size_t len, const char *field);

/* Set a sysfs/procfs file for the rest of the test and put the old value
 * back at exit (root only: false + reason otherwise). */
bool th_sysfs_set(const char *path, const char *value, const char **why);

#endif /* TH_HELPERS_H */
