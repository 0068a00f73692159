// SPDX-License-Identifier: MIT
/*
 * test_threat.c - the adversarial suite of docs/threat-model.md: one test
 * per row of its table, each an attack that worked before its defence.
 *
 * The secret is written into a private page through a temporary mapping,
 * XORed with a mask, so the test's own memory never holds it in the clear:
 * a scan of the process's memory for it finds only what the library left.
 *
 * Suite: threat.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"
#include "io/io.h"
#include "kvm_uapi.h"
#include "sys.h"

#define PG   TH_PAGE
#define SZ   (4 * TH_MIB)
#define KEY_LEN 32
#define MASK 0xa5

/* The secret, masked: byte i of the secret is key[i] ^ MASK. */
static const uint8_t key[KEY_LEN] = {
	0x13, 0x37, 0xc0, 0xde, 0x8b, 0xad, 0xf0, 0x0d, 0x51, 0x7e, 0x22, 0x91,
	0x4c, 0xe3, 0x05, 0xa8, 0x6f, 0x3b, 0xd4, 0x19, 0x87, 0x60, 0xfe, 0x2a,
	0x9c, 0x41, 0x0e, 0xb7, 0x73, 0xca, 0x58, 0xe6,
};

/* Write the secret over the whole private page at @gpa. */
static void plant_secret(struct gmem *g, uint64_t gpa)
{
	uint8_t *w = gmem_kmap(g, gpa);

	cr_assert_not_null(w, "gmem_kmap: %s", strerror(errno));
	for (uint64_t i = 0; i < PG; i++)
		w[i] = key[i % KEY_LEN] ^ MASK;
	gmem_kunmap(g, w);
	TH_EQ(gmem_state(g, gpa), GMEM_PRIVATE);
}

/* Also used to scan all of the process's memory, which ASan's checks would
 * take for overflows of whatever lies next to its redzones. */
__attribute__((no_sanitize("address")))
static bool is_secret(const volatile uint8_t *p)
{
	for (unsigned i = 0; i < KEY_LEN; i++)
		if ((uint8_t)(p[i] ^ MASK) != key[i])
			return false;
	return true;
}

/* Run @fn in a child; its exit status (0: the attack failed). */
static int in_child(int (*fn)(void *), void *arg)
{
	int status;
	pid_t pid = fork();

	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (!pid)
		_exit(fn(arg));
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "child status %#x", status);
	return WEXITSTATUS(status);
}

/* 0: reading @p faults; 2: it returned the secret; 1: something else. */
static int child_read(void *p)
{
	if (th_read_faults(p))
		return 0;
	return is_secret(p) ? 2 : 1;
}

/* ---- row: a forked child reads the KVM view --------------------------- */

TH_TEST(threat, fork_child_cannot_read_kvm_view)
{
	struct gmem *g = th_open(backend, SZ, 0);
	uint8_t *kv = (uint8_t *)gmem_kvm_view(g) + 5 * PG;

	plant_secret(g, 5 * PG);
	cr_assert(is_secret(kv), "the KVM view does not hold the page (test broken)");
	TH_EQ(in_child(child_read, kv), 0);
	gmem_close(g);
}

/* ---- row: a child forked while a page was shared keeps its mapping ---- */

struct late_child {
	int go[2];
	uint8_t *addr;
};

static int child_read_later(void *arg)
{
	struct late_child *c = arg;
	char x;

	close(c->go[1]);
	if (read(c->go[0], &x, 1) != 1)
		return 3;
	return child_read(c->addr);
}

TH_TEST(threat, child_forked_while_shared_cannot_read_it_private)
{
	struct gmem *g = th_open(backend, SZ, 0);
	struct late_child c = { .addr = gmem_host(g, 7 * PG) };
	int status;
	pid_t pid;

	TH_EQ(gmem_convert(g, 7 * PG, PG, GMEM_SHARED, NULL), 0);
	c.addr[0] = 1;                  /* mapped and faulted in */
	cr_assert_eq(pipe(c.go), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (!pid)
		_exit(child_read_later(&c));
	close(c.go[0]);
	TH_EQ(gmem_convert(g, 7 * PG, PG, GMEM_PRIVATE, NULL), 0);
	plant_secret(g, 7 * PG);
	cr_assert_eq(write(c.go[1], "x", 1), 1);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "child forked while the page was shared: status %#x (512: it read the secret)",
		  status);
	close(c.go[1]);
	gmem_close(g);
}

