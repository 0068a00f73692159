// SPDX-License-Identifier: MIT
/*
 * rt.c - see rt.h: start-up, console, exit, and the few libc functions the
 * compiler may call even in freestanding code.
 */
#include "rt.h"

static int gv_nfail;

__attribute__((noreturn)) void gv_exit(int status)
{
	gv_outl(GV_PORT_EXIT, (uint32_t)status);
	for (;;)
		gv_halt();      /* the VMM stops every vCPU on exit */
}

__attribute__((weak)) void guest_secondary(const struct gv_boot *b)
{
	(void)b;
}

/* Called by _start on every vCPU. */
__attribute__((noreturn, used)) void gv_start(uint64_t cpu, uint64_t ncpus, uint64_t mem)
{
	struct gv_boot b = { .cpu = (unsigned)cpu, .ncpus = (unsigned)ncpus, .mem_size = mem };

	if (cpu == 0)
		gv_exit(guest_main(&b));
	guest_secondary(&b);
	for (;;)
		gv_halt();
}

/* One exit for the whole string: rep outsb. */
void gv_write(const char *s, size_t n)
{
	__asm__ volatile("rep outsb" : "+S"(s), "+c"(n) : "d"(GV_PORT_CONSOLE) : "memory");
}

struct gv_buf {
	char b[256];
	size_t n;
};

static void gv_bput(struct gv_buf *o, char c)
{
	if (o->n == sizeof(o->b)) {
		gv_write(o->b, o->n);
		o->n = 0;
	}
	o->b[o->n++] = c;
}

static void gv_bnum(struct gv_buf *o, unsigned long long v, unsigned base, int neg)
{
	char tmp[24];
	int i = 0;

	if (neg)
		gv_bput(o, '-');
	do {
		tmp[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (i)
		gv_bput(o, tmp[--i]);
}

void gv_printf(const char *fmt, ...)
{
	struct gv_buf o = { .n = 0 };
	va_list ap;

	va_start(ap, fmt);
	for (const char *p = fmt; *p; p++) {
		int lng = 0, alt = 0;
		unsigned long long u;
		long long s;

		if (*p != '%') {
			gv_bput(&o, *p);
			continue;
		}
		if (*++p == '#') {
			alt = 1;
			p++;
		}
		while (*p == 'l') {
			lng++;
			p++;
		}
		switch (*p) {
		case 'd':
		case 'i':
			s = lng ? va_arg(ap, long long) : va_arg(ap, int);
			gv_bnum(&o, s < 0 ? 0ull - (unsigned long long)s : (unsigned long long)s,
				10, s < 0);
			break;
		case 'u':
		case 'x':
			u = lng ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned);
			if (alt && *p == 'x') {
				gv_bput(&o, '0');
				gv_bput(&o, 'x');
			}
			gv_bnum(&o, u, *p == 'x' ? 16 : 10, 0);
			break;
		case 'p':
			gv_bput(&o, '0');
			gv_bput(&o, 'x');
			gv_bnum(&o, (unsigned long)va_arg(ap, void *), 16, 0);
			break;
		case 's':
			for (const char *q = va_arg(ap, const char *); *q; q++)
				gv_bput(&o, *q);
			break;
		case 'c':
			gv_bput(&o, (char)va_arg(ap, int));
			break;
		case '%':
			gv_bput(&o, '%');
			break;
		default:
			gv_bput(&o, '?');
			if (!*p)
				p--;
			break;
		}
	}
	va_end(ap);
	if (o.n)
		gv_write(o.b, o.n);
}

void gv_expect(long got, long want, const char *what)
{
	if (got == want) {
		gv_printf("ok   %s = %ld\n", what, got);
		return;
	}
	gv_nfail++;
	gv_printf("FAIL %s = %ld, want %ld\n", what, got, want);
}

int gv_failures(void)
{
	return gv_nfail;
}

void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;

	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;

	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *p = a, *q = b;

	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}
