/* Reserving every line of a record or none (erp.h, struct erp_hold): an
 * order's confirmation, a work order's release.
 *
 * The record moves to its busy status first (a version-checked write: one
 * attempt at a time, in any process), then reserves line after line on the
 * stock registers under operation ids of that attempt (the version the
 * busy write gave the record); a line that does not fit releases those
 * reserved before it and the record goes back to where it was. A settle
 * job scheduled before the first write undoes an attempt whose writer
 * died: a record still busy at that version goes back (a version-checked
 * write, so a writer that was only slow can no longer finish it) and the
 * attempt's reservations are released; a record the attempt finished keeps
 * them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "erp.h"
#include "json.h"
#include "log.h"
#include "register.h"

struct reservation {
	char key[96];
	long long seq;
	bool done;
};

bool
erp_warehouse_allows_negative(struct tr_db *db, const bson_oid_t *wid)
{
	bson_t wh;
	bson_iter_t it;
	char hex[25];
	bool yes;

	bson_oid_to_string(wid, hex);
	yes = tr_db_get(db, ERP_WAREHOUSES, hex, &wh) == TR_OK &&
	      bson_iter_init_find(&it, &wh, "allow_negative") && BSON_ITER_HOLDS_BOOL(&it) &&
	      bson_iter_bool(&it);
	bson_destroy(&wh);
	return yes;
}

/* Releases the reservations made (reversing their movements, once). */
static int
release(struct tr_db *db, struct reservation *r, int n)
{
	int rc = TR_OK;

	for (int i = 0; i < n; i++) {
		bson_t mv;
		bool replayed;
		if (!r[i].done)
			continue;
		int one =
		    tr_register_reverse(db, r[i].key, r[i].seq, false, 0, NULL, &mv, &replayed);
		bson_destroy(&mv);
		if (one != TR_OK)
			rc = one;
	}
	return rc;
}

static void
store_reservations(bson_t *set, const struct reservation *r, int n)
{
	bson_t arr, item;

	BSON_APPEND_ARRAY_BEGIN(set, "_reservations", &arr);
	for (int i = 0; i < n; i++) {
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &item);
		BSON_APPEND_UTF8(&item, "key", r[i].key);
		BSON_APPEND_INT64(&item, "seq", r[i].seq);
		bson_append_document_end(&arr, &item);
	}
	bson_append_array_end(set, &arr);
}

/* The record's status (and more) on the version it was read at. */
static int
set_status(struct tr_db *db, const struct erp_hold *h, const char *id, const bson_t *rec,
	   const char *status, const bson_t *more, bson_t *out)
{
	bson_t set = BSON_INITIALIZER;
	int rc;

	BSON_APPEND_UTF8(&set, "status", status);
	if (more)
		bson_concat(&set, more);
	rc = tr_db_update(db, h->coll, id, tr_doc_int(rec, "version", 0), &set, NULL, out);
	bson_destroy(&set);
	return rc;
}

static void
changed_meanwhile(struct tr_ctx *c, const struct erp_hold *h, int rc)
{
	if (rc == TR_EVERSION) {
		char *m = tr_arena_alloc(c->req->arena, 64);
		snprintf(m, 64, "the %s changed meanwhile; read it again", h->name);
		tr_problem(c, 409, "conflict", m);
	} else {
		tr_problem_from_err(c, rc);
	}
}

