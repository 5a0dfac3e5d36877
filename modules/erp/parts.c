/* Records with lines that are fulfilled in parts (an order's shipments, a
 * purchase order's receipts): the quantities of a part are claimed on the
 * record first, by one version-checked write that adds them to the lines'
 * done field and names the part pending, so two parts never take the same
 * remainder in any process; once the part's work is done, it is no longer
 * pending. (erp.h) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "erp.h"
#include "json.h"

static const char *
remains_msg(const char *done_field)
{
	return strcmp(done_field, "shipped") == 0 ? "more than remains to ship"
						  : "more than remains to receive";
}

int
erp_lines_of(const bson_t *doc, const char *done_field, bson_oid_t *products, int64_t *qty,
	     int64_t *done)
{
	bson_iter_t it, arr, line;
	int n = 0;

	if (!bson_iter_init_find(&it, doc, "lines") || !bson_iter_recurse(&it, &arr))
		return 0;
	while (n < ERP_MAX_DOC_LINES && bson_iter_next(&arr)) {
		qty[n] = done[n] = 0;
		if (!bson_iter_recurse(&arr, &line))
			continue;
		while (bson_iter_next(&line)) {
			const char *k = bson_iter_key(&line);
			if (strcmp(k, "product_id") == 0 && BSON_ITER_HOLDS_OID(&line))
				bson_oid_copy(bson_iter_oid(&line), &products[n]);
			else if (strcmp(k, "quantity") == 0)
				qty[n] = bson_iter_as_int64(&line);
			else if (strcmp(k, done_field) == 0)
				done[n] = bson_iter_as_int64(&line);
		}
		n++;
	}
	return n;
}

int
erp_read_claim(struct tr_ctx *c, const bson_oid_t *products, int n, struct erp_claim *out)
{
	bson_iter_t it, arr, line;
	int m = 0;
	bool ok = true;
	static const char *const fields[] = {"lines", NULL};

	if (!tr_body_only(c, fields))
		return -1;
	if (!bson_iter_init_find(&it, &c->req->body, "lines") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &arr)) {
		tr_problem_field(c, "lines", "must be an array of {\"product_id\", \"quantity\"}");
		return -1;
	}
	while (bson_iter_next(&arr)) {
		char f[32];
		const char *pid = NULL;
		int64_t q = 0;
		bool good = m < ERP_MAX_DOC_LINES && BSON_ITER_HOLDS_DOCUMENT(&arr) &&
			    bson_iter_recurse(&arr, &line);
		while (good && bson_iter_next(&line)) {
			const char *k = bson_iter_key(&line);
			if (strcmp(k, "product_id") == 0 && BSON_ITER_HOLDS_UTF8(&line))
				pid = bson_iter_utf8(&line, NULL);
			else if (strcmp(k, "quantity") == 0 &&
				 (BSON_ITER_HOLDS_INT32(&line) || BSON_ITER_HOLDS_INT64(&line)))
				q = bson_iter_as_int64(&line);
			else
				good = false;
		}
		snprintf(f, sizeof(f), "lines[%d]", m);
		if (!good || !pid || !tr_is_object_id(pid) || q <= 0) {
			tr_problem_field(
			    c, tr_arena_strdup(c->req->arena, f),
			    "must be {\"product_id\", \"quantity\" (a whole number above "
			    "0)}");
			ok = false;
			m++;
			continue;
		}
		bson_oid_t oid;
		bson_oid_init_from_string(&oid, pid);
		int i;
		for (i = 0; i < n && !bson_oid_equal(&products[i], &oid); i++)
			;
		if (i == n) {
			tr_problem_field(c, tr_arena_strdup(c->req->arena, f),
					 "names a product the record does not have");
			ok = false;
			m++;
			continue;
		}
		for (int j = 0; j < m; j++)
			if (ok && out[j].index == i) {
				tr_problem_field(c, tr_arena_strdup(c->req->arena, f),
						 "names a product twice");
				ok = false;
			}
		out[m++] = (struct erp_claim){.index = i, .product = oid, .quantity = q};
	}
	if (ok && m == 0) {
		tr_problem_field(c, "lines", "must name at least one product");
		ok = false;
	}
	return ok ? m : -1;
}

int
erp_claim_lines(struct tr_ctx *c, const char *coll, const char *id, const char *done_field,
		const char *pending_field, const char *sid, const struct erp_claim *sl, int m,
		const char *const *statuses, bson_t *order)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		bson_oid_t products[ERP_MAX_DOC_LINES];
		int64_t qty[ERP_MAX_DOC_LINES], done[ERP_MAX_DOC_LINES];
		bson_t set = BSON_INITIALIZER, lines, line, pending, out = BSON_INITIALIZER;
		bson_iter_t it, arr, field;
		int n = erp_lines_of(order, done_field, products, qty, done), rc;

		/* a retry of this shipment: claimed already */
		if (bson_iter_init_find(&it, order, pending_field) && bson_iter_recurse(&it, &arr))
			while (bson_iter_next(&arr))
				if (BSON_ITER_HOLDS_UTF8(&arr) &&
				    strcmp(bson_iter_utf8(&arr, NULL), sid) == 0) {
					bson_destroy(&set);
					bson_destroy(&out);
					return TR_OK;
				}
		/* in a status that takes parts, on this very version */
		const char *status = tr_doc_str(order, "status");
		bool allowed = false;
		for (const char *const *st = statuses; st && *st && status; st++)
			allowed |= strcmp(*st, status) == 0;
		if (!allowed) {
			char *msg = tr_arena_alloc(c->req->arena, 96);
			snprintf(msg, 96, "the record is %s: it takes no more parts",
				 status ? status : "gone");
			tr_problem(c, 409, "conflict", msg);
			bson_destroy(&set);
			bson_destroy(&out);
			return TR_ELIMIT;
		}
		for (int j = 0; j < m; j++)
			if (sl[j].quantity > qty[sl[j].index] - done[sl[j].index]) {
				char *f = tr_arena_alloc(c->req->arena, 32),
				     *msg = tr_arena_alloc(c->req->arena, 96);
				snprintf(f, 32, "lines[%d]", j);
				snprintf(msg, 96, "%lld remains",
					 (long long)(qty[sl[j].index] - done[sl[j].index]));
				tr_problem(c, 409, "conflict", remains_msg(done_field));
				tr_problem_field(c, f, msg);
				bson_destroy(&set);
				bson_destroy(&out);
				return TR_ELIMIT;
			}
		/* the lines again, with what ships now added */
		BSON_APPEND_ARRAY_BEGIN(&set, "lines", &lines);
		int i = 0;
		if (bson_iter_init_find(&it, order, "lines") && bson_iter_recurse(&it, &arr))
			while (bson_iter_next(&arr)) {
				char key[16];
				const char *k;
				int64_t add = 0;
				for (int j = 0; j < m; j++)
					if (sl[j].index == i)
						add = sl[j].quantity;
				bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
				BSON_APPEND_DOCUMENT_BEGIN(&lines, k, &line);
				bool more = bson_iter_recurse(&arr, &field);
				while (more && bson_iter_next(&field)) {
					if (strcmp(bson_iter_key(&field), done_field) == 0)
						BSON_APPEND_INT64(&line, done_field,
								  bson_iter_as_int64(&field) + add);
					else
						bson_append_iter(&line, NULL, 0, &field);
				}
				bson_append_document_end(&lines, &line);
				i++;
			}
		bson_append_array_end(&set, &lines);
		BSON_APPEND_ARRAY_BEGIN(&set, pending_field, &pending);
		int np = 0;
		if (bson_iter_init_find(&it, order, pending_field) && bson_iter_recurse(&it, &arr))
			while (bson_iter_next(&arr)) {
				char key[16];
				const char *k;
				bson_uint32_to_string((uint32_t)np++, &k, key, sizeof(key));
				bson_append_iter(&pending, k, -1, &arr);
			}
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)np, &k, key, sizeof(key));
		BSON_APPEND_UTF8(&pending, k, sid);
		bson_append_array_end(&set, &pending);
		rc = tr_db_update(c->db, coll, id, tr_doc_int(order, "version", 0), &set, NULL,
				  &out);
		bson_destroy(&set);
		(void)n;
		if (rc != TR_EVERSION) {
			if (rc == TR_OK) {
				bson_destroy(order);
				bson_copy_to(&out, order);
			}
			bson_destroy(&out);
			return rc;
		}
		bson_destroy(&out);
		bson_destroy(order);
		if ((rc = tr_db_get(c->db, coll, id, order)) != TR_OK)
			return rc;
	}
	return TR_EBUSY;
}

