/* Mailings (/v1/crm/mailings): a template sent to the contacts of a client
 * group, once or on a repeating schedule, through the configured SMTP
 * server (smtp.h), one job per recipient.
 *
 * A mailing's run n is a job (crm.mailings.run) due at its time. It reads
 * the group's clients and their contacts with an email, writes one
 * recipient record per address (its id derived from mailing, run and
 * address, so a run made twice writes nothing new and an address is sent
 * to once per run), and enqueues one send job (crm.mailings.send) per
 * recipient. The run that moves the mailing's `runs` to n schedules run
 * n+1 when the mailing repeats.
 *
 * A send claims its recipient with a version-checked write (status queued
 * -> sending): of jobs racing for it, in any process, exactly one wins
 * and the others stop. The winner sends and records sent, failed (a 5xx
 * reply, or out of attempts) or queued again for the job's retry (a 4xx
 * reply, no connection, a drop). Delivery is at most once: a process that
 * dies between the server's acceptance and the record leaves the recipient
 * in `sending`; the next look at it after the claim went stale records
 * `interrupted` and does not send again, since a second copy in a
 * customer's inbox cannot be taken back while a missing one shows here.
 * A connection that ends after the message went out but before the
 * server answered it is `interrupted` for the same reason.
 *
 * Every message carries an unsubscribe link (RFC 8058 one-click): the
 * recipient's id and 32 random bytes. Following it adds the address to the
 * tenant's unsubscribe list (/v1/crm/unsubscribes), which every later send
 * checks. A sent message is recorded on the client's timeline as an
 * `email` interaction. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crm.h"
#include "db.h"
#include "jobs.h"
#include "json.h"
#include "log.h"
#include "smtp.h"

#define MAILINGS "crm_mailings"
#define RECIPIENTS "crm_mailing_recipients"
#define UNSUBSCRIBES "crm_unsubscribes"
#define RUN_QUEUE "crm.mailings.run"
#define SEND_QUEUE "crm.mailings.send"
#define TOKEN_RANDOM 32	 /* random bytes of an unsubscribe token */
#define TOKEN_MAX 96	 /* 24 hex of the recipient's id + 43 of base64url */
#define BATCH 100	 /* recipient records written per command */
#define REPLY_MAX 300	 /* bytes of an SMTP reply kept */
#define SUMMARY_MAX 1000 /* bytes of a timeline interaction's summary */

/* ---- templates ---- */

/* The placeholders a template may use, {{name}}; values of a recipient in
 * the same order (struct values). */
static const char *const placeholders[] = {
    "client.name",     "contact.name", "contact.email", "contact.phone", "contact.position",
    "unsubscribe_url", NULL,
};
#define NPLACEHOLDERS 6

struct values {
	const char *v[NPLACEHOLDERS];
};

static int
placeholder_index(const char *name, size_t len)
{
	for (int i = 0; placeholders[i]; i++)
		if (strlen(placeholders[i]) == len && memcmp(placeholders[i], name, len) == 0)
			return i;
	return -1;
}

/* The placeholder between {{ and }} at s (spaces inside allowed): its
 * name's start and length, and where the text goes on. False when the
 * braces do not close. */
static bool
next_placeholder(const char *s, const char **name, size_t *len, const char **after)
{
	const char *end = strstr(s + 2, "}}");

	if (!end)
		return false;
	*name = s + 2;
	while (*name < end && **name == ' ')
		(*name)++;
	*len = (size_t)(end - *name);
	while (*len > 0 && (*name)[*len - 1] == ' ')
		(*len)--;
	*after = end + 2;
	return true;
}

/* Checks a template field of the body: every {{...}} names a known
 * placeholder. Adds a 422 naming the unknown ones. */
static bool
template_ok(struct tr_ctx *c, const char *field)
{
	const char *s = tr_body_str(c, field), *p, *name, *after;
	size_t len;
	char *msg;

	if (!s)
		return true;
	for (p = strstr(s, "{{"); p; p = strstr(after, "{{")) {
		if (!next_placeholder(p, &name, &len, &after)) {
			tr_problem_field(c, field,
					 "a placeholder opened with {{ is not closed with }}");
			return false;
		}
		if (placeholder_index(name, len) < 0) {
			msg = tr_arena_alloc(c->req->arena, 400);
			snprintf(msg, 400,
				 "unknown placeholder {{%.*s}}; known: client.name, contact.name, "
				 "contact.email, contact.phone, contact.position, unsubscribe_url",
				 (int)(len > 60 ? 60 : len), name);
			tr_problem_field(c, field, msg);
			return false;
		}
	}
	return true;
}

/* Appends s, HTML-escaped when html. */
static void
put_value(bson_string_t *out, const char *s, bool html)
{
	if (!html) {
		bson_string_append(out, s);
		return;
	}
	for (; *s; s++) {
		switch (*s) {
		case '&':
			bson_string_append(out, "&amp;");
			break;
		case '<':
			bson_string_append(out, "&lt;");
			break;
		case '>':
			bson_string_append(out, "&gt;");
			break;
		case '"':
			bson_string_append(out, "&quot;");
			break;
		case '\'':
			bson_string_append(out, "&#39;");
			break;
		default:
			bson_string_append_c(out, *s);
		}
	}
}

/* The template with its placeholders replaced (escaped for HTML when
 * html); malloc'd. A placeholder the template check would refuse stays
 * as written. */
static char *
render(const char *tpl, const struct values *v, bool html)
{
	bson_string_t *out = bson_string_new(NULL);
	const char *p = tpl, *open, *name, *after;
	size_t len;
	int i;

	while ((open = strstr(p, "{{")) && next_placeholder(open, &name, &len, &after)) {
		bson_string_append_printf(out, "%.*s", (int)(open - p), p);
		i = placeholder_index(name, len);
		if (i >= 0)
			put_value(out, v->v[i] ? v->v[i] : "", html);
		else
			bson_string_append_printf(out, "%.*s", (int)(after - open), open);
		p = after;
	}
	bson_string_append(out, p);
	return bson_string_free(out, false);
}

/* ---- the mailing ---- */

static const char *const statuses[] = {"scheduled", "paused", "cancelled", "done", NULL};
static const char *const units[] = {"second", "minute", "hour", "day", "week", "month", NULL};
static const char *const sorts[] = {"-created_at", "created_at", "name", NULL};

