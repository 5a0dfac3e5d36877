#include "rcluster.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* CRC16-CCITT as Redis Cluster uses it: polynomial 0x1021, initial 0, no
 * reflection, no final xor. */
static uint16_t
crc16(const char *buf, size_t len)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((uint16_t)(unsigned char)buf[i] << 8);
		for (int b = 0; b < 8; b++)
			crc =
			    (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

int
tr_rcl_keyslot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open) {
		size_t from = (size_t)(open - key) + 1;
		const char *close = memchr(key + from, '}', len - from);
		if (close && close > key + from)
			return crc16(key + from, (size_t)(close - (key + from))) &
			       (TR_RCL_SLOTS - 1);
	}
	return crc16(key, len) & (TR_RCL_SLOTS - 1);
}

static size_t
arg_len(const char *const *argv, const size_t *lens, int i)
{
	return lens ? lens[i] : strlen(argv[i]);
}

static bool
is(const char *const *argv, const size_t *lens, int i, const char *word)
{
	size_t n = strlen(word);
	return arg_len(argv, lens, i) == n && strncasecmp(argv[i], word, n) == 0;
}

static bool
is_any(const char *const *argv, const size_t *lens, int i, const char *const *words)
{
	for (; *words; words++)
		if (is(argv, lens, i, *words))
			return true;
	return false;
}

/* The common slot of argv[from..to) taking every step-th, or TR_RCL_CROSS. */
static int
slot_of(const char *const *argv, const size_t *lens, int from, int to, int step)
{
	int slot = TR_RCL_ANY;

	for (int i = from; i < to; i += step) {
		int s = tr_rcl_keyslot(argv[i], arg_len(argv, lens, i));
		if (slot != TR_RCL_ANY && s != slot)
			return TR_RCL_CROSS;
		slot = s;
	}
	return slot;
}

int
tr_rcl_command_slot(int argc, const char *const *argv, const size_t *lens)
{
	static const char *const keyless[] = {
	    "PING",	   "INFO",    "TIME",	  "SCRIPT", "AUTH", "SELECT",	"CLUSTER",
	    "CLIENT",	   "CONFIG",  "DBSIZE",	  "HELLO",  "ECHO", "PUBLISH",	"SUBSCRIBE",
	    "UNSUBSCRIBE", "FLUSHDB", "FLUSHALL", "SCAN",   "KEYS", "READONLY", "COMMAND",
	    "MULTI",	   "EXEC",    "WAIT",	  "QUIT",   NULL};
	static const char *const all_keys[] = {
	    "DEL",    "UNLINK", "EXISTS",  "MGET",	 "TOUCH",	 "WATCH", "SINTER",
	    "SUNION", "SDIFF",	"PFCOUNT", "SSUBSCRIBE", "SUNSUBSCRIBE", NULL};
	static const char *const two_keys[] = {"RENAME",    "RENAMENX", "SMOVE", "LMOVE",
					       "RPOPLPUSH", "COPY",	NULL};

	if (argc < 1 || is_any(argv, lens, 0, keyless))
		return TR_RCL_ANY;
	if (argc < 2)
		return TR_RCL_ANY;
	if (is(argv, lens, 0, "EVAL") || is(argv, lens, 0, "EVALSHA") ||
	    is(argv, lens, 0, "EVAL_RO") || is(argv, lens, 0, "EVALSHA_RO") ||
	    is(argv, lens, 0, "FCALL")) {
		if (argc < 3)
			return TR_RCL_ANY;
		char n[16];
		size_t l = arg_len(argv, lens, 2);
		if (l >= sizeof(n))
			return TR_RCL_ANY;
		memcpy(n, argv[2], l);
		n[l] = '\0';
		long nkeys = strtol(n, NULL, 10);
		if (nkeys <= 0 || nkeys > argc - 3)
			return TR_RCL_ANY;
		return slot_of(argv, lens, 3, 3 + (int)nkeys, 1);
	}
	if (is(argv, lens, 0, "XREAD") || is(argv, lens, 0, "XREADGROUP")) {
		for (int i = 1; i < argc; i++)
			if (is(argv, lens, i, "STREAMS")) {
				int n = (argc - i - 1) / 2;
				return n ? slot_of(argv, lens, i + 1, i + 1 + n, 1) : TR_RCL_ANY;
			}
		return TR_RCL_ANY;
	}
	if (is(argv, lens, 0, "XGROUP") || is(argv, lens, 0, "XINFO") ||
	    is(argv, lens, 0, "OBJECT"))
		return argc > 2 ? slot_of(argv, lens, 2, 3, 1) : TR_RCL_ANY;
	if (is_any(argv, lens, 0, all_keys))
		return slot_of(argv, lens, 1, argc, 1);
	if (is_any(argv, lens, 0, two_keys))
		return slot_of(argv, lens, 1, argc < 3 ? argc : 3, 1);
	if (is(argv, lens, 0, "MSET") || is(argv, lens, 0, "MSETNX"))
		return slot_of(argv, lens, 1, argc, 2);
	return slot_of(argv, lens, 1, 2, 1);
}

