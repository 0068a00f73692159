// SPDX-License-Identifier: MIT
/*
 * replay_main.c - gmem-fuzz-replay: run fuzz inputs through a target
 * without libFuzzer (any compiler, any sanitizer).
 *
 *   gmem-fuzz-replay TARGET [FILE|DIR...]   default: the committed corpus
 *   gmem-fuzz-replay --list
 *
 * Each input is named on stderr before it runs, so the last name printed
 * before a crash is the input that caused it.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"

static int usage(void)
{
	fprintf(stderr, "usage: gmem-fuzz-replay TARGET [FILE|DIR...] | --list\n");
	return 2;
}

int main(int argc, char **argv)
{
	const struct gm_fuzz_target *t;
	char dflt[4096];
	long total = 0;

	if (argc < 2)
		return usage();
	if (!strcmp(argv[1], "--list")) {
		for (t = gm_fuzz_targets; t->name; t++)
			printf("%-8s %s\n", t->name, t->what);
		return 0;
	}
	t = gm_fuzz_find(argv[1]);
	if (!t) {
		fprintf(stderr, "gmem-fuzz-replay: no target '%s' (--list)\n", argv[1]);
		return 2;
	}
	snprintf(dflt, sizeof(dflt), "%s/%s", GMEM_FUZZ_CORPUS, t->name);
	for (int i = 2; i < argc || (i == 2 && argc == 2); i++) {
		const char *path = argc > 2 ? argv[i] : dflt;
		long n = gm_fuzz_replay(t, path, 1);

		if (n < 0) {
			fprintf(stderr, "gmem-fuzz-replay: %s: %s\n", path, strerror((int)-n));
			return 1;
		}
		total += n;
	}
	printf("replay %s: %ld inputs, no finding\n", t->name, total);
	return 0;
}
