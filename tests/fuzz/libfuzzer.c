// SPDX-License-Identifier: MIT
/*
 * libfuzzer.c - libFuzzer's entry point for one target, chosen at build
 * time with -DGM_FUZZ_FN=gm_fuzz_NAME (tests/fuzz/meson.build).
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	GM_FUZZ_FN(data, size);
	return 0;
}
