// SPDX-License-Identifier: MIT
/*
 * seal.c - sealed snapshot files (seal.h; docs/snapshot-format.md,
 * "Sealed files"): subkey, header seal, chunk AEAD, and the reader's key
 * checks.
 *
 * The AEADs are libsodium's: AES-256-GCM (with its key schedule expanded
 * once, crypto_aead_aes256gcm_beforenm, then only read) where the CPU has
 * AES-NI and CLMUL, XChaCha20-Poly1305 elsewhere. Both take a tag detached
 * from the ciphertext, which is how the file lays them out (ciphertext in
 * place of the payload, the 16-byte tag after it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "seal.h"
#include "sys.h"

_Static_assert(crypto_aead_aes256gcm_ABYTES == GM_SNAP_TAG_BYTES, "AES-GCM tag");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == GM_SNAP_TAG_BYTES, "XChaCha tag");
_Static_assert(crypto_aead_aes256gcm_KEYBYTES == 32, "AES-256 key");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == 32, "XChaCha key");
_Static_assert(GMEM_SNAP_KEY_BYTES == crypto_generichash_KEYBYTES, "BLAKE2b key");

/* The subkey's domain: 16 ASCII bytes, no NUL. */
static const char gm_seal_domain[16] = { 'g', 'm', 'e', 'm', '-', 's', 'n', 'a',
					 'p', 's', 'h', 'o', 't', '-', 'v', '2' };

#define GM_SEAL_HDR_SEALED 88   /* header bytes 0..87 are sealed          */
#define GM_SEAL_MAC        16   /* bytes of the header seal that are set  */
#define GM_SEAL_AD_MAX     (24 + 8 + sizeof(struct gm_snap_header2) + sizeof(struct gm_snap_end2))

enum gm_snap_aead gm_seal_force_aead;

struct gm_seal {
	crypto_aead_aes256gcm_state aes;        /* AES-GCM: expanded subkey     */
	uint8_t subkey[32];
	uint32_t aead;
	uint32_t hdr_len;
	uint8_t hdr[sizeof(struct gm_snap_header2)];    /* as stored          */
};

static void gm_seal_init(void)
{
	/* Idempotent and thread-safe; picks the CPU's implementations. */
	if (sodium_init() < 0)
		abort();
}

enum gm_snap_aead gm_seal_pick(void)
{
	gm_seal_init();
	if (gm_seal_force_aead)
		return gm_seal_force_aead;
	return crypto_aead_aes256gcm_is_available() ? GM_SNAP_AEAD_AES256GCM
						    : GM_SNAP_AEAD_XCHACHA20POLY1305;
}

void gm_seal_random(void *p, size_t n)
{
	gm_seal_init();
	randombytes_buf(p, n);
}

int gm_seal_new(const uint8_t *key, uint32_t aead, const uint8_t file_id[GM_SNAP_ID_BYTES],
		struct gm_seal **out)
{
	uint8_t msg[sizeof(gm_seal_domain) + GM_SNAP_ID_BYTES];
	struct gm_seal *s;

	*out = NULL;
	gm_seal_init();
	if (aead != GM_SNAP_AEAD_AES256GCM && aead != GM_SNAP_AEAD_XCHACHA20POLY1305)
		return -EINVAL;
	if (aead == GM_SNAP_AEAD_AES256GCM && !crypto_aead_aes256gcm_is_available()) {
		gm_set_error("snapshot: the file is sealed with AES-256-GCM, which libsodium "
			     "runs only on CPUs with AES-NI and CLMUL; this one has not");
		return -EOPNOTSUPP;
	}
	s = gm_sys_guarded_alloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	memcpy(msg, gm_seal_domain, sizeof(gm_seal_domain));
	memcpy(msg + sizeof(gm_seal_domain), file_id, GM_SNAP_ID_BYTES);
	crypto_generichash(s->subkey, sizeof(s->subkey), msg, sizeof(msg), key,
			   GMEM_SNAP_KEY_BYTES);
	s->aead = aead;
	if (aead == GM_SNAP_AEAD_AES256GCM)
		crypto_aead_aes256gcm_beforenm(&s->aes, s->subkey);
	*out = s;
	return 0;
}

void gm_seal_free(struct gm_seal *s)
{
	if (!s)
		return;
	sodium_memzero(s, sizeof(*s));
	gm_sys_guarded_free(s);
}

static void gm_seal_mac(const struct gm_seal *s, const void *hdr, uint8_t mac[GM_SEAL_MAC])
{
	crypto_generichash(mac, GM_SEAL_MAC, hdr, GM_SEAL_HDR_SEALED, s->subkey,
			   sizeof(s->subkey));
}

