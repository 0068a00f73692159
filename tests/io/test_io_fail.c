// SPDX-License-Identifier: MIT
/*
 * test_io_fail.c - suite "io": a target that fails or ends midway.
 *
 * A callback target stands in for the device: it moves bytes until a set
 * point and then ends (short transfer), fails with EIO, or is interrupted
 * (EINTR) - also right at the first call. For every path and direction the
 * request must report exactly the bytes moved before the stop (the return
 * value for a short transfer, req->done alongside the errno otherwise),
 * those bytes must be right, and every page's state, pins and temporary
 * mappings must be as before. Then real targets that end early: a file
 * shorter than the request, a pipe whose writer leaves, a pipe without a
 * reader (EPIPE), a memory target shorter than the request. Last, bad
 * arguments, a memory that cannot pin, and a conversion the VMM tries in the
 * middle of an in-place request.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io_helpers.h"

enum fault { F_SHORT, F_EIO, F_EINTR };

struct faulty {
	enum fault fault;
	uint64_t stop;          /* bytes moved before the fault          */
	uint64_t moved;
	uint8_t *data;          /* the device's bytes                    */
};

static int64_t faulty_fn(void *opaque, enum gmem_io_dir dir, const struct iovec *iov,
			 int cnt, uint64_t off)
{
	struct faulty *f = opaque;
	int64_t n = 0;

	(void)off;
	for (int i = 0; i < cnt && f->moved < f->stop; i++) {
		uint64_t k = iov[i].iov_len < f->stop - f->moved ? iov[i].iov_len
								 : f->stop - f->moved;

		if (dir == GMEM_IO_READ)
			memcpy(iov[i].iov_base, f->data + f->moved, k);
		else
			memcpy(f->data + f->moved, iov[i].iov_base, k);
		f->moved += k;
		n += (int64_t)k;
	}
	if (n)
		return n;
	return f->fault == F_SHORT ? 0 : f->fault == F_EIO ? -EIO : -EINTR;
}

static const struct gmem_io_seg fail_segs[] = {
	{ 1 * TH_MIB + 100, 70000 }, { 3 * TH_MIB - 5000, 130000 }, { 200 * TH_PAGE, 100000 },
};
#define NFAIL (sizeof(fail_segs) / sizeof(fail_segs[0]))

static void fail_one(struct gmem *g, struct gmem_io *io, enum gmem_io_path path,
		     enum gmem_io_dir dir, enum fault fault, uint64_t stop)
{
	uint64_t total = io_total(fail_segs, NFAIL);
	struct faulty f = { .fault = fault, .stop = stop, .data = calloc(1, total) };
	struct gmem_io_target t = { .kind = GMEM_IO_CALLBACK, .fn = faulty_fn, .opaque = &f };
	struct gmem_io_req q = { .dir = dir, .path = path, .nsegs = NFAIL, .segs = fail_segs,
				 .target = &t };
	struct io_picture before = io_picture(g);
	uint8_t *guest = malloc(total);
	int64_t ret, want;

	io_rand_bytes(f.data, total, stop + dir);
	if (dir == GMEM_IO_WRITE)
		io_gather(g, fail_segs, NFAIL, guest);
	ret = gmem_io_rw(io, &q);
	want = fault == F_SHORT ? (int64_t)stop : fault == F_EIO ? -EIO : -EINTR;
	cr_assert_eq(ret, want, "%s %s, fault %d after %llu: returned %lld, want %lld",
		     gmem_io_path_name(path), dir ? "write" : "read", fault,
		     (unsigned long long)stop, (long long)ret, (long long)want);
	cr_assert_eq(q.done, stop, "%s fault %d: done %llu, want %llu", gmem_io_path_name(path),
		     fault, (unsigned long long)q.done, (unsigned long long)stop);
	if (dir == GMEM_IO_READ) {
		uint8_t *got = malloc(total);

		io_gather(g, fail_segs, NFAIL, got);
		io_expect_bytes("bytes read before the fault", got, f.data, stop);
		free(got);
	} else {
		uint8_t *src = malloc(total);

		io_rand_bytes(src, total, stop + dir);
		memcpy(src, guest, stop);
		io_expect_bytes("bytes written before the fault", f.data, src, total);
		free(src);
	}
	io_expect_picture("after a failed request", &before, g);
	io_picture_free(&before);
	free(guest);
	free(f.data);
}

TH_TEST(io, target_faults, .timeout = 60)
{
	static const uint64_t stops[] = { 0, 1, 4096, 70000, 100001, 299999 };
	struct gmem *g = th_open(backend, IO_MEM, 0);
	struct gmem_io *io = io_ctx(g, 0, 0, 0);

	gmem_convert(g, 3 * TH_MIB - TH_MIB / 2, TH_MIB, GMEM_SHARED, NULL);
	for (unsigned p = 0; p < 4; p++)
		for (unsigned d = 0; d < 2; d++)
			for (unsigned f = 0; f < 3; f++)
				for (unsigned s = 0; s < sizeof(stops) / sizeof(stops[0]); s++)
					fail_one(g, io, io_paths[p], d, f, stops[s]);
	gmem_io_destroy(io);
	gmem_close(g);
}

