// SPDX-License-Identifier: MIT
/*
 * helpers.c - see helpers.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "helpers.h"

/* Why /dev/kvm cannot be used, per probe @p, or NULL. */
static const char *th_kvm_device_why(const struct gmem_probe *p)
{
	static char why[64];

	if (p->kvm)
		return NULL;
	snprintf(why, sizeof(why), "/dev/kvm cannot be opened (%s)",
		 access("/dev/kvm", F_OK) ? "missing" : "permission denied");
	return why;
}

const char *th_kvm_device_unavailable(void)
{
	struct gmem_probe p;

	gmem_probe(&p);
	return th_kvm_device_why(&p);
}

const char *th_kvm_unavailable(void)
{
	static char why[128];
	struct gmem_probe p;

	gmem_probe(&p);
	if (!p.kvm)
		return th_kvm_device_why(&p);
	if (!p.guest_memfd)
		snprintf(why, sizeof(why), "KVM has no guest_memfd (KVM_CAP_GUEST_MEMFD)");
	else if (!p.gmem_mmap || !p.gmem_init_shared)
		snprintf(why, sizeof(why), "guest_memfd lacks MMAP/INIT_SHARED (flags %#llx)",
			 (unsigned long long)p.guest_memfd_flags);
	else
		return NULL;
	return why;
}

struct gmem *th_open(enum gmem_backend backend, uint64_t size, unsigned flags)
{
	struct gmem_config cfg = { .size = size, .backend = backend, .vm_fd = -1,
				   .flags = flags };
	struct gmem *g = NULL;
	const char *why;
	int ret;

	if (backend == GMEM_BACKEND_KVM && (why = th_kvm_unavailable()))
		cr_skip_test("kvm backend: %s", why);
	ret = gmem_open(&cfg, &g);
	cr_assert_eq(ret, 0, "gmem_open(%s, %llu, %#x) = %d (%s): %s",
		     gmem_backend_name(backend), (unsigned long long)size, flags, ret,
		     gmem_strerror(ret), gmem_last_error());
	return g;
}

struct gmem_stats th_stats(const struct gmem *g)
{
	struct gmem_stats s;
	int ret = gmem_stats(g, &s);

	cr_assert_eq(ret, 0, "gmem_stats = %d", ret);
	return s;
}

static uint8_t th_byte(uint64_t gpa, uint64_t i, uint32_t seed)
{
	uint64_t x = (gpa + i) * 0x9e3779b97f4a7c15ull ^ seed;

	return (uint8_t)(x >> 29);
}

void th_fill(struct gmem *g, uint64_t gpa, uint64_t len, uint32_t seed)
{
	for (uint64_t off = 0; off < len; off += TH_PAGE) {
		uint8_t *p = gmem_kmap(g, gpa + off);

		cr_assert_not_null(p, "gmem_kmap(%#llx): %s", (unsigned long long)(gpa + off),
				   strerror(errno));
		for (uint64_t i = 0; i < TH_PAGE; i += 64)
			p[i] = th_byte(gpa + off, i, seed);
		gmem_kunmap(g, p);
	}
}

bool th_check(struct gmem *g, uint64_t gpa, uint64_t len, uint32_t seed)
{
	bool ok = true;

	for (uint64_t off = 0; off < len && ok; off += TH_PAGE) {
		uint8_t *p = gmem_kmap(g, gpa + off);

		cr_assert_not_null(p, "gmem_kmap(%#llx): %s", (unsigned long long)(gpa + off),
				   strerror(errno));
		for (uint64_t i = 0; i < TH_PAGE && ok; i += 64) {
			uint8_t want = th_byte(gpa + off, i, seed);

			if (p[i] != want) {
				cr_log_error("gpa %#llx+%llu: got %#x, want %#x",
					     (unsigned long long)(gpa + off),
					     (unsigned long long)i, p[i], want);
				ok = false;
			}
		}
		gmem_kunmap(g, p);
	}
	return ok;
}

