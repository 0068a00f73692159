// SPDX-License-Identifier: MIT
/*
 * fuzz_guest.c - a hostile guest against the hypercall dispatcher and the
 * memory-fault handler, driven as a guest would on the test accelerator (no
 * KVM needed), through the VMM's exit dispatch. The virtio-blk device has
 * its own target (fuzz_vdev.c).
 *
 * Input: a sequence of operations, one opcode byte each and its arguments
 * (fuzz.h's reader: past the end everything is 0). The VM has 2 MiB of RAM
 * and one vCPU; before the input runs, the guest has shared one page at
 * SHARED, so unshares and conversions across a state boundary are
 * reachable from the first input.
 *
 * Oracles, after every operation:
 *   - the VMM survives: a driver call returns 0, 1 or a negative errno, and
 *     if the guest stopped, the result says why with a report;
 *   - a hypercall's result is a value or an errno, never anything else;
 *   - conversions are all or nothing: a SHARE, UNSHARE or MAP_GPA_RANGE
 *     that succeeded left its first and last page in the asked state, one
 *     that failed changed neither;
 *   - every page is private or shared, the counts add up to RAM, and no
 *     temporary mapping is left behind.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "vmm.h"

#define FG_MEM    (2ull << 20)
#define FG_SHARED 0x100000ull
#define FG_ENC    (1ull << 4)

struct fg {
	struct gv_vm *vm;
	struct gmem *g;
};

/* An address the fuzzer can aim: mostly inside RAM, sometimes anywhere. */
static uint64_t fg_gpa(struct gm_fuzz_in *in)
{
	uint8_t how = (uint8_t)gm_fuzz_take(in, 1);

	if (how < 16)
		return gm_fuzz_take(in, 8);
	return (gm_fuzz_take(in, 3) % (FG_MEM / 64)) * (how & 1 ? 64 : 4096) % (FG_MEM + 8192);
}

static uint64_t fg_len(struct gm_fuzz_in *in)
{
	uint8_t how = (uint8_t)gm_fuzz_take(in, 1);

	if (how < 8)
		return gm_fuzz_take(in, 8);
	return (gm_fuzz_take(in, 1) + (how & 1 ? 0 : 1)) * (how & 2 ? 4096 : 1);
}

static int fg_state_at(struct fg *f, uint64_t gpa)
{
	return gpa < FG_MEM ? gmem_state(f->g, gpa & ~4095ull) : -1;
}

/* All or nothing, seen at the range's ends. */
static void fg_check_convert(struct fg *f, uint64_t gpa, uint64_t len, int to, int64_t res,
			     int before_first, int before_last)
{
	uint64_t last = gpa + len - 1;

	if (!len || gpa >= FG_MEM || len > FG_MEM - gpa)
		return;                 /* nothing to see: must have failed */
	if (res == 0) {
		GM_FUZZ_CHECK(fg_state_at(f, gpa) == to && fg_state_at(f, last) == to,
			      "conversion of [%#llx, +%#llx) to %d succeeded, states %d..%d",
			      (unsigned long long)gpa, (unsigned long long)len, to,
			      fg_state_at(f, gpa), fg_state_at(f, last));
	} else {
		GM_FUZZ_CHECK(fg_state_at(f, gpa) == before_first &&
			      fg_state_at(f, last) == before_last,
			      "failed conversion (%lld) of [%#llx, +%#llx) changed states",
			      (long long)res, (unsigned long long)gpa, (unsigned long long)len);
	}
}

static void fg_check_result(int64_t res, const char *what)
{
	GM_FUZZ_CHECK(res >= -4095 && res <= 0x7fffffff, "%s returned %lld", what,
		      (long long)res);
}

static int fg_hypercall(struct fg *f, struct gm_fuzz_in *in)
{
	uint64_t nr = gm_fuzz_take(in, 1) % 9, gpa = fg_gpa(in), len = fg_len(in);
	uint64_t a2 = gm_fuzz_take(in, 1) % 4;
	int before_first = fg_state_at(f, gpa), before_last = fg_state_at(f, gpa + len - 1);
	int64_t res = 0;
	int ret;

	ret = gv_test_hypercall(f->vm, 0, nr, gpa, len, a2, &res);
	if (ret)
		return ret;
	fg_check_result(res, "hypercall");
	if (nr == GV_HC_SHARE || nr == GV_HC_UNSHARE)
		fg_check_convert(f, gpa, len, nr == GV_HC_SHARE ? GMEM_SHARED : GMEM_PRIVATE, res,
				 before_first, before_last);
	return 0;
}