/* ---- row: a child forked while a temporary mapping is held ------------ */

TH_TEST(threat, fork_child_cannot_read_kmap_window)
{
	struct gmem *g = th_open(backend, SZ, 0);
	uint8_t *w;

	plant_secret(g, 9 * PG);
	w = gmem_kmap(g, 9 * PG);
	cr_assert_not_null(w);
	TH_EQ(in_child(child_read, w), 0);
	gmem_kunmap(g, w);
	gmem_close(g);
}

/* ---- row: core dumps -------------------------------------------------- */

/* VmFlags of the mapping holding @addr, "" if none. */
static void vma_flags(const void *addr, char *out, size_t size)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool in = false;

	out[0] = 0;
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			size_t n = strlen(line + 8);

			if (n >= size)
				n = size - 1;
			memcpy(out, line + 8, n);
			out[n] = 0;
			break;
		}
	}
	fclose(f);
}

static void expect_guarded(const void *addr, const char *what, const char *fork_flag)
{
	char fl[256];

	vma_flags(addr, fl, sizeof(fl));
	cr_assert(strstr(fl, " dd"), "%s at %p: VmFlags%s lacks dd (it would be in a core dump)",
		  what, addr, fl);
	cr_assert(strstr(fl, fork_flag), "%s at %p: VmFlags%s lacks %s (a child would get it)",
		  what, addr, fl, fork_flag);
}

/* A host-view run holds shared pages only: no dd needed, but no child. */
static void expect_not_inherited(const void *addr, const char *what)
{
	char fl[256];

	vma_flags(addr, fl, sizeof(fl));
	cr_assert(strstr(fl, " dc"), "%s at %p: VmFlags%s lacks dc (a child would get it)",
		  what, addr, fl);
}

TH_TEST(threat, smaps_shows_dd_on_every_guest_data_mapping)
{
	struct gmem *g = th_open(backend, SZ, 0);
	struct gmem_io *io;
	uint8_t *w;

	TH_EQ(gmem_convert(g, 16 * PG, 4 * PG, GMEM_SHARED, NULL), 0);
	w = gmem_kmap(g, 2 * PG);
	cr_assert_not_null(w);
	TH_EQ(gmem_io_create(g, &(struct gmem_io_config){ .flags = GMEM_IO_CTX_NO_CALIBRATE },
			     &io), 0);
	expect_guarded(gmem_kvm_view(g), "KVM view", " dc");
	expect_guarded((uint8_t *)gmem_kvm_view(g) + SZ - 1, "KVM view (end)", " dc");
	expect_not_inherited(gmem_host(g, 16 * PG), "host view shared run");
	expect_guarded(w, "temporary mapping", " dc");
	expect_guarded(io->pool.base, "bounce pool", " wf");
	gmem_kunmap(g, w);
	TH_EQ(gmem_io_destroy(io), 0);
	gmem_close(g);
}

/*
 * What a core dump would hold: every readable mapping without dd. None may
 * hold the secret, at rest or while a save, a restore or a bounce request
 * has it in flight. Stacks included: this scan found libxxhash leaving
 * page data in dead stack after hashing a chunk (snapshot/reader.c).
 */
__attribute__((no_sanitize("address")))
static unsigned scan_mappings(char *where, size_t size, bool dumpable_only)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512], perms[8] = "", head[160] = "";
	unsigned long lo = 0, hi = 0;
	unsigned found = 0;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b;

		if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) == 3 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			lo = a, hi = b;
			snprintf(head, sizeof(head), "%.*s", (int)strcspn(line, "\n"), line);
			continue;
		}
		if (strncmp(line, "VmFlags:", 8) || perms[0] != 'r' ||
		    (dumpable_only && strstr(line, " dd")) ||
		    strstr(line, " io") || strstr(line, " pf"))
			continue;
		if (hi - lo > (1ul << 34))
			continue;
		for (unsigned long p = lo; p + KEY_LEN <= hi; p += 8) {
			if (((const uint8_t *)p)[0] == (uint8_t)(key[0] ^ MASK) &&
			    is_secret((const uint8_t *)p)) {
				if (!found++)
					snprintf(where, size, "%#lx in %s", p, head);
				break;
			}
		}
	}
	fclose(f);
	return found;
}

