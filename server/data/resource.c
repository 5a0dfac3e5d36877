/* The resource engine (resource.h): state machines, ":own" scoping,
 * events, and the five handlers every resource shares. Field validation
 * is in resource_fields.c. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "events.h"
#include "json.h"
#include "resource.h"

/* ---- nesting ---- */

static const char *
id_param(struct tr_ctx *c, const struct tr_resource *e)
{
	return tr_param(c, e->parent ? 1 : 0);
}

/* The parent named by the path exists and the caller may see it; its id
 * goes to *id. */
static bool
parent_ok(struct tr_ctx *c, const struct tr_resource *e, bson_oid_t *id)
{
	bson_t parent;
	bool ok;

	if (!e->parent)
		return true;
	ok = tr_res_load(c, e->parent, tr_param(c, 0), &parent);
	if (ok)
		tr_doc_oid(&parent, "_id", id);
	bson_destroy(&parent);
	return ok;
}

/* ---- ownership ---- */

static bool
own_only(const struct tr_ctx *c, const struct tr_resource *e)
{
	return e->owner_field && c->req->principal.own_only;
}

/* An ":own" caller reaches none of a kind that belongs to others'
 * records (resource.h, own_none). */
static bool
ownerless(const struct tr_ctx *c, const struct tr_resource *e)
{
	return c->req->principal.own_only && e->own_none;
}

static bool
visible(const struct tr_ctx *c, const struct tr_resource *e, const bson_t *doc)
{
	bson_oid_t owner;

	if (ownerless(c, e))
		return false;
	if (!own_only(c, e))
		return true;
	return tr_doc_oid(doc, e->owner_field, &owner) &&
	       bson_oid_equal(&owner, &c->req->principal.user_id);
}

bool
tr_res_load(struct tr_ctx *c, const struct tr_resource *e, const char *id, bson_t *out)
{
	int rc = tr_db_get(c->db, e->coll, id, out);

	if (rc == TR_OK && !visible(c, e, out))
		rc = TR_ENOTFOUND; /* not theirs: as if it did not exist */
	if (rc == TR_OK && e->parent) {
		/* under the parent the path names, which the caller may see */
		bson_oid_t pid, mine;
		bson_t parent = BSON_INITIALIZER;
		if (!tr_is_object_id(tr_param(c, 0)) || !tr_doc_oid(out, e->parent_field, &mine))
			rc = TR_ENOTFOUND;
		else {
			bson_oid_init_from_string(&pid, tr_param(c, 0));
			if (!bson_oid_equal(&pid, &mine))
				rc = TR_ENOTFOUND;
			else if (tr_db_get(c->db, e->parent->coll, tr_param(c, 0), &parent) !=
				     TR_OK ||
				 !visible(c, e->parent, &parent))
				rc = TR_ENOTFOUND;
			bson_destroy(&parent);
		}
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		return false;
	}
	return true;
}

/* An ":own" caller may not give a record to someone else. */
static bool
owner_allowed(struct tr_ctx *c, const struct tr_resource *e, const bson_t *set)
{
	bson_oid_t owner;

	if (ownerless(c, e)) {
		tr_problem(c, 403, "forbidden",
			   "an \":own\" permission does not reach records that have no owner");
		return false;
	}
	if (!own_only(c, e) || !tr_doc_oid(set, e->owner_field, &owner) ||
	    bson_oid_equal(&owner, &c->req->principal.user_id))
		return true;
	tr_problem(c, 403, "forbidden", "you may only assign records to yourself");
	return false;
}

/* ---- events ---- */

void
tr_res_emit(struct tr_ctx *c, const struct tr_resource *e, const char *event, const bson_t *stored)
{
	bson_t data = BSON_INITIALIZER;
	bson_oid_t id, owner;
	char hex[25], owner_hex[25] = "";

	if (!e->topic || !tr_doc_oid(stored, "_id", &id))
		return;
	bson_oid_to_string(&id, hex);
	if (e->owner_field && tr_doc_oid(stored, e->owner_field, &owner))
		bson_oid_to_string(&owner, owner_hex);
	tr_render_resource(stored, &data);
	tr_emit_data(c, e->topic, event, hex, owner_hex[0] ? owner_hex : NULL, &data);
	bson_destroy(&data);
}

