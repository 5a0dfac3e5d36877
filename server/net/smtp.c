/* Outgoing mail through libcurl's SMTP (see smtp.h). A message is built
 * whole in memory (headers, then the bodies in base64) and handed to curl,
 * which speaks EHLO, STARTTLS, AUTH, MAIL FROM, RCPT TO and DATA. What the
 * server answered last is read from curl's debug stream (the lines it
 * received; the lines it sent, AUTH among them, are never looked at). */
#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "kv.h"
#include "smtp.h"
#include "util.h"

/* Bytes of subject per RFC 2047 encoded word: 45 raw bytes make 60 of
 * base64, and with "=?UTF-8?B?" and "?=" the word stays under 75. */
#define WORD_RAW 45
#define B64_LINE 76 /* RFC 2045: base64 lines of at most 76 characters */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_start(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

bool
tr_smtp_configured(void)
{
	return tr_cfg && tr_cfg->smtp_url[0] && tr_cfg->smtp_from[0];
}

/* ---- the throttle ---- */

/* The next free sending slot of every process, in microseconds of Redis's
 * clock: KEYS[1] holds it, ARGV[1] is the spacing. Takes the slot (now,
 * or the next free one) and answers how long until it comes. */
static const char slot_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "local slot = math.max(now, nxt)\n"
    "redis.call('SET', KEYS[1], string.format('%d', slot + tonumber(ARGV[1])), 'PX', 60000)\n"
    "return slot - now\n";

/* Waits for this send's slot. The slots are spaced 1/smtp_rate seconds
 * apart for all processes, so n sends take at least (n-1)/smtp_rate. */
static int
throttle(void)
{
	char key[192], spacing[24];
	long long wait_us = 0;
	int rc;

	snprintf(key, sizeof(key), "smtp:%s:next", tr_cfg->mongo_db);
	snprintf(spacing, sizeof(spacing), "%d", 1000000 / tr_cfg->smtp_rate);
	const char *argv[] = {"EVAL", slot_lua, "1", key, spacing};
	rc = tr_kv_integer(&wait_us, 5, argv, NULL);
	if (rc != TR_OK)
		return rc;
	if (wait_us > 0) {
		struct timespec ts = {(time_t)(wait_us / 1000000),
				      (long)(wait_us % 1000000) * 1000};
		while (nanosleep(&ts, &ts) != 0)
			;
	}
	return TR_OK;
}

/* ---- the message ---- */

/* A growing buffer; ok turns false once memory ran out. */
struct text {
	char *data;
	size_t len, cap;
	bool ok;
};

static void
put(struct text *t, const char *s, size_t n)
{
	if (!t->ok)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t cap = (t->cap ? t->cap * 2 : 4096) + n;
		char *p = realloc(t->data, cap);
		if (!p) {
			t->ok = false;
			return;
		}
		t->data = p;
		t->cap = cap;
	}
	memcpy(t->data + t->len, s, n);
	t->len += n;
	t->data[t->len] = '\0';
}

static void
puts_(struct text *t, const char *s)
{
	put(t, s, strlen(s));
}

/* The base64 of n bytes, in lines of B64_LINE ending in CRLF. */
static void
put_base64(struct text *t, const unsigned char *s, size_t n)
{
	size_t len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
	char *b = malloc(len);

	if (!b) {
		t->ok = false;
		return;
	}
	sodium_bin2base64(b, len, s, n, sodium_base64_VARIANT_ORIGINAL);
	for (size_t at = 0, all = strlen(b); at < all; at += B64_LINE) {
		put(t, b + at, all - at < B64_LINE ? all - at : B64_LINE);
		puts_(t, "\r\n");
	}
	free(b);
}

/* The subject as RFC 2047 encoded words, folded one per line. A value's
 * CR, LF and other control characters become spaces first; words are cut
 * only between UTF-8 characters. */