static int64_t rw1(struct gmem_io *io, enum gmem_io_path path, enum gmem_io_dir dir,
		   const struct gmem_io_target *t, uint64_t gpa, uint64_t len,
		   uint64_t *done)
{
	struct gmem_io_seg s = { gpa, len };
	struct gmem_io_req q = { .dir = dir, .path = path, .nsegs = 1, .segs = &s,
				 .target = t };
	int64_t ret = gmem_io_rw(io, &q);

	*done = q.done;
	return ret;
}

TH_TEST(io, real_targets_end_early, .timeout = 60)
{
	struct gmem *g = th_open(backend, IO_MEM, 0);
	struct gmem_io *io = io_ctx(g, 0, 0, 0);
	struct io_picture before = io_picture(g);
	char path[] = "/tmp/gmem-io-short-XXXXXX";
	uint8_t data[10000];
	int fd = mkstemp(path);

	signal(SIGPIPE, SIG_IGN);
	unlink(path);
	memset(data, 0x5a, sizeof(data));
	cr_assert_eq(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
	for (unsigned p = 0; p < 4; p++) {
		struct gmem_io_target file, rd = { .kind = GMEM_IO_STREAM },
					    wr = { .kind = GMEM_IO_STREAM },
					    mem = { .kind = GMEM_IO_MEMORY, .mem = data,
						    .mem_len = 3000 };
		const char *pn = gmem_io_path_name(io_paths[p]);
		uint64_t done;
		int64_t ret;
		int fds[2];

		gmem_io_target_file(&file, fd, -1);
		ret = rw1(io, io_paths[p], GMEM_IO_READ, &file, 8 * TH_PAGE + 7, 65536, &done);
		cr_assert_eq(ret, 10000, "%s: read of a 10000-byte file = %lld", pn,
			     (long long)ret);
		cr_assert(pipe(fds) == 0);
		cr_assert_eq(write(fds[1], data, 5000), 5000);
		close(fds[1]);
		rd.fd = fds[0];
		ret = rw1(io, io_paths[p], GMEM_IO_READ, &rd, 20 * TH_PAGE, 65536, &done);
		cr_assert_eq(ret, 5000, "%s: pipe whose writer left after 5000 = %lld", pn,
			     (long long)ret);
		close(fds[0]);
		cr_assert(pipe(fds) == 0);
		close(fds[0]);
		wr.fd = fds[1];
		ret = rw1(io, io_paths[p], GMEM_IO_WRITE, &wr, 20 * TH_PAGE, 65536, &done);
		cr_assert_eq(ret, -EPIPE, "%s: write to a pipe without reader = %lld", pn,
			     (long long)ret);
		cr_assert_eq(done, 0, "%s: done %llu after EPIPE", pn, (unsigned long long)done);
		close(fds[1]);
		ret = rw1(io, io_paths[p], GMEM_IO_WRITE, &mem, 30 * TH_PAGE + 1, 8192, &done);
		cr_assert_eq(ret, 3000, "%s: write to 3000 bytes of memory = %lld", pn,
			     (long long)ret);
		io_expect_picture(pn, &before, g);
	}
	io_picture_free(&before);
	close(fd);
	gmem_io_destroy(io);
	gmem_close(g);
}

TH_TEST(io, bad_arguments)
{
	struct gmem *g = th_open(backend, IO_MEM, 0);
	struct gmem_io *io = io_ctx(g, 0, 0, 0);
	uint8_t buf[64];
	struct gmem_io_target mem = { .kind = GMEM_IO_MEMORY, .mem = buf, .mem_len = 64 };
	struct gmem_io_seg ok = { 0, 64 }, empty = { 0, 0 }, outside = { IO_MEM, 1 },
			   over = { IO_MEM - 1, 2 }, wrap = { 1, UINT64_MAX };
	struct {
		struct gmem_io_req q;
		const char *what;
	} bad[] = {
		{ { .nsegs = 1, .segs = &empty, .target = &mem }, "empty segment" },
		{ { .nsegs = 1, .segs = &outside, .target = &mem }, "segment outside" },
		{ { .nsegs = 1, .segs = &over, .target = &mem }, "segment crossing the end" },
		{ { .nsegs = 1, .segs = &wrap, .target = &mem }, "segment overflowing" },
		{ { .nsegs = 0, .segs = &ok, .target = &mem }, "no segment" },
		{ { .nsegs = 1, .segs = NULL, .target = &mem }, "NULL segments" },
		{ { .nsegs = 1, .segs = &ok, .target = NULL }, "NULL target" },
		{ { .dir = 2, .nsegs = 1, .segs = &ok, .target = &mem }, "bad direction" },
		{ { .path = 9, .nsegs = 1, .segs = &ok, .target = &mem }, "bad path" },
		{ { .flags = 1u << 7, .nsegs = 1, .segs = &ok, .target = &mem }, "bad flag" },
		{ { .nsegs = 1, .segs = &ok, .target = &mem, .off = UINT64_MAX }, "offset wraps" },
	};
	struct gmem_io_config cfgs[] = {
		{ .slot_size = 3000 }, { .slot_size = 8u << 20 }, { .pool_size = 100000 },
		{ .pool_size = 4096, .slot_size = 8192 }, { .flags = 1u << 5 },
	};
	struct gmem_io *x;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t ret = gmem_io_rw(io, &bad[i].q);

		cr_assert_eq(ret, -EINVAL, "%s: %lld, want -EINVAL", bad[i].what, (long long)ret);
		cr_assert_eq(gmem_io_choose(io, &bad[i].q), -EINVAL, "choose: %s", bad[i].what);
	}
	for (unsigned i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++)
		TH_EQ(gmem_io_create(g, &cfgs[i], &x), -EINVAL);
	TH_EQ(gmem_io_create(NULL, NULL, &x), -EINVAL);
	TH_EQ(gmem_io_rw(NULL, &bad[0].q), -EINVAL);
	TH_EQ(gmem_io_stats(io, NULL), -EINVAL);
	TH_EQ(gmem_io_target_file(&mem, -1, -1), -EINVAL);
	cr_assert_str_eq(gmem_io_path_name(GMEM_IO_BOUNCE), "bounce");
	gmem_io_destroy(io);
	gmem_close(g);
}