static sigjmp_buf th_jmp;

static void th_on_fault(int sig)
{
	siglongjmp(th_jmp, sig);
}

static int th_access_faults(volatile uint8_t *addr, bool write)
{
	struct sigaction sa = { .sa_handler = th_on_fault }, old_segv, old_bus;
	int faulted;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);
	if (sigsetjmp(th_jmp, 1) == 0) {
		if (write)
			*addr = 0xa5;
		else
			(void)*addr;
		faulted = 0;
	} else {
		faulted = 1;
	}
	sigaction(SIGSEGV, &old_segv, NULL);
	sigaction(SIGBUS, &old_bus, NULL);
	return faulted;
}

int th_read_faults(const volatile void *addr)
{
	return th_access_faults((volatile uint8_t *)addr, false);
}

int th_write_faults(volatile void *addr)
{
	return th_access_faults((volatile uint8_t *)addr, true);
}

long th_procmem_read(const void *addr, void *buf, size_t len)
{
	int fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = pread(fd, buf, len, (off_t)(uintptr_t)addr);
	if (n < 0)
		n = -errno;
	close(fd);
	return n;
}

static bool th_parse_range(const char *line, uintptr_t *lo, uintptr_t *hi)
{
	unsigned long a, b;

	if (sscanf(line, "%lx-%lx ", &a, &b) != 2)
		return false;
	*lo = a;
	*hi = b;
	return true;
}

unsigned th_dir_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	unsigned n = 0;

	cr_assert(d, "opendir %s: %s", path, strerror(errno));
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

unsigned th_vmas_in(const void *addr, size_t len)
{
	uintptr_t s = (uintptr_t)addr, e = s + len, lo, hi;
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	unsigned n = 0;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		if (th_parse_range(line, &lo, &hi) && lo < e && hi > s)
			n++;
	fclose(f);
	return n;
}

long th_smaps_kb(const void *addr, size_t len, const char *field)
{
	uintptr_t s = (uintptr_t)addr, e = s + len, lo, hi;
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool in = false;
	long kb = 0, v;
	size_t fl = strlen(field);

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		if (th_parse_range(line, &lo, &hi) && strchr(line, '-') < strchr(line, ' ')) {
			in = lo < e && hi > s;
			continue;
		}
		if (in && !strncmp(line, field, fl) && sscanf(line + fl, "%ld", &v) == 1)
			kb += v;
	}
	fclose(f);
	return kb;
}

/* Old values to restore at exit, one per path. */
static struct {
	char path[160];
	char value[128];
} th_restore[8];
static unsigned th_nrestore;

static void th_write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (write(fd, value, strlen(value)) < 0)
			perror(path);
		close(fd);
	}
}

static void th_restore_all(void)
{
	while (th_nrestore--)
		th_write_file(th_restore[th_nrestore].path, th_restore[th_nrestore].value);
}

bool th_sysfs_set(const char *path, const char *value, const char **why)
{
	char buf[128], *l, *r;
	int fd;
	ssize_t n;

	if (geteuid() != 0) {
		*why = "needs root to change kernel settings";
		return false;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*why = "setting not present on this kernel";
		return false;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0 || th_nrestore == 8) {
		*why = "cannot read the current setting";
		return false;
	}
	buf[n] = 0;
	/* Choice files show "a [b] c": the bracketed word is the value. */
	l = strchr(buf, '[');
	r = l ? strchr(l, ']') : NULL;
	if (l && r) {
		*r = 0;
		memmove(buf, l + 1, strlen(l + 1) + 1);
	}
	buf[strcspn(buf, "\n")] = 0;
	snprintf(th_restore[th_nrestore].path, sizeof(th_restore[0].path), "%s", path);
	snprintf(th_restore[th_nrestore].value, sizeof(th_restore[0].value), "%s", buf);
	if (th_nrestore++ == 0)
		atexit(th_restore_all);
	th_write_file(path, value);
	return true;
}
