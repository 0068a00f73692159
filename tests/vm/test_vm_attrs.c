// SPDX-License-Identifier: MIT
/*
 * test_vm_attrs.c - the KVM_SET_MEMORY_ATTRIBUTES mirror, which this host's
 * KVM cannot exercise (cap 233 is 0 for default VMs): a test double answers
 * the capability and records the attribute calls, through the VMM's ioctl
 * hook, while the rest of KVM is real and the convert guest runs. The
 * mirror is for guest_memfd RAM only; RAM in a memfd keeps none.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "kvm_uapi.h"
#include "vmm_internal.h"
#include "vt.h"

#define AT_MAX 64

static struct {
	pthread_mutex_t lock;
	struct gm_kvm_memory_attributes call[AT_MAX];
	unsigned n;
	int fail_next;          /* errno for the next SET, 0: none */
} at = { .lock = PTHREAD_MUTEX_INITIALIZER };

static bool at_hook(int fd, unsigned long req, void *arg, int *ret)
{
	(void)fd;
	if (req == KVM_CHECK_EXTENSION && (uintptr_t)arg == KVM_CAP_MEMORY_ATTRIBUTES) {
		*ret = (int)KVM_MEMORY_ATTRIBUTE_PRIVATE;
		return true;
	}
	if (req != GM_KVM_SET_MEMORY_ATTRIBUTES)
		return false;
	pthread_mutex_lock(&at.lock);
	if (at.fail_next) {
		errno = at.fail_next;
		at.fail_next = 0;
		*ret = -1;
	} else {
		if (at.n < AT_MAX)
			at.call[at.n++] = *(struct gm_kvm_memory_attributes *)arg;
		*ret = 0;
	}
	pthread_mutex_unlock(&at.lock);
	return true;
}

Test(vm, attributes_mirror_every_conversion)
{
	/* What the convert guest does, in order (the refused unshare of
	 * the pinned page changes nothing, so it is not mirrored). */
	static const struct { uint64_t size; int private; } want[] = {
		{ 0, 1 },               /* at creation: all RAM private */
		{ 2 * TH_PAGE, 0 }, { 2 * TH_PAGE, 1 },
		{ TH_PAGE, 0 }, { TH_PAGE, 1 },
		{ 4 * TH_PAGE, 1 },
		{ TH_PAGE, 0 }, { TH_PAGE, 1 },
	};
	struct gv_result res;
	struct gv_paths p;
	struct gv_vm *vm;

	vt_need_guest_memfd();
	gv_set_ioctl_hook(at_hook);
	vm = vt_run("convert", 1, &res);
	vt_expect_exit(vm, &res, 0);
	gv_vm_paths(vm, &p);
	cr_assert(p.attributes, "cap 233 offered PRIVATE but the VM does not mirror");
	TH_EQ(at.n, sizeof(want) / sizeof(want[0]));
	TH_EQ(at.call[0].address, 0);
	TH_EQ(at.call[0].size, VT_MEM);
	for (unsigned i = 0; i < at.n; i++) {
		uint64_t size = want[i].size ? want[i].size : VT_MEM;

		cr_assert_eq(at.call[i].size, size, "call %u: size %#llx, want %#llx", i,
			     (unsigned long long)at.call[i].size, (unsigned long long)size);
		cr_assert_eq(at.call[i].attributes,
			     want[i].private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
			     "call %u: attributes %#llx, want %s", i,
			     (unsigned long long)at.call[i].attributes,
			     want[i].private ? "private" : "shared");
		cr_assert_eq(at.call[i].address % TH_PAGE, 0);
	}
	gv_set_ioctl_hook(NULL);
	gv_vm_destroy(vm);
}

Test(vm, attributes_failure_undoes_the_conversion)
{
	struct gv_vm *vm;
	unsigned before;

	vt_need_guest_memfd();
	gv_set_ioctl_hook(at_hook);
	vm = vt_vm(NULL, 1, GV_POLICY_CONVERT);
	before = at.n;
	at.fail_next = EIO;
	TH_EQ(gv_vm_convert(vm, 0x200000, TH_PAGE, GMEM_SHARED, NULL), -EIO);
	TH_EQ(gmem_state(gv_vm_gmem(vm), 0x200000), GMEM_PRIVATE);
	cr_assert_not_null(strstr(gv_last_error(), "KVM_SET_MEMORY_ATTRIBUTES"), "%s",
			   gv_last_error());
	TH_EQ(at.n, before);
	/* And the next conversion goes through both. */
	TH_EQ(gv_vm_convert(vm, 0x200000, TH_PAGE, GMEM_SHARED, NULL), 0);
	TH_EQ(gmem_state(gv_vm_gmem(vm), 0x200000), GMEM_SHARED);
	TH_EQ(at.n, before + 1);
	TH_EQ(at.call[before].attributes, 0);
	gv_set_ioctl_hook(NULL);
	gv_vm_destroy(vm);
}

static int at_open_memfd(void *ctx, int vm_fd, uint64_t size, struct gmem **out)
{
	struct gmem_config c = { .size = size, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1 };

	(void)ctx;
	(void)vm_fd;
	return gmem_open(&c, out);
}

/* RAM in a memfd is a plain slot: KVM has no private pages to know of, and
 * an attribute there would make every guest access fault. The VM keeps no
 * mirror even where cap 233 offers PRIVATE, and the convert guest runs
 * with its conversions in the host view alone. */
Test(vm, plain_slot_keeps_no_attributes)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 1, .policy = GV_POLICY_CONVERT,
				 .open_mem = at_open_memfd };
	struct gv_result res;
	struct gv_paths p;
	struct gmem_info in;
	struct gv_vm *vm;
	int ret;

	vt_need_kvm_for("a KVM memslot on memfd RAM, run without attribute ioctls");
	gv_set_ioctl_hook(at_hook);
	ret = gv_vm_create(&cfg, &vm);
	cr_assert_eq(ret, 0, "gv_vm_create: %d: %s", ret, gv_last_error());
	ret = gv_vm_load_file(vm, vt_guest_path("convert"));
	cr_assert_eq(ret, 0, "loading convert: %d: %s", ret, gv_last_error());
	cr_assert_eq(gv_vm_run(vm, &res), 0, "%s", gv_last_error());
	vt_expect_exit(vm, &res, 0);
	gmem_info(gv_vm_gmem(vm), &in);
	TH_EQ(in.backend, GMEM_BACKEND_MEMFD);
	gv_vm_paths(vm, &p);
	cr_assert(!p.attributes, "a plain slot mirrors attributes");
	TH_EQ(at.n, 0);
	gv_set_ioctl_hook(NULL);
	gv_vm_destroy(vm);
}
