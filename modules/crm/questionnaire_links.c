/* Sending questionnaires and taking their answers (issue 17).
 *
 * POST /v1/crm/questionnaires/{id}/invitations {"contact_ids", "expires_at"}
 * makes one invitation per contact of the tenant's clients, each with a
 * link holding a token: the invitation's id (24 hex) and 32 random bytes
 * (base64url). Only the token's SHA-256 is stored, as API keys are: the
 * link is shown once, in that answer. The id finds the invitation without
 * knowing the tenant; the hash, compared in constant time, makes the
 * link unguessable.
 *
 * The link's two public routes need no login: GET shows the questions
 * (the title, intro and questions only), POST takes the answers. Both are
 * rate limited in Redis, so across processes: per client address first,
 * then per invitation. A link answers 409 once used, expired, or while
 * its questionnaire is not open.
 *
 * Each token is accepted once. The answer is stored under the
 * invitation's own id: of any number of submissions, in any process, at
 * once or later, exactly one inserts it (the unique _id is what FerretDB
 * makes atomic), the others get 409 and store nothing. The invitation is
 * marked answered after that; a process that dies in between leaves it
 * "pending" until the link is next used (which marks it). The answer is
 * on the client's timeline (clients.c) and in the results. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm.h"
#include "db.h"
#include "events.h"
#include "json.h"
#include "kv.h"
#include "log.h"

#define TOKEN_RANDOM 32 /* random bytes of a token */
#define TOKEN_LEN 67	/* 24 hex of the id + 43 of base64url */
#define LINK_PATH "/v1/questionnaire-links/"

static const char *const invitation_sorts[] = {"-created_at", "created_at", NULL};

/* The hex SHA-256 of a token, as stored. */
static void
token_hash(const char *token, char out[2 * crypto_hash_sha256_BYTES + 1])
{
	unsigned char d[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(d, (const unsigned char *)token, strlen(token));
	sodium_bin2hex(out, 2 * crypto_hash_sha256_BYTES + 1, d, sizeof(d));
}

/* ---- sending ---- */

/* contact_ids: 1..crm_questionnaire_max_invitations distinct ids (any
 * spelling: compared as ids), into oids. */
static bool
contact_ids_ok(struct tr_ctx *c, bson_oid_t *oids, int *n)
{
	long max = tr_config_int("crm_questionnaire_max_invitations");
	bson_iter_t it, a;
	bool ok = true;

	*n = 0;
	if (!bson_iter_init_find(&it, &c->req->body, "contact_ids") ||
	    !BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &a)) {
		tr_problem_field(c, "contact_ids", "must be an array of contact ids");
		return false;
	}
	while (bson_iter_next(&a)) {
		char *f = tr_arena_alloc(c->req->arena, 32);
		const char *id = BSON_ITER_HOLDS_UTF8(&a) ? bson_iter_utf8(&a, NULL) : NULL;
		snprintf(f, 32, "contact_ids[%d]", *n);
		if (*n >= max) {
			char *m = tr_arena_alloc(c->req->arena, 64);
			snprintf(m, 64, "must hold 1 to %ld contact ids", max);
			tr_problem_field(c, "contact_ids", m);
			return false;
		}
		if (!id || !tr_is_object_id(id)) {
			tr_problem_field(c, f, "must be a contact id (24 hex digits)");
			ok = false;
			(*n)++;
			continue;
		}
		bson_oid_init_from_string(&oids[*n], id);
		for (int j = 0; j < *n; j++)
			if (bson_oid_equal(&oids[j], &oids[*n])) {
				tr_problem_field(c, f, "names a contact already in the list");
				ok = false;
			}
		(*n)++;
	}
	if (*n == 0) {
		tr_problem_field(c, "contact_ids", "must name at least one contact");
		return false;
	}
	return ok;
}

/* One invitation for contact (as stored) into the answer's items, with
 * its token and link: the only time either is shown. */