static const char *
event_name(struct tr_ctx *c, const struct tr_resource *e, const char *what)
{
	char *name = tr_arena_alloc(c->req->arena, 64);
	snprintf(name, 64, "%s.%s", e->event, what);
	return name;
}

/* ---- state machines ---- */

/* Does field hold a value after a change (set's, or old's when set has
 * none)? null and "" do not count. */
static bool
has_value_after(const bson_t *set, const bson_t *old, const char *field)
{
	bson_iter_t it;
	const bson_t *doc = set && bson_has_field(set, field) ? set : old;

	if (!doc || !bson_iter_init_find(&it, doc, field) || BSON_ITER_HOLDS_NULL(&it))
		return false;
	return !BSON_ITER_HOLDS_UTF8(&it) || *bson_iter_utf8(&it, NULL);
}

static bool
same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* "qualified, lost" - where a record in state from may go by a PATCH. */
static const char *
moves_from(struct tr_ctx *c, const struct tr_resource *e, const char *from)
{
	char *out = tr_arena_alloc(c->req->arena, 256);
	size_t n = 0;

	if (!out)
		return "";
	out[0] = '\0';
	for (const struct tr_transition *t = e->states->moves; t->to; t++)
		if (same(t->from, from) && !t->action && n < 200)
			n += (size_t)snprintf(out + n, 256 - n, "%s%s", n ? ", " : "", t->to);
	return out;
}

bool
tr_res_move_ok(struct tr_ctx *c, const struct tr_resource *e, const char *from, const char *to,
	       const char *action, const bson_t *set, const bson_t *old)
{
	const char *field = e->states->field;
	const struct tr_transition *found = NULL;
	char *m = tr_arena_alloc(c->req->arena, 512);

	for (const struct tr_transition *t = e->states->moves; t->to; t++)
		if (same(t->from, from) && strcmp(t->to, to) == 0 &&
		    (!found || same(t->action, action)))
			found = t;
	if (!m) {
		tr_problem_from_err(c, TR_ENOMEM);
		return false;
	}
	if (!found && !from) {
		snprintf(m, 512, "a new %s starts as %s", e->name, moves_from(c, e, NULL));
		tr_problem_field(c, field, m);
		return false;
	}
	if (!found) {
		const char *next = moves_from(c, e, from);
		if (*next)
			snprintf(m, 512, "a %s's %s moves from %s to %s, not to %s", e->name, field,
				 from, next, to);
		else
			snprintf(m, 512, "the %s is %s, which is final", e->name, from);
		tr_problem(c, 409, "conflict", m);
		return false;
	}
	if (!same(found->action, action)) {
		snprintf(m, 512, "a %s's %s becomes %s through POST %s/{id}/%s", e->name, field, to,
			 e->path, found->action);
		tr_problem(c, 409, "conflict", m);
		return false;
	}
	if (found->requires) {
		if (!has_value_after(set, old, found->requires)) {
			snprintf(m, 512, "is required when a %s becomes %s", e->name, to);
			tr_problem_field(c, found->requires, m);
			return false;
		}
	}
	return true;
}

/* A create or PATCH against the state machine: a new record starts in the
 * initial state (set when not given); a change of the state field must be
 * a move of the table. */
static bool
states_ok(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	const char *field = e->states->field;
	const char *to = tr_doc_str(set, field), *from = old ? tr_doc_str(old, field) : NULL;

	if (!old && !to) {
		for (const struct tr_transition *t = e->states->moves; t->to; t++)
			if (!t->from && !t->action) {
				BSON_APPEND_UTF8(set, field, t->to);
				return true;
			}
		return true;
	}
	if (!to || (old && same(from, to)))
		return true;
	to = tr_arena_strdup(c->req->arena, to); /* set may grow under it */
	return tr_res_move_ok(c, e, old ? from : NULL, to, NULL, set, old);
}

/* ---- the handlers ---- */

/* Write-only fields leave set once the hook has read them. */
static void
drop_secrets(const struct tr_resource *e, bson_t *set)
{
	for (const struct tr_field *f = e->fields; f->name; f++)
		if (f->flags & TR_F_SECRET)
			tr_doc_remove(set, f->name);
}

