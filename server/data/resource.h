/* The resource engine: a resource is a table, and the table is the whole
 * story. `struct tr_resource` names its collection, its typed fields, the
 * filters and sorts of its list, the field that says who owns a record, its
 * state machine as a transition table, its event topic and permissions;
 * the router turns one declaration into its routes (list, create, get,
 * change, delete), the OpenAPI document into its schemas, and the engine
 * (resource.c) validates, stores, scopes ":own" callers and emits events
 * the same way for every resource of every module.
 *
 * A module adds code only for what is really its own: hooks for rules the
 * table cannot say, and actions (routes of its own with `.resource` set,
 * e.g. POST /v1/crm/leads/{id}/convert) built from the blocks below. */
#ifndef TR_RESOURCE_H
#define TR_RESOURCE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "module.h"

enum tr_field_kind {
	TR_K_LINE,     /* one-line string (min..max characters) */
	TR_K_TEXT,     /* multi-line string */
	TR_K_EMAIL,    /* normalised to lower case */
	TR_K_PHONE,    /* digits, spaces, + - ( ) */
	TR_K_ENUM,     /* one of options */
	TR_K_MONEY,    /* {"amount": integer minor units, "currency": "EUR"} */
	TR_K_QUANTITY, /* an integer count of the smallest unit (min..max) */
	TR_K_TIME,     /* RFC 3339, stored as a date */
	TR_K_DATE,     /* a calendar day YYYY-MM-DD, stored as that string (it sorts) */
	TR_K_REF,      /* id of a record of `ref` in the tenant (stored as ObjectId) */
	TR_K_REFS,     /* array of such ids */
	TR_K_BOOL,
	TR_K_INT,     /* min..max */
	TR_K_STRINGS, /* array of one-line strings */
	TR_K_OBJECT,  /* a JSON object, checked by the resource's hook */
	TR_K_ARRAY,   /* a JSON array, checked by the resource's hook */
	TR_K_CUSTOM,  /* custom field values, checked against the definitions */
};

#define TR_F_REQUIRED 0x01 /* on create */
#define TR_F_FILTER 0x02   /* ?field=value filters lists */
#define TR_F_SERVER 0x04   /* set by the server only (read-only to clients) */
#define TR_F_NULLABLE 0x08 /* may be set to null (cleared) */
#define TR_F_FIXED 0x10	   /* settable on create only */
#define TR_F_NARROW                                                                                \
	0x20 /* few records share a value: filtering by it reads the                               \
		matches, not the tenant's list page by page (db.h) */
/* Write-only (a password): checked by its kind and handed to the hook in
 * `set`, which stores what it makes of it (a hash); the engine drops it
 * from `set` after the hook, so it is never stored or shown as sent. */
#define TR_F_SECRET 0x40

struct tr_field {
	const char *name;
	enum tr_field_kind kind;
	unsigned flags;
	long long min, max;	    /* length or value bounds */
	const char *const *options; /* TR_K_ENUM */
	const char *ref;	    /* TR_K_REF(S): the collection referred to */
};

/* One allowed move of a state field. from NULL: the state a new record
 * starts in. action NULL: a PATCH of the field makes the move; otherwise
 * only the named action does (its route checks the move with
 * tr_res_move_ok). requires: a field that must hold a value after the move
 * ("lost_reason" when a lead is lost), or NULL. */
struct tr_transition {
	const char *from, *to;
	const char *action;
	const char *requires;
};

struct tr_states {
	const char *field;		   /* an enum field of the resource */
	const struct tr_transition *moves; /* ends with {NULL, NULL} */
};

struct tr_resource;
/* Rules beyond the table: called after the fields validated, with the
 * values to set (and the stored record on update, NULL on create). Adds
 * field errors / a problem and returns false to refuse. */
typedef bool (*tr_res_hook)(struct tr_ctx *c, const struct tr_resource *e, bson_t *set,
			    const bson_t *old);

struct tr_resource {
	const char *name;	  /* "lead": schema and summaries */
	const char *coll;	  /* its collection */
	const char *path;	  /* "/v1/crm/leads"; under a parent, the last segment */
	const char *read, *write; /* permissions of its routes */
	const char *about;	  /* a sentence for the OpenAPI document, or NULL */
	const char *topic;	  /* event topic or NULL */
	const char *event;	  /* "crm.lead": events crm.lead.created / .updated */
	const char *owner_field;  /* ":own" applies to this field, or NULL */
	const char *custom;	  /* custom-field entity name ("lead"), or NULL */
	const char *custom_defs;  /* the collection of its custom-field definitions */
	const struct tr_field *fields;
	const char *const *sorts;
	const struct tr_states *states;
	tr_res_hook hook;
	/* Before a list is read (e.g. a default record that must exist).
	 * Sets the problem and returns false to refuse. */
	bool (*listing)(struct tr_ctx *c);
	/* Adds members to the 201 answer of a create, from the record as
	 * stored (a secret shown once, never again). */
	void (*created)(struct tr_ctx *c, const bson_t *stored, bson_t *answer);
	/* After a create or change is stored (e.g. to schedule a job); old is
	 * the record before a change, NULL after a create. */
	void (*saved)(struct tr_ctx *c, const bson_t *stored, const bson_t *old);
	/* May this record go? Sets the problem (409) and returns false. */
	bool (*may_delete)(struct tr_ctx *c, const bson_t *stored);
	/* After a record was deleted (the record as it was). */
	void (*removed)(struct tr_ctx *c, const bson_t *old);
	bool deletable;
	/* Records are never changed or deleted (stock moves, journal
	 * entries): no PATCH or DELETE route; corrections are new records. */
	bool immutable;
	/* The event a create emits instead of <event>.created, or NULL. */
	const char *create_event;
	/* A boolean field ("active") that DELETE sets to false instead of
	 * removing the record (others refer to it: a user's history). Such a
	 * DELETE is a change: hooks run, it answers 204. A change that turns
	 * the field false emits <event>.deactivated instead of .updated. */
	const char *retire;
	bool no_create; /* records are made by actions only */
	/* Records with no owner of their own that belong to someone else's
	 * (an invoice is its order's): an ":own" permission reaches none of
	 * them (list empty, each 404, no create). Without it, records that
	 * have no owner_field are shared by every form of the permission
	 * (custom-field definitions, pipelines). */
	bool own_none;
	/* A nested resource (/clients/{id}/contacts/{cid}): the parent resource
	 * and the field naming it; the path's first id is the parent's. */
	const struct tr_resource *parent;
	const char *parent_field;
};