static int
invite_one(struct tr_ctx *c, const bson_oid_t *questionnaire, const bson_t *contact,
	   const bson_value_t *expires, bson_t *items, uint32_t i)
{
	unsigned char raw[TOKEN_RANDOM];
	char hex[25], token[TOKEN_LEN + 1], hash[2 * crypto_hash_sha256_BYTES + 1], idx[16];
	char *random, *link;
	const char *base = tr_config_str("crm_questionnaire_link_base"), *k;
	bson_t doc = BSON_INITIALIZER, stored = BSON_INITIALIZER, item;
	bson_oid_t id, contact_id, client_id;
	size_t len;
	int rc;

	bson_oid_init(&id, NULL);
	bson_oid_to_string(&id, hex);
	randombytes_buf(raw, sizeof(raw));
	random = tr_b64url_encode(raw, sizeof(raw));
	sodium_memzero(raw, sizeof(raw));
	if (!random) {
		bson_destroy(&doc);
		return TR_ENOMEM;
	}
	snprintf(token, sizeof(token), "%s%s", hex, random);
	sodium_memzero(random, strlen(random));
	free(random);
	token_hash(token, hash);
	tr_doc_oid(contact, "_id", &contact_id);
	tr_doc_oid(contact, "client_id", &client_id);
	BSON_APPEND_OID(&doc, "_id", &id);
	BSON_APPEND_OID(&doc, "questionnaire_id", questionnaire);
	BSON_APPEND_OID(&doc, "client_id", &client_id);
	BSON_APPEND_OID(&doc, "contact_id", &contact_id);
	BSON_APPEND_UTF8(&doc, "status", "pending");
	if (expires)
		BSON_APPEND_VALUE(&doc, "expires_at", expires);
	else
		BSON_APPEND_NULL(&doc, "expires_at");
	BSON_APPEND_NULL(&doc, "answered_at");
	BSON_APPEND_UTF8(&doc, "_token_hash", hash);
	bson_destroy(&stored);
	rc = tr_db_insert(c->db, CRM_Q_INVITATIONS, &doc, &stored);
	if (rc == TR_OK) {
		len = strlen(base ? base : "") + sizeof(LINK_PATH) + TOKEN_LEN;
		link = tr_arena_alloc(c->req->arena, len);
		snprintf(link, len, "%s%s%s", base ? base : "", LINK_PATH, token);
		bson_uint32_to_string(i, &k, idx, sizeof(idx));
		BSON_APPEND_DOCUMENT_BEGIN(items, k, &item);
		tr_render_resource(&stored, &item);
		BSON_APPEND_UTF8(&item, "token", token);
		BSON_APPEND_UTF8(&item, "link", link);
		bson_append_document_end(items, &item);
	}
	sodium_memzero(token, sizeof(token));
	bson_destroy(&doc);
	bson_destroy(&stored);
	return rc;
}

/* POST /v1/crm/questionnaires/{id}/invitations: see the top of the file.
 * Every contact is checked before any invitation is made: another
 * tenant's contact is 404, like one that does not exist. */
