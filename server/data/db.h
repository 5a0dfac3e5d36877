/* The tenant-scoped data API: the only way module code reaches MongoDB.
 * Every call adds the caller's tenant_id to its filter or document, so a
 * handler cannot read or change another tenant's records: another tenant's
 * id answers TR_ENOTFOUND exactly like an id that does not exist.
 *
 * Worker threads only (handlers of routes without TR_PUBLIC). All calls
 * return 0 or a negative TR_E* code (util.h); tr_problem_from_err() turns
 * the code into the right response.
 *
 * Every record carries created_at, updated_at (dates) and version (int64,
 * 1 on insert, +1 on every change); the layer maintains them. */
#ifndef TR_DB_H
#define TR_DB_H

#include <bson/bson.h>

#include "module.h"
#include "util.h" /* TR_E* codes */

/* Job threads (handlers of jobs.h, which get no request): a handle scoped
 * to the tenant named by hex (24 hex digits), or NULL when hex is not one
 * or memory ran out. Release it with tr_db_release (NULL: nothing). */
struct tr_db *tr_db_for_tenant(const char *tenant_hex);
void tr_db_release(struct tr_db *db);

/* ---- Platform code: identity and operator commands ----
 * Tenants themselves (the "tenants" collection: each tenant's record has
 * its own id as tenant_id) are found and created before any tenant is
 * known. These calls serve that work - signup, login, API keys, the
 * `trellis tenant|user|demo` commands, and the CRM's public inbound url,
 * whose token names its source's id (inbound.c), and a questionnaire
 * link, whose token names its invitation's id (questionnaire_links.c) -
 * and nothing else. */

/* Worker thread or command: a handle for one piece of work; NULL
 * principal gives a handle that refuses tenant data until
 * tr_db_set_tenant. NULL when memory ran out. Close it with tr_db_close. */
struct tr_db *tr_db_open(const struct tr_principal *principal);
void tr_db_close(struct tr_db *db);
/* Points the handle at a tenant, e.g. the one being created by signup or
 * found by login. */
void tr_db_set_tenant(struct tr_db *db, const bson_oid_t *tenant_id);
/* The first stored document matching filter across tenants (the tenant of
 * a login slug), or TR_ENOTFOUND; *out is initialised either way. */
int tr_db_find_global(struct tr_db *db, const char *coll, const bson_t *filter, bson_t *out);
/* Calls visit with every stored document of coll matching filter across
 * tenants, in ascending order of sort_field (`trellis tenant list`). A
 * non-zero return of visit stops the walk and is returned. */
int tr_db_each_global(struct tr_db *db, const char *coll, const bson_t *filter,
		      const char *sort_field, int (*visit)(void *arg, const bson_t *doc),
		      void *arg);

/* Inserts fields as a new record (an ObjectId "_id" among the fields is
 * used as its id; other layer-owned fields are ignored) and returns the stored document in
 * *stored (initialised by the call; the caller destroys it).
 * TR_EDUPLICATE when a unique index refuses it. */
int tr_db_insert(struct tr_db *db, const char *coll, const bson_t *fields, bson_t *stored);

/* Inserts n records of a collection without effects (no counters, no
 * unique fields claimed: TR_EINVALID otherwise) in one command, each as
 * tr_db_insert would. A record whose id exists already is left as it is,
 * so a retry with the same ids writes only what an earlier try did not. */
int tr_db_insert_batch(struct tr_db *db, const char *coll, const bson_t *const *fields, size_t n);

/* Writes records already in their stored shape (_id, tenant_id, fields,
 * created_at, updated_at, version: a history imported at once, such as the
 * demo seed's) for the handle's tenant, giving each its list position in
 * the order of docs (sort them by created_at first). Appends _seq and _b to
 * each doc. Not a path for requests: nothing is validated, claimed or
 * emitted. */
int tr_db_import(struct tr_db *db, const char *coll, bson_t **docs, size_t n);

/* Deletes every record of the handle's tenant in coll at once: the undo of
 * tr_db_import when a seed fails halfway. Like tr_db_import, not a path for
 * requests: no claims, no effects, no events. */
int tr_db_purge(struct tr_db *db, const char *coll);

/* Marks key (any string of 1..200 bytes) as done once for the tenant:
 * TR_OK the first time, in any process, TR_EDUPLICATE every time after -
 * for work that must happen at most once (a reminder sent for a due time). */
int tr_db_once(struct tr_db *db, const char *key);

/* The record with this id (24 hex); TR_ENOTFOUND for a malformed id too. */
int tr_db_get(struct tr_db *db, const char *coll, const char *id, bson_t *out);

/* tr_db_get for records that are never changed once written (a process
 * definition's version): answered from a small per-process cache after
 * the first read, keyed by tenant, collection and id. Only for
 * collections whose records are never updated in place: a cached copy is
 * never checked again. Any thread. */
int tr_db_get_immutable(struct tr_db *db, const char *coll, const char *id, bson_t *out);