/* The engine's route handlers, for the routes a declaration yields (the
 * resource comes from the route row). */
void tr_res_list_route(struct tr_ctx *c);
void tr_res_create_route(struct tr_ctx *c);
void tr_res_get_route(struct tr_ctx *c);
void tr_res_update_route(struct tr_ctx *c);
void tr_res_delete_route(struct tr_ctx *c);

/* The same, for a resource named by the caller. */
void tr_res_create(struct tr_ctx *c, const struct tr_resource *e);
void tr_res_get(struct tr_ctx *c, const struct tr_resource *e);
void tr_res_update(struct tr_ctx *c, const struct tr_resource *e);
void tr_res_delete(struct tr_ctx *c, const struct tr_resource *e);
void tr_res_list(struct tr_ctx *c, const struct tr_resource *e, const bson_t *extra_filter);

/* Building blocks for actions. */
/* The record by id, honouring ":own" (404 for a record the caller may not
 * see). Sets the problem and returns false. */
bool tr_res_load(struct tr_ctx *c, const struct tr_resource *e, const char *id, bson_t *out);
/* Stores a change made by an action to the record old (as loaded: the
 * write is on its version), emits event (e.g. "crm.deal.won") and
 * replies 200 with the record. */
void tr_res_save(struct tr_ctx *c, const struct tr_resource *e, const char *id, const bson_t *old,
		 const bson_t *set, const char *event);
/* Emits an event for a stored record of e. */
void tr_res_emit(struct tr_ctx *c, const struct tr_resource *e, const char *event,
		 const bson_t *stored);
/* Validates e's fields present in the body into set (creating: required
 * ones must be there). */
bool tr_res_read_fields(struct tr_ctx *c, const struct tr_resource *e, bool creating, bson_t *set);
/* Validates the body against a field table of an action (no other members
 * allowed) into set. */
bool tr_res_read_body(struct tr_ctx *c, const struct tr_field *fields, bson_t *set);
/* One field of the body (absent or null: nothing set). */
bool tr_res_read_field(struct tr_ctx *c, const struct tr_field *f, bson_t *set);
/* May a record of e in state from (NULL: a new one) move to state to,
 * through action (NULL: a PATCH)? set and old give the values after the
 * move for `requires`. Sets the problem (409, or 422 for a missing field)
 * and returns false when not. */
bool tr_res_move_ok(struct tr_ctx *c, const struct tr_resource *e, const char *from, const char *to,
		    const char *action, const bson_t *set, const bson_t *old);
/* The ids (hex) of the tenant's records of coll matching filter (meant for
 * narrow filters), malloc'd into *ids (the caller frees). */
int tr_res_matching_ids(struct tr_ctx *c, const char *coll, const bson_t *filter, char (**ids)[25],
			size_t *n);
/* Does a record with this id exist in the tenant's coll? */
bool tr_res_exists(struct tr_ctx *c, const char *coll, const bson_oid_t *id);

/* Custom fields (resource_custom.c): values in "custom" of a resource that
 * opts in are checked against the tenant's definitions in e->custom_defs.
 * The definitions are themselves a resource a module declares with these
 * fields and hook (CRM: /v1/crm/fields). */
bool tr_custom_check(struct tr_ctx *c, const struct tr_resource *e, bool creating,
		     const bson_t *old, bson_t *set);
/* The hook of a definitions resource: key syntax, options only for enums.
 * Its fields: entity (enum of the module's resources), key, label, type
 * (string|number|date|bool|enum), options, required. */
bool tr_custom_def_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set,
			const bson_t *old);

/* Helpers on stored documents and the request. */
bool tr_parse_time(const char *s, int64_t *ms);
/* Is s a calendar day YYYY-MM-DD (years 0000 to 9999)? */
bool tr_parse_date(const char *s);
bool tr_doc_oid(const bson_t *doc, const char *field, bson_oid_t *out);
const char *tr_doc_str(const bson_t *doc, const char *field);
int64_t tr_doc_int(const bson_t *doc, const char *field, int64_t dflt);
/* Removes a top-level field. */
void tr_doc_remove(bson_t *doc, const char *field);
/* A string of the request's JSON body, or NULL. */
const char *tr_body_str(struct tr_ctx *c, const char *field);

#endif