void
crm_questionnaire_invite(struct tr_ctx *c)
{
	static const char *const allowed[] = {"contact_ids", "expires_at", NULL};
	bson_t q = BSON_INITIALIZER, out = BSON_INITIALIZER, items;
	bson_t *contacts = NULL;
	bson_oid_t qid, *oids = NULL;
	bson_value_t expires = {0};
	bson_iter_t it;
	const char *status;
	int n = 0, rc = TR_OK;
	bool has_expiry = false;

	bson_destroy(&q);
	if (!tr_res_load(c, &crm_questionnaires, tr_param(c, 0), &q))
		goto out;
	oids = calloc((size_t)tr_config_int("crm_questionnaire_max_invitations"), sizeof(*oids));
	if (!oids) {
		tr_problem_from_err(c, TR_ENOMEM);
		goto out;
	}
	bool ok = tr_body_only(c, allowed);
	ok = contact_ids_ok(c, oids, &n) && ok;
	if (bson_iter_init_find(&it, &c->req->body, "expires_at") && !BSON_ITER_HOLDS_NULL(&it)) {
		int64_t ms = 0;
		if (!BSON_ITER_HOLDS_UTF8(&it) || !tr_parse_time(bson_iter_utf8(&it, NULL), &ms)) {
			tr_problem_field(c, "expires_at", "must be an RFC 3339 time");
			ok = false;
		} else if (ms <= tr_now_ms()) {
			tr_problem_field(c, "expires_at", "must be in the future");
			ok = false;
		} else {
			expires.value_type = BSON_TYPE_DATE_TIME;
			expires.value.v_datetime = ms;
			has_expiry = true;
		}
	}
	if (!ok)
		goto out;
	status = tr_doc_str(&q, "status");
	if (!status || strcmp(status, "open") != 0) {
		tr_problem(c, 409, "conflict",
			   "only an open questionnaire is sent; open it first (a closed one: "
			   "reopen it)");
		goto out;
	}
	contacts = calloc((size_t)n, sizeof(*contacts));
	if (!contacts) {
		tr_problem_from_err(c, TR_ENOMEM);
		goto out;
	}
	for (int i = 0; i < n; i++)
		bson_init(&contacts[i]);
	for (int i = 0; i < n && rc == TR_OK; i++) {
		char hex[25];
		bson_oid_to_string(&oids[i], hex);
		bson_destroy(&contacts[i]);
		rc = tr_db_get(c->db, "contacts", hex, &contacts[i]);
		if (rc == TR_ENOTFOUND) {
			char *m = tr_arena_alloc(c->req->arena, 64);
			snprintf(m, 64, "no such contact: contact_ids[%d]", i);
			tr_problem(c, 404, "not-found", m);
			goto out;
		}
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	tr_doc_oid(&q, "_id", &qid);
	BSON_APPEND_ARRAY_BEGIN(&out, "items", &items);
	for (int i = 0; i < n && rc == TR_OK; i++)
		rc = invite_one(c, &qid, &contacts[i], has_expiry ? &expires : NULL, &items,
				(uint32_t)i);
	bson_append_array_end(&out, &items);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	tr_reply_json(c, 201, &out);
out:
	if (contacts)
		for (int i = 0; i < n; i++)
			bson_destroy(&contacts[i]);
	free(contacts);
	free(oids);
	bson_destroy(&q);
	bson_destroy(&out);
}

/* An invitation as listed: "expired" once past expires_at unanswered. */
static void
invitation_shown(const bson_t *rendered, int64_t now, bson_t *out)
{
	bson_iter_t it;
	const char *status = tr_doc_str(rendered, "status"),
		   *exp = tr_doc_str(rendered, "expires_at");
	int64_t at = 0;
	bool expired =
	    status && strcmp(status, "pending") == 0 && exp && tr_parse_time(exp, &at) && at <= now;

	if (bson_iter_init(&it, rendered))
		while (bson_iter_next(&it)) {
			if (expired && strcmp(bson_iter_key(&it), "status") == 0)
				BSON_APPEND_UTF8(out, "status", "expired");
			else
				bson_append_iter(out, NULL, 0, &it);
		}
}

/* GET /v1/crm/questionnaires/{id}/invitations: the questionnaire's
 * invitations, newest first, with status pending, answered or expired;
 * never their tokens. */
void
crm_questionnaire_invitations(struct tr_ctx *c)
{
	bson_t q = BSON_INITIALIZER, filter = BSON_INITIALIZER, page = BSON_INITIALIZER;
	bson_t out = BSON_INITIALIZER, items;
	struct tr_list_query lq;
	bool parsed = false;
	char *next = NULL;
	bson_iter_t it;
	bson_oid_t qid;
	int64_t now = tr_now_ms();
	int rc;

	bson_destroy(&q);
	if (!tr_res_load(c, &crm_questionnaires, tr_param(c, 0), &q))
		goto out;
	if (!tr_list_query_parse_as(c, invitation_sorts, true, &lq))
		goto out;
	parsed = true;
	tr_doc_oid(&q, "_id", &qid);
	BSON_APPEND_OID(&filter, "questionnaire_id", &qid);
	rc = tr_db_list(c->db, CRM_Q_INVITATIONS, &filter, &lq, &page, &next);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	BSON_APPEND_ARRAY_BEGIN(&out, "items", &items);
	if (bson_iter_init(&it, &page))
		while (bson_iter_next(&it)) {
			bson_t one, shown;
			uint32_t len;
			const uint8_t *data;
			bson_iter_document(&it, &len, &data);
			if (!bson_init_static(&one, data, len))
				continue;
			BSON_APPEND_DOCUMENT_BEGIN(&items, bson_iter_key(&it), &shown);
			invitation_shown(&one, now, &shown);
			bson_append_document_end(&items, &shown);
		}
	bson_append_array_end(&out, &items);
	if (next)
		BSON_APPEND_UTF8(&out, "next_cursor", next);
	else
		BSON_APPEND_NULL(&out, "next_cursor");
	tr_reply_json(c, 200, &out);
out:
	if (parsed)
		tr_list_query_free(&lq);
	free(next);
	bson_destroy(&q);
	bson_destroy(&filter);
	bson_destroy(&page);
	bson_destroy(&out);
}

/* ---- the public link ---- */

/* Takes a token from the bucket (rate and burst from the config keys
 * named); 429 with Retry-After, or 503, when it cannot. */
static bool
rate_ok(struct tr_ctx *c, const char *bucket, const char *rate_key, const char *burst_key)
{
	long long wait = 0;

	if (tr_kv_rate_take(bucket, tr_config_int(rate_key), tr_config_int(burst_key), &wait) !=
	    TR_OK) {
		tr_problem_from_err(c, TR_EUNAVAILABLE);
		return false;
	}
	if (wait > 0) {
		tr_problem(c, 429, "rate-limited", "too many requests for questionnaire links");
		c->resp->retry_after = (int)((wait + 999) / 1000);
		return false;
	}
	return true;
}

/* The invitation a link's token names, its questionnaire, and db pointed
 * at their tenant; rate limits taken on the way. Sets the problem and
 * returns false: 404 for any token that is not one. */
static bool
open_link(struct tr_ctx *c, bson_t *inv, bson_t *q)
{
	const char *token = tr_param(c, 0), *stored;
	char bucket[128], id[25], hash[2 * crypto_hash_sha256_BYTES + 1];
	bson_t filter = BSON_INITIALIZER;
	bson_oid_t oid, tenant, qid;
	char tenant_hex[25], qhex[25];
	int rc;

	bson_init(inv);
	bson_init(q);
	snprintf(bucket, sizeof(bucket), "rl:qlink:addr:%.64s", c->req->peer);
	if (!rate_ok(c, bucket, "crm_questionnaire_link_rate_rps",
		     "crm_questionnaire_link_rate_burst"))
		goto fail;
	if (strlen(token) != TOKEN_LEN)
		goto not_found;
	memcpy(id, token, 24);
	id[24] = '\0';
	if (!tr_is_object_id(id))
		goto not_found;
	bson_oid_init_from_string(&oid, id);
	BSON_APPEND_OID(&filter, "_id", &oid);
	bson_destroy(inv);
	rc = tr_db_find_global(c->db, CRM_Q_INVITATIONS, &filter, inv);
	if (rc == TR_ENOTFOUND)
		goto not_found;
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto fail;
	}
	token_hash(token, hash);
	stored = tr_doc_str(inv, "_token_hash");
	if (!stored || strlen(stored) != strlen(hash) ||
	    sodium_memcmp(stored, hash, strlen(hash)) != 0 ||
	    !tr_doc_oid(inv, "tenant_id", &tenant))
		goto not_found;
	tr_db_set_tenant(c->db, &tenant);
	bson_oid_to_string(&tenant, tenant_hex);
	snprintf(bucket, sizeof(bucket), "t:{%s}:rl:qlink:%s", tenant_hex, id);
	if (!rate_ok(c, bucket, "crm_questionnaire_token_rate_rps",
		     "crm_questionnaire_token_rate_burst"))
		goto fail;
	if (!tr_doc_oid(inv, "questionnaire_id", &qid))
		goto not_found;
	bson_oid_to_string(&qid, qhex);
	bson_destroy(q);
	rc = tr_db_get(c->db, CRM_QUESTIONNAIRES, qhex, q);
	if (rc == TR_ENOTFOUND)
		goto not_found;
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto fail;
	}
	bson_destroy(&filter);
	return true;