static const struct tr_field mailing_fields[] = {
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"subject", TR_K_LINE, TR_F_REQUIRED, 1, 300, NULL, NULL},
    {"text", TR_K_TEXT, TR_F_REQUIRED, 1, 100000, NULL, NULL},
    {"html", TR_K_TEXT, TR_F_NULLABLE, 1, 200000, NULL, NULL},
    {"group_id", TR_K_REF, TR_F_REQUIRED | TR_F_FILTER | TR_F_FIXED, 0, 0, NULL, "crm_groups"},
    {"send_at", TR_K_TIME, TR_F_FIXED, 0, 0, NULL, NULL},
    {"repeat", TR_K_OBJECT, TR_F_FIXED | TR_F_NULLABLE, 0, 0, NULL, NULL},
    {"status", TR_K_ENUM, TR_F_SERVER | TR_F_FILTER, 0, 0, statuses, NULL},
    {"runs", TR_K_INT, TR_F_SERVER, 0, 1000000000, NULL, NULL},
    {"next_run_at", TR_K_TIME, TR_F_SERVER | TR_F_NULLABLE, 0, 0, NULL, NULL},
    {"user_id", TR_K_REF, TR_F_SERVER | TR_F_NULLABLE, 0, 0, NULL, "users"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static int64_t
unit_ms(const char *unit)
{
	static const int64_t ms[] = {1000, 60000, 3600000, 86400000, 604800000};
	for (int i = 0; i < 5; i++)
		if (strcmp(units[i], unit) == 0)
			return ms[i];
	return 0; /* month: by the calendar */
}

/* repeat: null (once) or {"unit": "second|minute|hour|day|week|month",
 * "every": 1..1000}, at least mailing_repeat_min_s apart. */
static bool
repeat_ok(struct tr_ctx *c, bson_t *set)
{
	bson_iter_t it, r;
	const char *unit = NULL;
	int64_t every = 0;
	bool ok = true;
	bson_t copy;

	if (!bson_iter_init_find(&it, &c->req->body, "repeat") || BSON_ITER_HOLDS_NULL(&it))
		return true;
	bson_iter_recurse(&it, &r);
	while (bson_iter_next(&r)) {
		if (strcmp(bson_iter_key(&r), "unit") == 0 && BSON_ITER_HOLDS_UTF8(&r))
			unit = bson_iter_utf8(&r, NULL);
		else if (strcmp(bson_iter_key(&r), "every") == 0 &&
			 (BSON_ITER_HOLDS_INT32(&r) || BSON_ITER_HOLDS_INT64(&r)))
			every = bson_iter_as_int64(&r);
		else
			ok = false;
	}
	bool known = false;
	for (int i = 0; unit && units[i]; i++)
		known |= strcmp(units[i], unit) == 0;
	if (!ok || !known || every < 1 || every > 1000) {
		tr_problem_field(
		    c, "repeat",
		    "must be null or {\"unit\": \"second|minute|hour|day|week|month\", "
		    "\"every\": 1..1000}");
		return false;
	}
	if (unit_ms(unit) > 0 &&
	    unit_ms(unit) * every < tr_config_int("mailing_repeat_min_s") * 1000) {
		char *m = tr_arena_alloc(c->req->arena, 96);
		snprintf(m, 96, "repeats at most every %ld seconds",
			 tr_config_int("mailing_repeat_min_s"));
		tr_problem_field(c, "repeat", m);
		return false;
	}
	tr_doc_remove(set, "repeat");
	BSON_APPEND_DOCUMENT_BEGIN(set, "repeat", &copy);
	BSON_APPEND_UTF8(&copy, "unit", tr_arena_strdup(c->req->arena, unit));
	BSON_APPEND_INT32(&copy, "every", (int32_t)every);
	bson_append_document_end(set, &copy);
	return true;
}

static bool
mailing_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	bson_iter_t it;
	int64_t at;
	(void)e;

	/* each template checked, so one 422 names every bad placeholder */
	bool ok = template_ok(c, "subject");
	ok &= template_ok(c, "text");
	ok &= template_ok(c, "html");
	if (!ok || !repeat_ok(c, set))
		return false;
	if (old) {
		const char *status = tr_doc_str(old, "status");
		if (status && strcmp(status, "cancelled") == 0) {
			tr_problem(c, 409, "conflict", "a cancelled mailing is not changed");
			return false;
		}
		return true;
	}
	if (bson_iter_init_find(&it, set, "send_at") && BSON_ITER_HOLDS_DATE_TIME(&it))
		at = bson_iter_date_time(&it);
	else {
		at = tr_now_ms();
		BSON_APPEND_DATE_TIME(set, "send_at", at);
	}
	if (!bson_has_field(set, "repeat"))
		BSON_APPEND_NULL(set, "repeat");
	if (!bson_has_field(set, "html"))
		BSON_APPEND_NULL(set, "html");
	BSON_APPEND_UTF8(set, "status", "scheduled");
	BSON_APPEND_INT32(set, "runs", 0);
	BSON_APPEND_DATE_TIME(set, "next_run_at", at);
	if (c->req->principal.user_hex[0])
		BSON_APPEND_OID(set, "user_id", &c->req->principal.user_id);
	else
		BSON_APPEND_NULL(set, "user_id");
	return true;
}

/* Enqueues run n of a mailing at run_at. */
static int
enqueue_run(const char *tenant_hex, const char *mailing_hex, int64_t run, int64_t run_at)
{
	char payload[96];

	snprintf(payload, sizeof(payload), "{\"mailing_id\":\"%s\",\"run\":%lld}", mailing_hex,
		 (long long)run);
	return tr_job_enqueue(RUN_QUEUE, tenant_hex, payload, run_at, NULL);
}

static void
mailing_saved(struct tr_ctx *c, const bson_t *stored, const bson_t *old)
{
	bson_oid_t id;
	char hex[25];
	bson_iter_t it;
	int64_t at = tr_now_ms();

	if (old || !tr_doc_oid(stored, "_id", &id))
		return;
	bson_oid_to_string(&id, hex);
	if (bson_iter_init_find(&it, stored, "next_run_at") && BSON_ITER_HOLDS_DATE_TIME(&it))
		at = bson_iter_date_time(&it);
	/* Redis answered the request's own check a moment ago; if it went
	 * away since, the mailing stays scheduled without its run: logged,
	 * and pausing and resuming it schedules the run again. */
	if (enqueue_run(c->req->principal.tenant_hex, hex, 1, at) != TR_OK)
		tr_error("crm: the first run of mailing %s could not be scheduled", hex);
}