static void
put_subject(struct text *t, const char *subject)
{
	size_t n = strlen(subject), at = 0;
	unsigned char *clean = malloc(n + 1);

	if (!clean) {
		t->ok = false;
		return;
	}
	for (size_t i = 0; i < n; i++)
		clean[i] = (unsigned char)subject[i] < 0x20 || subject[i] == 0x7f
			       ? ' '
			       : (unsigned char)subject[i];
	puts_(t, "Subject:");
	do {
		size_t take = n - at < WORD_RAW ? n - at : WORD_RAW;
		char b64[sodium_base64_ENCODED_LEN(WORD_RAW, sodium_base64_VARIANT_ORIGINAL)];
		/* never end a word inside a character: back off continuation bytes */
		while (at + take < n && take > 1 && (clean[at + take] & 0xc0) == 0x80)
			take--;
		sodium_bin2base64(b64, sizeof(b64), clean + at, take,
				  sodium_base64_VARIANT_ORIGINAL);
		puts_(t, at ? "\r\n =?UTF-8?B?" : " =?UTF-8?B?");
		puts_(t, b64);
		puts_(t, "?=");
		at += take;
	} while (at < n);
	puts_(t, "\r\n");
	free(clean);
}

static void
put_part(struct text *t, const char *type, const char *body)
{
	puts_(t, "Content-Type: ");
	puts_(t, type);
	puts_(t, "; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	put_base64(t, (const unsigned char *)body, strlen(body));
}

/* The whole message: headers, then the text body, or both bodies as
 * multipart/alternative. */
static void
build(struct text *t, const struct tr_mail *m)
{
	char date[64], boundary[48];
	unsigned char raw[12];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	puts_(t, "Date: ");
	puts_(t, date);
	puts_(t, "\r\nFrom: ");
	puts_(t, tr_cfg->smtp_from);
	puts_(t, "\r\nTo: ");
	puts_(t, m->to);
	puts_(t, "\r\n");
	if (m->message_id) {
		const char *at = strchr(tr_cfg->smtp_from, '@');
		puts_(t, "Message-ID: <");
		puts_(t, m->message_id);
		puts_(t, at ? at : "@trellis.invalid");
		puts_(t, ">\r\n");
	}
	put_subject(t, m->subject);
	if (m->unsubscribe_url) {
		/* RFC 8058: a one-click POST to the url unsubscribes */
		puts_(t, "List-Unsubscribe: <");
		puts_(t, m->unsubscribe_url);
		puts_(t, ">\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
	}
	puts_(t, "MIME-Version: 1.0\r\n");
	if (!m->html) {
		put_part(t, "text/plain", m->text);
		return;
	}
	randombytes_buf(raw, sizeof(raw));
	strcpy(boundary, "=_trellis_");
	sodium_bin2hex(boundary + 10, sizeof(boundary) - 10, raw, sizeof(raw));
	puts_(t, "Content-Type: multipart/alternative; boundary=\"");
	puts_(t, boundary);
	puts_(t, "\"\r\n\r\n--");
	puts_(t, boundary);
	puts_(t, "\r\n");
	put_part(t, "text/plain", m->text);
	puts_(t, "--");
	puts_(t, boundary);
	puts_(t, "\r\n");
	put_part(t, "text/html", m->html);
	puts_(t, "--");
	puts_(t, boundary);
	puts_(t, "--\r\n");
}

/* ---- the conversation ---- */

struct upload {
	const char *data;
	size_t len, at;
};

static size_t
read_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct upload *u = arg;
	size_t take = size * n < u->len - u->at ? size * n : u->len - u->at;

	memcpy(buf, u->data + u->at, take);
	u->at += take;
	return take;
}

/* The server's replies, from what curl received: the last one, and the
 * last refusal (4xx or 5xx: curl says QUIT after it, and 221 comes last). */
struct last_reply {
	char line[256];
	char refusal[256];
	bool data_started;  /* the server said 354: the message went out */
	bool data_answered; /* and then answered it */
};

static int
debug_cb(CURL *curl, curl_infotype type, char *data, size_t size, void *arg)
{
	struct last_reply *r = arg;
	size_t n = size;
	(void)curl;

	if (type != CURLINFO_HEADER_IN || size < 3)
		return 0;
	while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == '\r'))
		n--;
	if (n >= sizeof(r->line))
		n = sizeof(r->line) - 1;
	memcpy(r->line, data, n);
	r->line[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)r->line[i] < 0x20)
			r->line[i] = ' ';
	if (r->line[0] == '4' || r->line[0] == '5')
		memcpy(r->refusal, r->line, sizeof(r->refusal));
	if (r->data_started)
		r->data_answered = true;
	if (strncmp(r->line, "354", 3) == 0)
		r->data_started = true;
	return 0;
}