not_found:
	tr_problem(c, 404, "not-found", "no such questionnaire link");
fail:
	bson_destroy(&filter);
	return false;
}

/* Marks an invitation answered (once its answer is stored). */
static void
mark_answered(struct tr_ctx *c, const bson_t *inv, int64_t at)
{
	bson_t set = BSON_INITIALIZER, stored = BSON_INITIALIZER;
	bson_oid_t id;
	char hex[25];

	tr_doc_oid(inv, "_id", &id);
	bson_oid_to_string(&id, hex);
	BSON_APPEND_UTF8(&set, "status", "answered");
	BSON_APPEND_DATE_TIME(&set, "answered_at", at);
	bson_destroy(&stored);
	if (tr_db_update(c->db, CRM_Q_INVITATIONS, hex, -1, &set, NULL, &stored) != TR_OK)
		tr_warn("crm: questionnaire invitation %s is not marked answered", hex);
	bson_destroy(&set);
	bson_destroy(&stored);
}

/* May the link be used now? 409 when answered (an answer stored under
 * its id: marked so if it was not), expired or its questionnaire is not
 * open. */
static bool
usable(struct tr_ctx *c, const bson_t *inv, const bson_t *q)
{
	const char *status = tr_doc_str(inv, "status"), *qstatus = tr_doc_str(q, "status");
	bson_iter_t it;
	bson_oid_t id;
	bson_t answer;
	char hex[25];

	tr_doc_oid(inv, "_id", &id);
	bson_oid_to_string(&id, hex);
	if (status && strcmp(status, "answered") == 0) {
		tr_problem(c, 409, "already-answered", "this link was answered already");
		return false;
	}
	if (tr_db_get(c->db, CRM_Q_ANSWERS, hex, &answer) == TR_OK) {
		bson_iter_t at;
		int64_t ms = bson_iter_init_find(&at, &answer, "created_at") &&
				     BSON_ITER_HOLDS_DATE_TIME(&at)
				 ? bson_iter_date_time(&at)
				 : tr_now_ms();
		bson_destroy(&answer);
		/* its writer stopped before marking it */
		mark_answered(c, inv, ms);
		tr_problem(c, 409, "already-answered", "this link was answered already");
		return false;
	} else {
		bson_destroy(&answer);
	}
	if (bson_iter_init_find(&it, inv, "expires_at") && BSON_ITER_HOLDS_DATE_TIME(&it) &&
	    bson_iter_date_time(&it) <= tr_now_ms()) {
		tr_problem(c, 409, "link-expired", "this link has expired");
		return false;
	}
	if (!qstatus || strcmp(qstatus, "open") != 0) {
		tr_problem(c, 409, "questionnaire-closed",
			   "this questionnaire takes no answers now");
		return false;
	}
	return true;
}