const struct tr_resource crm_mailings = {
    .name = "mailing",
    .coll = MAILINGS,
    .path = "/v1/crm/mailings",
    .read = "crm.mailings.read",
    .write = "crm.mailings.write",
    .about = "A template ({{client.name}}, {{contact.name}}, {{contact.email}}, "
	     "{{contact.phone}}, {{contact.position}}, {{unsubscribe_url}}) mailed to the "
	     "contacts of a client group at send_at, and again every repeat; each recipient's "
	     "status at /recipients.",
    .fields = mailing_fields,
    .sorts = sorts,
    .hook = mailing_hook,
    .saved = mailing_saved,
};

/* ---- pausing, resuming, cancelling ---- */

/* Moves the mailing named in the path from one of `from` ("/"-separated)
 * to `to`; 409 from any other status. Replies with the mailing. *old gets
 * the mailing as it was (initialised either way). The mailing's own jobs
 * write it too (a run's count): a write that lost to one of them reads
 * the mailing again and retries, so the caller never sees their race. */
static bool
move(struct tr_ctx *c, const char *from, const char *to, bson_t *old)
{
	static const char *const none[] = {NULL};
	bson_t set = BSON_INITIALIZER, after = BSON_INITIALIZER;
	const char *status;
	char *msg, hex[25];
	bson_oid_t id;
	bool ok = false;
	int rc = TR_EVERSION;

	bson_init(old);
	if (!tr_body_only(c, none))
		goto out;
	BSON_APPEND_UTF8(&set, "status", to);
	for (int tries = 0; tries < 5 && (rc == TR_EVERSION || rc == TR_EBUSY); tries++) {
		bson_destroy(old);
		if (!tr_res_load(c, &crm_mailings, tr_param(c, 0), old)) /* initialises old */
			goto out;
		status = tr_doc_str(old, "status");
		if (!status || !strstr(from, status)) {
			msg = tr_arena_alloc(c->req->arena, 128);
			snprintf(msg, 128, "the mailing is %s; only a mailing that is %s can be %s",
				 status ? status : "unknown", from, to);
			tr_problem(c, 409, "conflict", msg);
			goto out;
		}
		tr_doc_oid(old, "_id", &id);
		bson_oid_to_string(&id, hex);
		bson_destroy(&after);
		rc = tr_db_update(c->db, MAILINGS, hex, tr_doc_int(old, "version", 0), &set, NULL,
				  &after);
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	tr_reply_resource(c, 200, &after);
	ok = true;
out:
	bson_destroy(&set);
	bson_destroy(&after);
	return ok;
}

void
crm_mailings_pause(struct tr_ctx *c)
{
	bson_t old;
	move(c, "scheduled", "paused", &old);
	bson_destroy(&old);
}

/* One waiting recipient of a cancelled mailing becomes cancelled, on its
 * version: a send job that claimed it first keeps it (and records what
 * the server said). */
static int
cancel_one(void *arg, const bson_t *recipient)
{
	struct tr_db *db = arg;
	const char *id = tr_doc_str(recipient, "id");
	bson_t set = BSON_INITIALIZER, after;
	int rc;

	if (!id) {
		bson_destroy(&set);
		return 0;
	}
	BSON_APPEND_UTF8(&set, "status", "cancelled");
	rc = tr_db_update(db, RECIPIENTS, id, tr_doc_int(recipient, "version", 0), &set, NULL,
			  &after);
	bson_destroy(&after);
	bson_destroy(&set);
	return rc == TR_OK || rc == TR_EVERSION || rc == TR_EBUSY || rc == TR_ENOTFOUND ? 0 : rc;
}

/* Cancelling stops what still waits, a done mailing's sends in progress
 * too (done: no run is left to make). It marks the waiting recipients, so
 * the list says so at once; a job that comes up for one later finds it
 * done. */
void
crm_mailings_cancel(struct tr_ctx *c)
{
	bson_t old, filter = BSON_INITIALIZER;
	bson_oid_t id;

	if (move(c, "scheduled/paused/done", "cancelled", &old) && tr_doc_oid(&old, "_id", &id)) {
		BSON_APPEND_OID(&filter, "mailing_id", &id);
		BSON_APPEND_UTF8(&filter, "status", "queued");
		/* the mailing is cancelled either way: the jobs finish the rest */
		if (tr_db_each(c->db, RECIPIENTS, &filter, cancel_one, c->db) != TR_OK)
			tr_error(
			    "crm: a cancelled mailing's waiting recipients were not all marked");
	}
	bson_destroy(&old);
	bson_destroy(&filter);
}

static int
requeue_one(void *arg, const bson_t *recipient)
{
	const char *tenant = arg, *id = tr_doc_str(recipient, "id");
	char payload[64];

	if (!id)
		return 0;
	snprintf(payload, sizeof(payload), "{\"recipient_id\":\"%s\"}", id);
	return tr_job_enqueue(SEND_QUEUE, tenant, payload, 0, NULL) == TR_OK ? 0 : TR_EUNAVAILABLE;
}

/* Resuming sends what waited (its queued recipients) and schedules the run
 * that was due next. */
void
crm_mailings_resume(struct tr_ctx *c)
{
	bson_t old, filter = BSON_INITIALIZER;
	bson_iter_t it;
	bson_oid_t id;
	char hex[25];
	int64_t runs, at = tr_now_ms();
	const char *tenant = c->req->principal.tenant_hex;

	if (!move(c, "paused", "scheduled", &old))
		goto out;
	tr_doc_oid(&old, "_id", &id);
	bson_oid_to_string(&id, hex);
	runs = tr_doc_int(&old, "runs", 0);
	if (bson_iter_init_find(&it, &old, "next_run_at") && BSON_ITER_HOLDS_DATE_TIME(&it) &&
	    bson_iter_date_time(&it) > at)
		at = bson_iter_date_time(&it);
	bson_iter_init_find(&it, &old, "repeat");
	if ((runs == 0 || BSON_ITER_HOLDS_DOCUMENT(&it)) && enqueue_run(tenant, hex, runs + 1, at))
		tr_error("crm: mailing %s resumed without its next run", hex);
	BSON_APPEND_OID(&filter, "mailing_id", &id);
	BSON_APPEND_UTF8(&filter, "status", "queued");
	if (tr_db_each(c->db, RECIPIENTS, &filter, requeue_one, (void *)tenant) != TR_OK)
		tr_error("crm: mailing %s resumed without all its queued recipients", hex);
out:
	bson_destroy(&old);
	bson_destroy(&filter);
}

/* ---- recipients ---- */

const char *const crm_recipient_sorts[] = {"email", "-updated_at", "created_at", NULL};

/* GET /v1/crm/mailings/{id}/recipients: every run's recipients and what
 * became of each, ?status= and ?run= narrowing. */
void
crm_mailings_recipients(struct tr_ctx *c)
{
	static const char *const known[] = {
	    "queued",	 "sending",	"sent", "failed", "skipped_unsubscribed",
	    "cancelled", "interrupted", NULL};
	bson_t mailing, filter = BSON_INITIALIZER;
	const char *status = tr_query(c, "status"), *run = tr_query(c, "run");
	bson_oid_t id;
	bool ok = !status;

	for (int i = 0; status && known[i]; i++)
		ok |= strcmp(known[i], status) == 0;
	if (!ok) {
		tr_problem_field(c, "status", "must be one of the recipient statuses");
		bson_init(&mailing);
		goto out;
	}
	if (run) {
		char *end;
		long n = strtol(run, &end, 10);
		if (*end || end == run || n < 1 || n > 1000000000) {
			tr_problem_field(c, "run", "must be a run number (1, 2, ...)");
			bson_init(&mailing);
			goto out;
		}
		BSON_APPEND_INT32(&filter, "run", (int32_t)n);
	}
	if (!tr_res_load(c, &crm_mailings, tr_param(c, 0), &mailing))
		goto out;
	tr_doc_oid(&mailing, "_id", &id);
	BSON_APPEND_OID(&filter, "mailing_id", &id);
	if (status)
		BSON_APPEND_UTF8(&filter, "status", status);
	tr_list_reply_as(c, RECIPIENTS, &filter, crm_recipient_sorts, true);
out:
	bson_destroy(&mailing);
	bson_destroy(&filter);
}

/* ---- the unsubscribe list ---- */

static const char *const unsubscribe_sorts[] = {"-created_at", "created_at", "email", NULL};
static const char *const unsubscribe_sources[] = {"link", "user", NULL};

static const struct tr_field unsubscribe_fields[] = {
    {"email", TR_K_EMAIL, TR_F_REQUIRED | TR_F_FILTER | TR_F_NARROW | TR_F_FIXED, 3, 254, NULL,
     NULL},
    {"mailing_id", TR_K_REF, TR_F_SERVER | TR_F_NULLABLE, 0, 0, NULL, MAILINGS},
    {"source", TR_K_ENUM, TR_F_SERVER, 0, 0, unsubscribe_sources, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static bool
unsubscribe_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	(void)c;
	(void)e;
	if (!old) {
		BSON_APPEND_NULL(set, "mailing_id");
		BSON_APPEND_UTF8(set, "source", "user");
	}
	return true;
}

const struct tr_resource crm_unsubscribes = {
    .name = "unsubscribe",
    .coll = UNSUBSCRIBES,
    .path = "/v1/crm/unsubscribes",
    .read = "crm.mailings.read",
    .write = "crm.mailings.write",
    .about = "An address no mailing is sent to: added by the recipient's unsubscribe link "
	     "(source link) or by a user (source user); deleting it lets mailings reach the "
	     "address again.",
    .fields = unsubscribe_fields,
    .sorts = unsubscribe_sorts,
    .hook = unsubscribe_hook,
    .deletable = true,
};

/* The recipient a token names (its first 24 characters are the
 * recipient's id; the whole token must equal the stored one, compared in
 * constant time). Points db at its tenant. TR_ENOTFOUND for anything
 * else. */
static int
find_recipient(struct tr_db *db, const char *token, bson_t *recipient)
{
	bson_t filter = BSON_INITIALIZER;
	char id[25];
	bson_oid_t oid, tenant;
	const char *stored;
	int rc;

	bson_init(recipient);
	if (strlen(token) >= TOKEN_MAX || strlen(token) <= 24) {
		bson_destroy(&filter);
		return TR_ENOTFOUND;
	}
	memcpy(id, token, 24);
	id[24] = '\0';
	if (!tr_is_object_id(id)) {
		bson_destroy(&filter);
		return TR_ENOTFOUND;
	}
	bson_oid_init_from_string(&oid, id);
	BSON_APPEND_OID(&filter, "_id", &oid);
	bson_destroy(recipient);
	rc = tr_db_find_global(db, RECIPIENTS, &filter, recipient);
	bson_destroy(&filter);
	if (rc != TR_OK)
		return rc;
	stored = tr_doc_str(recipient, "_token");
	if (!stored || strlen(stored) != strlen(token) ||
	    sodium_memcmp(stored, token, strlen(token)) != 0 ||
	    !tr_doc_oid(recipient, "tenant_id", &tenant))
		return TR_ENOTFOUND;
	tr_db_set_tenant(db, &tenant);
	return TR_OK;
}

/* A small HTML page (the link is opened in a browser). */
static void
page(struct tr_ctx *c, int status, const char *title, const char *message, bool form)
{
	char *html = tr_arena_alloc(c->req->arena, 1024);
	int n = snprintf(html, 1024,
			 "<!doctype html><html><head><meta charset=\"utf-8\"><title>%s</title>"
			 "</head><body><h1>%s</h1><p>%s</p>%s</body></html>\n",
			 title, title, message,
			 form ? "<form method=\"post\"><button type=\"submit\" "
				"name=\"List-Unsubscribe\" value=\"One-Click\">Unsubscribe"
				"</button></form>"
			      : "");
	tr_reply_header(c, "content-security-policy",
			"default-src 'none'; form-action 'self'; frame-ancestors 'none'");
	tr_reply_text(c, status, "text/html; charset=utf-8", html, (size_t)n);
}

/* GET /v1/unsubscribe/{token}: the page with the one button (mail
 * scanners follow links; only the POST unsubscribes). */
void
crm_unsubscribe_page(struct tr_ctx *c)
{
	bson_t recipient;
	int rc = find_recipient(c->db, tr_param(c, 0), &recipient);

	if (rc == TR_ENOTFOUND)
		page(c, 404, "Unknown link", "This unsubscribe link is not known.", false);
	else if (rc != TR_OK)
		tr_problem_from_err(c, rc);
	else
		page(c, 200, "Unsubscribe",
		     "Stop receiving these mailings at this address? One click is enough.", true);
	bson_destroy(&recipient);
}

/* POST /v1/unsubscribe/{token} (RFC 8058 one-click, or the page's form):
 * the address joins the tenant's unsubscribe list; again: nothing new. */
void
crm_unsubscribe_confirm(struct tr_ctx *c)
{
	bson_t recipient, entry = BSON_INITIALIZER, stored = BSON_INITIALIZER;
	const char *email;
	bson_oid_t mailing;
	int rc = find_recipient(c->db, tr_param(c, 0), &recipient);

	if (rc == TR_ENOTFOUND) {
		page(c, 404, "Unknown link", "This unsubscribe link is not known.", false);
		goto out;
	}
	if (rc != TR_OK || !(email = tr_doc_str(&recipient, "email"))) {
		tr_problem_from_err(c, rc != TR_OK ? rc : TR_EINTERNAL);
		goto out;
	}
	BSON_APPEND_UTF8(&entry, "email", email);
	if (tr_doc_oid(&recipient, "mailing_id", &mailing))
		BSON_APPEND_OID(&entry, "mailing_id", &mailing);
	BSON_APPEND_UTF8(&entry, "source", "link");
	bson_destroy(&stored);
	rc = tr_db_insert(c->db, UNSUBSCRIBES, &entry, &stored);
	if (rc != TR_OK && rc != TR_EDUPLICATE) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	page(c, 200, "Unsubscribed", "This address will receive no more of these mailings.", false);
out:
	bson_destroy(&recipient);
	bson_destroy(&entry);
	bson_destroy(&stored);
}

/* ---- a run: the recipients ---- */

/* One recipient of a run, as the run collects them. */
struct recipient {
	bson_oid_t id, client_id, contact_id;
	char *email, *contact_name, *client_name, *phone, *position;
};

struct run {
	struct tr_db *db;
	const bson_oid_t *mailing_id;
	int64_t run;
	struct recipient *list;
	size_t n, cap;
	int rc;
	/* the client being read */
	bson_oid_t client_id;
	const char *client_name;
};

/* The recipient's id: mailing, run and address, so a run made again
 * writes no second record and an address gets one message a run. */
static void
recipient_id(const bson_oid_t *mailing, int64_t run, const char *email, bson_oid_t *out)
{
	unsigned char h[12];
	char runs[24];
	crypto_generichash_state st;

	snprintf(runs, sizeof(runs), ":%lld:", (long long)run);
	crypto_generichash_init(&st, (const unsigned char *)"mailing-recipient", 17, sizeof(h));
	crypto_generichash_update(&st, mailing->bytes, sizeof(mailing->bytes));
	crypto_generichash_update(&st, (const unsigned char *)runs, strlen(runs));
	crypto_generichash_update(&st, (const unsigned char *)email, strlen(email));
	crypto_generichash_final(&st, h, sizeof(h));
	bson_oid_init_from_data(out, h);
}

static char *
dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int
visit_contact(void *arg, const bson_t *contact)
{
	struct run *r = arg;
	const char *email = tr_doc_str(contact, "email"), *id = tr_doc_str(contact, "id");
	struct recipient *p;
	bson_oid_t rid;

	if (!email || !*email || !id || !tr_is_object_id(id))
		return 0;
	recipient_id(r->mailing_id, r->run, email, &rid);
	for (size_t i = 0; i < r->n; i++)
		if (bson_oid_equal(&r->list[i].id, &rid))
			return 0; /* the address is there already */
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		p = realloc(r->list, cap * sizeof(*p));
		if (!p)
			return TR_ENOMEM;
		r->list = p;
		r->cap = cap;
	}
	p = &r->list[r->n++];
	memset(p, 0, sizeof(*p));
	p->id = rid;
	p->client_id = r->client_id;
	bson_oid_init_from_string(&p->contact_id, id);
	p->email = strdup(email);
	p->contact_name = dup_or_null(tr_doc_str(contact, "name"));
	p->client_name = dup_or_null(r->client_name);
	p->phone = dup_or_null(tr_doc_str(contact, "phone"));
	p->position = dup_or_null(tr_doc_str(contact, "position"));
	return p->email ? 0 : TR_ENOMEM;
}

static int
visit_client(void *arg, const bson_t *client)
{
	struct run *r = arg;
	const char *id = tr_doc_str(client, "id");
	bson_t filter = BSON_INITIALIZER;
	int rc;

	if (!id || !tr_is_object_id(id)) {
		bson_destroy(&filter);
		return 0;
	}
	bson_oid_init_from_string(&r->client_id, id);
	r->client_name = tr_doc_str(client, "name");
	BSON_APPEND_OID(&filter, "client_id", &r->client_id);
	rc = tr_db_each(r->db, "contacts", &filter, visit_contact, r);
	bson_destroy(&filter);
	return rc;
}

/* The clients of the group, by its rule (as GET /v1/crm/groups/{id}/clients
 * reads them). A group deleted since has none. */
static int
group_filter(struct tr_db *db, const bson_t *mailing, bson_t *filter)
{
	bson_t group;
	bson_oid_t gid;
	bson_iter_t it, r;
	char hex[25];
	const char *type = "static";
	int rc;

	if (!tr_doc_oid(mailing, "group_id", &gid))
		return TR_ENOTFOUND;
	bson_oid_to_string(&gid, hex);
	rc = tr_db_get(db, "crm_groups", hex, &group);
	if (rc == TR_OK) {
		if (bson_iter_init_find(&it, &group, "rule") && bson_iter_recurse(&it, &r) &&
		    bson_iter_find(&r, "type") && BSON_ITER_HOLDS_UTF8(&r))
			type = bson_iter_utf8(&r, NULL);
		if (strcmp(type, "static") == 0)
			BSON_APPEND_OID(filter, "group_ids", &gid);
		else if (bson_iter_init_find(&it, &group, "rule") && bson_iter_recurse(&it, &r))
			while (bson_iter_next(&r))
				if (strcmp(bson_iter_key(&r), "type") != 0)
					bson_append_iter(filter, bson_iter_key(&r), -1, &r);
	}
	bson_destroy(&group);
	if (rc != TR_OK && rc != TR_ENOTFOUND)
		return rc;
	if (bson_count_keys(filter) == 0)
		BSON_APPEND_BOOL(filter, "_never", true);
	return TR_OK;
}

static void
append_str_or_null(bson_t *doc, const char *key, const char *s)
{
	if (s)
		BSON_APPEND_UTF8(doc, key, s);
	else
		BSON_APPEND_NULL(doc, key);
}

/* Writes the run's recipient records (those written before stay as they
 * are, token included) and enqueues one send job for each. */
static int
write_recipients(struct run *r, const char *tenant)
{
	bson_t *docs[BATCH];
	int rc = TR_OK;

	for (size_t at = 0; rc == TR_OK && at < r->n; at += BATCH) {
		size_t k = r->n - at < BATCH ? r->n - at : BATCH;
		for (size_t i = 0; i < k; i++) {
			const struct recipient *p = &r->list[at + i];
			unsigned char raw[TOKEN_RANDOM];
			char hex[25], token[TOKEN_MAX], *random;

			randombytes_buf(raw, sizeof(raw));
			random = tr_b64url_encode(raw, sizeof(raw));
			bson_oid_to_string(&p->id, hex);
			snprintf(token, sizeof(token), "%s%s", hex, random ? random : "");
			free(random);
			docs[i] = bson_new();
			BSON_APPEND_OID(docs[i], "_id", &p->id);
			BSON_APPEND_OID(docs[i], "mailing_id", r->mailing_id);
			BSON_APPEND_INT32(docs[i], "run", (int32_t)r->run);
			BSON_APPEND_OID(docs[i], "client_id", &p->client_id);
			BSON_APPEND_OID(docs[i], "contact_id", &p->contact_id);
			BSON_APPEND_UTF8(docs[i], "email", p->email);
			append_str_or_null(docs[i], "contact_name", p->contact_name);
			append_str_or_null(docs[i], "client_name", p->client_name);
			append_str_or_null(docs[i], "_phone", p->phone);
			append_str_or_null(docs[i], "_position", p->position);
			BSON_APPEND_UTF8(docs[i], "status", "queued");
			BSON_APPEND_INT32(docs[i], "attempts", 0);
			BSON_APPEND_NULL(docs[i], "reply");
			BSON_APPEND_NULL(docs[i], "sent_at");
			BSON_APPEND_UTF8(docs[i], "_token", random ? token : "");
			sodium_memzero(token, sizeof(token));
		}
		rc = tr_db_insert_batch(r->db, RECIPIENTS, (const bson_t *const *)docs, k);
		for (size_t i = 0; i < k; i++)
			bson_destroy(docs[i]);
	}
	for (size_t i = 0; rc == TR_OK && i < r->n; i++) {
		char hex[25], payload[64];
		bson_oid_to_string(&r->list[i].id, hex);
		snprintf(payload, sizeof(payload), "{\"recipient_id\":\"%s\"}", hex);
		rc = tr_job_enqueue(SEND_QUEUE, tenant, payload, 0, NULL);
	}
	return rc;
}

/* When run n of a mailing is due (unix ms): send_at, then every repeat. */
static int64_t
run_time(const bson_t *mailing, int64_t n)
{
	bson_iter_t it, r;
	int64_t base = 0, every = 1;
	const char *unit = "day";
	struct tm tm;
	time_t secs;

	if (bson_iter_init_find(&it, mailing, "send_at") && BSON_ITER_HOLDS_DATE_TIME(&it))
		base = bson_iter_date_time(&it);
	if (n <= 1 || !bson_iter_init_find(&it, mailing, "repeat") ||
	    !BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &r))
		return base;
	while (bson_iter_next(&r)) {
		if (strcmp(bson_iter_key(&r), "unit") == 0 && BSON_ITER_HOLDS_UTF8(&r))
			unit = bson_iter_utf8(&r, NULL);
		else if (strcmp(bson_iter_key(&r), "every") == 0)
			every = bson_iter_as_int64(&r);
	}
	if (unit_ms(unit) > 0)
		return base + (n - 1) * every * unit_ms(unit);
	secs = (time_t)(base / 1000);
	gmtime_r(&secs, &tm);
	tm.tm_mon += (int)((n - 1) * every);
	return (int64_t)timegm(&tm) * 1000 + base % 1000;
}

