/* Clients, their counterparties (legal entities with validity periods) and
 * contacts, client groups, and the CRM's part of a client's timeline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm.h"
#include "db.h"
#include "json.h"
#include "perm.h"
#include "timeline.h"

static const char *const kinds[] = {"company", "person", NULL};
static const char *const client_sorts[] = {"-created_at", "created_at", "name", "-updated_at",
					   NULL};
static const char *const by_name[] = {"name", "-created_at", "created_at", NULL};
static const char *const by_legal_name[] = {"legal_name", "-created_at", "created_at", NULL};

static const struct tr_field client_fields[] = {
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"kind", TR_K_ENUM, TR_F_REQUIRED | TR_F_FILTER, 0, 0, kinds, NULL},
    {"group_ids", TR_K_REFS, 0, 0, 50, NULL, "crm_groups"},
    {"owner_id", TR_K_REF, TR_F_FILTER, 0, 0, NULL, "users"},
    {"custom", TR_K_CUSTOM, 0, 0, 0, NULL, NULL},
    {"lead_id", TR_K_REF, TR_F_SERVER, 0, 0, NULL, "leads"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static bool
client_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	bson_t empty;
	(void)c;
	(void)e;
	if (!old && !bson_has_field(set, "group_ids")) {
		BSON_APPEND_ARRAY_BEGIN(set, "group_ids", &empty);
		bson_append_array_end(set, &empty);
	}
	return true;
}

/* A client with history stays: its deals, claims, interactions, contacts
 * and legal entities refer to it. */
static bool
client_may_delete(struct tr_ctx *c, const bson_t *stored)
{
	static const char *const referrers[] = {"deals",    "claims",	      "interactions",
						"contacts", "counterparties", CRM_Q_ANSWERS};
	bson_t filter = BSON_INITIALIZER;
	bson_oid_t id;
	bool ok = true;

	tr_doc_oid(stored, "_id", &id);
	BSON_APPEND_OID(&filter, "client_id", &id);
	for (size_t i = 0; ok && i < sizeof(referrers) / sizeof(referrers[0]); i++) {
		long long n = 0;
		int rc = tr_db_count(c->db, referrers[i], &filter, &n);
		if (rc != TR_OK) {
			tr_problem_from_err(c, rc);
			ok = false;
		} else if (n > 0) {
			char *m = tr_arena_alloc(c->req->arena, 96);
			snprintf(m, 96, "the client still has %s", referrers[i]);
			tr_problem(c, 409, "conflict", m);
			ok = false;
		}
	}
	bson_destroy(&filter);
	return ok;
}

const struct tr_resource crm_clients = {
    .name = "client",
    .read = "crm.clients.read",
    .write = "crm.clients.write",
    .about = "A company or person the tenant sells to.",
    .coll = "clients",
    .path = "/v1/crm/clients",
    .topic = "crm.clients",
    .event = "crm.client",
    .owner_field = "owner_id",
    .custom = "client",
    .custom_defs = CRM_FIELDS,
    .fields = client_fields,
    .sorts = client_sorts,
    .hook = client_hook,
    .may_delete = client_may_delete,
    .deletable = true,
};

