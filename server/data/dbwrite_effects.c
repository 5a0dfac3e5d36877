/* Effects of writes on registers (module.h: struct tr_effects): what a
 * change posts, computed once and carried by its claim, posted exactly
 * once; and settling, which posts the effects of writers that died between
 * their write and their postings (the design is in dbwrite.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "db.h"
#include "dbpool.h"
#include "dbwrite_int.h"
#include "log.h"
#include "register.h"
#include "resource.h"
#include "seq.h"
#include "util.h"

/* ---- effects ---- */

const struct tr_effects *
tr_dbw_effects_of(const char *coll)
{
	for (size_t m = 0; m < tr_nmodules; m++)
		for (size_t i = 0; i < tr_modules[m]->neffects; i++)
			if (strcmp(tr_modules[m]->effects[i].coll, coll) == 0)
				return &tr_modules[m]->effects[i];
	return NULL;
}

/* The first resource stored in coll (a collection served by two
 * resources takes the first one's fields), or NULL. */
static const struct tr_resource *
resource_of(const char *coll)
{
	for (size_t m = 0; m < tr_nmodules; m++)
		for (size_t i = 0; i < tr_modules[m]->nresources; i++)
			if (strcmp(tr_modules[m]->resources[i]->coll, coll) == 0)
				return tr_modules[m]->resources[i];
	return NULL;
}

static bool
shown_null(const struct tr_field *f)
{
	return (f->flags & TR_F_NULLABLE) && !(f->flags & TR_F_SECRET);
}

void
tr_dbw_append_nulls(const char *coll, const bson_t *has, bson_t *doc)
{
	const struct tr_resource *e = resource_of(coll);

	for (const struct tr_field *f = e ? e->fields : NULL; f && f->name; f++)
		if (shown_null(f) && !bson_has_field(has, f->name))
			BSON_APPEND_NULL(doc, f->name);
}

const bson_t *
tr_dbw_with_nulls(const char *coll, const bson_t *doc, bson_t *tmp, bool *copied)
{
	const struct tr_resource *e = resource_of(coll);
	const struct tr_field *f = e ? e->fields : NULL;

	*copied = false;
	while (f && f->name && !(shown_null(f) && !bson_has_field(doc, f->name)))
		f++;
	if (!f || !f->name)
		return doc;
	bson_copy_to(doc, tmp);
	tr_dbw_append_nulls(coll, doc, tmp);
	*copied = true;
	return tmp;
}

struct posting {
	const char *k, *c; /* borrowed from the postings array */
	int64_t d;
};

int
tr_dbw_posting_name_order(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
posting_order(const void *a, const void *b)
{
	const struct posting *x = a, *y = b;
	int r = strcmp(x->k, y->k);
	return r ? r : strcmp(x->c, y->c);
}

/* The effects of a change as an array of {k: register key, d: {counter:
 * delta}} (register keys hold dots, which field names may not), deltas of
 * the same counter summed and zeros left out; *n = how many registers. */
int
tr_dbw_compute_fx(const char *coll, const bson_t *before, const bson_t *after, bson_t *fx, int *n)
{
	const struct tr_effects *e = tr_dbw_effects_of(coll);
	bson_t postings = BSON_INITIALIZER;
	struct posting *ps = NULL;
	size_t np = 0;
	bson_iter_t it, p;
	int rc = TR_OK;

	bson_init(fx);
	*n = 0;
	if (!e)
		goto out;
	bson_destroy(&postings);
	bson_init(&postings);
	if ((rc = e->postings(before, after, &postings)) != TR_OK)
		goto out;
	ps = calloc(MAX_POSTINGS, sizeof(*ps));
	if (!ps) {
		rc = TR_ENOMEM;
		goto out;
	}
	if (bson_iter_init(&it, &postings))
		while (bson_iter_next(&it)) {
			struct posting one = {NULL, NULL, 0};
			if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &p))
				continue;
			while (bson_iter_next(&p)) {
				const char *key = bson_iter_key(&p);
				if (strcmp(key, "k") == 0 && BSON_ITER_HOLDS_UTF8(&p))
					one.k = bson_iter_utf8(&p, NULL);
				else if (strcmp(key, "c") == 0 && BSON_ITER_HOLDS_UTF8(&p))
					one.c = bson_iter_utf8(&p, NULL);
				else if (strcmp(key, "d") == 0 && BSON_ITER_HOLDS_NUMBER(&p))
					one.d = bson_iter_as_int64(&p);
			}
			if (!one.k || !one.c) {
				rc = TR_EINTERNAL;
				goto out;
			}
			size_t j = 0;
			while (j < np && (strcmp(ps[j].k, one.k) || strcmp(ps[j].c, one.c)))
				j++;
			if (j == np) {
				if (np == MAX_POSTINGS) {
					rc = TR_ELIMIT;
					goto out;
				}
				ps[np++] = one;
			} else if (__builtin_add_overflow(ps[j].d, one.d, &ps[j].d)) {
				rc = TR_EINVALID;
				goto out;
			}
		}
	qsort(ps, np, sizeof(*ps), posting_order);
	for (size_t i = 0; i < np;) {
		bson_t deltas;
		size_t j = i;
		bool any = false;
		for (size_t q = i; q < np && strcmp(ps[q].k, ps[i].k) == 0; q++)
			any |= ps[q].d != 0;
		if (!any) {
			while (j < np && strcmp(ps[j].k, ps[i].k) == 0)
				j++;
			i = j;
			continue;
		}
		bson_t entry;
		char idx[16];
		const char *ik;
		bson_uint32_to_string((uint32_t)*n, &ik, idx, sizeof(idx));
		BSON_APPEND_DOCUMENT_BEGIN(fx, ik, &entry);
		BSON_APPEND_UTF8(&entry, "k", ps[i].k);
		BSON_APPEND_DOCUMENT_BEGIN(&entry, "d", &deltas);
		for (; j < np && strcmp(ps[j].k, ps[i].k) == 0; j++)
			if (ps[j].d != 0)
				BSON_APPEND_INT64(&deltas, ps[j].c, ps[j].d);
		bson_append_document_end(&entry, &deltas);
		bson_append_document_end(fx, &entry);
		(*n)++;
		i = j;
	}