/* After run n: the mailing's runs becomes n (a version-checked write; the
 * one that makes it schedules run n+1 of a repeating mailing, skipping
 * runs whose time passed while nobody ran them). A job run again after
 * its process died between the two (attempt > 1) schedules it as well:
 * run n+1 twice is harmless, as every run is. */
static int
finish_run(struct tr_db *db, const struct tr_job *job, const char *mailing_hex, int64_t n)
{
	for (int tries = 0; tries < 5; tries++) {
		bson_t mailing, set = BSON_INITIALIZER, after;
		const char *status;
		bson_iter_t it;
		bool repeats;
		int64_t next = n + 1, now = tr_now_ms();
		int rc = tr_db_get(db, MAILINGS, mailing_hex, &mailing);

		if (rc != TR_OK) {
			bson_destroy(&mailing);
			bson_destroy(&set);
			return rc == TR_ENOTFOUND ? TR_OK : rc;
		}
		status = tr_doc_str(&mailing, "status");
		repeats =
		    bson_iter_init_find(&it, &mailing, "repeat") && BSON_ITER_HOLDS_DOCUMENT(&it);
		while (repeats && run_time(&mailing, next) < now - 60000)
			next++;
		if (tr_doc_int(&mailing, "runs", 0) >= n) {
			if (job->attempt > 1 && repeats && tr_doc_int(&mailing, "runs", 0) == n &&
			    status && strcmp(status, "scheduled") == 0)
				rc = enqueue_run(job->tenant, mailing_hex, next,
						 run_time(&mailing, next));
			bson_destroy(&mailing);
			bson_destroy(&set);
			return rc;
		}
		BSON_APPEND_INT32(&set, "runs", (int32_t)n);
		if (repeats)
			BSON_APPEND_DATE_TIME(&set, "next_run_at", run_time(&mailing, next));
		else
			BSON_APPEND_NULL(&set, "next_run_at");
		if (!repeats && status && strcmp(status, "scheduled") == 0)
			BSON_APPEND_UTF8(&set, "status", "done");
		rc = tr_db_update(db, MAILINGS, mailing_hex, tr_doc_int(&mailing, "version", 0),
				  &set, NULL, &after);
		bson_destroy(&after);
		bson_destroy(&set);
		if (rc == TR_OK && repeats && status && strcmp(status, "scheduled") == 0)
			rc = enqueue_run(job->tenant, mailing_hex, next, run_time(&mailing, next));
		bson_destroy(&mailing);
		if (rc != TR_EVERSION && rc != TR_EBUSY)
			return rc;
	}
	return TR_EBUSY;
}

