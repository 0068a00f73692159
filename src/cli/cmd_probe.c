// SPDX-License-Identifier: MIT
/*
 * cmd_probe.c - gmem probe: what this host offers, and what libgmem uses.
 */
#include <string.h>

#include "cmd.h"

/* What the library will do on this host, in words. */
static const char *probe_conversion(const struct gmem_probe *p)
{
	if (p->auto_backend != GMEM_BACKEND_KVM)
		return "host view (memfd backend: library enforces states by remapping)";
	if (p->inplace_conversion)
		return "kernel in place (KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd)";
	return "host view (guest_memfd MMAP|INIT_SHARED; library enforces states)";
}

static const char *probe_dmap(const struct gmem_probe *p)
{
	if (p->auto_backend == GMEM_BACKEND_KVM && p->gmem_no_direct_map)
		return "real (guest_memfd flag bit 2)";
	return "model only (kernel keeps guest memory in its direct map)";
}

static const char *probe_huge(const struct gmem_probe *p)
{
	switch (p->auto_huge) {
	case GMEM_HUGE_THP:
		return "shmem THP (memfd backend)";
	case GMEM_HUGE_HUGETLB:
		return "hugetlb pages (memfd backend, 2 MiB conversion granule)";
	case GMEM_HUGE_NONE:
		break;
	}
	return "unavailable: set shmem_enabled to advise/within_size or reserve vm.nr_hugepages";
}

/* What gmem_info().privacy will say for a memory on the auto backend. */
static int probe_privacy(const struct gmem_probe *p)
{
	return p->auto_backend == GMEM_BACKEND_KVM && p->inplace_conversion ? GMEM_PRIVACY_KERNEL
									       : GMEM_PRIVACY_VIEW;
}

static json_t *probe_json(const struct gmem_probe *p)
{
	json_t *o = json_object(), *use = json_object();

	json_object_set_new(o, "kvm", json_boolean(p->kvm));
	json_object_set_new(o, "kvm_api_version", json_integer(p->kvm_api_version));
	json_object_set_new(o, "user_memory2", json_boolean(p->user_memory2));
	json_object_set_new(o, "guest_memfd", json_boolean(p->guest_memfd));
	json_object_set_new(o, "guest_memfd_flags", json_integer((json_int_t)p->guest_memfd_flags));
	json_object_set_new(o, "guest_memfd_mmap", json_boolean(p->gmem_mmap));
	json_object_set_new(o, "guest_memfd_init_shared", json_boolean(p->gmem_init_shared));
	json_object_set_new(o, "guest_memfd_no_direct_map", json_boolean(p->gmem_no_direct_map));
	json_object_set_new(o, "inplace_conversion", json_boolean(p->inplace_conversion));
	json_object_set_new(o, "inplace_detected_by", json_string(p->inplace_how));
	json_object_set_new(o, "inplace_cap249_hint", json_boolean(p->inplace_cap_hint));
	json_object_set_new(o, "memory_attributes", json_integer((json_int_t)p->memory_attributes));
	json_object_set_new(o, "vm_types", json_integer((json_int_t)p->vm_types));
	json_object_set_new(o, "shmem_thp", json_string(p->shmem_thp));
	json_object_set_new(o, "hugepages_total", json_integer(p->hugepages_total));
	json_object_set_new(o, "hugepages_free", json_integer(p->hugepages_free));
	json_object_set_new(o, "memfd_secret", json_boolean(p->memfd_secret));
	json_object_set_new(o, "userfaultfd", json_boolean(p->userfaultfd));
	json_object_set_new(o, "max_map_count", json_integer(p->max_map_count));
	json_object_set_new(use, "backend", json_string(gmem_backend_name(p->auto_backend)));
	json_object_set_new(use, "conversion", json_string(probe_conversion(p)));
	json_object_set_new(use, "direct_map", json_string(probe_dmap(p)));
	json_object_set_new(use, "huge", json_string(gmem_huge_name(p->auto_huge)));
	json_object_set_new(use, "privacy", json_integer(probe_privacy(p)));
	json_object_set_new(use, "track_writes", json_string(cli_track(p->track)));
	json_object_set_new(use, "max_shared_runs",
			    json_integer(p->max_map_count > 0 ? p->max_map_count / 2 : 0));
	json_object_set_new(o, "library_uses", use);
	return o;
}

static void probe_print(const struct gmem_probe *p)
{
	printf("host\n");
	cli_row("/dev/kvm", "%s (API %d)", cli_yes(p->kvm), p->kvm_api_version);
	cli_row("KVM_CAP_USER_MEMORY2", "%s", cli_yes(p->user_memory2));
	cli_row("guest_memfd", "%s", cli_yes(p->guest_memfd));
	cli_row("guest_memfd flags (cap 244)", "%#llx: MMAP %s, INIT_SHARED %s",
		(unsigned long long)p->guest_memfd_flags, cli_yes(p->gmem_mmap),
		cli_yes(p->gmem_init_shared));
	cli_row("direct-map removal (flag bit 2)", "%s", cli_yes(p->gmem_no_direct_map));
	cli_row("in-place conversion", "%s (%s; cap 249, a hint only: %s)",
		cli_yes(p->inplace_conversion), p->inplace_how, cli_yes(p->inplace_cap_hint));
	cli_row("memory attributes (cap 233)", "%#llx", (unsigned long long)p->memory_attributes);
	cli_row("VM types (cap 235)", "%#llx", (unsigned long long)p->vm_types);
	cli_row("shmem THP", "%s", p->shmem_thp[0] ? p->shmem_thp : "unknown");
	cli_row("hugetlb 2 MiB pages", "%ld reserved, %ld free", p->hugepages_total,
		p->hugepages_free);
	cli_row("memfd_secret", "%s", cli_yes(p->memfd_secret));
	cli_row("userfaultfd", "%s", cli_yes(p->userfaultfd));
	cli_row("vm.max_map_count", "%ld (about %ld separate shared runs)", p->max_map_count,
		p->max_map_count / 2);
	printf("library uses\n");
	cli_row("backend (auto)", "%s", gmem_backend_name(p->auto_backend));
	cli_row("conversion", "%s", probe_conversion(p));
	cli_row("direct map", "%s", probe_dmap(p));
	cli_row("privacy level (auto backend)", "%s", cli_privacy(probe_privacy(p)));
	cli_row("2 MiB backing (GMEM_F_HUGE)", "%s", probe_huge(p));
	cli_row("write tracking (TRACK_WRITES)", "%s", cli_track(p->track));
}

int cmd_probe(int argc, char **argv)
{
	struct gmem_probe p;
	bool json = false;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else
			return cli_usage("probe", "unknown option '%s'", argv[i]);
	}
	ret = gmem_probe(&p);
	if (ret)
		return cli_fail("probe: %s", gmem_strerror(ret));
	if (json)
		return cli_json_print(probe_json(&p));
	probe_print(&p);
	return CLI_EXIT_OK;
}