out:
	free(ps);
	bson_destroy(&postings);
	return rc;
}

/* Posts the effects of a claim's change, one movement per register, each
 * named by the claim so that posting again (settling) finds the first. */
int
tr_dbw_apply_fx(struct tr_db *db, const char *claim_id, const bson_t *fx)
{
	struct tr_reg_post posts[16];
	char ops[16][512];
	size_t n = 0;
	bson_iter_t it, e, d;
	int rc = TR_OK;

	memset(posts, 0, sizeof(posts));
	if (!bson_iter_init(&it, fx))
		return TR_OK;
	while (rc == TR_OK && bson_iter_next(&it)) {
		struct tr_reg_post *p = &posts[n];
		size_t cap = 0;
		if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &e))
			continue;
		while (rc == TR_OK && bson_iter_next(&e)) {
			if (strcmp(bson_iter_key(&e), "k") == 0 && BSON_ITER_HOLDS_UTF8(&e))
				p->key = bson_iter_utf8(&e, NULL);
			if (strcmp(bson_iter_key(&e), "d") != 0 || !BSON_ITER_HOLDS_DOCUMENT(&e) ||
			    !bson_iter_recurse(&e, &d))
				continue;
			while (bson_iter_next(&d)) {
				struct tr_reg_delta *deltas = (struct tr_reg_delta *)p->deltas;
				if (p->ndeltas == cap) {
					cap = cap ? cap * 2 : 16;
					deltas = realloc(deltas, cap * sizeof(*deltas));
					if (!deltas) {
						rc = TR_ENOMEM;
						break;
					}
					p->deltas = deltas;
				}
				deltas[p->ndeltas].counter = bson_iter_key(&d);
				deltas[p->ndeltas].delta = bson_iter_as_int64(&d);
				p->ndeltas++;
			}
		}
		if (rc != TR_OK || !p->key || p->ndeltas == 0)
			continue;
		snprintf(ops[n], sizeof(ops[n]), "fx:%s:%s", claim_id, p->key);
		p->op_id = ops[n];
		if (++n == sizeof(posts) / sizeof(posts[0])) { /* a full batch: post it */
			rc = tr_register_post_all(db, posts, n);
			for (size_t i = 0; i < n; i++)
				free((void *)posts[i].deltas);
			memset(posts, 0, sizeof(posts));
			n = 0;
		}
	}
	if (rc == TR_OK && n > 0)
		rc = tr_register_post_all(db, posts, n);
	for (size_t i = 0; i <= n && i < sizeof(posts) / sizeof(posts[0]); i++)
		free((void *)posts[i].deltas);
	return rc;
}

/* The record as a change leaves it: before with set's fields replaced,
 * unset's removed, and the layer's fields moved on. */
void
tr_dbw_merge(const bson_t *before, const bson_t *set, const bson_t *unset, long long version,
	     int64_t now, bson_t *after)
{
	bson_iter_t it;

	bson_init(after);
	if (bson_iter_init(&it, before))
		while (bson_iter_next(&it)) {
			const char *k = bson_iter_key(&it);
			if ((set && bson_has_field(set, k) && !tr_db_reserved_field(k)) ||
			    (unset && bson_has_field(unset, k) && !tr_db_reserved_field(k)) ||
			    strcmp(k, "version") == 0 || strcmp(k, "updated_at") == 0)
				continue;
			bson_append_iter(after, k, -1, &it);
		}
	if (set && bson_iter_init(&it, set))
		while (bson_iter_next(&it))
			if (!tr_db_reserved_field(bson_iter_key(&it)))
				bson_append_iter(after, bson_iter_key(&it), -1, &it);
	BSON_APPEND_DATE_TIME(after, "updated_at", now);
	BSON_APPEND_INT64(after, "version", version);
}

/* ---- settling what dead writers left ---- */

/* One stale claim: was its change written? Then its effects are posted
 * (again: each posting finds itself). Either way it goes. */