/* The run job: {"mailing_id", "run"}. Everything it does can be done
 * again, so a failure retries the whole run. */
int
crm_mailing_run(const struct tr_job *job, char *err, size_t errlen)
{
	bson_t payload, mailing = BSON_INITIALIZER, filter = BSON_INITIALIZER;
	struct run r = {0};
	bson_oid_t mid;
	const char *hex, *status;
	char perr[64];
	int64_t n;
	int rc = TR_OK;

	if (tr_json_parse(job->payload, job->payload_len, &payload, perr, sizeof(perr)) != 0 ||
	    !(hex = tr_doc_str(&payload, "mailing_id")) || !tr_is_object_id(hex) ||
	    (n = tr_doc_int(&payload, "run", 0)) < 1) {
		bson_destroy(&payload);
		bson_destroy(&mailing);
		bson_destroy(&filter);
		return 0; /* not a run: nothing to do */
	}
	if (!(r.db = tr_db_for_tenant(job->tenant))) {
		rc = TR_ENOMEM;
		goto out;
	}
	bson_destroy(&mailing);
	rc = tr_db_get(r.db, MAILINGS, hex, &mailing);
	if (rc != TR_OK)
		goto out;
	status = tr_doc_str(&mailing, "status");
	if (!status || strcmp(status, "cancelled") == 0 || strcmp(status, "paused") == 0)
		goto out; /* resuming schedules the run again */
	tr_doc_oid(&mailing, "_id", &mid);
	r.mailing_id = &mid;
	r.run = n;
	rc = group_filter(r.db, &mailing, &filter);
	if (rc == TR_OK)
		rc = tr_db_each(r.db, "clients", &filter, visit_client, &r);
	if (rc == TR_OK)
		rc = write_recipients(&r, job->tenant);
	if (rc == TR_OK)
		rc = finish_run(r.db, job, hex, n);
	if (rc == TR_OK)
		tr_info("crm: mailing %s run %lld: %zu recipients", hex, (long long)n, r.n);
out:
	if (rc == TR_ENOTFOUND)
		rc = TR_OK; /* the mailing is gone */
	if (rc != TR_OK)
		snprintf(err, errlen, "mailing run: %s", tr_strerror(rc));
	for (size_t i = 0; i < r.n; i++) {
		free(r.list[i].email);
		free(r.list[i].contact_name);
		free(r.list[i].client_name);
		free(r.list[i].phone);
		free(r.list[i].position);
	}
	free(r.list);
	tr_db_release(r.db);
	bson_destroy(&payload);
	bson_destroy(&mailing);
	bson_destroy(&filter);
	return rc == TR_OK ? 0 : -1;
}

