/* Standard Webhooks signing (https://www.standardwebhooks.com): secrets
 * "whsec_<base64 of the key bytes>", message ids stable per event and
 * endpoint, and "v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>"
 * signatures. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "webhooks.h"

#define SECRET_BYTES 24
#define KEY_MAX 64

void
webhooks_secret_new(char out[WEBHOOKS_SECRET_MAX])
{
	unsigned char raw[SECRET_BYTES];

	randombytes_buf(raw, sizeof(raw));
	memcpy(out, "whsec_", 6);
	sodium_bin2base64(out + 6, WEBHOOKS_SECRET_MAX - 6, raw, sizeof(raw),
			  sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(raw, sizeof(raw));
}

void
webhooks_message_id(const char *event_id, const char *hook_id, char out[WEBHOOKS_MSGID_MAX])
{
	unsigned char h[16];
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)event_id, strlen(event_id));
	crypto_generichash_update(&st, (const unsigned char *)":", 1);
	crypto_generichash_update(&st, (const unsigned char *)hook_id, strlen(hook_id));
	crypto_generichash_final(&st, h, sizeof(h));
	memcpy(out, "msg_", 4);
	sodium_bin2hex(out + 4, WEBHOOKS_MSGID_MAX - 4, h, sizeof(h));
}

/* The key bytes of a secret. Secrets made before Standard Webhooks were
 * "whsec_<48 hex>": hex digits are base64 too, so they decode the same
 * way here and in any Standard Webhooks library. */
static int
secret_key(const char *secret, unsigned char *key, size_t *klen)
{
	const char *b64 = strncmp(secret, "whsec_", 6) == 0 ? secret + 6 : secret;

	return sodium_base642bin(key, KEY_MAX, b64, strlen(b64), NULL, klen, NULL,
				 sodium_base64_VARIANT_ORIGINAL);
}

int
webhooks_sign(const char *secret, const char *msg_id, long timestamp, const char *body, size_t blen,
	      char *out, size_t olen)
{
	unsigned char key[KEY_MAX], mac[crypto_auth_hmacsha256_BYTES];
	char head[128];
	size_t klen = 0;
	crypto_auth_hmacsha256_state st;

	if (secret_key(secret, key, &klen) != 0 || olen < 4)
		return -1;
	int hn = snprintf(head, sizeof(head), "%s.%ld.", msg_id, timestamp);
	crypto_auth_hmacsha256_init(&st, key, klen);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)head, (size_t)hn);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, blen);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(key, sizeof(key));
	memcpy(out, "v1,", 3);
	if (olen - 3 < sodium_base64_ENCODED_LEN(sizeof(mac), sodium_base64_VARIANT_ORIGINAL))
		return -1;
	sodium_bin2base64(out + 3, olen - 3, mac, sizeof(mac), sodium_base64_VARIANT_ORIGINAL);
	return 0;
}