void gm_seal_header(const struct gm_seal *s, const void *hdr, uint8_t seal[GM_SNAP_SEAL_BYTES])
{
	memset(seal, 0, GM_SNAP_SEAL_BYTES);
	gm_seal_mac(s, hdr, seal);
}

bool gm_seal_header_ok(const struct gm_seal *s, const void *hdr,
		       const uint8_t seal[GM_SNAP_SEAL_BYTES])
{
	uint8_t want[GM_SNAP_SEAL_BYTES];
	bool ok;

	gm_seal_header(s, hdr, want);
	ok = !sodium_memcmp(want, seal, sizeof(want));
	sodium_memzero(want, sizeof(want));
	return ok;
}

void gm_seal_bind(struct gm_seal *s, const void *hdr, size_t len)
{
	if (len > sizeof(s->hdr))
		abort();
	memcpy(s->hdr, hdr, len);
	s->hdr_len = (uint32_t)len;
}

/* Nonce and associated data of chunk @c, number @index; END's AD also holds
 * its @plain payload. Returns the AD's length. */
static size_t gm_seal_ad(const struct gm_seal *s, const struct gm_snap_chunk *c, uint64_t index,
			 const uint8_t *plain, uint8_t nonce[24], uint8_t ad[GM_SEAL_AD_MAX])
{
	size_t n = 0;

	memset(nonce, 0, 24);
	memcpy(nonce, &index, sizeof(index));           /* little-endian host */
	memcpy(ad, c, offsetof(struct gm_snap_chunk, hash));
	n += offsetof(struct gm_snap_chunk, hash);
	memcpy(ad + n, &index, sizeof(index));
	n += sizeof(index);
	memcpy(ad + n, s->hdr, s->hdr_len);
	n += s->hdr_len;
	if (c->type == GM_SNAP_END) {
		memcpy(ad + n, plain, sizeof(struct gm_snap_end2));
		n += sizeof(struct gm_snap_end2);
	}
	return n;
}

void gm_seal_chunk(const struct gm_seal *s, const struct gm_snap_chunk *c, uint64_t index,
		   const uint8_t *src, uint8_t *dst, size_t len)
{
	uint8_t nonce[24], ad[GM_SEAL_AD_MAX];
	size_t adlen;

	if (c->type == GM_SNAP_END) {
		if (len != sizeof(struct gm_snap_end2))
			abort();
		memmove(dst, src, len);
		src = dst;
	}
	adlen = gm_seal_ad(s, c, index, src, nonce, ad);
	if (c->type == GM_SNAP_END)
		len = 0;        /* the payload stays readable: only authenticated */
	if (s->aead == GM_SNAP_AEAD_AES256GCM)
		crypto_aead_aes256gcm_encrypt_detached_afternm(dst, dst + (c->type == GM_SNAP_END ?
							       sizeof(struct gm_snap_end2) : len),
							       NULL, src, len, ad, adlen, NULL,
							       nonce, &s->aes);
	else
		crypto_aead_xchacha20poly1305_ietf_encrypt_detached(dst, dst +
							(c->type == GM_SNAP_END ?
							 sizeof(struct gm_snap_end2) : len),
							NULL, src, len, ad, adlen, NULL,
							nonce, s->subkey);
}

int gm_seal_open(const struct gm_seal *s, const struct gm_snap_chunk *c, uint64_t index,
		 const uint8_t *src, uint8_t *dst)
{
	uint8_t nonce[24], ad[GM_SEAL_AD_MAX], end[sizeof(struct gm_snap_end2)];
	size_t len, adlen;
	int ret;

	if (c->stored_len < GM_SNAP_TAG_BYTES)
		return -EBADMSG;
	len = c->stored_len - GM_SNAP_TAG_BYTES;
	if (c->type == GM_SNAP_END) {
		if (len != sizeof(end))
			return -EBADMSG;
		dst = end;      /* no ciphertext; the tag covers the AD only */
	}
	adlen = gm_seal_ad(s, c, index, src, nonce, ad);
	if (c->type == GM_SNAP_END)
		len = 0;
	if (s->aead == GM_SNAP_AEAD_AES256GCM)
		ret = crypto_aead_aes256gcm_decrypt_detached_afternm(dst, NULL, src, len,
			c->stored_len - GM_SNAP_TAG_BYTES + src, ad, adlen, nonce, &s->aes);
	else
		ret = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(dst, NULL, src, len,
			c->stored_len - GM_SNAP_TAG_BYTES + src, ad, adlen, nonce, s->subkey);
	return ret ? -EBADMSG : 0;
}
