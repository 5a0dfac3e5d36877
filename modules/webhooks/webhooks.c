/* Webhook registrations: url, topics, a signing secret shown once. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "db.h"
#include "events.h"
#include "json.h"
#include "perm.h"
#include "resource.h"
#include "webhooks.h"

#define URL_MAX 2000

bool
webhooks_address_blocked(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
		return (a >> 24) == 127 || (a >> 24) == 10 || (a >> 24) == 0 ||
		       (a >> 20) == (172u << 4 | 1) || (a >> 16) == (192u << 8 | 168) ||
		       (a >> 16) == (169u << 8 | 254) || (a >> 22) == (100u << 2 | 1) ||
		       a == 0xffffffffu;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			struct sockaddr_in v4 = {.sin_family = AF_INET};
			memcpy(&v4.sin_addr, a->s6_addr + 12, 4);
			return webhooks_address_blocked((const struct sockaddr *)&v4);
		}
		return IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a) ||
		       IN6_IS_ADDR_LINKLOCAL(a) || (a->s6_addr[0] & 0xfe) == 0xfc;
	}
	return true;
}

/* http(s)://host[:port][/path]: no credentials, no fragment; a literal
 * address must not be internal unless webhook_allow_private (module.c). */
static bool
url_ok(struct tr_ctx *c, const char *url)
{
	const char *p, *host;
	size_t hlen;
	char hbuf[256];

	if (strncmp(url, "https://", 8) == 0)
		host = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
		host = url + 7;
	else {
		tr_problem_field(c, "url", "must start with https:// or http://");
		return false;
	}
	hlen = strcspn(host, ":/?#");
	if (hlen == 0 || hlen >= sizeof(hbuf) || strchr(url, '@') || strchr(url, '#') ||
	    strpbrk(url, " \t\r\n\\")) {
		tr_problem_field(c, "url", "must be an absolute URL with a host, no credentials");
		return false;
	}
	memcpy(hbuf, host, hlen);
	hbuf[hlen] = '\0';
	p = host + hlen;
	if (*p == ':') {
		long port = strtol(p + 1, NULL, 10);
		if (port < 1 || port > 65535) {
			tr_problem_field(c, "url", "has a bad port");
			return false;
		}
	}
	if (!tr_config_int("webhook_allow_private")) {
		struct sockaddr_in v4 = {.sin_family = AF_INET};
		if (strcmp(hbuf, "localhost") == 0 ||
		    (inet_pton(AF_INET, hbuf, &v4.sin_addr) == 1 &&
		     webhooks_address_blocked((struct sockaddr *)&v4))) {
			tr_problem_field(c, "url", "must not point at a local or private address");
			return false;
		}
	}
	return true;
}

/* topics: 1..n known topic names, each readable in full by the caller (a
 * webhook gets every record of its topics, so ":own" is not enough);
 * repeats are dropped. */
static bool
topics_ok(struct tr_ctx *c, bson_t *set)
{
	bson_iter_t it, arr;
	bson_t list = BSON_INITIALIZER;
	unsigned seen = 0;
	int n = 0;
	bool ok = false;

	if (!bson_iter_init_find(&it, set, "topics") || !bson_iter_recurse(&it, &arr))
		return true; /* not changed */
	while (bson_iter_next(&arr)) {
		uint32_t len = 0;
		const char *name = bson_iter_utf8(&arr, &len);
		char key[8];
		const char *k;
		bool own;
		int t = tr_topic_find(name, len);
		if (t < 0) {
			tr_problem_field(c, "topics", "names a topic that does not exist");
			goto out;
		}
		if (!tr_topic_may_read(c->req->principal.perms, t, &own) || own) {
			tr_problem(c, 403, "forbidden",
				   "you may not read every record of these topics");
			goto out;
		}
		if (seen & (1u << t))
			continue;
		seen |= 1u << t;
		bson_uint32_to_string((uint32_t)n++, &k, key, sizeof(key));
		BSON_APPEND_UTF8(&list, k, name);
	}
	if (n == 0) {
		tr_problem_field(c, "topics", "must name at least one topic");
		goto out;
	}
	tr_doc_remove(set, "topics");
	BSON_APPEND_ARRAY(set, "topics", &list);
	ok = true;
out:
	bson_destroy(&list);
	return ok;
}

/* A new webhook is active, gets its signing secret, and the tenant stays
 * within TR_MAX_SUBSCRIBERS of them. */