static int
settle_one(struct tr_db *db, const bson_t *claim)
{
	bson_iter_t it;
	bson_oid_t rec, tenant;
	const char *coll = NULL, *change = NULL, *id = NULL;
	long long version = 0, now_at = 0;
	char hex[25];
	bson_t doc, fx;
	int rc;

	if (bson_iter_init_find(&it, claim, "_id") && BSON_ITER_HOLDS_UTF8(&it))
		id = bson_iter_utf8(&it, NULL);
	if (bson_iter_init_find(&it, claim, "coll") && BSON_ITER_HOLDS_UTF8(&it))
		coll = bson_iter_utf8(&it, NULL);
	if (bson_iter_init_find(&it, claim, "change") && BSON_ITER_HOLDS_UTF8(&it))
		change = bson_iter_utf8(&it, NULL);
	if (bson_iter_init_find(&it, claim, "version"))
		version = bson_iter_as_int64(&it);
	if (!id || !coll || !change || !bson_iter_init_find(&it, claim, "record") ||
	    !BSON_ITER_HOLDS_OID(&it))
		return TR_EINTERNAL;
	bson_oid_copy(bson_iter_oid(&it), &rec);
	if (!bson_iter_init_find(&it, claim, "tenant_id") || !BSON_ITER_HOLDS_OID(&it))
		return TR_EINTERNAL;
	bson_oid_copy(bson_iter_oid(&it), &tenant);
	tr_db_set_tenant(db, &tenant);
	bson_oid_to_string(&rec, hex);
	rc = tr_dbw_current(db, coll, hex, &doc, &now_at);
	bson_destroy(&doc);
	if (rc != TR_OK && rc != TR_ENOTFOUND)
		return rc;
	bool exists = rc == TR_OK, written;
	if (strcmp(change, "insert") == 0)
		written = exists;
	else if (strcmp(change, "delete") == 0)
		written = !exists;
	else
		written = exists && now_at > version;
	if (written && bson_iter_init_find(&it, claim, "fx") && BSON_ITER_HOLDS_ARRAY(&it)) {
		const uint8_t *data;
		uint32_t len;
		bson_iter_array(&it, &len, &data);
		if (bson_init_static(&fx, data, len) &&
		    (rc = tr_dbw_apply_fx(db, id, &fx)) != TR_OK)
			return rc;
		tr_info("db: settled the effects of a %s of %s %s left by a writer that stopped",
			change, coll, hex);
	}
	return TR_OK;
}

int
tr_db_settle(void)
{
	struct tr_db *db = tr_db_open(NULL);
	bson_t filter = BSON_INITIALIZER, **stale = NULL;
	const bson_t *doc;
	bson_error_t error;
	bson_iter_t it;
	mongoc_collection_t *c;
	mongoc_cursor_t *cur;
	size_t n = 0, cap = 0;
	int64_t now = tr_now_ms();
	int rc = TR_OK;

	if (!db) {
		bson_destroy(&filter);
		return TR_ENOMEM;
	}
	c = tr_db_collection(db, CLAIMS);
	cur = mongoc_collection_find_with_opts(c, &filter, NULL, NULL); /* a handful */
	while (mongoc_cursor_next(cur, &doc)) {
		if (!bson_iter_init_find(&it, doc, "exp") || !BSON_ITER_HOLDS_DATE_TIME(&it) ||
		    bson_iter_date_time(&it) > now)
			continue; /* its writer is within its lease */
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			bson_t **more = realloc(stale, cap * sizeof(*more));
			if (!more)
				break;
			stale = more;
		}
		stale[n++] = bson_copy(doc);
	}
	if (mongoc_cursor_error(cur, &error))
		rc = tr_db_fail("find", CLAIMS, &error);
	mongoc_cursor_destroy(cur);
	for (size_t i = 0; rc == TR_OK && i < n; i++) {
		const char *rk = NULL, *id = NULL;
		int gen = 0;
		bool newest = true;
		if (bson_iter_init_find(&it, stale[i], "rk") && BSON_ITER_HOLDS_UTF8(&it))
			rk = bson_iter_utf8(&it, NULL);
		if (bson_iter_init_find(&it, stale[i], "_id") && BSON_ITER_HOLDS_UTF8(&it))
			id = bson_iter_utf8(&it, NULL);
		if (bson_iter_init_find(&it, stale[i], "gen"))
			gen = (int)bson_iter_as_int64(&it);
		if (!rk || !id)
			continue;
		/* an older generation was given up by whoever took the next one */
		int g;
		bool live;
		if ((rc = tr_dbw_newest_claim(db, rk, &g, &live)) != TR_OK)
			break;
		newest = g <= gen;
		if (newest && (rc = settle_one(db, stale[i])) != TR_OK)
			break;
		bson_t del = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&del, "_id", id);
		mongoc_collection_delete_one(c, &del, NULL, NULL, NULL);
		bson_destroy(&del);
	}
	for (size_t i = 0; i < n; i++)
		bson_destroy(stale[i]);
	free(stale);
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
	tr_db_close(db);
	return rc;
}