static int fg_map(struct fg *f, struct gm_fuzz_in *in)
{
	uint64_t args[6] = { fg_gpa(in), 0, 0 };
	uint8_t how = (uint8_t)gm_fuzz_take(in, 1);
	int before_first, before_last, to;
	int64_t res = 0;
	int ret;

	args[1] = how < 8 ? gm_fuzz_take(in, 8) : gm_fuzz_take(in, 1);
	args[2] = how & 0x80 ? gm_fuzz_take(in, 8) : (how & 0x10 ? FG_ENC : 0) | (how & 3);
	to = args[2] & FG_ENC ? GMEM_PRIVATE : GMEM_SHARED;
	before_first = fg_state_at(f, args[0]);
	before_last = fg_state_at(f, args[0] + args[1] * 4096 - 1);
	ret = gv_test_vmcall(f->vm, 0, how & 0x40 ? gm_fuzz_take(in, 2) : 12, args, &res);
	if (ret)
		return ret;
	fg_check_result(res, "MAP_GPA_RANGE");
	if (args[1] <= FG_MEM / 4096)
		fg_check_convert(f, args[0], args[1] * 4096, to, res, before_first, before_last);
	return 0;
}

static int fg_op(struct fg *f, struct gm_fuzz_in *in)
{
	uint8_t op = (uint8_t)gm_fuzz_take(in, 1);
	uint8_t buf[64];
	uint64_t gpa;

	switch (op % 5) {
	case 0:
	case 1:
		return fg_hypercall(f, in);
	case 2:
		return fg_map(f, in);
	case 3:
		gpa = fg_gpa(in);
		return gv_test_memory_fault(f->vm, 0, gpa, fg_len(in), op & 0x80);
	default:
		gpa = fg_gpa(in);
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)gm_fuzz_take(in, 1);
		gv_test_mem_write(f->vm, gpa, buf, (gm_fuzz_take(in, 1) % sizeof(buf)) + 1);
		return 0;
	}
}

static void fg_check_memory(struct fg *f)
{
	struct gmem_stats st;

	GM_FUZZ_CHECK(gmem_stats(f->g, &st) == 0, "gmem_stats");
	GM_FUZZ_CHECK(st.shared_pages + st.private_pages == FG_MEM / 4096,
		      "%llu shared + %llu private pages in %llu",
		      (unsigned long long)st.shared_pages, (unsigned long long)st.private_pages,
		      FG_MEM / 4096);
	GM_FUZZ_CHECK(st.kmapped_pages == 0, "%llu pages left kmapped",
		      (unsigned long long)st.kmapped_pages);
}

static int fg_setup(struct fg *f)
{
	struct gv_config cfg = { .mem_size = FG_MEM, .ncpus = 1, .policy = GV_POLICY_CONVERT,
				 .accel = GV_ACCEL_TEST };

	GM_FUZZ_CHECK(gv_vm_create(&cfg, &f->vm) == 0, "gv_vm_create: %s", gv_last_error());
	GM_FUZZ_CHECK(gv_vm_start(f->vm) == 0, "start: %s", gv_last_error());
	f->g = gv_vm_gmem(f->vm);
	return gv_test_hypercall(f->vm, 0, GV_HC_SHARE, FG_SHARED, 4096, 0, NULL) ? -1 : 0;
}

void gm_fuzz_guest(const uint8_t *data, size_t size)
{
	struct gm_fuzz_in in = { data, size };
	struct fg f = { 0 };
	struct gv_result res;

	GM_FUZZ_CHECK(fg_setup(&f) == 0, "sharing the first page: %s", gv_last_error());
	for (unsigned n = 0; n < 256 && !gm_fuzz_done(&in); n++) {
		int ret = fg_op(&f, &in);

		GM_FUZZ_CHECK(ret == 0 || ret == 1 || (ret < 0 && ret >= -4095),
			      "a driver call returned %d", ret);
		fg_check_memory(&f);
		if (gv_vm_stopped(f.vm))
			break;
		GM_FUZZ_CHECK(ret >= 0, "the call failed (%d) but the guest runs on", ret);
	}
	gv_vm_stop(f.vm);
	GM_FUZZ_CHECK(gv_vm_wait(f.vm, &res) == 0, "gv_vm_wait");
	GM_FUZZ_CHECK(res.why != GV_STOP_NONE && res.report[0], "stopped without a reason");
	gv_vm_destroy(f.vm);
}
