/* Balances: a tenant's own named running balances (credits, points,
 * quotas) on the platform's registers (register.h), and the simplest way
 * to see what registers promise from outside:
 *
 *   POST /v1/balances/{key}/movements {"amount", "operation_id", "memo"}
 *       201: the movement {key, seq, amount, balance, operation_id, memo,
 *       at, reverses}; the same operation_id again: 200 with the first
 *       movement (409 when it named another amount or memo); a movement
 *       that would take the balance below zero: 409 insufficient-balance
 *       with the balance it found, and nothing is written.
 *   GET  /v1/balances/{key}: {key, balance, seq}.
 *   GET  /v1/balances/{key}/movements: newest first, cursor pages.
 *   GET  /v1/balances/{key}/movements/{seq}
 *   POST /v1/balances/{key}/movements/{seq}/reverse: the reversing
 *       movement, once (again: 200 with it); the floor applies.
 *
 * Keys are [a-z0-9_.:-]{1,100}; in the register space they live under
 * "balances/", apart from any module's registers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "json.h"
#include "register.h"
#include "system.h"

#define COUNTER "balance"
/* Operation ids are unique in the tenant across every register: the API's
 * get a prefix of their own. */
#define OP_PREFIX "api:"
#define PAGE_DEFAULT 50

/* The register key of the path's {key}; false after a 404 for a key no
 * balance can have. */
static bool
register_key(struct tr_ctx *c, char *out, size_t len)
{
	const char *key = tr_param(c, 0);
	size_t n = strlen(key);

	if (n == 0 || n > 100)
		goto bad;
	for (const char *p = key; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("_.:-", *p)))
			goto bad;
	snprintf(out, len, "balances/%s", key);
	return true;
bad:
	tr_problem(c, 404, "not-found", "no such balance: keys are 1 to 100 of a-z 0-9 _ . : -");
	return false;
}

static int64_t
int_member(const bson_t *doc, const char *sub, const char *name)
{
	bson_iter_t it, child;

	if (!bson_iter_init_find(&it, doc, sub) || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
	    !bson_iter_recurse(&it, &child) || !bson_iter_find(&child, name))
		return 0;
	return bson_iter_as_int64(&child);
}

/* A register movement as a balance movement. */
static void
movement_json(const char *key, const bson_t *m, bson_t *out)
{
	bson_t tmp = BSON_INITIALIZER;
	bson_iter_t it;

	BSON_APPEND_UTF8(&tmp, "key", key);
	if (bson_iter_init_find(&it, m, "seq"))
		bson_append_iter(&tmp, "seq", -1, &it);
	BSON_APPEND_INT64(&tmp, "amount", int_member(m, "deltas", COUNTER));
	BSON_APPEND_INT64(&tmp, "balance", int_member(m, "after", COUNTER));
	if (bson_iter_init_find(&it, m, "operation_id") && BSON_ITER_HOLDS_UTF8(&it)) {
		const char *op = bson_iter_utf8(&it, NULL);
		BSON_APPEND_UTF8(
		    &tmp, "operation_id",
		    strncmp(op, OP_PREFIX, strlen(OP_PREFIX)) == 0 ? op + strlen(OP_PREFIX) : op);
	}
	bson_iter_t meta;
	if (bson_iter_init_find(&it, m, "meta") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
	    bson_iter_recurse(&it, &meta) && bson_iter_find(&meta, "memo"))
		bson_append_iter(&tmp, "memo", -1, &meta);
	else
		BSON_APPEND_NULL(&tmp, "memo");
	if (bson_iter_init_find(&it, m, "at"))
		bson_append_iter(&tmp, "at", -1, &it);
	if (bson_iter_init_find(&it, m, "reverses"))
		bson_append_iter(&tmp, "reverses", -1, &it);
	tr_render_resource(&tmp, out);
	bson_destroy(&tmp);
}

static void
reply_movement(struct tr_ctx *c, int status, const bson_t *m)
{
	bson_t out = BSON_INITIALIZER;

	movement_json(tr_param(c, 0), m, &out);
	tr_reply_json(c, status, &out);
	bson_destroy(&out);
}

static void
refused(struct tr_ctx *c, int rc, const bson_t *state)
{
	if (rc == TR_ELIMIT) {
		tr_problem(c, 409, "insufficient-balance",
			   "the movement would take the balance below zero; nothing was written");
		tr_problem_member(c, "balance", int_member(state, "values", COUNTER));
	} else if (rc == TR_EBUSY) {
		tr_problem_from_err(c, TR_EBUSY);
	} else {
		tr_problem_from_err(c, rc);
	}
}