/* ---- a send ---- */

/* Records what became of a recipient: set on its version. TR_EVERSION
 * means another job moved it first. */
static int
record(struct tr_db *db, const char *id, const bson_t *recipient, const bson_t *set, bson_t *after)
{
	return tr_db_update(db, RECIPIENTS, id, tr_doc_int(recipient, "version", 0), set, NULL,
			    after);
}

static int
record_status(struct tr_db *db, const char *id, const bson_t *recipient, const char *status,
	      const char *reply)
{
	bson_t set = BSON_INITIALIZER, after;
	int rc;

	BSON_APPEND_UTF8(&set, "status", status);
	if (reply)
		BSON_APPEND_UTF8(&set, "reply", reply);
	rc = record(db, id, recipient, &set, &after);
	bson_destroy(&after);
	bson_destroy(&set);
	return rc;
}

/* The email interaction on the client's timeline, once per recipient
 * (its id derived from the recipient's). */
static int
add_interaction(struct tr_db *db, const bson_t *recipient, const bson_t *mailing,
		const char *subject)
{
	bson_t doc = BSON_INITIALIZER, stored;
	bson_oid_t rid, id, client, user;
	unsigned char h[12];
	char summary[SUMMARY_MAX];
	int rc;

	tr_doc_oid(recipient, "_id", &rid);
	crypto_generichash(h, sizeof(h), rid.bytes, sizeof(rid.bytes),
			   (const unsigned char *)"mailing-email", 13);
	bson_oid_init_from_data(&id, h);
	snprintf(summary, sizeof(summary), "Mailing \"%s\" to %s: %s", tr_doc_str(mailing, "name"),
		 tr_doc_str(recipient, "email"), subject);
	/* a cut may split a character: end at its start */
	size_t len = strlen(summary);
	if (len == SUMMARY_MAX - 1)
		while (len > 0 && ((unsigned char)summary[len] & 0xc0) == 0x80)
			summary[len--] = '\0';
	BSON_APPEND_OID(&doc, "_id", &id);
	if (tr_doc_oid(recipient, "client_id", &client))
		BSON_APPEND_OID(&doc, "client_id", &client);
	BSON_APPEND_NULL(&doc, "deal_id");
	BSON_APPEND_NULL(&doc, "lead_id");
	BSON_APPEND_UTF8(&doc, "kind", "email");
	BSON_APPEND_DATE_TIME(&doc, "at", tr_now_ms());
	BSON_APPEND_UTF8(&doc, "summary", summary);
	if (tr_doc_oid(mailing, "user_id", &user))
		BSON_APPEND_OID(&doc, "user_id", &user);
	rc = tr_db_insert(db, "interactions", &doc, &stored);
	bson_destroy(&stored);
	bson_destroy(&doc);
	return rc == TR_EDUPLICATE ? TR_OK : rc;
}

