/* SPDX-License-Identifier: MIT */
/*
 * cmd.h - the gmem command table: one file per subcommand.
 *
 * A subcommand returns the process exit status: 0 success, 1 failure (after
 * printing one line on stderr), 2 bad usage.
 */
#ifndef GMEM_CLI_CMD_H
#define GMEM_CLI_CMD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <gmem.h>
#include <jansson.h>

#define CLI_EXIT_OK    0
#define CLI_EXIT_FAIL  1
#define CLI_EXIT_USAGE 2

struct cli_cmd {
	const char *name;
	const char *args;       /* usage after the name */
	const char *summary;
	int (*run)(int argc, char **argv);
};

int cmd_probe(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_snapshot_merge(int argc, char **argv);     /* gmem snapshot merge */
int cmd_vm(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Helpers shared by subcommands (output.c). */
int  cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int  cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int  cli_json_print(json_t *root);          /* prints and frees; exit status */
void cli_row(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *cli_yes(int v);
/* GMEM_PRIVACY_* in words: who keeps private pages from the host. */
const char *cli_privacy(int level);
const char *cli_track(int how);
json_t *cli_stats_json(const struct gmem_stats *st);
void cli_stats_print(const struct gmem_stats *st);
bool cli_parse_backend(const char *s, enum gmem_backend *out);

/* A progress bar on stderr, drawn only on a terminal and when not quiet. */
struct cli_progress {
	const char *what;       /* "saving", "verifying", ...               */
	bool on;                /* drawing: stderr is a TTY and not quiet   */
	int shown;              /* last permille drawn, -1 none             */
};

/* Set up a bar for @what: drawn on stderr only when it is a terminal and
 * @quiet is false. */
void cli_progress_init(struct cli_progress *p, const char *what, bool quiet);
/* gmem_snapshot_progress_fn: @ctx is a struct cli_progress. */
void cli_progress_cb(void *ctx, uint64_t done, uint64_t total);
/* Erase the bar (before the result is printed). */
void cli_progress_end(struct cli_progress *p);

/* --key-file FILE (key.c): the snapshot key it holds (GMEM_SNAP_KEY_BYTES,
 * in a buffer of its own kept out of core dumps and children) into *@key;
 * refuses, in one line, a file group or others may access. The exit
 * status: CLI_EXIT_OK, or CLI_EXIT_FAIL with *@key NULL. */
int  cli_key_load(const char *path, uint8_t **key);
/* Wipe and free a key cli_key_load gave (NULL: nothing). */
void cli_key_free(uint8_t *key);

extern const char *cli_prog;

#endif /* GMEM_CLI_CMD_H */
