#include "util.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *
tr_strerror(int err)
{
	switch (err) {
	case TR_OK:
		return "ok";
	case TR_ENOTFOUND:
		return "not found";
	case TR_EVERSION:
		return "version mismatch";
	case TR_EDUPLICATE:
		return "duplicate";
	case TR_EUNAVAILABLE:
		return "dependency unavailable";
	case TR_EINVALID:
		return "invalid";
	case TR_ENOMEM:
		return "out of memory";
	case TR_ELIMIT:
		return "limit reached";
	case TR_EBUSY:
		return "record busy";
	case TR_EGONE:
		return "no longer kept";
	default:
		return "internal error";
	}
}

int64_t
tr_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
tr_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
tr_format_time(int64_t ms, char *buf)
{
	time_t secs = (time_t)(ms / 1000);
	int milli = (int)(ms % 1000);
	struct tm tm;

	if (milli < 0) {
		milli += 1000;
		secs -= 1;
	}
	char tmp[64];
	gmtime_r(&secs, &tm);
	snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, milli);
	memcpy(buf, tmp, 24);
	buf[24] = '\0';
}

bool
tr_is_object_id(const char *s)
{
	size_t i;

	if (!s)
		return false;
	for (i = 0; i < 24; i++) {
		char c = s[i];
		bool hex =
		    (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
		if (!hex)
			return false;
	}
	return s[24] == '\0';
}

void
tr_random_hex(char *buf, size_t nbytes)
{
	uint8_t raw[64];

	if (nbytes > sizeof(raw))
		nbytes = sizeof(raw);
	randombytes_buf(raw, nbytes);
	sodium_bin2hex(buf, nbytes * 2 + 1, raw, nbytes);
}

char *
tr_b64url_encode(const uint8_t *in, size_t len)
{
	const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
	size_t cap = sodium_base64_encoded_len(len, variant);
	char *out = malloc(cap);

	if (!out)
		return NULL;
	sodium_bin2base64(out, cap, in, len, variant);
	return out;
}

int
tr_b64url_decode(const char *in, uint8_t *out, size_t *len)
{
	size_t got = 0;

	if (sodium_base642bin(out, *len, in, strlen(in), NULL, &got, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return TR_EINVALID;
	*len = got;
	return TR_OK;
}

void
tr_sha256_hex(const void *data, size_t len, char *hex)
{
	uint8_t digest[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(digest, data, len);
	sodium_bin2hex(hex, 65, digest, sizeof(digest));
}

int
tr_parse_int(const char *s, long long min, long long max, long long *out)
{
	char *end = NULL;
	long long v;

	if (!s || !*s)
		return TR_EINVALID;
	for (const char *p = s; *p; p++)
		if ((*p < '0' || *p > '9') && !(p == s && *p == '-'))
			return TR_EINVALID;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return TR_EINVALID;
	*out = v;
	return TR_OK;
}

void
tr_format_day(int64_t ms, char *buf)
{
	time_t t = (time_t)(ms / 1000 - (ms % 1000 < 0 ? 1 : 0));
	struct tm tm;

	char tmp[48];

	gmtime_r(&t, &tm);
	snprintf(tmp, sizeof(tmp), "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
	tmp[10] = '\0'; /* years of four digits: records are dated 0001..9999 */
	memcpy(buf, tmp, 11);
}