/* Does this change turn the retire field false (a deactivation)? */
static bool
retires(const struct tr_resource *e, const bson_t *set, const bson_t *old)
{
	bson_iter_t it;

	if (!e->retire || !bson_iter_init_find(&it, set, e->retire) || !BSON_ITER_HOLDS_BOOL(&it) ||
	    bson_iter_bool(&it))
		return false;
	return !bson_iter_init_find(&it, old, e->retire) || !BSON_ITER_HOLDS_BOOL(&it) ||
	       bson_iter_bool(&it);
}

static void
conflict_or_error(struct tr_ctx *c, const struct tr_resource *e, int rc)
{
	if (rc == TR_EDUPLICATE) {
		char *m = tr_arena_alloc(c->req->arena, 96);
		if (m)
			snprintf(m, 96, "a %s with these values exists",
				 e->name ? e->name : "record");
		tr_problem(c, 409, "conflict", m ? m : "a record with these values exists");
	} else
		tr_problem_from_err(c, rc);
}

void
tr_res_create(struct tr_ctx *c, const struct tr_resource *e)
{
	bson_t set = BSON_INITIALIZER, stored = BSON_INITIALIZER;
	int rc;

	if (!tr_res_read_fields(c, e, true, &set))
		goto out;
	if (e->parent) {
		bson_oid_t pid;
		if (!parent_ok(c, e, &pid))
			goto out;
		BSON_APPEND_OID(&set, e->parent_field, &pid);
	}
	/* a user's new record is theirs; a partner's (API key) waits for
	 * someone to take it */
	if (e->owner_field && !bson_has_field(&set, e->owner_field) && !c->req->api_key &&
	    tr_is_object_id(c->req->principal.user_hex))
		BSON_APPEND_OID(&set, e->owner_field, &c->req->principal.user_id);
	if (!owner_allowed(c, e, &set))
		goto out;
	if (e->states && !states_ok(c, e, &set, NULL))
		goto out;
	if (e->custom && !tr_custom_check(c, e, true, NULL, &set))
		goto out;
	if (e->hook && !e->hook(c, e, &set, NULL))
		goto out;
	if (c->resp->status) /* a hook answered */
		goto out;
	drop_secrets(e, &set);
	bson_destroy(&stored);
	rc = tr_db_insert(c->db, e->coll, &set, &stored);
	if (rc != TR_OK) {
		conflict_or_error(c, e, rc);
		goto out;
	}
	bson_oid_t id;
	char *loc = tr_arena_alloc(c->req->arena, 160);
	if (tr_doc_oid(&stored, "_id", &id) && loc) {
		char hex[25];
		bson_oid_to_string(&id, hex);
		if (e->parent) /* /v1/crm/clients/{id}/contacts/{cid} */
			snprintf(loc, 160, "%s/%s/%s/%s", e->parent->path, tr_param(c, 0), e->path,
				 hex);
		else
			snprintf(loc, 160, "%s/%s", e->path, hex);
		c->resp->location = loc;
	}
	if (e->create_event)
		tr_res_emit(c, e, e->create_event, &stored);
	else if (e->event)
		tr_res_emit(c, e, event_name(c, e, "created"), &stored);
	if (e->created) {
		bson_t answer = BSON_INITIALIZER;
		tr_render_resource(&stored, &answer);
		e->created(c, &stored, &answer);
		c->resp->etag_version = tr_doc_int(&stored, "version", 0);
		tr_reply_json(c, 201, &answer);
		bson_destroy(&answer);
	} else {
		tr_reply_resource(c, 201, &stored);
	}
	if (e->saved)
		e->saved(c, &stored, NULL);
out:
	bson_destroy(&set);
	bson_destroy(&stored);
}

void
tr_res_get(struct tr_ctx *c, const struct tr_resource *e)
{
	bson_t stored;

	if (tr_res_load(c, e, id_param(c, e), &stored))
		tr_reply_resource(c, 200, &stored);
	bson_destroy(&stored);
}

/* Stores set on record id (old, as loaded) at version (> 0: only if
 * still there); on success emits event and replies ok_status (200 with
 * the record, or 204). Returns the data layer's code; nothing is answered
 * for TR_EVERSION when quiet_version (the caller retries). */