bool
erp_hold_all(struct tr_ctx *c, const struct erp_hold *h, const bson_t *rec,
	     const bson_oid_t *products, const int64_t *qty, int n, bson_t *out)
{
	bson_t busy = BSON_INITIALIZER, more = BSON_INITIALIZER;
	struct reservation *r = calloc((size_t)(n ? n : 1), sizeof(*r));
	bson_oid_t oid, wid;
	char id[25], op[128], payload[160];
	int rc, short_lines = 0;
	bool ok = false;

	if (!r) {
		tr_problem_from_err(c, TR_ENOMEM);
		goto out;
	}
	tr_doc_oid(rec, "_id", &oid);
	bson_oid_to_string(&oid, id);
	tr_doc_oid(rec, "warehouse_id", &wid);
	/* a writer that dies from here on leaves the attempt to the settle
	 * job; the attempt is the version the busy write gives */
	long long attempt = tr_doc_int(rec, "version", 0) + 1;
	snprintf(payload, sizeof(payload),
		 "{\"order\":\"%s\",\"kind\":\"%s\",\"attempt\":%lld,\"lines\":%d}", id, h->kind,
		 attempt, n);
	if ((rc = erp_schedule_settle(c->req->principal.tenant_hex, payload)) != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	/* one attempt at a time, in any process */
	bson_destroy(&busy);
	rc = set_status(c->db, h, id, rec, h->busy, NULL, &busy);
	if (rc != TR_OK) {
		changed_meanwhile(c, h, rc);
		goto out;
	}
	bool floor = !erp_warehouse_allows_negative(c->db, &wid);
	for (int i = 0; i < n; i++) {
		struct tr_reg_delta d[] = {{"reserved", qty[i]}, {"available", -qty[i]}};
		bson_t mv;
		bool replayed;
		char p[25], w[25];
		bson_oid_to_string(&products[i], p);
		bson_oid_to_string(&wid, w);
		snprintf(r[i].key, sizeof(r[i].key), "erp.stock/%s/%s", p, w);
		snprintf(op, sizeof(op), "%s:%s:%lld:%d", h->op, id, attempt, i);
		struct tr_reg_post post = {
		    .key = r[i].key, .op_id = op, .deltas = d, .ndeltas = 2, .has_floor = floor};
		rc = tr_register_post(c->db, &post, &mv, &replayed);
		if (rc == TR_ELIMIT) {
			bson_iter_t it, sub;
			int64_t available = 0;
			if (bson_iter_init(&it, &mv) &&
			    bson_iter_find_descendant(&it, "values.available", &sub))
				available = bson_iter_as_int64(&sub);
			char *f = tr_arena_alloc(c->req->arena, 32),
			     *m = tr_arena_alloc(c->req->arena, 96);
			snprintf(f, 32, "%s[%d]", h->field, i);
			snprintf(m, 96, "needs %lld, the warehouse has %lld available",
				 (long long)qty[i], (long long)available);
			tr_problem_field(c, f, m);
			short_lines++;
		} else if (rc != TR_OK) {
			bson_destroy(&mv);
			break;
		} else {
			r[i].seq = tr_doc_int(&mv, "seq", 0);
			r[i].done = true;
			erp_step_pause();
		}
		bson_destroy(&mv);
	}
	if (rc == TR_OK && short_lines == 0) {
		store_reservations(&more, r, n);
		BSON_APPEND_INT64(&more, h->attempt_field, attempt);
		bson_destroy(out);
		rc = set_status(c->db, h, id, &busy, h->after, &more, out);
		if (rc == TR_OK) {
			ok = true;
			goto out;
		}
	}
	/* none, then: what was reserved is released, the record is back */
	int rrc = release(c->db, r, n);
	bson_t back = BSON_INITIALIZER;
	int brc = set_status(c->db, h, id, &busy, h->before, NULL, &back);
	bson_destroy(&back);
	if (rrc != TR_OK || brc != TR_OK)
		tr_warn("erp: %s %s left %s (release %s, status %s): its settle job ends it",
			h->kind, id, h->busy, tr_strerror(rrc), tr_strerror(brc));
	if (short_lines) {
		c->resp->status = 409;
		c->resp->problem_slug = "insufficient-stock";
		c->resp->problem_title = "Insufficient stock";
		c->resp->problem_detail = "not every line can be reserved: nothing was";
	} else {
		changed_meanwhile(c, h, rc);
	}
out:
	free(r);
	bson_destroy(&busy);
	bson_destroy(&more);
	return ok;
}

int
erp_hold_settle(struct tr_db *db, const struct erp_hold *h, const bson_t *payload, char *err,
		size_t errlen)
{
	const char *id = tr_doc_str(payload, "order");
	long long attempt = tr_doc_int(payload, "attempt", 0);
	long long lines = tr_doc_int(payload, "lines", 0);
	bson_t rec = BSON_INITIALIZER;
	int rc = TR_OK;

	if (!id || !tr_is_object_id(id) || attempt <= 0 || lines < 0 ||
	    lines > ERP_MAX_BOM_COMPONENTS)
		goto out; /* not an attempt's: nothing to do */
	for (int tries = 0; tries < 5; tries++) {
		bson_destroy(&rec);
		rc = tr_db_get(db, h->coll, id, &rec);
		if (rc != TR_OK)
			goto out;
		const char *status = tr_doc_str(&rec, "status");
		if (!status || strcmp(status, h->busy) != 0 ||
		    tr_doc_int(&rec, "version", 0) != attempt)
			break;
		/* the writer stopped halfway: the record is back where it was */
		bson_t back;
		rc = set_status(db, h, id, &rec, h->before, NULL, &back);
		bson_destroy(&back);
		if (rc == TR_OK)
			tr_warn("erp: %s %s was left %s: it is %s again", h->kind, id, h->busy,
				h->before);
		if (rc != TR_EVERSION)
			break;
	}
	if (rc != TR_OK)
		goto out;
	const char *status = tr_doc_str(&rec, "status");
	if (tr_doc_int(&rec, h->attempt_field, 0) == attempt && status &&
	    strcmp(status, h->busy) != 0)
		goto out; /* the attempt that held: its reservations stay */
	for (long long i = 0; rc == TR_OK && i < lines; i++) {
		char op[128];
		bson_t mv, rv;
		bool found = false, replayed;
		snprintf(op, sizeof(op), "%s:%s:%lld:%lld", h->op, id, attempt, i);
		rc = tr_register_find_op(db, op, &mv, &found);
		if (rc == TR_OK && found && tr_doc_str(&mv, "key")) {
			rc = tr_register_reverse(db, tr_doc_str(&mv, "key"),
						 tr_doc_int(&mv, "seq", 0), false, 0, NULL, &rv,
						 &replayed);
			bson_destroy(&rv);
			if (rc == TR_OK && !replayed)
				tr_warn(
				    "erp: %s %s: a reservation of an unfinished attempt released",
				    h->kind, id);
		}
		bson_destroy(&mv);
	}
out:
	if (rc == TR_ENOTFOUND)
		rc = TR_OK; /* the record is gone */
	if (rc != TR_OK)
		snprintf(err, errlen, "settling %s %s: %s", h->kind, id ? id : "?",
			 tr_strerror(rc));
	bson_destroy(&rec);
	return rc;
}
