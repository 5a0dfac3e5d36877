/* Names of the records a CRM report lists (reports.h): owners from users,
 * clients through a per-process cache kept exact by the crm.names
 * register. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "json.h"
#include "register.h"
#include "reports.h"
#include "util.h"

/* More ids than this are named by one read of the whole collection
 * (client, user names; see crm_report_names_fill). */
#define POINT_LOOKUPS 40

/* ---- names of records by id ---- */

/* A record's name copied into the request arena, or NULL. */
const char *
crm_report_arena_name(struct tr_ctx *c, const bson_t *record)
{
	const char *name = tr_doc_str(record, "name");

	return name ? tr_arena_strdup(c->req->arena, name) : NULL;
}

struct names {
	struct tr_ctx *c;
	struct rindex *ix;
	size_t name_offset; /* where the const char * lives in a value */
};

static int
names_visit(void *arg, const bson_t *record)
{
	struct names *nm = arg;
	uint8_t key[KEY_LEN];
	bson_oid_t id;
	long i;

	if (!crm_report_rec_oid(record, "id", &id))
		return TR_OK;
	crm_report_oid_key(key, &id, 0);
	i = crm_report_rindex_find(nm->ix, key);
	if (i >= 0)
		*(const char **)((uint8_t *)crm_report_rindex_val(nm->ix, i) + nm->name_offset) =
		    crm_report_arena_name(nm->c, record);
	return TR_OK;
}

/* Fills the name (a const char * at name_offset of each value) of every key
 * of ix that is an id (tag byte 0) from coll. FerretDB pushes no $in down
 * (a batch of ids would read all of the tenant's records of coll each
 * time), so a few ids are read one by one, and many by one read of the
 * tenant's records of coll. */
int
crm_report_names_fill(struct tr_ctx *c, const char *coll, struct rindex *ix, size_t name_offset)
{
	struct names nm = {c, ix, name_offset};
	int rc = TR_OK;

	if (ix->n > POINT_LOOKUPS)
		return crm_report_walk_all(c, coll, NULL, names_visit, &nm);
	for (size_t i = 0; rc == TR_OK && i < ix->n; i++) {
		const uint8_t *key = crm_report_rindex_key(ix, (long)i);
		char hex[25];
		bson_oid_t id;
		bson_t record, rendered = BSON_INITIALIZER;
		if (key[12] != 0)
			continue;
		memcpy(id.bytes, key, 12);
		bson_oid_to_string(&id, hex);
		rc = tr_db_get(c->db, coll, hex, &record);
		if (rc == TR_OK) {
			tr_render_resource(&record, &rendered);
			rc = names_visit(&nm, &rendered);
		} else if (rc == TR_ENOTFOUND) {
			rc = TR_OK; /* gone since: no name */
		}
		bson_destroy(&record);
		bson_destroy(&rendered);
	}
	return rc;
}

/* ---- client names, kept per process ----
 *
 * Naming the clients abc-xyz lists means reading them, and FerretDB decodes
 * every record it returns in Go (about 0.1 ms each: naming 5,000 clients
 * takes half a second). So each process keeps the client names it read,
 * per tenant, each with the client's change count in the crm.names
 * register (totals.c) at the time. A report reads that register - one
 * lookup when nothing changed - and reads again only the clients whose
 * count moved. Exact across processes: every change of a name, in any
 * process, moves its count. */

#define NAME_TENANTS 8
#define NAME_MAX_CLIENTS 200000

struct cached_name {
	int64_t count;
	char *name; /* malloc'd, or NULL */
};

struct name_cache {
	bool used;
	bson_oid_t tenant;
	uint64_t last_used;
	struct rindex names; /* client key -> struct cached_name */
};

static struct {
	pthread_mutex_t lock;
	struct name_cache t[NAME_TENANTS];
	uint64_t clock;
} NC = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
name_cache_clear(struct name_cache *nc)
{
	for (size_t i = 0; i < nc->names.n; i++)
		free(((struct cached_name *)crm_report_rindex_val(&nc->names, (long)i))->name);
	crm_report_rindex_free(&nc->names);
	nc->used = false;
}

/* The tenant's cache, made (in place of the least recently used) when
 * there is none. NC.lock held. */
static struct name_cache *
name_cache_of(const bson_oid_t *tenant)
{
	struct name_cache *lru = &NC.t[0];

	for (int i = 0; i < NAME_TENANTS; i++) {
		if (NC.t[i].used && bson_oid_equal(&NC.t[i].tenant, tenant)) {
			NC.t[i].last_used = ++NC.clock;
			return &NC.t[i];
		}
		if (!NC.t[i].used || NC.t[i].last_used < lru->last_used)
			lru = &NC.t[i];
	}
	if (lru->used)
		name_cache_clear(lru);
	lru->used = true;
	bson_oid_copy(tenant, &lru->tenant);
	crm_report_rindex_init(&lru->names, sizeof(struct cached_name));
	lru->last_used = ++NC.clock;
	return lru;
}

/* A client's change count in the crm.names values. */
static int64_t
name_count(const struct counters *counts, const uint8_t *key)
{
	bson_oid_t id;
	char name[32], hex[25];

	memcpy(id.bytes, key, 12);
	bson_oid_to_string(&id, hex);
	snprintf(name, sizeof(name), "c:%s", hex);
	return counters_get(counts, name);
}

struct name_refresh {
	struct tr_ctx *c;
	const struct counters *counts;
	struct rindex *fresh; /* client key -> struct cached_name (names malloc'd) */
};

