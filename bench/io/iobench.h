/* SPDX-License-Identifier: MIT */
/*
 * iobench.h - the I/O benchmark behind `gmem bench io`: every I/O path on
 * private memory side by side in one run, against memcpy and against the
 * same I/O on plain shared memory (the no-isolation baseline).
 */
#ifndef GMEM_IOBENCH_H
#define GMEM_IOBENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <gmem.h>

enum iob_target { IOB_MEMORY, IOB_FILE };

struct iob_opts {
	bool quick;             /* CI: fewer sizes, shorter rounds          */
	bool json;              /* one JSON object per line on stdout        */
	const char *plot;       /* SVG file, or NULL                         */
	enum iob_target target;
	const char *file_dir;   /* IOB_FILE: where the file goes (page cache) */
	unsigned threads;       /* most threads (runs 1 and this)            */
	int dirs;               /* bit 0 read, bit 1 write                   */
	enum gmem_backend backend;
	uint32_t slot_size;     /* bounce pool slot, 0 = library default     */
};

/* Path columns, in output order. */
enum iob_path { IOB_MEMCPY, IOB_SHARED, IOB_INPLACE, IOB_BOUNCE, IOB_KMAP, IOB_AUTO,
		IOB_NPATHS };

struct iob_cell {
	uint64_t size;
	unsigned shape;         /* 0 contiguous, 1 scattered                 */
	unsigned threads;
	enum gmem_io_dir dir;
	double mbps[IOB_NPATHS], p50_us[IOB_NPATHS], p99_us[IOB_NPATHS];
	uint64_t requests[IOB_NPATHS];
	bool run[IOB_NPATHS];
	double auto_share[GMEM_IO_NPATHS];  /* fraction of auto requests per path */
	enum iob_path best;     /* fastest fixed path (median over rounds)   */
	double auto_vs_best;    /* median over rounds of auto / best          */
	double bounce_vs_memcpy;/* median over rounds of bounce / memcpy      */
	double auto_vs_best_p50;/* best fixed p50 / auto p50: robust to stalls */
};

const char *iob_path_name(enum iob_path p);
const char *iob_shape_name(unsigned shape);

/* Run the benchmark: table on @tab, JSON lines on stdout when o->json.
 * 0, or a negative errno when it could not run. */
int iob_run(const struct iob_opts *o, FILE *tab);

/* Throughput vs request size, one line per path, a panel per
 * (direction, shape, threads): a self-contained SVG. */
int iob_plot_svg(const char *path, const struct iob_cell *cells, unsigned n,
		 const char *subtitle);

#endif /* GMEM_IOBENCH_H */