static unsigned scan_dumpable(char *where, size_t size)
{
	return scan_mappings(where, size, true);
}

static char scan_where[256];
static unsigned scan_hits;

static void scan_progress(void *ctx, uint64_t done, uint64_t total)
{
	(void)ctx;
	if (done && done < total)
		scan_hits += scan_dumpable(scan_where, sizeof(scan_where));
}

static int64_t scan_device(void *opaque, enum gmem_io_dir dir, const struct iovec *iov,
			   int cnt, uint64_t off)
{
	int64_t n = 0;

	(void)opaque, (void)dir, (void)off;
	scan_hits += scan_dumpable(scan_where, sizeof(scan_where));
	for (int i = 0; i < cnt; i++)
		n += (int64_t)iov[i].iov_len;
	return n;
}

Test(threat, core_dump_would_hold_no_private_data, .timeout = 120)
{
	struct gmem_snapshot_opts o = { .progress = scan_progress };
	char path[] = "/tmp/gmem-threat-XXXXXX";
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, 64 * TH_MIB, 0), *r;
	struct gmem_io_target t = { .kind = GMEM_IO_CALLBACK, .fn = scan_device };
	struct gmem_io_seg s = { 100 * PG, 64 * PG };
	struct gmem_io_req q = { .dir = GMEM_IO_WRITE, .path = GMEM_IO_BOUNCE, .nsegs = 1,
				 .segs = &s, .target = &t };
	struct gmem_io *io;
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	close(fd);
	for (uint64_t p = 100; p < 164; p++)
		plant_secret(g, p * PG);
	scan_hits = 0;
	TH_EQ(scan_dumpable(scan_where, sizeof(scan_where)), 0);
	TH_EQ(gmem_snapshot_save_ex(g, path, &o), 0);
	cr_assert_eq(scan_hits, 0, "during a save: %s", scan_where);
	cr_assert_eq(scan_dumpable(scan_where, sizeof(scan_where)), 0, "after a save: %s",
		     scan_where);
	TH_EQ(gmem_snapshot_restore_ex(path, NULL, &o, &r), 0);
	cr_assert_eq(scan_hits, 0, "during a restore: %s", scan_where);
	cr_assert_eq(scan_dumpable(scan_where, sizeof(scan_where)), 0, "after a restore: %s",
		     scan_where);
	TH_EQ(gmem_io_create(g, &(struct gmem_io_config){ .flags = GMEM_IO_CTX_NO_CALIBRATE },
			     &io), 0);
	TH_EQ(gmem_io_rw(io, &q), (int64_t)s.len);
	cr_assert_eq(scan_hits, 0, "during a bounce request: %s", scan_where);
	TH_EQ(gmem_io_destroy(io), 0);
	gmem_close(r);
	gmem_close(g);
	unlink(path);
}

/* ---- row: a live save's copies of private pages --------------------- */

static struct gmem *live_g;
static unsigned live_child_status;

/* A child forked now: may it read the secret anywhere it can read? */
static int child_scan_all(void *arg)
{
	(void)arg;
	return scan_mappings(scan_where, sizeof(scan_where), false) ? 2 : 0;
}

static void live_progress(void *ctx, uint64_t done, uint64_t total)
{
	uint8_t *kv = gmem_kvm_view(live_g);

	(void)ctx;
	if (!done) {
		/* The guest overwrites the secret pages: the save copies each
		 * first, so its copy pool now holds the secret. */
		for (uint64_t p = 100; p < 164; p++)
			kv[p * PG + 1] ^= 0xff;
		scan_hits += scan_dumpable(scan_where, sizeof(scan_where));
		live_child_status = (unsigned)in_child(child_scan_all, NULL);
	} else if (done < total) {
		scan_hits += scan_dumpable(scan_where, sizeof(scan_where));
	}
}