TH_TEST(io, no_pin_memory)
{
	struct gmem *g = th_open(backend, IO_MEM, GMEM_F_NO_PIN);
	struct gmem_io *io = io_ctx(g, 0, 0, 0);
	struct io_picture before = io_picture(g);
	uint8_t buf[8192] = { 0 };
	struct gmem_io_target mem = { .kind = GMEM_IO_MEMORY, .mem = buf, .mem_len = 8192 };
	struct gmem_io_seg s = { 0, 8192 };
	struct gmem_io_req q = { .path = GMEM_IO_INPLACE, .nsegs = 1, .segs = &s, .target = &mem };

	TH_EQ(gmem_io_rw(io, &q), -EPERM);
	io_expect_picture("after a refused in-place request", &before, g);
	cr_assert_neq(gmem_io_choose(io, &q), GMEM_IO_INPLACE);
	TH_EQ(gmem_io_calibrate(io), 0);
	cr_assert_neq(gmem_io_choose(io, &q), GMEM_IO_INPLACE);
	q.path = GMEM_IO_AUTO;
	TH_EQ(gmem_io_rw(io, &q), 8192);
	io_picture_free(&before);
	gmem_io_destroy(io);
	gmem_close(g);
}

/* The VMM tries to make a page of an in-flight in-place request private:
 * refused while the I/O runs, the page private again afterwards. */
struct vmm_try {
	struct gmem *g;
	uint64_t gpa;
	int during;             /* gmem_convert result during the I/O     */
	int state;              /* page state during the I/O              */
};

static int64_t vmm_try_fn(void *opaque, enum gmem_io_dir dir, const struct iovec *iov,
			  int cnt, uint64_t off)
{
	struct vmm_try *v = opaque;
	int64_t n = 0;

	(void)dir, (void)off;
	v->state = gmem_state(v->g, v->gpa);
	v->during = gmem_convert(v->g, v->gpa, TH_PAGE, GMEM_PRIVATE, NULL);
	for (int i = 0; i < cnt; i++)
		n += (int64_t)iov[i].iov_len;
	return n;
}

TH_TEST(io, inplace_pins_against_vmm)
{
	struct gmem *g = th_open(backend, IO_MEM, 0);
	struct gmem_io *io = io_ctx(g, 0, 0, 0);
	struct vmm_try v = { .g = g, .gpa = 5 * TH_PAGE };
	struct gmem_io_target t = { .kind = GMEM_IO_CALLBACK, .fn = vmm_try_fn, .opaque = &v };
	struct gmem_io_seg s = { 4 * TH_PAGE, 4 * TH_PAGE };
	struct gmem_io_req q = { .path = GMEM_IO_INPLACE, .nsegs = 1, .segs = &s, .target = &t };

	TH_EQ(gmem_io_rw(io, &q), 4 * TH_PAGE);
	TH_EQ(v.state, GMEM_SHARED);
	TH_EQ(v.during, -EAGAIN);
	TH_EQ(gmem_state(g, v.gpa), GMEM_PRIVATE);
	TH_EQ(th_stats(g).pinned_pages, 0);
	gmem_io_destroy(io);
	gmem_close(g);
}
