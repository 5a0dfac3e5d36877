/* The CRM module (CONTRACT.md "CRM"). Every resource is described by a
 * `struct crm_entity` (its collection, fields and their types, sorts, list
 * filters, owner field, event topic) and served by one generic engine
 * (engine.c): create, get, update, delete and list validate and store the
 * same way for all of them, apply ":own" permissions and emit events.
 * Entities with a lifecycle (lead status, conversion, deal stages, task
 * completion) add their own actions next to the engine's handlers. */
#ifndef TR_CRM_H
#define TR_CRM_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "jobs.h"
#include "module.h"

enum crm_kind {
	CRM_LINE,  /* one-line string (min..max characters) */
	CRM_TEXT,  /* multi-line string */
	CRM_EMAIL, /* normalised to lower case */
	CRM_PHONE, /* digits, spaces, + - ( ) */
	CRM_ENUM,  /* one of options */
	CRM_MONEY, /* {"amount": integer minor units, "currency": "EUR"} */
	CRM_TIME,  /* RFC 3339, stored as a date */
	CRM_REF,   /* id of a record of `ref` in the tenant (stored as ObjectId) */
	CRM_REFS,  /* array of such ids */
	CRM_BOOL,
	CRM_INT,     /* min..max */
	CRM_STRINGS, /* array of one-line strings */
	CRM_OBJECT,  /* a JSON object, checked by the entity's hook */
	CRM_ARRAY,   /* a JSON array, checked by the entity's hook */
	CRM_CUSTOM,  /* custom field values, checked against /v1/crm/fields */
};

#define CRM_REQUIRED 0x01 /* on create */
#define CRM_FILTER 0x02	  /* ?field=value filters lists */
#define CRM_SERVER 0x04	  /* set by the server only (read-only to clients) */
#define CRM_NULLABLE 0x08 /* may be set to null (cleared) */
#define CRM_FIXED 0x10	  /* settable on create only */
#define CRM_NARROW                                                                                 \
	0x20 /* few records share a value: filtering by it reads the                               \
		matches, not the tenant's list page by page (db.h) */

struct crm_field {
	const char *name;
	enum crm_kind kind;
	unsigned flags;
	long long min, max;	    /* length or value bounds */
	const char *const *options; /* CRM_ENUM */
	const char *ref;	    /* CRM_REF(S): the collection referred to */
};

struct crm_entity;
/* Entity rules beyond field types: called after the fields validated, with
 * the values to set (and the stored record on update, NULL on create). Adds
 * field errors / a problem and returns false to refuse. */
typedef bool (*crm_hook)(struct tr_ctx *c, const struct crm_entity *e, bson_t *set,
			 const bson_t *old);

struct crm_entity {
	const char *coll;
	const char *path;	 /* "/v1/crm/leads", for Location */
	const char *topic;	 /* event topic or NULL */
	const char *event;	 /* "crm.lead": events crm.lead.created / .updated */
	const char *owner_field; /* ":own" applies to this field, or NULL */
	const char *custom;	 /* custom-field entity name, or NULL */
	const struct crm_field *fields;
	const char *const *sorts;
	crm_hook hook;
	/* After a create or change is stored (e.g. to schedule a job). */
	void (*saved)(struct tr_ctx *c, const bson_t *stored);
	/* May this record go? Sets the problem (409) and returns false. */
	bool (*may_delete)(struct tr_ctx *c, const bson_t *stored);
	/* After a record was deleted (the record as it was). */
	void (*removed)(struct tr_ctx *c, const bson_t *old);
	bool deletable;
	/* A nested resource (/clients/{id}/contacts/{cid}): the parent entity
	 * and the field naming it; the path's first id is the parent's. */
	const struct crm_entity *parent;
	const char *parent_field;
};

/* The generic handlers. */
void crm_create(struct tr_ctx *c, const struct crm_entity *e);
void crm_get(struct tr_ctx *c, const struct crm_entity *e);
void crm_update(struct tr_ctx *c, const struct crm_entity *e);
void crm_delete(struct tr_ctx *c, const struct crm_entity *e);
void crm_list(struct tr_ctx *c, const struct crm_entity *e, const bson_t *extra_filter);

/* Building blocks for entity actions. */
/* The record by the id in path parameter i, honouring ":own" (404 for a
 * record the caller may not see). Sets the problem and returns false. */
bool crm_load(struct tr_ctx *c, const struct crm_entity *e, const char *id, bson_t *out);
/* Stores a change made by an action (version-checked when version > 0),
 * emits event (e.g. "crm.deal.won") and replies 200 with the record. */
void crm_save(struct tr_ctx *c, const struct crm_entity *e, const char *id, long long version,
	      const bson_t *set, const char *event);
/* Emits an event for a stored record of e. */
void crm_emit(struct tr_ctx *c, const struct crm_entity *e, const char *event,
	      const bson_t *stored);
/* Validates e's fields present in the body into set (creating: required
 * ones must be there). */
bool crm_read_fields(struct tr_ctx *c, const struct crm_entity *e, bool creating, bson_t *set);
/* One field of the body (absent or null: nothing set). */
bool crm_read_field(struct tr_ctx *c, const struct crm_field *f, bson_t *set);
/* The ids (hex) of the tenant's records of coll matching filter (meant for
 * narrow filters), malloc'd into *ids (the caller frees). */
