/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h - gmem's fuzz targets and the one way they are run.
 *
 * A target takes any bytes and either returns (the input was handled:
 * refused with an error or accepted, and every oracle of the target held)
 * or aborts through GM_FUZZ_CHECK with the oracle that failed. A sanitizer
 * report is a finding too. Targets keep no state from one input to the
 * next, so a finding replays from its file alone.
 *
 * Each target is built three ways (tests/fuzz/meson.build):
 *   - with clang and libFuzzer: build-fuzz/tests/fuzz/fuzz-NAME, run by
 *     `./build.sh fuzz NAME SECONDS`;
 *   - by the project's compiler into gmem-fuzz-replay, which runs the inputs
 *     it is given (default: the committed corpus), naming each file first;
 *   - into the Criterion suite `fuzz`, one test per target replaying its
 *     committed corpus, so CI replays every corpus under ASan+UBSan with
 *     nothing but gcc.
 */
#ifndef GM_FUZZ_H
#define GM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef void (*gm_fuzz_fn)(const uint8_t *data, size_t size);

struct gm_fuzz_target {
	const char *name;       /* corpus folder: tests/fuzz/corpus/NAME      */
	gm_fuzz_fn fn;
	const char *what;
};

/* Every target, ending with { NULL }. */
extern const struct gm_fuzz_target gm_fuzz_targets[];
const struct gm_fuzz_target *gm_fuzz_find(const char *name);

/* The input being replayed, for the message of a failing oracle. */
extern const char *gm_fuzz_input;

/* An oracle: abort with both what failed and where, so libFuzzer keeps the
 * input as a crash and a replay names the file. */
#define GM_FUZZ_CHECK(cond, ...)                                               \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "fuzz oracle failed at %s:%d: %s\n  ",   \
				__FILE__, __LINE__, #cond);                    \
			fprintf(stderr, __VA_ARGS__);                          \
			fprintf(stderr, "\n  input: %s\n",                     \
				gm_fuzz_input ? gm_fuzz_input : "(libFuzzer)"); \
			abort();                                               \
		}                                                              \
	} while (0)

/* Reads a fuzz input a few bytes at a time; past its end every read is 0,
 * so any input, even empty, decodes to some sequence. */
struct gm_fuzz_in {
	const uint8_t *p;
	size_t left;
};

static inline uint64_t gm_fuzz_take(struct gm_fuzz_in *in, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++) {
		uint64_t b = in->left ? (in->left--, *in->p++) : 0;

		v |= b << (8 * i);
	}
	return v;
}

static inline int gm_fuzz_done(const struct gm_fuzz_in *in)
{
	return in->left == 0;
}

/* Replay every regular file of @path (a file or a folder, not recursing)
 * through @t, in name order; @verbose names each file on stderr before it
 * runs. Returns the number of inputs run, or -errno when @path cannot be
 * read. */
long gm_fuzz_replay(const struct gm_fuzz_target *t, const char *path, int verbose);

/* The targets (fuzz_*.c). */
void gm_fuzz_api(const uint8_t *data, size_t size);
void gm_fuzz_elf(const uint8_t *data, size_t size);
void gm_fuzz_snapshot(const uint8_t *data, size_t size);
void gm_fuzz_guest(const uint8_t *data, size_t size);
void gm_fuzz_vdev(const uint8_t *data, size_t size);

#endif /* GM_FUZZ_H */
