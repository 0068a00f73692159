// SPDX-License-Identifier: MIT
/*
 * plot.c - throughput vs request size as a self-contained SVG, no
 * dependency: one panel per series (direction, shape, threads), x = request
 * size on a log2 axis, y = MB/s on a log10 axis (the paths differ by orders
 * of magnitude), one polyline per path, a shared legend.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>

#include "iobench.h"

#define PW 460          /* panel size, plot area inside it */
#define PH 300
#define ML 62
#define MR 14
#define MT 34
#define MB 44
#define COLS 2

static const char *const colour[IOB_NPATHS] = {
	"#777777", "#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd",
};
static const char *const dash[IOB_NPATHS] = { "4 3", "4 3", "", "", "", "1 0" };

struct axes {
	double x0, y0, w, h;            /* plot area                      */
	double lx0, lx1, ly0, ly1;      /* log2 size, log10 MB/s ranges   */
};

static double ax_x(const struct axes *a, uint64_t size)
{
	return a->x0 + (log2((double)size) - a->lx0) / (a->lx1 - a->lx0) * a->w;
}

static double ax_y(const struct axes *a, double mbps)
{
	double l = log10(mbps > 0 ? mbps : 1e-3);

	if (l < a->ly0)
		l = a->ly0;
	return a->y0 + a->h - (l - a->ly0) / (a->ly1 - a->ly0) * a->h;
}

static void frame(FILE *f, const struct axes *a, const char *title)
{
	fprintf(f, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' "
		"stroke='#333'/>\n", a->x0, a->y0, a->w, a->h);
	fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='middle' font-weight='bold'>%s</text>\n",
		a->x0 + a->w / 2, a->y0 - 10, title);
	for (int e = (int)a->lx0; e <= (int)a->lx1; e += 1) {
		double x = a->x0 + (e - a->lx0) / (a->lx1 - a->lx0) * a->w;
		uint64_t s = 1ull << e;

		fprintf(f, "<line x1='%.1f' y1='%.0f' x2='%.1f' y2='%.0f' stroke='#ddd'/>\n", x,
			a->y0, x, a->y0 + a->h);
		if (e % 2 == 1)
			fprintf(f, "<text x='%.1f' y='%.0f' text-anchor='middle' font-size='10'>"
				"%llu%s</text>\n", x, a->y0 + a->h + 14,
				(unsigned long long)(s >= 1024 * 1024 ? s >> 20
						     : s >= 1024 ? s >> 10 : s),
				s >= 1024 * 1024 ? "M" : s >= 1024 ? "K" : "");
	}
	for (int e = (int)a->ly0; e <= (int)a->ly1; e++) {
		double y = a->y0 + a->h - (e - a->ly0) / (a->ly1 - a->ly0) * a->h;

		fprintf(f, "<line x1='%.0f' y1='%.1f' x2='%.0f' y2='%.1f' stroke='#ddd'/>\n",
			a->x0, y, a->x0 + a->w, y);
		fprintf(f, "<text x='%.0f' y='%.1f' text-anchor='end' font-size='10'>%g</text>\n",
			a->x0 - 4, y + 3, pow(10, e));
	}
	fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='middle' font-size='11'>request size "
		"(bytes)</text>\n", a->x0 + a->w / 2, a->y0 + a->h + 30);
	fprintf(f, "<text transform='translate(%.0f,%.0f) rotate(-90)' text-anchor='middle' "
		"font-size='11'>MB/s</text>\n", a->x0 - 44, a->y0 + a->h / 2);
}

static void series(FILE *f, const struct axes *a, const struct iob_cell *c, unsigned n)
{
	for (unsigned p = 0; p < IOB_NPATHS; p++) {
		fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' "
			"stroke-dasharray='%s' points='", colour[p], dash[p]);
		for (unsigned i = 0; i < n; i++)
			if (c[i].run[p])
				fprintf(f, "%.1f,%.1f ", ax_x(a, c[i].size), ax_y(a, c[i].mbps[p]));
		fprintf(f, "'/>\n");
		for (unsigned i = 0; i < n; i++)
			if (c[i].run[p])
				fprintf(f, "<circle cx='%.1f' cy='%.1f' r='2.5' fill='%s'/>\n",
					ax_x(a, c[i].size), ax_y(a, c[i].mbps[p]), colour[p]);
	}
}

static void legend(FILE *f, double x, double y)
{
	for (unsigned p = 0; p < IOB_NPATHS; p++) {
		double lx = x + p * 130;

		fprintf(f, "<line x1='%.0f' y1='%.0f' x2='%.0f' y2='%.0f' stroke='%s' "
			"stroke-width='3' stroke-dasharray='%s'/>\n", lx, y, lx + 24, y, colour[p],
			dash[p]);
		fprintf(f, "<text x='%.0f' y='%.0f' font-size='12'>%s</text>\n", lx + 30, y + 4,
			iob_path_name(p));
	}
}

int iob_plot_svg(const char *path, const struct iob_cell *cells, unsigned n,
		 const char *subtitle)
{
	double lo = 1e30, hi = 0;
	unsigned panels = 0, rows;
	FILE *f;

	for (unsigned i = 0; i < n; i++) {
		panels += !i || cells[i].shape != cells[i - 1].shape ||
			  cells[i].dir != cells[i - 1].dir ||
			  cells[i].threads != cells[i - 1].threads;
		for (unsigned p = 0; p < IOB_NPATHS; p++)
			if (cells[i].run[p] && cells[i].mbps[p] > 0) {
				lo = fmin(lo, cells[i].mbps[p]);
				hi = fmax(hi, cells[i].mbps[p]);
			}
	}
	if (!panels || hi <= 0)
		return -EINVAL;
	f = fopen(path, "w");
	if (!f)
		return -errno;
	rows = (panels + COLS - 1) / COLS;
	fprintf(f, "<?xml version='1.0' encoding='UTF-8'?>\n<svg xmlns='http://www.w3.org/2000/svg' "
		"width='%d' height='%u' font-family='sans-serif' font-size='12'>\n"
		"<rect width='100%%' height='100%%' fill='white'/>\n", COLS * PW, rows * PH + 70);
	fprintf(f, "<text x='10' y='20' font-size='15' font-weight='bold'>gmem bench io: "
		"throughput vs request size, private memory</text>\n"
		"<text x='10' y='38' font-size='11'>%s</text>\n", subtitle);
	legend(f, 10, 58);
	for (unsigned i = 0, k = 0; i < n; k++) {
		unsigned end = i;
		struct axes a;
		char title[96];

		while (end < n && cells[end].shape == cells[i].shape &&
		       cells[end].dir == cells[i].dir && cells[end].threads == cells[i].threads)
			end++;
		a = (struct axes){ .x0 = (k % COLS) * PW + ML, .y0 = 70 + (k / COLS) * PH + MT,
				   .w = PW - ML - MR, .h = PH - MT - MB,
				   .lx0 = 9, .lx1 = 20,
				   .ly0 = floor(log10(lo)), .ly1 = ceil(log10(hi)) };
		snprintf(title, sizeof(title), "%s, %s, %u thread%s",
			 cells[i].dir == GMEM_IO_READ ? "device read" : "device write",
			 iob_shape_name(cells[i].shape), cells[i].threads,
			 cells[i].threads > 1 ? "s" : "");
		frame(f, &a, title);
		series(f, &a, cells + i, end - i);
		i = end;
	}
	fprintf(f, "</svg>\n");
	return fclose(f) ? -errno : 0;
}