static const struct tr_field counterparty_fields[] = {
    {"legal_name", TR_K_LINE, TR_F_REQUIRED, 1, 300, NULL, NULL},
    {"tax_id", TR_K_LINE, TR_F_NULLABLE, 1, 50, NULL, NULL},
    {"address", TR_K_TEXT, TR_F_NULLABLE, 1, 1000, NULL, NULL},
    {"active_from", TR_K_TIME, TR_F_NULLABLE, 0, 0, NULL, NULL},
    {"active_to", TR_K_TIME, TR_F_NULLABLE, 0, 0, NULL, NULL},
    {"client_id", TR_K_REF, TR_F_SERVER, 0, 0, NULL, "clients"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* active_from before active_to, whichever of them the change sets. */
static bool
period_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	bson_iter_t it;
	int64_t from = INT64_MIN, to = INT64_MAX;
	(void)e;

	if (bson_iter_init_find(&it, set, "active_from") && BSON_ITER_HOLDS_DATE_TIME(&it))
		from = bson_iter_date_time(&it);
	else if (!bson_has_field(set, "active_from") && old &&
		 bson_iter_init_find(&it, old, "active_from") && BSON_ITER_HOLDS_DATE_TIME(&it))
		from = bson_iter_date_time(&it);
	if (bson_iter_init_find(&it, set, "active_to") && BSON_ITER_HOLDS_DATE_TIME(&it))
		to = bson_iter_date_time(&it);
	else if (!bson_has_field(set, "active_to") && old &&
		 bson_iter_init_find(&it, old, "active_to") && BSON_ITER_HOLDS_DATE_TIME(&it))
		to = bson_iter_date_time(&it);
	if (from >= to) {
		tr_problem_field(c, "active_to", "must be after active_from");
		return false;
	}
	return true;
}

const struct tr_resource crm_counterparties = {
    .name = "counterparty",
    .read = "crm.clients.read",
    .write = "crm.clients.write",
    .about = "A legal entity of a client, with its validity period.",
    .coll = "counterparties",
    .path = "counterparties", /* under the client's path */
    .fields = counterparty_fields,
    .sorts = by_legal_name,
    .hook = period_hook,
    .deletable = true,
    .parent = &crm_clients,
    .parent_field = "client_id",
};

static const struct tr_field contact_fields[] = {
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"email", TR_K_EMAIL, TR_F_NULLABLE, 3, 254, NULL, NULL},
    {"phone", TR_K_PHONE, TR_F_NULLABLE, 3, 40, NULL, NULL},
    {"position", TR_K_LINE, TR_F_NULLABLE, 1, 100, NULL, NULL},
    {"client_id", TR_K_REF, TR_F_SERVER, 0, 0, NULL, "clients"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

const struct tr_resource crm_contacts = {
    .name = "contact",
    .read = "crm.clients.read",
    .write = "crm.clients.write",
    .about = "A person at a client.",
    .coll = "contacts",
    .path = "contacts", /* under the client's path */
    .fields = contact_fields,
    .sorts = by_name,
    .deletable = true,
    .parent = &crm_clients,
    .parent_field = "client_id",
};

/* Groups: rule {"type": "static"} (clients list the group in group_ids) or
 * {"type": "filter", "kind": ..., "owner_id": ...} (a saved filter). */
static const struct tr_field group_fields[] = {
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 100, NULL, NULL},
    {"rule", TR_K_OBJECT, TR_F_REQUIRED, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static bool
group_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	bson_iter_t it, r;
	const char *type = NULL, *kind = NULL;
	bson_oid_t owner;
	bool has_owner = false, ok = true;
	bson_t rule;
	(void)e;
	(void)old;

	if (!bson_iter_init_find(&it, &c->req->body, "rule") || BSON_ITER_HOLDS_NULL(&it))
		return true;
	bson_iter_recurse(&it, &r);
	while (bson_iter_next(&r)) {
		const char *k = bson_iter_key(&r);
		if (strcmp(k, "type") == 0 && BSON_ITER_HOLDS_UTF8(&r))
			type = bson_iter_utf8(&r, NULL);
		else if (strcmp(k, "kind") == 0 && BSON_ITER_HOLDS_UTF8(&r))
			kind = bson_iter_utf8(&r, NULL);
		else if (strcmp(k, "owner_id") == 0 && BSON_ITER_HOLDS_UTF8(&r) &&
			 tr_is_object_id(bson_iter_utf8(&r, NULL))) {
			bson_oid_init_from_string(&owner, bson_iter_utf8(&r, NULL));
			has_owner = true;
		} else
			ok = false;
	}
	if (!type || (strcmp(type, "static") != 0 && strcmp(type, "filter") != 0))
		ok = false;
	if (type && strcmp(type, "static") == 0 && (kind || has_owner))
		ok = false;
	if (kind && strcmp(kind, "company") != 0 && strcmp(kind, "person") != 0)
		ok = false;
	if (type && strcmp(type, "filter") == 0 && !kind && !has_owner)
		ok = false;
	if (!ok) {
		tr_problem_field(
		    c, "rule",
		    "must be {\"type\": \"static\"} or {\"type\": \"filter\", \"kind\": "
		    "\"company|person\", \"owner_id\": id} (at least one condition)");
		return false;
	}
	BSON_APPEND_DOCUMENT_BEGIN(set, "rule", &rule);
	BSON_APPEND_UTF8(&rule, "type", type);
	if (kind)
		BSON_APPEND_UTF8(&rule, "kind", kind);
	if (has_owner)
		BSON_APPEND_OID(&rule, "owner_id", &owner);
	bson_append_document_end(set, &rule);
	return true;
}

const struct tr_resource crm_groups = {
    .name = "group",
    .read = "crm.clients.read",
    .write = "crm.clients.write",
    .about = "A group of clients: static membership or a saved filter.",
    .coll = "crm_groups",
    .path = "/v1/crm/groups",
    .fields = group_fields,
    .sorts = by_name,
    .hook = group_hook,
    .deletable = true,
};

/* GET /v1/crm/groups/{id}/clients: the members, by the group's rule. */
void
crm_groups_members(struct tr_ctx *c)
{
	bson_t group, filter = BSON_INITIALIZER;
	bson_iter_t it, r;
	bson_oid_t id;

	if (!tr_res_load(c, &crm_groups, tr_param(c, 0), &group))
		goto out;
	tr_doc_oid(&group, "_id", &id);
	const char *type = "static";
	if (bson_iter_init_find(&it, &group, "rule") && bson_iter_recurse(&it, &r) &&
	    bson_iter_find(&r, "type") && BSON_ITER_HOLDS_UTF8(&r))
		type = bson_iter_utf8(&r, NULL);
	if (strcmp(type, "static") == 0) {
		BSON_APPEND_OID(&filter, "group_ids", &id);
	} else if (bson_iter_init_find(&it, &group, "rule") && bson_iter_recurse(&it, &r)) {
		while (bson_iter_next(&r))
			if (strcmp(bson_iter_key(&r), "type") != 0)
				bson_append_iter(&filter, bson_iter_key(&r), -1, &r);
	}
	/* a rule naming no condition never means "everyone" */
	if (bson_count_keys(&filter) == 0)
		BSON_APPEND_BOOL(&filter, "_never", true);
	tr_res_list(c, &crm_clients, &filter);
out:
	bson_destroy(&group);
	bson_destroy(&filter);
}

/* A client's interactions, deals and claims on its timeline (timeline.h),
 * each as its own list would show it to the caller: nothing without the
 * list's permission, only the caller's own records with its ":own" form. */
static const struct {
	const char *kind, *coll, *at, *permission, *owner;
} timeline_parts[] = {
    {"interaction", "interactions", "at", "crm.interactions.read", "user_id"},
    {"deal", "deals", "created_at", "crm.deals.read", "owner_id"},
    {"claim", "claims", "created_at", "crm.claims.read", "assignee_id"},
    /* answers have no owner: an ":own" reader sees none */
    {"questionnaire_answer", CRM_Q_ANSWERS, "created_at", "crm.questionnaires.read", "owner_id"}};

static int
client_timeline(struct tr_db *db, const struct tr_principal *caller, const bson_oid_t *client_id,
		const struct tr_timeline_window *w, struct tr_timeline_items *out)
{
	int rc = TR_OK;

	for (size_t p = 0; rc == TR_OK && p < sizeof(timeline_parts) / sizeof(timeline_parts[0]);
	     p++) {
		bson_t filter = BSON_INITIALIZER, page = BSON_INITIALIZER;
		struct tr_list_query q;
		char *next = NULL;
		bson_iter_t it;
		bool own;

		if (!tr_permission_check(caller->perms, timeline_parts[p].permission, &own)) {
			bson_destroy(&filter);
			bson_destroy(&page);
			continue;
		}
		BSON_APPEND_OID(&filter, "client_id", client_id);
		if (own)
			BSON_APPEND_OID(&filter, timeline_parts[p].owner, &caller->user_id);
		tr_timeline_query(w, timeline_parts[p].kind, timeline_parts[p].at, &q);
		rc = tr_db_list(db, timeline_parts[p].coll, &filter, &q, &page, &next);
		free(next);
		bson_destroy(&filter);
		if (rc == TR_OK && bson_iter_init(&it, &page))
			while (rc == TR_OK && bson_iter_next(&it)) {
				uint32_t len;
				const uint8_t *data;
				const char *id, *ts;
				bson_oid_t oid;
				int64_t at = 0;
				bson_t record;
				bson_iter_document(&it, &len, &data);
				if (!bson_init_static(&record, data, len) ||
				    !(id = tr_doc_str(&record, "id")) || !tr_is_object_id(id))
					continue;
				bson_oid_init_from_string(&oid, id);
				if ((ts = tr_doc_str(&record, timeline_parts[p].at)))
					tr_parse_time(ts, &at);
				rc =
				    tr_timeline_add(out, timeline_parts[p].kind, &oid, at, &record);
			}
		bson_destroy(&page);
	}
	return rc;
}

static const struct tr_timeline_kind timeline_kinds[] = {
    {"interaction", &crm_interactions, "An interaction with the client, at its time."},
    {"deal", &crm_deals, "A deal of the client, at its creation."},
    {"claim", &crm_claims, "A claim of the client, at its creation."},
    {"questionnaire_answer", NULL,
     "A contact's answers to a questionnaire (id, questionnaire_id, contact_id, title, "
     "answers by question key), when given."},
};

const struct tr_timeline crm_timeline = {
    .kinds = timeline_kinds,
    .nkinds = sizeof(timeline_kinds) / sizeof(timeline_kinds[0]),
    .items = client_timeline,
};