Test(threat, live_save_copies_are_neither_dumped_nor_inherited, .timeout = 120)
{
	struct gmem_snapshot_opts o = { .flags = GMEM_SNAP_LIVE | GMEM_SNAP_BUFFERED,
					.progress = live_progress };
	char path[] = "/tmp/gmem-threat-XXXXXX";
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, 64 * TH_MIB, 0), *r;
	uint8_t *w;
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	close(fd);
	for (uint64_t p = 100; p < 164; p++)
		plant_secret(g, p * PG);
	live_g = g;
	scan_hits = 0;
	live_child_status = 9;
	TH_EQ(gmem_snapshot_save_ex(g, path, &o), 0);
	cr_assert_eq(scan_hits, 0, "during a live save: %s", scan_where);
	cr_assert_eq(live_child_status, 0, "a child forked during a live save read the secret "
		     "(status %u)", live_child_status);
	cr_assert_eq(scan_dumpable(scan_where, sizeof(scan_where)), 0, "after a live save: %s",
		     scan_where);
	/* The copies were used: the file holds the secret as it was. */
	TH_EQ(gmem_snapshot_restore(path, NULL, &r), 0);
	w = gmem_kmap(r, 100 * PG);
	cr_assert_not_null(w);
	cr_assert(is_secret(w), "the live file lost the start contents of page 100");
	gmem_kunmap(r, w);
	gmem_close(r);
	gmem_close(g);
	unlink(path);
}

/* ---- row: an exec'd program inherits descriptors ---------------------- */

static bool fd_was_open[1024];

static void fds_note(void)
{
	for (int fd = 0; fd < 1024; fd++)
		fd_was_open[fd] = fcntl(fd, F_GETFD) >= 0;
}

static void fds_expect_cloexec(const char *when)
{
	for (int fd = 0; fd < 1024; fd++) {
		int fl = fcntl(fd, F_GETFD);
		char link[64], target[256] = "";

		if (fl < 0 || fd_was_open[fd] || (fl & FD_CLOEXEC))
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		if (readlink(link, target, sizeof(target) - 1) < 0)
			strcpy(target, "?");
		cr_assert_fail("%s: descriptor %d (%s) is not close-on-exec", when, fd, target);
	}
}

static void cloexec_progress(void *ctx, uint64_t done, uint64_t total)
{
	(void)ctx, (void)done, (void)total;
	fds_expect_cloexec("during a snapshot save or restore");
}

TH_TEST(threat, every_descriptor_is_close_on_exec)
{
	struct gmem_snapshot_opts o = { .progress = cloexec_progress };
	char path[] = "/tmp/gmem-threat-XXXXXX";
	struct gmem *g, *r, *lz;
	struct gmem_io *io;
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	close(fd);
	fds_note();
	g = th_open(backend, SZ, 0);
	TH_EQ(gmem_io_create(g, NULL, &io), 0);
	fds_expect_cloexec("after gmem_open and gmem_io_create");
	TH_EQ(gmem_snapshot_save_ex(g, path, &o), 0);
	TH_EQ(gmem_snapshot_restore_ex(path, NULL, &o, &r), 0);
	fds_expect_cloexec("after a restore");
	o.flags = GMEM_SNAP_LAZY;
	if (gmem_snapshot_restore_ex(path, NULL, &o, &lz) == 0) {
		fds_expect_cloexec("during a lazy restore");
		gmem_snapshot_lazy_wait(lz);
		gmem_close(lz);
	}
	gmem_close(r);
	TH_EQ(gmem_io_destroy(io), 0);
	gmem_close(g);
	unlink(path);
}

/* ---- row: another process of the same user reads the VMM's memory ---- */

struct vmm_side {
	int out[2], done[2];
	bool harden;
};

static void drop_root(void)
{
	if (getuid() == 0 && (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)))
		_exit(10);
}

/* The VMM: its own memory, a secret in a private page, then (maybe)
 * hardened; it tells the attacker where to look and waits. */
