// SPDX-License-Identifier: MIT
/*
 * replay.c - the target table and the corpus replayer shared by
 * gmem-fuzz-replay and the Criterion suite (see fuzz.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

const struct gm_fuzz_target gm_fuzz_targets[] = {
	{ "api", gm_fuzz_api,
	  "public API sequences against a per-page reference model" },
	{ "elf", gm_fuzz_elf,
	  "the guest ELF loader's parser, with the invariants of what it accepts" },
	{ "snapshot", gm_fuzz_snapshot,
	  "snapshot inspect, verify and restore (eager, lazy) of hostile files" },
	{ "guest", gm_fuzz_guest,
	  "a hostile guest: hypercalls, MAP_GPA_RANGE, memory faults" },
	{ "vdev", gm_fuzz_vdev,
	  "hostile virtio device state from a VM snapshot, against the loader" },
	{ NULL, NULL, NULL },
};

const char *gm_fuzz_input;

const struct gm_fuzz_target *gm_fuzz_find(const char *name)
{
	for (const struct gm_fuzz_target *t = gm_fuzz_targets; t->name; t++)
		if (!strcmp(t->name, name))
			return t;
	return NULL;
}

/* The whole of @path in an exact-size buffer (ASan sees any over-read). */
static int gm_fuzz_slurp(const char *path, uint8_t **out, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			free(buf);
			goto out;
		}
		got += (size_t)n;
	}
	*out = buf;
	*len = got;
out:
	close(fd);
	return ret;
}

static int gm_fuzz_run_file(const struct gm_fuzz_target *t, const char *path, int verbose)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret = gm_fuzz_slurp(path, &buf, &len);

	if (ret)
		return ret;
	if (verbose)
		fprintf(stderr, "replay %s: %s (%zu bytes)\n", t->name, path, len);
	gm_fuzz_input = path;
	t->fn(buf, len);
	gm_fuzz_input = NULL;
	free(buf);
	return 0;
}

static int gm_fuzz_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

long gm_fuzz_replay(const struct gm_fuzz_target *t, const char *path, int verbose)
{
	struct stat st;
	struct dirent *de;
	char **names = NULL, file[4096];
	size_t n = 0, cap = 0;
	long ran = 0;
	DIR *d;

	if (stat(path, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode)) {
		int ret = gm_fuzz_run_file(t, path, verbose);

		return ret ? ret : 1;
	}
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **nn = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(*names));

			if (!nn)
				break;
			names = nn;
		}
		names[n] = strdup(de->d_name);
		if (names[n])
			n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), gm_fuzz_name_cmp);
	for (size_t i = 0; i < n; i++) {
		snprintf(file, sizeof(file), "%s/%s", path, names[i]);
		if (stat(file, &st) == 0 && S_ISREG(st.st_mode) &&
		    gm_fuzz_run_file(t, file, verbose) == 0)
			ran++;
		free(names[i]);
	}
	free(names);
	return ran;
}