void
balances_move(struct tr_ctx *c)
{
	static const char *const fields[] = {"amount", "operation_id", "memo", NULL};
	char key[128];
	const char *op = NULL, *memo = NULL;
	int64_t amount = 0;
	bson_iter_t it;
	bson_t meta = BSON_INITIALIZER, m;
	bool ok = tr_body_only(c, fields), replayed;

	if (!register_key(c, key, sizeof(key)))
		goto out;
	if (!bson_iter_init_find(&it, &c->req->body, "amount") ||
	    !(BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it)) ||
	    (amount = bson_iter_as_int64(&it)) == 0 || amount < -1000000000000000LL ||
	    amount > 1000000000000000LL) {
		tr_problem_field(c, "amount", "must be a non-zero integer within +-10^15");
		ok = false;
	}
	ok &= tr_body_line(c, "operation_id", 1, 100, true, &op);
	ok &= tr_body_line(c, "memo", 1, 200, false, &memo);
	if (!ok)
		goto out;
	if (memo)
		BSON_APPEND_UTF8(&meta, "memo", memo);
	char op_id[128];
	snprintf(op_id, sizeof(op_id), "%s%s", OP_PREFIX, op);
	struct tr_reg_delta delta = {COUNTER, amount};
	struct tr_reg_post p = {.key = key,
				.op_id = op_id,
				.deltas = &delta,
				.ndeltas = 1,
				.has_floor = true,
				.floor = 0,
				.meta = memo ? &meta : NULL};
	int rc = tr_register_post(c->db, &p, &m, &replayed);
	if (rc != TR_OK) {
		refused(c, rc, &m);
	} else if (replayed) {
		/* the first movement of this operation; the same request again? */
		const char *was = NULL;
		bson_iter_t mi, mm;
		if (bson_iter_init_find(&mi, &m, "meta") && BSON_ITER_HOLDS_DOCUMENT(&mi) &&
		    bson_iter_recurse(&mi, &mm) && bson_iter_find(&mm, "memo"))
			was = bson_iter_utf8(&mm, NULL);
		const char *mk =
		    bson_iter_init_find(&mi, &m, "key") ? bson_iter_utf8(&mi, NULL) : "";
		if (strcmp(mk, key) != 0 || int_member(&m, "deltas", COUNTER) != amount ||
		    (was == NULL) != (memo == NULL) || (was && strcmp(was, memo) != 0))
			tr_problem(c, 409, "conflict",
				   "operation_id was used for another movement; it names one "
				   "movement only");
		else
			reply_movement(c, 200, &m);
	} else {
		reply_movement(c, 201, &m);
	}
	bson_destroy(&m);
out:
	bson_destroy(&meta);
}

void
balances_get(struct tr_ctx *c)
{
	char key[128];
	bson_t state, out = BSON_INITIALIZER;
	bson_iter_t it;

	if (!register_key(c, key, sizeof(key))) {
		bson_destroy(&out);
		return;
	}
	int rc = tr_register_read(c->db, key, &state);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
	} else {
		BSON_APPEND_UTF8(&out, "key", tr_param(c, 0));
		BSON_APPEND_INT64(&out, "balance", int_member(&state, "values", COUNTER));
		BSON_APPEND_INT64(&out, "seq",
				  bson_iter_init_find(&it, &state, "seq") ? bson_iter_as_int64(&it)
									  : 0);
		tr_reply_json(c, 200, &out);
	}
	bson_destroy(&state);
	bson_destroy(&out);
}

/* A page's cursor is the seq the next page starts below, as text. */
void
balances_movements(struct tr_ctx *c)
{
	char key[128], cursor[32];
	const char *limit_s = tr_query(c, "limit"), *cursor_s = tr_query(c, "cursor");
	long long limit = PAGE_DEFAULT, before = 0, next = 0;
	bson_t out = BSON_INITIALIZER, items = BSON_INITIALIZER, arr;
	bson_iter_t it;

	if (!register_key(c, key, sizeof(key)))
		goto out;
	if (limit_s && tr_parse_int(limit_s, 1, 200, &limit) != 0)
		tr_problem_field(c, "limit", "must be an integer from 1 to 200");
	if (cursor_s && tr_parse_int(cursor_s, 2, INT64_MAX, &before) != 0)
		tr_problem(c, 400, "malformed-request", "cursor is not valid for this list");
	if (c->resp->status)
		goto out;
	int rc = tr_register_movements(c->db, key, before, (int)limit, &items, &next);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	BSON_APPEND_ARRAY_BEGIN(&out, "items", &arr);
	int i = 0;
	if (bson_iter_init(&it, &items))
		while (bson_iter_next(&it)) {
			const uint8_t *data;
			uint32_t len;
			bson_t m, one;
			char k[16];
			const char *kk;
			bson_iter_document(&it, &len, &data);
			if (!bson_init_static(&m, data, len))
				continue;
			bson_init(&one);
			movement_json(tr_param(c, 0), &m, &one);
			bson_uint32_to_string((uint32_t)i++, &kk, k, sizeof(k));
			BSON_APPEND_DOCUMENT(&arr, kk, &one);
			bson_destroy(&one);
		}
	bson_append_array_end(&out, &arr);
	if (next > 0) {
		snprintf(cursor, sizeof(cursor), "%lld", next);
		BSON_APPEND_UTF8(&out, "next_cursor", cursor);
	} else {
		BSON_APPEND_NULL(&out, "next_cursor");
	}
	tr_reply_json(c, 200, &out);
out:
	bson_destroy(&items);
	bson_destroy(&out);
}

static bool
seq_param(struct tr_ctx *c, long long *seq)
{
	if (tr_parse_int(tr_param(c, 1), 1, INT64_MAX, seq) != 0) {
		tr_problem(c, 404, "not-found", "no such movement");
		return false;
	}
	return true;
}

void
balances_movement(struct tr_ctx *c)
{
	char key[128];
	long long seq;
	bson_t m;

	if (!register_key(c, key, sizeof(key)) || !seq_param(c, &seq))
		return;
	int rc = tr_register_movement(c->db, key, seq, &m);
	if (rc != TR_OK)
		tr_problem_from_err(c, rc);
	else
		reply_movement(c, 200, &m);
	bson_destroy(&m);
}

void
balances_reverse(struct tr_ctx *c)
{
	char key[128];
	long long seq;
	bool replayed;
	bson_t m;

	if (!register_key(c, key, sizeof(key)) || !seq_param(c, &seq))
		return;
	int rc = tr_register_reverse(c->db, key, seq, true, 0, NULL, &m, &replayed);
	if (rc == TR_EINVALID)
		tr_problem(c, 422, "validation-failed", "a reversal cannot be reversed");
	else if (rc != TR_OK)
		refused(c, rc, &m);
	else
		reply_movement(c, replayed ? 200 : 201, &m);
	bson_destroy(&m);
}