static int vmm_main(void *arg)
{
	struct vmm_side *v = arg;
	struct gmem_config cfg = { .size = 2 * TH_MIB, .backend = GMEM_BACKEND_MEMFD,
				   .vm_fd = -1 };
	struct gmem *g;
	uintptr_t at;
	char x;

	drop_root();
	/* A uid change cleared the dumpable flag: set it as a plain VMM has
	 * it, and let any process attach whatever Yama's scope. */
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
	if (gmem_open(&cfg, &g))
		return 11;
	{
		uint8_t *w = gmem_kmap(g, 3 * PG);

		if (!w)
			return 12;
		for (uint64_t i = 0; i < PG; i++)
			w[i] = key[i % KEY_LEN] ^ MASK;
		gmem_kunmap(g, w);
	}
	if (v->harden && gmem_harden_process(0))
		return 13;
	at = (uintptr_t)gmem_kvm_view(g) + 3 * PG;
	if (write(v->out[1], &at, sizeof(at)) != sizeof(at))
		return 14;
	if (read(v->done[0], &x, 1) != 1)
		return 15;
	gmem_close(g);
	return 0;
}

/* The attacker, same user: 0 refused, 2 read the secret, else 1. */
static int attack(pid_t vmm, uintptr_t at)
{
	uint8_t buf[KEY_LEN];
	struct iovec l = { buf, sizeof(buf) }, r = { (void *)at, sizeof(buf) };
	char procmem[64];
	int fd, got = 0;

	drop_root();
	if (process_vm_readv(vmm, &l, 1, &r, 1, 0) == sizeof(buf))
		got |= is_secret(buf) ? 2 : 1;
	snprintf(procmem, sizeof(procmem), "/proc/%d/mem", (int)vmm);
	fd = open(procmem, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (pread(fd, buf, sizeof(buf), (off_t)at) == sizeof(buf))
			got |= is_secret(buf) ? 2 : 1;
		close(fd);
	}
	return got & 2 ? 2 : got;
}

static int run_attack(bool harden)
{
	struct vmm_side v = { .harden = harden };
	uintptr_t at;
	int status, res;
	pid_t vmm, att;

	cr_assert_eq(pipe(v.out), 0);
	cr_assert_eq(pipe(v.done), 0);
	vmm = fork();
	cr_assert_geq(vmm, 0);
	if (!vmm)
		_exit(vmm_main(&v));
	cr_assert_eq(read(v.out[0], &at, sizeof(at)), (ssize_t)sizeof(at),
		     "the VMM child did not start");
	att = fork();
	cr_assert_geq(att, 0);
	if (!att)
		_exit(attack(vmm, at));
	cr_assert_eq(waitpid(att, &status, 0), att);
	cr_assert(WIFEXITED(status));
	res = WEXITSTATUS(status);
	cr_assert_eq(write(v.done[1], "x", 1), 1);
	cr_assert_eq(waitpid(vmm, &status, 0), vmm);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "VMM child: %#x", status);
	for (int i = 0; i < 2; i++) {
		close(v.out[i]);
		close(v.done[i]);
	}
	return res;
}

Test(threat, harden_process_keeps_same_user_out)
{
	int plain = run_attack(false);

	/* The attack must work on a plain VMM, or this test proves nothing. */
	if (plain != 2)
		cr_skip_test("a same-user process cannot read a plain VMM here either "
			     "(result %d: ptrace restricted beyond Yama?)", plain);
	TH_EQ(run_attack(true), 0);
}

/* ---- row: closing a memory under live I/O contexts -------------------- */

static int64_t hold_device(void *opaque, enum gmem_io_dir dir, const struct iovec *iov,
			   int cnt, uint64_t off)
{
	struct gmem *g = opaque;
	int64_t n = 0;

	(void)dir, (void)off;
	/* Someone else maps a page of the request: its restore is deferred. */
	cr_assert_not_null(gmem_kmap(g, 2 * PG));
	for (int i = 0; i < cnt; i++)
		n += (int64_t)iov[i].iov_len;
	return n;
}