/* The first record matching filter (tenant added), or TR_ENOTFOUND. */
int tr_db_find_one(struct tr_db *db, const char *coll, const bson_t *filter, bson_t *out);

/* Calls visit with every record matching filter (tenant added), rendered as
 * an API resource, in no particular order: one cursor, no sort, for work
 * that reads everything (reports). A non-zero return of visit stops the
 * walk and is returned. */
int tr_db_each(struct tr_db *db, const char *coll, const bson_t *filter,
	       int (*visit)(void *arg, const bson_t *resource), void *arg);

/* How many records match filter (tenant added). */
int tr_db_count(struct tr_db *db, const char *coll, const bson_t *filter, long long *n);

/* Sets fields ($set; `unset` names fields to remove, may be NULL) when the
 * record's version equals expected_version (<= 0: any version), bumps the
 * version, and returns the new document in *out. TR_ENOTFOUND, TR_EVERSION,
 * TR_EDUPLICATE, TR_EBUSY (another writer held the record too long).
 *
 * Exact across processes and id spellings on FerretDB and MongoDB alike:
 * of writers that expect the same version exactly one succeeds (a claim
 * per record version, see db.c). */
int tr_db_update(struct tr_db *db, const char *coll, const char *id, long long expected_version,
		 const bson_t *set, const bson_t *unset, bson_t *out);

/* Deletes the record when its version equals expected_version (<= 0: any).
 * TR_ENOTFOUND, TR_EVERSION, TR_EBUSY; under the same claim as updates. */
int tr_db_delete(struct tr_db *db, const char *coll, const char *id, long long expected_version);

/* Cursor pagination (dblist.c). A list is sorted by one field (plus _id to
 * break ties); the cursor is opaque to clients and names the sort it
 * belongs to.
 *
 * A list in created_at order reads a bounded number of records per page
 * whatever the tenant's size: it pages through the records' list positions
 * (seq.h), newest or oldest first. A page of a list whose filter matches
 * few of the tenant's records may then hold fewer than limit items and
 * still have a next_cursor. A narrow list (its filter is an id or another
 * value few records share) reads what matches and sorts it instead; so do
 * lists in any other order. */
struct tr_list_query {
	const char *sort_field;
	int direction; /* 1 or -1 */
	int limit;
	bool narrow;
	bool has_after;
	bson_value_t after_value; /* sort value of the last record seen */
	bson_oid_t after_id;
	bool has_seq; /* pages by list bucket: continue in bucket after_seq */
	int64_t after_seq;
	bool owns_doc;	   /* cursor_doc was made by decoding a cursor */
	bson_t cursor_doc; /* owns after_value's storage */
};

/* Reads limit, cursor and sort from the query string. `sorts` lists the
 * sortable fields (first is the default, "-" prefix for descending
 * defaults). Returns false after setting a 400/422 problem. */
bool tr_list_query_parse(struct tr_ctx *c, const char *const *sorts, struct tr_list_query *q);
/* The same for a list whose filter is narrow (see above). */
bool tr_list_query_parse_as(struct tr_ctx *c, const char *const *sorts, bool narrow,
			    struct tr_list_query *q);
void tr_list_query_free(struct tr_list_query *q);
/* Moves q to the page after `cursor` (a next_cursor of tr_db_list), for
 * code that walks every page itself. False when the cursor is not q's. */
bool tr_list_query_next(struct tr_list_query *q, const char *cursor);

/* Appends a page of records matching filter (tenant added) to the array
 * `items` as API resources, and sets *next_cursor (malloc'd, NULL on the
 * last page). */
int tr_db_list(struct tr_db *db, const char *coll, const bson_t *filter,
	       const struct tr_list_query *q, bson_t *items, char **next_cursor);

/* The whole list endpoint: reads limit/cursor/sort (sorts as for
 * tr_list_query_parse), lists coll with filter (tenant added), and replies
 * {"items": [...], "next_cursor": ...} or the problem. */
void tr_list_reply(struct tr_ctx *c, const char *coll, const bson_t *filter,
		   const char *const *sorts);
void tr_list_reply_as(struct tr_ctx *c, const char *coll, const bson_t *filter,
		      const char *const *sorts, bool narrow);

/* Replies with a stored record rendered as an API resource, with its
 * version as ETag. */
void tr_reply_resource(struct tr_ctx *c, int status, const bson_t *stored);

/* The If-Match of the request as an expected version (<= 0: none sent).
 * A header that is not a version is the client's error: sets a 400 and
 * returns false. */
bool tr_if_match(struct tr_ctx *c, long long *version);

/* The version a write refused with TR_EVERSION or TR_EBUSY found (0 when
 * unknown): problem responses name it as current_version and ETag. */
long long tr_db_conflict_version(const struct tr_db *db);

/* Parses an If-Match header ("3", "\"3\"", W/"3" not accepted); -1 when
 * absent, 0 when malformed (the caller answers 400 for 0). */
long long tr_if_match_version(const char *header);

#endif