enum tr_rcl_redirect
tr_rcl_redirect(const char *err, size_t len, int *slot, char *host, size_t hostlen, int *port)
{
	enum tr_rcl_redirect kind;
	char buf[160], *p, *colon, *end;

	if (len >= sizeof(buf))
		return TR_RCL_NOT_REDIRECT;
	memcpy(buf, err, len);
	buf[len] = '\0';
	if (strncmp(buf, "MOVED ", 6) == 0)
		kind = TR_RCL_MOVED, p = buf + 6;
	else if (strncmp(buf, "ASK ", 4) == 0)
		kind = TR_RCL_ASK, p = buf + 4;
	else
		return TR_RCL_NOT_REDIRECT;
	long s = strtol(p, &end, 10);
	if (end == p || *end != ' ' || s < 0 || s >= TR_RCL_SLOTS)
		return TR_RCL_NOT_REDIRECT;
	p = end + 1;
	colon = strrchr(p, ':');
	if (!colon)
		return TR_RCL_NOT_REDIRECT;
	long prt = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || prt <= 0 || prt > 65535 ||
	    (size_t)(colon - p) >= hostlen)
		return TR_RCL_NOT_REDIRECT;
	memcpy(host, p, (size_t)(colon - p));
	host[colon - p] = '\0';
	*slot = (int)s;
	*port = (int)prt;
	return kind;
}

static int
node_index(struct tr_rcl_map *m, const char *host, size_t hlen, int port)
{
	for (int i = 0; i < m->nnodes; i++)
		if (m->nodes[i].port == port && strlen(m->nodes[i].host) == hlen &&
		    memcmp(m->nodes[i].host, host, hlen) == 0)
			return i;
	if (m->nnodes == TR_RCL_MAX_NODES || hlen >= sizeof(m->nodes[0].host))
		return -1;
	memcpy(m->nodes[m->nnodes].host, host, hlen);
	m->nodes[m->nnodes].host[hlen] = '\0';
	m->nodes[m->nnodes].port = port;
	return m->nnodes++;
}

int
tr_rcl_map_parse(struct tr_rcl_map *m, const redisReply *r, const char *default_host)
{
	m->nnodes = 0;
	memset(m->owner, TR_RCL_NO_NODE, sizeof(m->owner));
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return -1;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *range = r->element[i];
		if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
		    range->element[0]->type != REDIS_REPLY_INTEGER ||
		    range->element[1]->type != REDIS_REPLY_INTEGER ||
		    range->element[2]->type != REDIS_REPLY_ARRAY ||
		    range->element[2]->elements < 2 ||
		    range->element[2]->element[0]->type != REDIS_REPLY_STRING ||
		    range->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
			return -1;
		long long from = range->element[0]->integer, to = range->element[1]->integer;
		const redisReply *master = range->element[2];
		const char *host = master->element[0]->str;
		size_t hlen = master->element[0]->len;
		if (hlen == 0 || (hlen == 1 && host[0] == '?')) {
			host = default_host;
			hlen = strlen(default_host);
		}
		if (from < 0 || to >= TR_RCL_SLOTS || from > to)
			return -1;
		int port = (int)master->element[1]->integer;
		int n = node_index(m, host, hlen, port);
		if (n < 0 || port <= 0 || port > 65535)
			return -1;
		for (long long s = from; s <= to; s++)
			m->owner[s] = (uint8_t)n;
	}
	return 0;
}

int
tr_rcl_map_node(const struct tr_rcl_map *m, int slot)
{
	if (slot < 0 || slot >= TR_RCL_SLOTS || m->owner[slot] == TR_RCL_NO_NODE)
		return -1;
	return m->owner[slot];
}

void
tr_rcl_slot_tags(char tags[TR_RCL_SLOTS][TR_RCL_TAG_SIZE])
{
	static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	const int base = (int)sizeof(alphabet) - 1;
	int left = TR_RCL_SLOTS;

	for (int s = 0; s < TR_RCL_SLOTS; s++)
		tags[s][0] = '\0';
	/* Three characters leave 85 slots uncovered; the first four-character
	 * strings fill those (the unit test checks every slot has its tag). */
	for (int len = 1; len <= TR_RCL_TAG_SIZE - 1 && left; len++) {
		int count = 1;
		for (int i = 0; i < len; i++)
			count *= base;
		for (int n = 0; n < count && left; n++) {
			char tag[TR_RCL_TAG_SIZE];
			for (int i = len - 1, v = n; i >= 0; i--, v /= base)
				tag[i] = alphabet[v % base];
			tag[len] = '\0';
			int slot = crc16(tag, (size_t)len) & (TR_RCL_SLOTS - 1);
			if (tags[slot][0])
				continue;
			memcpy(tags[slot], tag, (size_t)len + 1);
			left--;
		}
	}
}