static bool
webhook_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	const char *url = tr_doc_str(set, "url");
	char secret[WEBHOOKS_SECRET_MAX];
	long long count;
	int rc;
	(void)e;

	if (url && !url_ok(c, url))
		return false;
	if (!topics_ok(c, set))
		return false;
	if (old) {
		bson_iter_t it;
		/* resumed: the failures before the pause no longer count */
		if (bson_iter_init_find(&it, set, "active") && BSON_ITER_HOLDS_BOOL(&it) &&
		    bson_iter_bool(&it)) {
			BSON_APPEND_NULL(set, "failing_since");
			BSON_APPEND_NULL(set, "disabled_at");
		}
		return true;
	}
	rc = tr_db_count(c->db, WEBHOOKS, NULL, &count);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		return false;
	}
	if (count >= TR_MAX_SUBSCRIBERS) {
		tr_problem(c, 409, "conflict", "a tenant may have at most 10 webhooks");
		return false;
	}
	if (!bson_has_field(set, "active"))
		BSON_APPEND_BOOL(set, "active", true);
	if (!bson_has_field(set, "ordered"))
		BSON_APPEND_BOOL(set, "ordered", false);
	webhooks_secret_new(secret);
	BSON_APPEND_UTF8(set, "_secret", secret);
	sodium_memzero(secret, sizeof(secret));
	return true;
}

/* The secret is in the create's answer only. */
static void
webhook_created(struct tr_ctx *c, const bson_t *stored, bson_t *answer)
{
	const char *secret = tr_doc_str(stored, "_secret");
	(void)c;

	if (secret)
		BSON_APPEND_UTF8(answer, "secret", secret);
}

static const char *const sorts[] = {"-created_at", "created_at", NULL};

static const struct tr_field fields[] = {
    {"url", TR_K_LINE, TR_F_REQUIRED, 10, URL_MAX, NULL, NULL},
    {"topics", TR_K_STRINGS, TR_F_REQUIRED, 0, TR_MAX_SUBSCRIBERS, NULL, NULL},
    {"description", TR_K_LINE, TR_F_NULLABLE, 0, 200, NULL, NULL},
    {"active", TR_K_BOOL, TR_F_FILTER, 0, 0, NULL, NULL},
    {"ordered", TR_K_BOOL, 0, 0, 0, NULL, NULL},
    {"failing_since", TR_K_TIME, TR_F_SERVER | TR_F_NULLABLE, 0, 0, NULL, NULL},
    {"secret_rotated_at", TR_K_TIME, TR_F_SERVER | TR_F_NULLABLE, 0, 0, NULL, NULL},
    {"disabled_at", TR_K_TIME, TR_F_SERVER | TR_F_NULLABLE, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

const struct tr_resource webhooks_resource = {
    .name = "webhook",
    .coll = WEBHOOKS,
    .path = "/v1/webhooks",
    .read = "system.webhooks.read",
    .write = "system.webhooks.write",
    .about =
	"An endpoint that receives the tenant's events of some topics, signed to the "
	"Standard Webhooks spec with a secret shown once; active false pauses it (events "
	"are logged as skipped); ordered true delivers its events one at a time in event order "
	"(a later event waits while an earlier one is pending or retrying); failing_since: failing "
	"without a success since; "
	"disabled_at: paused by the server after webhook_disable_after_ms of failures.",
    .fields = fields,
    .sorts = sorts,
    .hook = webhook_hook,
    .created = webhook_created,
    .deletable = true,
};

/* ---- the event sink: every webhook on the topic, active or paused ---- */

struct found {
	char (*ids)[25];
	bool *ordered;
	int n, max;
};

static int
collect(void *arg, const bson_t *hook)
{
	struct found *f = arg;
	bson_iter_t it;

	if (f->n == f->max)
		return 1; /* enough: stop */
	if (bson_iter_init_find(&it, hook, "id") && BSON_ITER_HOLDS_UTF8(&it) &&
	    tr_is_object_id(bson_iter_utf8(&it, NULL))) {
		f->ordered[f->n] = webhooks_is_ordered(hook);
		snprintf(f->ids[f->n++], 25, "%s", bson_iter_utf8(&it, NULL));
	}
	return 0;
}

bool
webhooks_is_ordered(const bson_t *hook)
{
	bson_iter_t it;

	return bson_iter_init_find(&it, hook, "ordered") && BSON_ITER_HOLDS_BOOL(&it) &&
	       bson_iter_bool(&it);
}

int
webhooks_subscribers(struct tr_db *db, const char *topic, char (*ids)[25], bool *ordered, int max)
{
	bson_t filter = BSON_INITIALIZER;
	struct found f = {ids, ordered, 0, max};
	int rc;

	/* paused ones too: their deliveries are logged as skipped */
	BSON_APPEND_UTF8(&filter, "topics", topic);
	rc = tr_db_each(db, WEBHOOKS, &filter, collect, &f);
	bson_destroy(&filter);
	return rc < 0 ? rc : f.n;
}