/* GET /v1/questionnaire-links/{token}: what the contact answers - the
 * title, intro and questions - and until when. */
void
crm_questionnaire_link_show(struct tr_ctx *c)
{
	bson_t inv, q, out = BSON_INITIALIZER;
	bson_iter_t it;

	if (!open_link(c, &inv, &q) || !usable(c, &inv, &q))
		goto out;
	BSON_APPEND_UTF8(&out, "title", tr_doc_str(&q, "title"));
	if (bson_iter_init_find(&it, &q, "intro") && BSON_ITER_HOLDS_UTF8(&it))
		BSON_APPEND_UTF8(&out, "intro", bson_iter_utf8(&it, NULL));
	else
		BSON_APPEND_NULL(&out, "intro");
	if (bson_iter_init_find(&it, &q, "questions"))
		bson_append_iter(&out, "questions", -1, &it);
	if (bson_iter_init_find(&it, &inv, "expires_at") && BSON_ITER_HOLDS_DATE_TIME(&it)) {
		char ts[32];
		tr_format_time(bson_iter_date_time(&it), ts);
		BSON_APPEND_UTF8(&out, "expires_at", ts);
	} else {
		BSON_APPEND_NULL(&out, "expires_at");
	}
	tr_reply_json(c, 200, &out);
out:
	bson_destroy(&inv);
	bson_destroy(&q);
	bson_destroy(&out);
}