int crm_matching_ids(struct tr_ctx *c, const char *coll, const bson_t *filter, char (**ids)[25],
		     size_t *n);
/* Does a record with this id exist in the tenant's coll? */
bool crm_exists(struct tr_ctx *c, const char *coll, const bson_oid_t *id);

/* Helpers. */
bool crm_parse_time(const char *s, int64_t *ms);
bool crm_oid_of(const bson_t *doc, const char *field, bson_oid_t *out);
const char *crm_str_of(const bson_t *doc, const char *field);
int64_t crm_int_of(const bson_t *doc, const char *field, int64_t dflt);
/* Removes a top-level field. */
void crm_remove_field(bson_t *doc, const char *field);
/* A string of the request's JSON body, or NULL. */
const char *crm_body_str(struct tr_ctx *c, const char *field);

/* Route handlers. */
void leads_list(struct tr_ctx *c);
void leads_create(struct tr_ctx *c);
void leads_get(struct tr_ctx *c);
void leads_update(struct tr_ctx *c);
void leads_delete(struct tr_ctx *c);
void leads_convert(struct tr_ctx *c);
void deals_list(struct tr_ctx *c);
void deals_create(struct tr_ctx *c);
void deals_get(struct tr_ctx *c);
void deals_update(struct tr_ctx *c);
void deals_delete(struct tr_ctx *c);
void deals_stage(struct tr_ctx *c);
void deals_won(struct tr_ctx *c);
void deals_lost(struct tr_ctx *c);
void pipelines_list(struct tr_ctx *c);
void pipelines_create(struct tr_ctx *c);
void pipelines_get(struct tr_ctx *c);
void pipelines_update(struct tr_ctx *c);
void pipelines_delete(struct tr_ctx *c);
void fields_list(struct tr_ctx *c);
void fields_create(struct tr_ctx *c);
void fields_get(struct tr_ctx *c);
void fields_update(struct tr_ctx *c);
void fields_delete(struct tr_ctx *c);
void clients_timeline(struct tr_ctx *c);
void reports_funnel(struct tr_ctx *c);
void reports_abc_xyz(struct tr_ctx *c);
void reports_managers(struct tr_ctx *c);
void reports_sources(struct tr_ctx *c);
/* `trellis demo seed --tenant SLUG` (demo.c). */
int crm_demo_seed(int argc, char **argv);
bool crm_pipeline_has_stage(const bson_t *pipeline, const char *stage);
int crm_task_reminder(const struct tr_job *job, char *err, size_t errlen);

/* Entities (one file each). */
extern const struct crm_entity crm_leads, crm_clients, crm_contacts, crm_counterparties, crm_groups,
    crm_pipelines, crm_deals, crm_interactions, crm_tasks, crm_campaigns, crm_claims, crm_fields;

/* Custom fields (fields.c): checks body "custom" against the tenant's
 * definitions for entity into set. */
bool crm_custom_check(struct tr_ctx *c, const char *entity, bool creating, const bson_t *old,
		      bson_t *set);

/* Report totals (totals.c): the effects of deals, leads and clients on
 * registers; CRM_NAMES counts each client's name changes. */
#define CRM_NAMES "crm.names"
#define CRM_NEFFECTS 3
extern const struct tr_effects crm_effects[CRM_NEFFECTS];
extern const size_t crm_neffects;
/* Appends to set what a deal made from lead keeps of it (_lcd, _lch, _lk:
 * its created day, channel and campaign; nulls without a lead). */
void crm_lead_snapshot(const bson_t *lead, bson_t *set);
/* Appends _xd, the day of set's closed_at, when set has one. */
void crm_deal_closed_day(bson_t *set);

/* The default pipeline of the tenant (created on first use). */
int crm_default_pipeline(struct tr_ctx *c, bson_t *out);
/* Starts a new deal's stage history (deals.c). */
void crm_deal_history_start(struct tr_ctx *c, bson_t *deal, const char *stage);

/* The five handlers of an entity served by the engine alone. */
#define CRM_HANDLERS(name, entity)                                                                 \
	void name##_list(struct tr_ctx *c);                                                        \
	void name##_create(struct tr_ctx *c);                                                      \
	void name##_get(struct tr_ctx *c);                                                         \
	void name##_update(struct tr_ctx *c);                                                      \
	void name##_delete(struct tr_ctx *c);                                                      \
	void name##_list(struct tr_ctx *c)                                                         \
	{                                                                                          \
		crm_list(c, &entity, NULL);                                                        \
	}                                                                                          \
	void name##_create(struct tr_ctx *c)                                                       \
	{                                                                                          \
		crm_create(c, &entity);                                                            \
	}                                                                                          \
	void name##_get(struct tr_ctx *c)                                                          \
	{                                                                                          \
		crm_get(c, &entity);                                                               \
	}                                                                                          \
	void name##_update(struct tr_ctx *c)                                                       \
	{                                                                                          \
		crm_update(c, &entity);                                                            \
	}                                                                                          \
	void name##_delete(struct tr_ctx *c)                                                       \
	{                                                                                          \
		crm_delete(c, &entity);                                                            \
	}

#endif