/* An address curl may put between < and > of RCPT TO: printable ASCII
 * without spaces, angle brackets or a second line. */
static bool
address_ok(const char *a)
{
	if (!*a || strlen(a) > 254 || !strchr(a, '@'))
		return false;
	for (; *a; a++)
		if ((unsigned char)*a <= 0x20 || (unsigned char)*a >= 0x7f || *a == '<' ||
		    *a == '>')
			return false;
	return true;
}

enum tr_smtp_outcome
tr_smtp_send(const struct tr_mail *m, char *reply, size_t replylen)
{
	struct text msg = {NULL, 0, 0, true};
	struct curl_slist *rcpt = NULL;
	struct last_reply last = {"", "", false, false};
	char from[272], to[272], errbuf[CURL_ERROR_SIZE] = "";
	enum tr_smtp_outcome out = TR_SMTP_TEMPORARY;
	long code = 0;
	CURL *curl = NULL;
	CURLcode cc;

	if (!tr_smtp_configured()) {
		snprintf(reply, replylen, "no SMTP server is configured (smtp_url, smtp_from)");
		return TR_SMTP_TEMPORARY;
	}
	if (!address_ok(m->to)) {
		snprintf(reply, replylen, "not an address mail can be sent to");
		return TR_SMTP_PERMANENT;
	}
	if (throttle() != TR_OK) {
		snprintf(reply, replylen, "the send throttle (Redis) is unavailable");
		return TR_SMTP_TEMPORARY;
	}
	pthread_once(&curl_once, curl_start);
	build(&msg, m);
	snprintf(from, sizeof(from), "<%s>", tr_cfg->smtp_from);
	snprintf(to, sizeof(to), "<%s>", m->to);
	if (!msg.ok || !(rcpt = curl_slist_append(NULL, to)) || !(curl = curl_easy_init())) {
		snprintf(reply, replylen, "out of memory");
		goto out;
	}
	struct upload up = {msg.data, msg.len, 0};
	curl_easy_setopt(curl, CURLOPT_URL, tr_cfg->smtp_url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpt);
	curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(curl, CURLOPT_READDATA, &up);
	curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)msg.len);
	if (strncmp(tr_cfg->smtp_url, "smtp://", 7) == 0)
		curl_easy_setopt(
		    curl, CURLOPT_USE_SSL,
		    strcmp(tr_cfg->smtp_starttls, "required") == 0   ? (long)CURLUSESSL_ALL
		    : strcmp(tr_cfg->smtp_starttls, "optional") == 0 ? (long)CURLUSESSL_TRY
								     : (long)CURLUSESSL_NONE);
	if (tr_cfg->smtp_user[0]) {
		curl_easy_setopt(curl, CURLOPT_USERNAME, tr_cfg->smtp_user);
		curl_easy_setopt(curl, CURLOPT_PASSWORD, tr_cfg->smtp_password);
	}
	if (tr_cfg->smtp_ca_file[0])
		curl_easy_setopt(curl, CURLOPT_CAINFO, tr_cfg->smtp_ca_file);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)tr_cfg->smtp_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)tr_cfg->smtp_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_VERBOSE, 1L); /* for the replies: debug_cb */
	curl_easy_setopt(curl, CURLOPT_DEBUGFUNCTION, debug_cb);
	curl_easy_setopt(curl, CURLOPT_DEBUGDATA, &last);
	cc = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	if (cc == CURLE_OK) {
		out = TR_SMTP_SENT;
		snprintf(reply, replylen, "%s", last.line[0] ? last.line : "250 accepted");
	} else if (last.data_started && !last.data_answered) {
		out = TR_SMTP_UNKNOWN;
		snprintf(reply, replylen, "no answer after the message was sent (%s)",
			 errbuf[0] ? errbuf : curl_easy_strerror(cc));
	} else {
		/* a refusal for good is the server's 5xx; anything else may pass */
		out = code >= 500 && code < 600 ? TR_SMTP_PERMANENT : TR_SMTP_TEMPORARY;
		if (code >= 400 && last.refusal[0])
			snprintf(reply, replylen, "%s", last.refusal);
		else
			snprintf(reply, replylen, "%s",
				 errbuf[0] ? errbuf : curl_easy_strerror(cc));
	}
out:
	if (curl)
		curl_easy_cleanup(curl);
	curl_slist_free_all(rcpt);
	free(msg.data);
	return out;
}
