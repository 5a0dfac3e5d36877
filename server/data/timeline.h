/* A client's timeline: what every module records about one client (the
 * CRM's interactions, deals and claims, the ERP's orders and invoices)
 * merged into one list, newest first, paged by one cursor. A module takes
 * part by declaring a `struct tr_timeline` (module.h); the route that
 * answers the list (GET /v1/crm/clients/{id}/timeline) names
 * tr_timeline_route as its handler.
 *
 * The order is `at` descending, then the kind's name ascending, then the
 * record's id descending: a total order, so the cursor - the position of
 * the last item shown, (at, kind, id) - resumes exactly where the page
 * ended, whichever kinds share a millisecond. For a page of n items every
 * module is asked for at least the first n + 1 of each of its kinds past
 * the cursor: the first n of them all are then the first n of the whole
 * list, and an (n + 1)th says that a next page exists. Each module reads
 * its own records only, through the data API, as its lists would. */
#ifndef TR_TIMELINE_H
#define TR_TIMELINE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "module.h"

#define TR_TIMELINE_KIND_MAX 32 /* a kind's name is shorter */

/* Where a page starts: after the last item of the page before, or (no
 * cursor) at the newest. The worker that answers the request owns it. */
struct tr_timeline_window {
	int limit;	/* at least this many of each kind, when there are */
	bool has_after; /* false: from the newest */
	int64_t after_at;
	char after_kind[TR_TIMELINE_KIND_MAX];
	bson_oid_t after_id;
};

/* The items gathered for a page (timeline.c); modules only add to it. */
struct tr_timeline_items;

/* Sets *q to list records of kind past the window's position: sorted by
 * at_field (a date; the record's id breaks ties), newest first, w->limit
 * of them, the filter taken as narrow (a client's records). Pass it to
 * tr_db_list; nothing in it needs freeing. */
void tr_timeline_query(const struct tr_timeline_window *w, const char *kind, const char *at_field,
		       struct tr_list_query *q);

/* Is an item of kind at (ms) with this id past the window's position? For
 * items found some other way than through tr_timeline_query. */
bool tr_timeline_after(const struct tr_timeline_window *w, const char *kind, int64_t at,
		       const bson_oid_t *id);

/* Adds an item: kind (one the module declared), the record's id, its time
 * (ms) and the object the item shows under the kind's name (copied).
 * TR_EINVALID for a kind the module did not declare, TR_ENOMEM. */
int tr_timeline_add(struct tr_timeline_items *out, const char *kind, const bson_oid_t *id,
		    int64_t at, const bson_t *shown);

/* The handler of GET <resource>/{id}/timeline, for the route's resource
 * (the CRM's clients): the record named by {id} as its GET finds it (404,
 * another tenant's too), ?limit (1..200, default 50: 422 otherwise) and
 * ?cursor (a next_cursor of this list: 400 otherwise), then every module's
 * items, merged and paged: {"items": [{"type", "at", "<type>": {...}}],
 * "next_cursor"}. */
void tr_timeline_route(struct tr_ctx *c);

#endif