/* The message of one recipient: subject, text and html rendered, and the
 * unsubscribe link. The strings are malloc'd (free_message). */
struct message {
	char *subject, *text, *html, url[TOKEN_MAX + 600];
};

static void
free_message(struct message *m)
{
	free(m->subject);
	free(m->text);
	free(m->html);
}

static void
make_message(const bson_t *mailing, const bson_t *recipient, struct message *m)
{
	struct values v = {{0}};
	const char *html = tr_doc_str(mailing, "html");

	snprintf(m->url, sizeof(m->url), "%s/v1/unsubscribe/%s", tr_cfg->public_url,
		 tr_doc_str(recipient, "_token"));
	v.v[0] = tr_doc_str(recipient, "client_name");
	v.v[1] = tr_doc_str(recipient, "contact_name");
	v.v[2] = tr_doc_str(recipient, "email");
	v.v[3] = tr_doc_str(recipient, "_phone");
	v.v[4] = tr_doc_str(recipient, "_position");
	v.v[5] = m->url;
	m->subject = render(tr_doc_str(mailing, "subject"), &v, false);
	m->text = render(tr_doc_str(mailing, "text"), &v, false);
	m->html = html ? render(html, &v, true) : NULL;
}

/* Is the address on the tenant's unsubscribe list? */
static int
unsubscribed(struct tr_db *db, const char *email, bool *yes)
{
	bson_t filter = BSON_INITIALIZER, found;
	int rc;

	BSON_APPEND_UTF8(&filter, "email", email);
	rc = tr_db_find_one(db, UNSUBSCRIBES, &filter, &found);
	bson_destroy(&found);
	bson_destroy(&filter);
	*yes = rc == TR_OK;
	return rc == TR_ENOTFOUND ? TR_OK : rc;
}