int
erp_unpend(struct tr_db *db, const char *coll, const char *id, const char *pending_field,
	   const char *sid, const char *(*status_of)(const bson_t *doc), bson_t *out)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		bson_t order, set = BSON_INITIALIZER, pending;
		bson_iter_t it, arr;
		int np = 0, rc = tr_db_get(db, coll, id, &order);
		if (rc != TR_OK) {
			bson_destroy(&order);
			bson_destroy(&set);
			return rc;
		}
		BSON_APPEND_ARRAY_BEGIN(&set, pending_field, &pending);
		if (bson_iter_init_find(&it, &order, pending_field) && bson_iter_recurse(&it, &arr))
			while (bson_iter_next(&arr))
				if (!BSON_ITER_HOLDS_UTF8(&arr) ||
				    strcmp(bson_iter_utf8(&arr, NULL), sid) != 0) {
					char key[16];
					const char *k;
					bson_uint32_to_string((uint32_t)np++, &k, key, sizeof(key));
					bson_append_iter(&pending, k, -1, &arr);
				}
		bson_append_array_end(&set, &pending);
		const char *status = status_of ? status_of(&order) : NULL;
		if (status)
			BSON_APPEND_UTF8(&set, "status", status);
		bson_destroy(out);
		rc = tr_db_update(db, coll, id, tr_doc_int(&order, "version", 0), &set, NULL, out);
		bson_destroy(&order);
		bson_destroy(&set);
		if (rc != TR_EVERSION)
			return rc;
	}
	return TR_EBUSY;
}