/* POST /v1/questionnaire-links/{token} {"answers": {"<key>": value}}: the
 * answers checked against the questions (422 naming each), then stored
 * once (see the top of the file): 201, or 409 for every other try. */
void
crm_questionnaire_link_answer(struct tr_ctx *c)
{
	static const char *const allowed[] = {"answers", NULL};
	bson_t inv, q, given = BSON_INITIALIZER, checked = BSON_INITIALIZER;
	bson_t doc = BSON_INITIALIZER, stored = BSON_INITIALIZER, out = BSON_INITIALIZER;
	bson_t shown = BSON_INITIALIZER;
	bson_oid_t id, oid;
	bson_iter_t it;
	char hex[25], tenant_hex[25], ts[32];
	int64_t at;
	int rc;

	if (!open_link(c, &inv, &q) || !usable(c, &inv, &q))
		goto out;
	if (!tr_body_only(c, allowed))
		goto out;
	if (!bson_iter_init_find(&it, &c->req->body, "answers") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
		tr_problem_field(c, "answers", "must be an object of answers by question key");
		goto out;
	}
	{
		uint32_t len;
		const uint8_t *data;
		bson_iter_document(&it, &len, &data);
		bson_destroy(&given);
		if (!bson_init_static(&given, data, len)) {
			tr_problem_field(c, "answers", "must be an object");
			goto out;
		}
	}
	if (!crm_answers_check(c, &q, &given, &checked))
		goto out;
	tr_doc_oid(&inv, "_id", &id);
	bson_oid_to_string(&id, hex);
	BSON_APPEND_OID(&doc, "_id", &id);
	if (tr_doc_oid(&inv, "questionnaire_id", &oid))
		BSON_APPEND_OID(&doc, "questionnaire_id", &oid);
	if (tr_doc_oid(&inv, "client_id", &oid))
		BSON_APPEND_OID(&doc, "client_id", &oid);
	if (tr_doc_oid(&inv, "contact_id", &oid))
		BSON_APPEND_OID(&doc, "contact_id", &oid);
	BSON_APPEND_UTF8(&doc, "title", tr_doc_str(&q, "title"));
	BSON_APPEND_DOCUMENT(&doc, "answers", &checked);
	bson_destroy(&stored);
	rc = tr_db_insert(c->db, CRM_Q_ANSWERS, &doc, &stored);
	if (rc == TR_EDUPLICATE) {
		tr_problem(c, 409, "already-answered", "this link was answered already");
		goto out;
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (!bson_iter_init_find(&it, &stored, "created_at") || !BSON_ITER_HOLDS_DATE_TIME(&it))
		at = tr_now_ms();
	else
		at = bson_iter_date_time(&it);
	mark_answered(c, &inv, at);
	tr_render_resource(&stored, &shown);
	tr_doc_oid(&inv, "tenant_id", &oid);
	bson_oid_to_string(&oid, tenant_hex);
	tr_emit_background(tenant_hex, "crm.questionnaires", "crm.questionnaire.answered", hex,
			   NULL, &shown);
	tr_format_time(at, ts);
	BSON_APPEND_UTF8(&out, "id", hex);
	BSON_APPEND_UTF8(&out, "status", "answered");
	BSON_APPEND_UTF8(&out, "answered_at", ts);
	tr_reply_json(c, 201, &out);
out:
	bson_destroy(&inv);
	bson_destroy(&q);
	bson_destroy(&given);
	bson_destroy(&checked);
	bson_destroy(&doc);
	bson_destroy(&stored);
	bson_destroy(&out);
	bson_destroy(&shown);
}
