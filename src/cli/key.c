// SPDX-License-Identifier: MIT
/*
 * key.c - the snapshot key of --key-file FILE (cmd.h: cli_key_load).
 *
 * The key file holds exactly GMEM_SNAP_KEY_BYTES raw bytes, or twice as
 * many hex digits and an optional newline. It must be a regular file that
 * neither group nor others may access (mode 0600 or stricter): a key other
 * users can read is refused, in one line naming the file and its mode. The
 * key itself only ever goes to a buffer of its own, kept out of core dumps
 * and children and locked in memory; it never reaches argv, the
 * environment or any message, and is wiped (explicit_bzero) when freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"

/* Room for the longest valid file (hex, CR LF) and one byte more. */
#define KEY_FILE_MAX (2 * GMEM_SNAP_KEY_BYTES + 3)

struct cli_key_page {
	uint8_t key[GMEM_SNAP_KEY_BYTES];
	uint8_t file[KEY_FILE_MAX];
};

static int key_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The key in @p->file's @n bytes: 0, or -1. */
static int key_parse(struct cli_key_page *p, size_t n)
{
	if (n == GMEM_SNAP_KEY_BYTES) {
		memcpy(p->key, p->file, n);
		return 0;
	}
	if (n && p->file[n - 1] == '\n')
		n--;
	if (n && p->file[n - 1] == '\r')
		n--;
	if (n != 2 * GMEM_SNAP_KEY_BYTES)
		return -1;
	for (size_t i = 0; i < GMEM_SNAP_KEY_BYTES; i++) {
		int hi = key_hex(p->file[2 * i]), lo = key_hex(p->file[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		p->key[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static void *key_page(void)
{
	void *p = mmap(NULL, sizeof(struct cli_key_page), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* Out of core dumps and children; not swapped where the limit allows. */
	if (madvise(p, sizeof(struct cli_key_page), MADV_DONTDUMP) ||
	    madvise(p, sizeof(struct cli_key_page), MADV_WIPEONFORK)) {
		munmap(p, sizeof(struct cli_key_page));
		return NULL;
	}
	mlock(p, sizeof(struct cli_key_page));  /* best effort (RLIMIT_MEMLOCK) */
	return p;
}

static void key_page_free(struct cli_key_page *p)
{
	explicit_bzero(p, sizeof(*p));
	munmap(p, sizeof(*p));
}

int cli_key_load(const char *path, uint8_t **key)
{
	struct cli_key_page *p;
	struct stat sb;
	size_t n = 0;
	int fd, ret = -1;

	*key = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return cli_fail("key file %s: %s", path, strerror(errno));
	if (fstat(fd, &sb)) {
		cli_fail("key file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		cli_fail("key file %s: not a regular file", path);
		goto out;
	}
	if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
		cli_fail("key file %s: mode %04o lets group or others at it; chmod 600 it",
			 path, (unsigned)(sb.st_mode & 07777));
		goto out;
	}
	p = key_page();
	if (!p) {
		cli_fail("key file %s: no memory for the key", path);
		goto out;
	}
	while (n < sizeof(p->file)) {
		ssize_t got = read(fd, p->file + n, sizeof(p->file) - n);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	if (key_parse(p, n)) {
		cli_fail("key file %s: want exactly %u bytes, or %u hex digits and an optional "
			 "newline", path, GMEM_SNAP_KEY_BYTES, 2 * GMEM_SNAP_KEY_BYTES);
		key_page_free(p);
		goto out;
	}
	explicit_bzero(p->file, sizeof(p->file));
	*key = p->key;
	ret = 0;
out:
	close(fd);
	return ret ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

void cli_key_free(uint8_t *key)
{
	if (!key)
		return;
	/* key is the first member: the page starts there. */
	key_page_free((struct cli_key_page *)(void *)key);
}
