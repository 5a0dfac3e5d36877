/* Routes called without a request: trusted work that holds a tenant's
 * database handle - the demo seed, a BPM service step acting on the CRM
 * or the ERP - runs the very code a route runs, so nothing a module
 * guarantees (reservations, invoice numbers, journal entries, events) is
 * reimplemented or written around. */
#ifndef TR_DIRECT_H
#define TR_DIRECT_H

#include <bson/bson.h>
#include <stdbool.h>

struct tr_db;

/* Runs route ("POST /v1/erp/orders", "POST /v1/erp/orders/{id}/confirm",
 * "PATCH /v1/crm/deals/{id}", "GET ...") of whichever module serves it -
 * a route row, or a resource's create, get or change - on db's tenant
 * (tenant: the same, as events and jobs name it) as user: id is the
 * path's {id} (NULL when it has none), body the JSON body (NULL: none),
 * key an Idempotency-Key or NULL (actions that take one derive their
 * records' ids from it, so asking again finishes the first call instead
 * of repeating it; there is no Idempotency-Key store here). Returns the
 * HTTP status the route answers, with the answer's body in *answer
 * (initialised by the call; a problem as {status, type, detail, errors:
 * [{field, message}]}), or TR_EINVALID (negative) for a route no module
 * has. No authentication, rate limit or permission is checked: trusted
 * callers only. Events are recorded in the outbox; with no response to
 * follow they are published by the relay of a running server, or at once
 * when publish is true (job threads: events.h tr_events_flush). Worker
 * thread, job thread or command. */
int tr_direct(struct tr_db *db, const bson_oid_t *tenant, const bson_oid_t *user, const char *route,
	      const char *id, const bson_t *body, const char *key, bool publish, bson_t *answer);

#endif