/* A recipient claimed (sending) longer ago than this had its sender stop. */
static int64_t
claim_stale_ms(void)
{
	return 2 * (int64_t)tr_cfg->smtp_timeout_ms + 10000;
}

/* The send job: {"recipient_id"}. See the top of the file. */
int
crm_mailing_send(const struct tr_job *job, char *err, size_t errlen)
{
	bson_t payload, recipient = BSON_INITIALIZER, mailing = BSON_INITIALIZER,
			claimed = BSON_INITIALIZER, set = BSON_INITIALIZER;
	struct message m = {0};
	struct tr_db *db = NULL;
	const char *id, *status, *mstatus;
	char perr[64], mhex[25], reply[REPLY_MAX] = "";
	bson_oid_t mid;
	bool no;
	int rc = TR_OK, fail = 0;

	if (tr_json_parse(job->payload, job->payload_len, &payload, perr, sizeof(perr)) != 0 ||
	    !(id = tr_doc_str(&payload, "recipient_id")) || !tr_is_object_id(id)) {
		bson_destroy(&payload);
		goto done; /* not a send: nothing to do */
	}
	if (!(db = tr_db_for_tenant(job->tenant))) {
		rc = TR_ENOMEM;
		goto out;
	}
	bson_destroy(&recipient);
	if ((rc = tr_db_get(db, RECIPIENTS, id, &recipient)) != TR_OK)
		goto out;
	status = tr_doc_str(&recipient, "status");
	if (status && strcmp(status, "sending") == 0) {
		bson_iter_t it;
		int64_t at = 0;
		if (bson_iter_init_find(&it, &recipient, "claimed_at") &&
		    BSON_ITER_HOLDS_DATE_TIME(&it))
			at = bson_iter_date_time(&it);
		if (tr_now_ms() - at < claim_stale_ms()) {
			/* another job holds it: look again later */
			snprintf(err, errlen, "the recipient is being sent by another job");
			fail = 1;
			goto out;
		}
		/* its sender stopped, perhaps after the server took it:
		 * at most once, so not again */
		rc = record_status(db, id, &recipient, "interrupted",
				   "the sender stopped during the send; not sent again");
		goto out;
	}
	if (!status || strcmp(status, "queued") != 0)
		goto out; /* done before */
	tr_doc_oid(&recipient, "mailing_id", &mid);
	bson_oid_to_string(&mid, mhex);
	bson_destroy(&mailing);
	if ((rc = tr_db_get(db, MAILINGS, mhex, &mailing)) != TR_OK)
		goto out;
	mstatus = tr_doc_str(&mailing, "status");
	if (mstatus && strcmp(mstatus, "paused") == 0)
		goto out; /* resuming enqueues it again */
	if (mstatus && strcmp(mstatus, "cancelled") == 0) {
		rc = record_status(db, id, &recipient, "cancelled", NULL);
		goto out;
	}
	if ((rc = unsubscribed(db, tr_doc_str(&recipient, "email"), &no)) != TR_OK)
		goto out;
	if (no) {
		rc = record_status(db, id, &recipient, "skipped_unsubscribed", NULL);
		goto out;
	}
	/* the claim: of racing jobs exactly one moves it from this version */
	BSON_APPEND_UTF8(&set, "status", "sending");
	BSON_APPEND_DATE_TIME(&set, "claimed_at", tr_now_ms());
	BSON_APPEND_INT32(&set, "attempts", (int32_t)(tr_doc_int(&recipient, "attempts", 0) + 1));
	bson_destroy(&claimed);
	rc = record(db, id, &recipient, &set, &claimed);
	if (rc == TR_EVERSION || rc == TR_EBUSY) {
		rc = TR_OK; /* another job has it */
		goto out;
	}
	if (rc != TR_OK)
		goto out;
	make_message(&mailing, &recipient, &m);
	char msgid[64];
	snprintf(msgid, sizeof(msgid), "mailing.%s", id);
	struct tr_mail mail = {
	    tr_doc_str(&recipient, "email"), m.subject, m.text, m.html, m.url, msgid};
	enum tr_smtp_outcome o = tr_smtp_send(&mail, reply, sizeof(reply));
	bson_reinit(&set);
	if (o == TR_SMTP_SENT) {
		/* the timeline first: a recipient recorded sent has its entry */
		if ((rc = add_interaction(db, &recipient, &mailing, m.subject)) != TR_OK)
			tr_error("crm: mailing %s: the timeline entry of %s: %s", mhex, id,
				 tr_strerror(rc));
		BSON_APPEND_UTF8(&set, "status", "sent");
		BSON_APPEND_DATE_TIME(&set, "sent_at", tr_now_ms());
	} else if (o == TR_SMTP_UNKNOWN) {
		/* perhaps taken: at most once, so not again */
		BSON_APPEND_UTF8(&set, "status", "interrupted");
	} else if (o == TR_SMTP_PERMANENT || tr_job_next_attempt_ms(job) == 0) {
		BSON_APPEND_UTF8(&set, "status", "failed");
	} else {
		BSON_APPEND_UTF8(&set, "status", "queued"); /* for the job's retry */
		snprintf(err, errlen, "smtp: %s", reply);
		fail = 1;
	}
	BSON_APPEND_UTF8(&set, "reply", reply);
	bson_t after;
	rc = record(db, id, &claimed, &set, &after);
	bson_destroy(&after);
	if (rc != TR_OK)
		tr_error("crm: mailing %s: the outcome of %s (%s) was not recorded: %s", mhex, id,
			 o == TR_SMTP_SENT ? "sent" : "not sent", tr_strerror(rc));
	rc = TR_OK;
out:
	if (rc == TR_ENOTFOUND)
		rc = TR_OK; /* gone */
	if (rc != TR_OK && !fail) {
		snprintf(err, errlen, "mailing send: %s", tr_strerror(rc));
		fail = 1;
	}
	free_message(&m);
	tr_db_release(db);
	bson_destroy(&payload);
done:
	bson_destroy(&recipient);
	bson_destroy(&mailing);
	bson_destroy(&claimed);
	bson_destroy(&set);
	return fail ? -1 : 0;
}
