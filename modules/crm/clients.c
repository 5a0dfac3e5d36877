/* Clients, their counterparties (legal entities with validity periods) and
 * contacts, client groups, and a client's timeline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm.h"
#include "db.h"
#include "json.h"
#include "perm.h"

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
	static const char *const referrers[] = {"deals", "claims", "interactions", "contacts",
						"counterparties"};
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

/* GET /v1/crm/clients/{id}/timeline: interactions, deals and claims,
 * newest first (the 200 newest of each). */
void
crm_clients_timeline(struct tr_ctx *c)
{
	static const struct {
		const char *coll, *type, *at, *permission, *owner;
	} parts[] = {{"interactions", "interaction", "at", "crm.interactions.read", "user_id"},
		     {"deals", "deal", "created_at", "crm.deals.read", "owner_id"},
		     {"claims", "claim", "created_at", "crm.claims.read", "assignee_id"}};
	bson_t client, items = BSON_INITIALIZER, out = BSON_INITIALIZER, arr;
	struct entry {
		int64_t at;
		bson_t *doc;
		const char *type;
	} *all = NULL;
	size_t n = 0, cap = 0;
	bson_oid_t id;

	if (!tr_res_load(c, &crm_clients, tr_param(c, 0), &client))
		goto out;
	tr_doc_oid(&client, "_id", &id);
	for (size_t p = 0; p < sizeof(parts) / sizeof(parts[0]); p++) {
		struct tr_list_query q = {
		    .sort_field = parts[p].at, .direction = -1, .limit = 200, .narrow = true};
		bson_t filter = BSON_INITIALIZER, page = BSON_INITIALIZER;
		char *next = NULL;
		bson_iter_t it;
		bool own;
		/* each part as its own list would show it to the caller */
		if (!tr_permission_check(c->req->principal.perms, parts[p].permission, &own)) {
			bson_destroy(&filter);
			bson_destroy(&page);
			continue;
		}
		bson_init(&q.cursor_doc);
		BSON_APPEND_OID(&filter, "client_id", &id);
		if (own)
			BSON_APPEND_OID(&filter, parts[p].owner, &c->req->principal.user_id);
		int rc = tr_db_list(c->db, parts[p].coll, &filter, &q, &page, &next);
		free(next);
		bson_destroy(&q.cursor_doc);
		bson_destroy(&filter);
		if (rc != TR_OK) {
			bson_destroy(&page);
			tr_problem_from_err(c, rc);
			goto out;
		}
		bson_iter_init(&it, &page);
		while (bson_iter_next(&it)) {
			uint32_t len;
			const uint8_t *data;
			bson_t view;
			const char *ts;
			int64_t at = 0;
			bson_iter_document(&it, &len, &data);
			bson_init_static(&view, data, len);
			if ((ts = tr_doc_str(&view, parts[p].at)))
				tr_parse_time(ts, &at);
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				all = realloc(all, cap * sizeof(*all));
			}
			all[n].at = at;
			all[n].doc = bson_copy(&view);
			all[n].type = parts[p].type;
			n++;
		}
		bson_destroy(&page);
	}
	/* newest first; insertion sort is enough for 600 */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && all[j].at > all[j - 1].at; j--) {
			struct entry t = all[j];
			all[j] = all[j - 1];
			all[j - 1] = t;
		}
	BSON_APPEND_ARRAY_BEGIN(&out, "items", &arr);
	for (size_t i = 0; i < n; i++) {
		char key[16];
		const char *k;
		bson_t e;
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &e);
		BSON_APPEND_UTF8(&e, "type", all[i].type);
		BSON_APPEND_DOCUMENT(&e, all[i].type, all[i].doc);
		bson_append_document_end(&arr, &e);
	}
	bson_append_array_end(&out, &arr);
	BSON_APPEND_NULL(&out, "next_cursor");
	tr_reply_json(c, 200, &out);
out:
	for (size_t i = 0; i < n; i++)
		bson_destroy(all[i].doc);
	free(all);
	bson_destroy(&client);
	bson_destroy(&items);
	bson_destroy(&out);
}