static int
store(struct tr_ctx *c, const struct tr_resource *e, const char *id, const bson_t *old,
      long long version, const bson_t *set, const char *event, bool quiet_version, int ok_status)
{
	bson_t stored = BSON_INITIALIZER;
	int rc;

	bson_destroy(&stored);
	rc = tr_db_update(c->db, e->coll, id, version, set, NULL, &stored);
	if (rc == TR_EVERSION && quiet_version) {
		/* nothing to answer yet */
	} else if (rc != TR_OK) {
		conflict_or_error(c, e, rc);
	} else {
		if (event)
			tr_res_emit(c, e, event, &stored);
		if (ok_status == 204)
			tr_reply_empty(c, 204);
		else
			tr_reply_resource(c, 200, &stored);
		if (e->saved)
			e->saved(c, &stored, old);
	}
	bson_destroy(&stored);
	return rc;
}

void
tr_res_save(struct tr_ctx *c, const struct tr_resource *e, const char *id, const bson_t *old,
	    const bson_t *set, const char *event)
{
	store(c, e, id, old, tr_doc_int(old, "version", 0), set, event, false, 200);
}

/* A PATCH is checked against the record as it is stored (hooks read the
 * old values) and written on that version only, so nothing another writer
 * changed in between is lost. Without If-Match, losing that race is not
 * the client's concern: the change is checked and tried again on the new
 * version; a record that keeps changing under it that many times answers
 * 409 record-busy, never 412 to a client that named no version. */
#define UPDATE_ATTEMPTS 50

/* A PATCH, or (fixed: the values it sets) the DELETE of a resource that
 * retires its records, answering ok_status. */
static void
change(struct tr_ctx *c, const struct tr_resource *e, const bson_t *fixed, int ok_status)
{
	bson_t set = BSON_INITIALIZER, old = BSON_INITIALIZER;
	long long version;

	if (!tr_if_match(c, &version))
		goto out;
	for (int attempt = 1;; attempt++) {
		bson_reinit(&set);
		if (fixed)
			bson_concat(&set, fixed);
		else if (!tr_res_read_fields(c, e, false, &set))
			goto out;
		bson_destroy(&old); /* tr_res_load initialises it, found or not */
		if (!tr_res_load(c, e, id_param(c, e), &old))
			goto out;
		if (!owner_allowed(c, e, &set))
			goto out;
		if (e->states && !states_ok(c, e, &set, &old))
			goto out;
		if (e->custom && !tr_custom_check(c, e, false, &old, &set))
			goto out;
		if (e->hook && !e->hook(c, e, &set, &old))
			goto out;
		if (c->resp->status)
			goto out;
		drop_secrets(e, &set);
		const char *event =
		    !e->event
			? NULL
			: event_name(c, e, retires(e, &set, &old) ? "deactivated" : "updated");
		int rc = store(c, e, id_param(c, e), &old,
			       version > 0 ? version : tr_doc_int(&old, "version", 0), &set, event,
			       version <= 0, ok_status);
		if (rc != TR_EVERSION || version > 0)
			break;
		if (attempt == UPDATE_ATTEMPTS) {
			tr_problem_from_err(c, TR_EBUSY);
			break;
		}
	}
out:
	bson_destroy(&set);
	bson_destroy(&old);
}

void
tr_res_update(struct tr_ctx *c, const struct tr_resource *e)
{
	change(c, e, NULL, 200);
}

void
tr_res_delete(struct tr_ctx *c, const struct tr_resource *e)
{
	bson_t old = BSON_INITIALIZER;
	long long version;
	int rc;

	if (e->retire) {
		BSON_APPEND_BOOL(&old, e->retire, false);
		change(c, e, &old, 204);
		bson_destroy(&old);
		return;
	}
	if (!tr_if_match(c, &version))
		goto out;
	bson_destroy(&old);
	if (!tr_res_load(c, e, id_param(c, e), &old))
		goto out;
	if (e->may_delete && !e->may_delete(c, &old))
		goto out;
	if (version <= 0)
		version = tr_doc_int(&old, "version", 0);
	rc = tr_db_delete(c->db, e->coll, id_param(c, e), version);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (e->event)
		tr_res_emit(c, e, event_name(c, e, "deleted"), &old);
	tr_reply_empty(c, 204);
	if (e->removed)
		e->removed(c, &old);
out:
	bson_destroy(&old);
}