static int
refresh_visit(void *arg, const bson_t *client)
{
	struct name_refresh *r = arg;
	uint8_t key[KEY_LEN];
	bson_oid_t id;
	const char *name = tr_doc_str(client, "name");
	long i;

	if (!crm_report_rec_oid(client, "id", &id))
		return TR_OK;
	crm_report_oid_key(key, &id, 0);
	if ((i = crm_report_rindex_put(r->fresh, key)) < 0)
		return TR_ENOMEM;
	struct cached_name *cn = crm_report_rindex_val(r->fresh, i);
	cn->count = name_count(r->counts, key);
	free(cn->name);
	cn->name = name ? strdup(name) : NULL;
	return TR_OK;
}

/* crm_report_names_fill for clients, through the process's cache. */
int
crm_report_client_names_fill(struct tr_ctx *c, struct rindex *ix, size_t name_offset)
{
	struct counters counts;
	struct rindex fresh, missing;
	bson_t state;
	bson_iter_t it;
	int rc;

	memset(&counts, 0, sizeof(counts));
	crm_report_rindex_init(&fresh, sizeof(struct cached_name));
	crm_report_rindex_init(&missing, 1);
	rc = tr_register_read(c->db, CRM_NAMES, &state);
	if (rc == TR_OK && bson_iter_init_find(&it, &state, "values") &&
	    BSON_ITER_HOLDS_DOCUMENT(&it)) {
		const uint8_t *data;
		uint32_t len;
		bson_t values;
		bson_iter_document(&it, &len, &data);
		if (bson_init_static(&values, data, len) && bson_iter_init(&it, &values))
			while (rc == TR_OK && bson_iter_next(&it))
				if (!counters_set(&counts, bson_iter_key(&it),
						  bson_iter_as_int64(&it)))
					rc = TR_ENOMEM;
	}
	bson_destroy(&state);
	/* names the cache has at the count the register has now */
	pthread_mutex_lock(&NC.lock);
	struct name_cache *nc = rc == TR_OK ? name_cache_of(&c->req->principal.tenant_id) : NULL;
	for (size_t i = 0; nc && rc == TR_OK && i < ix->n; i++) {
		const uint8_t *key = crm_report_rindex_key(ix, (long)i);
		long k = crm_report_rindex_find(&nc->names, key);
		const struct cached_name *cn = k >= 0 ? crm_report_rindex_val(&nc->names, k) : NULL;
		if (cn && cn->count == name_count(&counts, key))
			*(const char **)((uint8_t *)crm_report_rindex_val(ix, (long)i) +
					 name_offset) =
			    cn->name ? tr_arena_strdup(c->req->arena, cn->name) : NULL;
		else if (crm_report_rindex_put(&missing, key) < 0)
			rc = TR_ENOMEM;
	}
	pthread_mutex_unlock(&NC.lock);
	/* the others from the database: one by one when few, else all */
	struct name_refresh r = {c, &counts, &fresh};
	if (rc == TR_OK && missing.n > POINT_LOOKUPS) {
		rc = crm_report_walk_all(c, "clients", NULL, refresh_visit, &r);
	} else {
		for (size_t i = 0; rc == TR_OK && i < missing.n; i++) {
			bson_t record, rendered = BSON_INITIALIZER;
			bson_oid_t id;
			char hex[25];
			memcpy(id.bytes, crm_report_rindex_key(&missing, (long)i), 12);
			bson_oid_to_string(&id, hex);
			int grc = tr_db_get(c->db, "clients", hex, &record);
			if (grc == TR_OK) {
				tr_render_resource(&record, &rendered);
				rc = refresh_visit(&r, &rendered);
			} else if (grc != TR_ENOTFOUND) {
				rc = grc;
			}
			bson_destroy(&record);
			bson_destroy(&rendered);
		}
	}
	/* a client gone since has no name: kept as such */
	for (size_t i = 0; rc == TR_OK && i < missing.n; i++) {
		const uint8_t *key = crm_report_rindex_key(&missing, (long)i);
		long k;
		if (crm_report_rindex_find(&fresh, key) >= 0)
			continue;
		if ((k = crm_report_rindex_put(&fresh, key)) < 0)
			rc = TR_ENOMEM;
		else
			((struct cached_name *)crm_report_rindex_val(&fresh, k))->count =
			    name_count(&counts, key);
	}
	/* into the report, and into the cache */
	pthread_mutex_lock(&NC.lock);
	nc = rc == TR_OK ? name_cache_of(&c->req->principal.tenant_id) : NULL;
	for (size_t i = 0; nc && i < fresh.n; i++) {
		const uint8_t *key = crm_report_rindex_key(&fresh, (long)i);
		struct cached_name *cn = crm_report_rindex_val(&fresh, (long)i);
		long k = crm_report_rindex_find(ix, key);
		if (k >= 0)
			*(const char **)((uint8_t *)crm_report_rindex_val(ix, k) + name_offset) =
			    cn->name ? tr_arena_strdup(c->req->arena, cn->name) : NULL;
		if (nc->names.n >= NAME_MAX_CLIENTS)
			continue;
		long j = crm_report_rindex_put(&nc->names, key);
		if (j < 0)
			continue;
		struct cached_name *kept = crm_report_rindex_val(&nc->names, j);
		free(kept->name);
		*kept = *cn; /* the cache takes the name */
		cn->name = NULL;
	}
	pthread_mutex_unlock(&NC.lock);
	for (size_t i = 0; i < fresh.n; i++)
		free(((struct cached_name *)crm_report_rindex_val(&fresh, (long)i))->name);
	crm_report_rindex_free(&fresh);
	crm_report_rindex_free(&missing);
	counters_free(&counts);
	return rc;
}
