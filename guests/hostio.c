// SPDX-License-Identifier: MIT
/*
 * hostio.c - host-driven conversion: the guest leaves a message in private
 * memory and asks the host's I/O device to transform it. The device shares
 * the page itself, in place, works on it through its host view, and makes
 * it private again: the guest finds the result at the same address, in a
 * page that is private again, without having shared anything. A second page
 * the guest keeps private stays out of the device's reach: its read through
 * the host view faults (-EFAULT).
 *
 * Exit status: the number of failed checks. The host's test expects
 * 2 conversions (share + unshare by the device), 1 pin, nothing pinned or
 * shared at the end, and the secret page's host-view address to fault.
 */
#include "rt.h"

static char msg[GV_PAGE] GV_ALIGNED_PAGE;
static char secret[GV_PAGE] GV_ALIGNED_PAGE;
static char open_page[GV_PAGE] GV_ALIGNED_PAGE;

static const char text[] = "private data, transformed by the host in place";
static const char want[] = "PRIVATE DATA, TRANSFORMED BY THE HOST IN PLACE";

int guest_main(const struct gv_boot *b)
{
	long sum = 0;

	(void)b;
	memcpy(msg, text, sizeof(text));
	memcpy(secret, "guest secret", 13);

	gv_expect(gv_hcall(GV_HC_HOSTIO, (unsigned long)msg, sizeof(text) - 1,
			   GV_HOSTIO_UPPER), 0, "host transforms the message");
	gv_expect(memcmp(msg, want, sizeof(want)), 0, "message as the host left it");
	gv_expect(gv_page_state(msg), 0, "message page private again");
	gv_printf("message: %s\n", msg);

	/* Device code cannot read a page the guest keeps private... */
	gv_expect(gv_hcall(GV_HC_HOST_READ, (unsigned long)secret, 16, 0), -EFAULT,
		  "host-view read of the private page");
	gv_printf("secret page at %p stays private\n", secret);

	/* ...and reads a shared one. */
	memcpy(open_page, "abc", 3);
	for (int i = 0; i < 3; i++)
		sum += open_page[i];
	gv_expect(gv_share(open_page, GV_PAGE), 0, "share a page");
	gv_expect(gv_hcall(GV_HC_HOST_READ, (unsigned long)open_page, 3, 0), sum,
		  "host-view read of the shared page (byte sum)");
	gv_expect(gv_unshare(open_page, GV_PAGE), 0, "unshare it");

	gv_printf("hostio: %d failure(s)\n", gv_failures());
	return gv_failures();
}
