// SPDX-License-Identifier: MIT
/*
 * test_fuzz_replay.c - every committed fuzz corpus replayed through its
 * target (tests/fuzz/corpus/NAME): a target's oracle or a sanitizer failing
 * on any input crashes the test; `gmem-fuzz-replay NAME` names the input.
 * An empty or missing corpus fails too: a target nobody fuzzed proves
 * nothing.
 *
 * Suite: fuzz.
 */
#include <stdio.h>

#include "helpers.h"
#include "fuzz.h"

static void replay(const char *name, long at_least)
{
	const struct gm_fuzz_target *t = gm_fuzz_find(name);
	char path[4096];
	long n;

	cr_assert_not_null(t, "no fuzz target %s", name);
	snprintf(path, sizeof(path), "%s/%s", GMEM_FUZZ_CORPUS, name);
	n = gm_fuzz_replay(t, path, 0);
	cr_assert_geq(n, at_least, "%s: %ld inputs replayed, want at least %ld", path, n,
		      at_least);
	cr_log_info("fuzz %s: %ld inputs", name, n);
}

/* A target added to the table without a test below would never be replayed. */
Test(fuzz, every_target_is_replayed_here)
{
	static const char *const here[] = { "api", "elf", "snapshot", "guest", "vdev" };
	unsigned n = 0;

	for (const struct gm_fuzz_target *t = gm_fuzz_targets; t->name; t++, n++)
		cr_expect_str_eq(t->name, n < sizeof(here) / sizeof(here[0]) ? here[n] : "",
				 "fuzz target %u (%s) has no replay test", n, t->name);
	TH_EQ(n, sizeof(here) / sizeof(here[0]));
}

Test(fuzz, api_corpus)
{
	replay("api", 10);
}

Test(fuzz, elf_corpus)
{
	replay("elf", 10);
}

Test(fuzz, snapshot_corpus, .timeout = 300)
{
	replay("snapshot", 10);
}

Test(fuzz, guest_corpus, .timeout = 300)
{
	replay("guest", 10);
}

Test(fuzz, vdev_corpus, .timeout = 300)
{
	replay("vdev", 5);
}
