// SPDX-License-Identifier: MIT
/*
 * test_layers.c - suite "layers": the files of the library and of the
 * micro-VMM depend on each other in one direction only.
 *
 * A file depends on another when its object refers to a symbol the other
 * defines (nm on the static libraries, one member per source file). The
 * graph must have no cycle: in src/vmm the accelerators and the guest-memory
 * services at the bottom, the devices above them, the buses and the exit
 * dispatch above those, the VM on top (docs/vmm.md, "Layers"); in src/lib
 * the shared machinery below the paths and the public calls. A cycle is
 * printed with the symbols that make each of its edges.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LY_MAX_FILES 64
#define LY_MAX_SYMS  4096

struct ly_sym {
	char name[96];
	int file;
	bool defined;
};

struct ly_graph {
	char file[LY_MAX_FILES][48];
	int nfiles;
	struct ly_sym sym[LY_MAX_SYMS];
	int nsyms;
	bool edge[LY_MAX_FILES][LY_MAX_FILES];
	/* Tarjan */
	int index[LY_MAX_FILES], low[LY_MAX_FILES], stack[LY_MAX_FILES], sp, next;
	bool on[LY_MAX_FILES];
	int cycle[LY_MAX_FILES], ncycle;
};

static int ly_file(struct ly_graph *g, const char *name)
{
	for (int i = 0; i < g->nfiles; i++)
		if (!strcmp(g->file[i], name))
			return i;
	cr_assert_lt(g->nfiles, LY_MAX_FILES);
	snprintf(g->file[g->nfiles], sizeof(g->file[0]), "%s", name);
	return g->nfiles++;
}

/* "archive:member.c.o:<addr> T name" or "archive:member.c.o:    U name". */
static void ly_read(struct ly_graph *g, const char *archive)
{
	char cmd[512], line[512];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "nm -A %s 2>/dev/null", archive);
	p = popen(cmd, "r");
	cr_assert_not_null(p, "%s", cmd);
	while (fgets(line, sizeof(line), p)) {
		char *member = strstr(line, ".a:"), *colon, type, name[96];
		struct ly_sym *s;

		if (!member)
			continue;
		member += 3;
		colon = strchr(member, ':');
		if (!colon)
			continue;
		*colon = '\0';
		if (strrchr(member, '/'))
			member = strrchr(member, '/') + 1;
		/* Undefined symbols have no address: the line starts blank. */
		if (sscanf(colon + 1, colon[1] == ' ' ? " %c %95s" : "%*s %c %95s", &type,
			   name) != 2)
			continue;
		if (!strchr("TDBRU", type))
			continue;
		cr_assert_lt(g->nsyms, LY_MAX_SYMS);
		s = &g->sym[g->nsyms++];
		snprintf(s->name, sizeof(s->name), "%s", name);
		s->file = ly_file(g, member);
		s->defined = type != 'U';
	}
	cr_assert_eq(pclose(p), 0, "nm failed on %s", archive);
	cr_assert_gt(g->nfiles, 3, "%s: no members read", archive);
}

static void ly_edges(struct ly_graph *g)
{
	for (int u = 0; u < g->nsyms; u++) {
		if (g->sym[u].defined)
			continue;
		for (int d = 0; d < g->nsyms; d++)
			if (g->sym[d].defined && g->sym[d].file != g->sym[u].file &&
			    !strcmp(g->sym[d].name, g->sym[u].name))
				g->edge[g->sym[u].file][g->sym[d].file] = true;
	}
}

static void ly_strong(struct ly_graph *g, int v)
{
	g->index[v] = g->low[v] = ++g->next;
	g->stack[g->sp++] = v;
	g->on[v] = true;
	for (int w = 0; w < g->nfiles; w++) {
		if (!g->edge[v][w])
			continue;
		if (!g->index[w]) {
			ly_strong(g, w);
			if (g->low[w] < g->low[v])
				g->low[v] = g->low[w];
		} else if (g->on[w] && g->index[w] < g->low[v]) {
			g->low[v] = g->index[w];
		}
	}
	if (g->low[v] == g->index[v]) {
		int n = 0, comp[LY_MAX_FILES], w;

		do {
			w = g->stack[--g->sp];
			g->on[w] = false;
			comp[n++] = w;
		} while (w != v);
		if (n > 1 && !g->ncycle) {
			memcpy(g->cycle, comp, sizeof(int) * (size_t)n);
			g->ncycle = n;
		}
	}
}

/* The edges inside the cycle, each with one symbol that makes it. */
static void ly_explain(struct ly_graph *g, char *out, size_t size)
{
	size_t at = 0;

	out[0] = '\0';
	for (int i = 0; i < g->ncycle; i++)
		for (int j = 0; j < g->ncycle; j++) {
			int a = g->cycle[i], b = g->cycle[j];

			if (!g->edge[a][b])
				continue;
			for (int u = 0; u < g->nsyms; u++) {
				if (g->sym[u].defined || g->sym[u].file != a)
					continue;
				for (int d = 0; d < g->nsyms; d++)
					if (g->sym[d].defined && g->sym[d].file == b &&
					    !strcmp(g->sym[d].name, g->sym[u].name)) {
						at += (size_t)snprintf(out + at, size - at,
							"\n  %s -> %s (%s)", g->file[a], g->file[b],
							g->sym[u].name);
						if (at >= size)
							return;
						u = g->nsyms;
						break;
					}
			}
		}
}

static void ly_expect_one_way(const char *archive)
{
	struct ly_graph *g = calloc(1, sizeof(*g));
	char why[4096];

	cr_assert_not_null(g);
	ly_read(g, archive);
	ly_edges(g);
	for (int v = 0; v < g->nfiles; v++)
		if (!g->index[v])
			ly_strong(g, v);
	ly_explain(g, why, sizeof(why));
	cr_assert_eq(g->ncycle, 0, "%s: %d files depend on each other in a circle:%s", archive,
		     g->ncycle, why);
	free(g);
}

Test(layers, vmm_files_depend_one_way)
{
	ly_expect_one_way(GMEM_VMM_ARCHIVE);
}

Test(layers, lib_files_depend_one_way)
{
	ly_expect_one_way(GMEM_LIB_ARCHIVE);
}
