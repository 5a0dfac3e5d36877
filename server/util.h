/* Small helpers shared by every area: time, ids, encodings. Pure functions,
 * safe on any thread. */
#ifndef TR_UTIL_H
#define TR_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Error codes shared by all areas: 0 is success, these are negative. */
enum tr_err {
	TR_OK = 0,
	TR_ENOTFOUND = -1,    /* no such record (or another tenant's) */
	TR_EVERSION = -2,     /* If-Match named an older version */
	TR_EDUPLICATE = -3,   /* unique index says it exists */
	TR_EUNAVAILABLE = -4, /* MongoDB or Redis unreachable or too slow */
	TR_EINVALID = -5,     /* the caller's input is not acceptable */
	TR_EINTERNAL = -6,    /* a bug or an unexpected reply */
	TR_ENOMEM = -7,
	TR_ELIMIT = -8, /* a configured limit was hit */
	TR_EBUSY = -9,	/* another request is changing the record right now */
	TR_EGONE = -10, /* what was asked for is no longer kept (retention) */
};

const char *tr_strerror(int err);

/* Wall-clock milliseconds since the epoch. */
int64_t tr_now_ms(void);
/* Monotonic nanoseconds, for durations. */
uint64_t tr_mono_ns(void);

/* "2026-11-22T16:20:07.123Z" into buf (at least 25 bytes). */
void tr_format_time(int64_t ms, char *buf);

/* The UTC day of a time as "2026-11-22" into buf (at least 11 bytes). */
void tr_format_day(int64_t ms, char *buf);

/* True when s is exactly 24 lowercase or uppercase hex digits. */
bool tr_is_object_id(const char *s);

/* Fresh random id of 32 hex chars into buf (33 bytes). */
void tr_random_hex(char *buf, size_t nbytes);

/* base64url without padding. Encode returns a malloc'd string; decode writes
 * up to *len bytes into out and returns 0, or TR_EINVALID. */
char *tr_b64url_encode(const uint8_t *in, size_t len);
int tr_b64url_decode(const char *in, uint8_t *out, size_t *len);

/* Lowercase hex SHA-256 of data into hex (65 bytes). */
void tr_sha256_hex(const void *data, size_t len, char *hex);

/* Parses a decimal integer in [min, max]; 0 or TR_EINVALID. */
int tr_parse_int(const char *s, long long min, long long max, long long *out);

#endif