Test(threat, close_with_live_io_contexts_detaches_them)
{
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, SZ, 0);
	struct gmem_io_target t = { .kind = GMEM_IO_CALLBACK, .fn = hold_device, .opaque = g };
	struct gmem_io_seg s = { 0, 4 * PG };
	struct gmem_io_req q = { .path = GMEM_IO_INPLACE, .nsegs = 1, .segs = &s, .target = &t };
	struct gmem_io_stats st;
	struct gmem_io *a, *b;

	TH_EQ(gmem_io_create(g, &(struct gmem_io_config){ .flags = GMEM_IO_CTX_NO_CALIBRATE },
			     &a), 0);
	TH_EQ(gmem_io_create(g, &(struct gmem_io_config){ .flags = GMEM_IO_CTX_NO_CALIBRATE },
			     &b), 0);
	TH_EQ(gmem_io_rw(a, &q), 4 * PG);
	TH_EQ(gmem_io_stats(a, &st), 0);
	TH_EQ(st.deferred, 1);
	gmem_close(g);          /* window still held: the library cleans up */
	TH_EQ(gmem_io_rw(a, &q), -ENODEV);
	TH_EQ(gmem_io_stats(b, &st), -ENODEV);
	TH_EQ(gmem_io_calibrate(b), -ENODEV);
	TH_EQ(gmem_io_destroy(a), 0);
	TH_EQ(gmem_io_destroy(b), 0);
}

Test(threat, io_destroy_reports_a_page_left_shared)
{
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, SZ, 0);
	struct gmem_io_target t = { .kind = GMEM_IO_CALLBACK, .fn = hold_device, .opaque = g };
	struct gmem_io_seg s = { 0, 4 * PG };
	struct gmem_io_req q = { .path = GMEM_IO_INPLACE, .nsegs = 1, .segs = &s, .target = &t };
	struct gmem_io *io;

	TH_EQ(gmem_io_create(g, &(struct gmem_io_config){ .flags = GMEM_IO_CTX_NO_CALIBRATE },
			     &io), 0);
	TH_EQ(gmem_io_rw(io, &q), 4 * PG);
	TH_EQ(gmem_io_destroy(io), -EBUSY);
	TH_EQ(gmem_state(g, 2 * PG), GMEM_SHARED);
	/* The window's kunmap still finishes the restore, after destroy. */
	gmem_kunmap(g, g->kmap.base);
	TH_EQ(gmem_state(g, 2 * PG), GMEM_PRIVATE);
	gmem_close(g);
}

/* ---- row: the VMM's mirror of page states goes stale ------------------ */

struct mirror {
	enum gmem_state st[SZ / PG];
	unsigned calls;
	bool told;              /* the VMM asked to be told                  */
};

static void mirror_fn(void *ctx, uint64_t gpa, uint64_t len, enum gmem_state to)
{
	struct mirror *m = ctx;

	m->calls++;
	for (uint64_t p = gpa / PG; p < (gpa + len) / PG; p++)
		m->st[p] = to;
}

static int64_t peek_device(void *opaque, enum gmem_io_dir dir, const struct iovec *iov,
			   int cnt, uint64_t off)
{
	struct mirror *m = opaque;
	int64_t n = 0;

	(void)dir, (void)off;
	/* Mid-request the pages are shared, and the mirror says so. */
	if (m->told)
		cr_assert_eq(m->st[10], GMEM_SHARED, "mirror not told of the share");
	for (int i = 0; i < cnt; i++)
		n += (int64_t)iov[i].iov_len;
	return n;
}

Test(threat, io_conversions_reach_the_vmm)
{
	static struct mirror m;
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, SZ, 0);
	struct gmem_io_target t = { .kind = GMEM_IO_CALLBACK, .fn = peek_device, .opaque = &m };
	struct gmem_io_seg s = { 8 * PG, 8 * PG };
	struct gmem_io_req q = { .path = GMEM_IO_INPLACE, .nsegs = 1, .segs = &s, .target = &t };
	struct gmem_io *io;

	memset(&m, 0, sizeof(m));
	m.told = true;
	TH_EQ(gmem_convert_notify(g, mirror_fn, &m), 0);
	TH_EQ(gmem_io_create(g, &(struct gmem_io_config){ .flags = GMEM_IO_CTX_NO_CALIBRATE },
			     &io), 0);
	TH_EQ(gmem_io_rw(io, &q), 8 * PG);
	cr_assert_geq(m.calls, 2, "%u notifications: want a share and a return", m.calls);
	for (uint64_t p = 0; p < SZ / PG; p++)
		cr_assert_eq((int)m.st[p], gmem_state(g, p * PG), "page %llu: mirror %d, memory %d",
			     (unsigned long long)p, m.st[p], gmem_state(g, p * PG));
	TH_EQ(gmem_convert_notify(g, NULL, NULL), 0);
	m.calls = 0;
	m.told = false;
	TH_EQ(gmem_io_rw(io, &q), 8 * PG);
	TH_EQ(m.calls, 0);
	TH_EQ(gmem_io_destroy(io), 0);
	gmem_close(g);
}