/* Lists filter on fields marked TR_F_FILTER (?status=new&owner_id=...). */
void
tr_res_list(struct tr_ctx *c, const struct tr_resource *e, const bson_t *extra_filter)
{
	bson_t filter = BSON_INITIALIZER;
	bson_oid_t pid;

	if (e->listing && !e->listing(c)) {
		bson_destroy(&filter);
		return;
	}
	if (extra_filter)
		bson_concat(&filter, extra_filter);
	if (e->parent) {
		if (!parent_ok(c, e, &pid)) {
			bson_destroy(&filter);
			return;
		}
		BSON_APPEND_OID(&filter, e->parent_field, &pid);
	}
	bool narrow = e->parent != NULL; /* the children of one record */
	for (const struct tr_field *f = e->fields; f->name; f++) {
		const char *v;
		if (!(f->flags & TR_F_FILTER) || !(v = tr_query(c, f->name)))
			continue;
		narrow |= (f->flags & TR_F_NARROW) != 0;
		if (f->kind == TR_K_REF) {
			bson_oid_t oid;
			if (!tr_is_object_id(v)) {
				tr_problem_field(c, f->name, "must be an id");
				continue;
			}
			bson_oid_init_from_string(&oid, v);
			BSON_APPEND_OID(&filter, f->name, &oid);
		} else if (f->kind == TR_K_BOOL) {
			if (strcmp(v, "true") && strcmp(v, "false")) {
				tr_problem_field(c, f->name, "must be true or false");
				continue;
			}
			BSON_APPEND_BOOL(&filter, f->name, strcmp(v, "true") == 0);
		} else if (f->kind == TR_K_ENUM) {
			bool known = false;
			for (const char *const *o = f->options; *o; o++)
				known |= strcmp(*o, v) == 0;
			if (!known) {
				tr_problem_field(c, f->name, "is not one of the allowed values");
				continue;
			}
			BSON_APPEND_UTF8(&filter, f->name, v);
		} else if (f->kind == TR_K_EMAIL) { /* stored in lower case */
			char *low = tr_arena_strdup(c->req->arena, v);
			for (char *p = low; p && *p; p++)
				*p = (char)tolower((unsigned char)*p);
			BSON_APPEND_UTF8(&filter, f->name, low ? low : v);
		} else {
			BSON_APPEND_UTF8(&filter, f->name, v);
		}
	}
	if (!c->resp->status) {
		if (ownerless(c, e)) {
			bson_reinit(&filter);
			BSON_APPEND_BOOL(&filter, "_never", true);
		} else if (own_only(c, e)) {
			bson_iter_t it;
			if (!bson_iter_init_find(&it, &filter, e->owner_field))
				BSON_APPEND_OID(&filter, e->owner_field,
						&c->req->principal.user_id);
			else if (!BSON_ITER_HOLDS_OID(&it) ||
				 !bson_oid_equal(bson_iter_oid(&it), &c->req->principal.user_id)) {
				/* asked for someone else's: nothing of theirs is visible */
				bson_reinit(&filter);
				BSON_APPEND_OID(&filter, e->owner_field,
						&c->req->principal.user_id);
				BSON_APPEND_BOOL(&filter, "_never", true);
			}
		}
		tr_list_reply_as(c, e->coll, &filter, e->sorts, narrow);
	}
	bson_destroy(&filter);
}

/* ---- the routes a declaration yields (the router builds them) ---- */

void
tr_res_list_route(struct tr_ctx *c)
{
	tr_res_list(c, c->req->route->resource, NULL);
}

void
tr_res_create_route(struct tr_ctx *c)
{
	tr_res_create(c, c->req->route->resource);
}

void
tr_res_get_route(struct tr_ctx *c)
{
	tr_res_get(c, c->req->route->resource);
}

void
tr_res_update_route(struct tr_ctx *c)
{
	tr_res_update(c, c->req->route->resource);
}

void
tr_res_delete_route(struct tr_ctx *c)
{
	tr_res_delete(c, c->req->route->resource);
}