/* ---- row: one guest uses up another's mapping budget ------------------ */

Test(threat, one_memory_cannot_use_up_another_s_mappings)
{
	struct gmem_config ca = { .size = 8 * TH_MIB, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1,
				  .max_mappings = 64 };
	struct gmem *a, *b;
	struct gmem_info ia, ib;
	uint64_t limit_b, p;
	int ret = 0;

	TH_EQ(gmem_open(&ca, &a), 0);
	b = th_open(GMEM_BACKEND_MEMFD, 8 * TH_MIB, 0);
	TH_EQ(gmem_info(a, &ia), 0);
	TH_EQ(gmem_info(b, &ib), 0);
	TH_EQ(ia.view_mapping_budget, 64);
	cr_assert_geq(ib.view_mapping_budget, 64, "default budget %llu",
		      (unsigned long long)ib.view_mapping_budget);
	limit_b = th_stats(b).view_mapping_limit;
	/* Fragment a until its own budget refuses. */
	for (p = 0; p < 2048 && !ret; p += 2)
		ret = gmem_convert(a, p * PG, PG, GMEM_SHARED, NULL);
	TH_EQ(ret, -ENOMEM);
	cr_assert(strstr(gmem_last_error(), "budget"), "%s", gmem_last_error());
	cr_assert_leq(th_stats(a).view_mappings, 64);
	TH_EQ(th_stats(b).view_mapping_limit, limit_b);
	TH_EQ(gmem_convert(b, 0, PG, GMEM_SHARED, NULL), 0);
	TH_EQ(gmem_convert(b, 4 * PG, PG, GMEM_SHARED, NULL), 0);
	gmem_close(a);
	gmem_close(b);
}

/* ---- the privacy level and how in-place conversion is found ----------- */

Test(threat, view_level_on_memfd)
{
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, SZ, 0);
	struct gmem_info info;

	TH_EQ(gmem_info(g, &info), 0);
	TH_EQ(info.privacy, GMEM_PRIVACY_VIEW);
	cr_assert(gmem_kvm_view(g) != gmem_host(g, 0), "view level needs a separate KVM view");
	gmem_close(g);
}

/* A kernel that converts in place, stood in for as in test_inplace.c. */
static bool kernel_hook(int fd, unsigned long req, void *arg, int *ret)
{
	(void)fd, (void)arg;
	if (req == GM_KVM_SET_MEMORY_ATTRIBUTES2) {
		*ret = 0;
		return true;
	}
	return false;
}

Test(threat, kernel_level_found_by_the_ioctl_not_the_number)
{
	struct gmem *g;
	struct gmem_info info;

	gm_sys_set_ioctl_hook(kernel_hook);
	g = th_open(GMEM_BACKEND_KVM, SZ, 0);
	gm_sys_set_ioctl_hook(NULL);
	TH_EQ(gmem_info(g, &info), 0);
	TH_EQ(info.inplace, 1);
	TH_EQ(info.privacy, GMEM_PRIVACY_KERNEL);
	cr_assert_eq(gmem_kvm_view(g), gmem_host(g, 0), "kernel level: KVM uses the host view");
	gmem_close(g);
}

Test(threat, inplace_verdict)
{
	TH_EQ(gm_inplace_verdict(0, 0), 1);
	TH_EQ(gm_inplace_verdict(-1, ENOTTY), 0);
	TH_EQ(gm_inplace_verdict(-1, EINVAL), 0);
	TH_EQ(gm_inplace_verdict(-1, EOPNOTSUPP), 0);
	TH_EQ(gm_inplace_verdict(-1, EFAULT), -EFAULT);
}

Test(threat, probe_says_how_inplace_was_found)
{
	struct gmem_probe p;

	TH_EQ(gmem_probe(&p), 0);
	cr_assert(p.inplace_how[0], "gmem_probe left inplace_how empty");
	if (!p.kvm)
		cr_assert(strstr(p.inplace_how, "not asked"), "%s", p.inplace_how);
}
