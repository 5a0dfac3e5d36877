/* Leads: intake (users and partner API keys), duplicates by normalised
 * email and phone, the status flow, and conversion into a client, a
 * contact and optionally a deal. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "crm.h"
#include "db.h"
#include "events.h"
#include "jobs.h"
#include "json.h"
#include "log.h"
#include "perm.h"

#define LEADS "leads"

static const char *const statuses[] = {"new", "contacted", "qualified", "converted", "lost", NULL};
static const char *const channels[] = {"web",	"phone",   "email", "referral", "ads",
				       "event", "partner", "other", NULL};
static const char *const sorts[] = {"-created_at", "created_at", "name", "-updated_at", NULL};

static const struct tr_field fields[] = {
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"email", TR_K_EMAIL, TR_F_NULLABLE | TR_F_FILTER | TR_F_NARROW, 3, 254, NULL, NULL},
    {"phone", TR_K_PHONE, TR_F_NULLABLE, 3, 40, NULL, NULL},
    {"company", TR_K_LINE, TR_F_NULLABLE, 0, 200, NULL, NULL},
    {"source", TR_K_OBJECT, TR_F_NULLABLE, 0, 0, NULL, NULL},
    {"owner_id", TR_K_REF, TR_F_FILTER, 0, 0, NULL, "users"},
    {"status", TR_K_ENUM, TR_F_FILTER, 0, 0, statuses, NULL},
    {"lost_reason", TR_K_TEXT, TR_F_NULLABLE, 1, 1000, NULL, NULL},
    {"duplicate_of", TR_K_REF, TR_F_SERVER | TR_F_FILTER | TR_F_NARROW, 0, 0, NULL, LEADS},
    {"custom", TR_K_CUSTOM, 0, 0, 0, NULL, NULL},
    {"client_id", TR_K_REF, TR_F_SERVER, 0, 0, NULL, "clients"},
    {"contact_id", TR_K_REF, TR_F_SERVER, 0, 0, NULL, "contacts"},
    {"deal_id", TR_K_REF, TR_F_SERVER, 0, 0, NULL, "deals"},
    {"converted_at", TR_K_TIME, TR_F_SERVER, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* Emails compare in lower case; phones by their digits (a leading + kept
 * out: "+49 30 1234" and "0049-30-1234" differ, as they may be dialled
 * differently). */
static void
normalise_phone(const char *in, char *out, size_t len)
{
	size_t n = 0;
	for (; *in && n + 1 < len; in++)
		if (isdigit((unsigned char)*in))
			out[n++] = *in;
	out[n] = '\0';
}

/* source: {"channel": one of channels, "campaign_id": id or null}. */
static bool
source_ok(struct tr_ctx *c, bson_t *set)
{
	bson_iter_t it, sub;
	const char *channel = NULL;
	bson_oid_t campaign;
	bool has_campaign = false;

	if (!bson_iter_init_find(&it, &c->req->body, "source") || BSON_ITER_HOLDS_NULL(&it))
		return true;
	bson_iter_recurse(&it, &sub);
	while (bson_iter_next(&sub)) {
		const char *k = bson_iter_key(&sub);
		if (strcmp(k, "channel") == 0 && BSON_ITER_HOLDS_UTF8(&sub)) {
			channel = bson_iter_utf8(&sub, NULL);
		} else if (strcmp(k, "campaign_id") == 0 && BSON_ITER_HOLDS_NULL(&sub)) {
		} else if (strcmp(k, "campaign_id") == 0 && BSON_ITER_HOLDS_UTF8(&sub) &&
			   tr_is_object_id(bson_iter_utf8(&sub, NULL))) {
			bson_oid_init_from_string(&campaign, bson_iter_utf8(&sub, NULL));
			has_campaign = true;
			if (!tr_res_exists(c, "campaigns", &campaign)) {
				tr_problem_field(c, "source.campaign_id", "names no campaign");
				return false;
			}
		} else {
			tr_problem_field(
			    c, "source",
			    "must be {\"channel\": \"web|phone|...\", \"campaign_id\": id}");
			return false;
		}
	}
	bool known = false;
	for (const char *const *ch = channels; channel && *ch; ch++)
		known |= strcmp(*ch, channel) == 0;
	if (!known) {
		tr_problem_field(
		    c, "source.channel",
		    "must be one of: web phone email referral ads event partner other");
		return false;
	}
	bson_t s;
	tr_doc_remove(set, "source");
	BSON_APPEND_DOCUMENT_BEGIN(set, "source", &s);
	BSON_APPEND_UTF8(&s, "channel", channel);
	if (has_campaign)
		BSON_APPEND_OID(&s, "campaign_id", &campaign);
	else
		BSON_APPEND_NULL(&s, "campaign_id");
	bson_append_document_end(set, &s);
	return true;
}

/* The value a field will have after the change: in set, else stored. A
 * copy (in the request's arena): set grows, and moves, as fields are added. */
static const char *
after(struct tr_ctx *c, const bson_t *set, const bson_t *old, const char *field)
{
	bson_iter_t it;
	const char *v;

	if (bson_iter_init_find(&it, set, field))
		v = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : NULL;
	else
		v = tr_doc_str(old, field);
	return v ? tr_arena_strdup(c->req->arena, v) : NULL;
}

/* What find_duplicate keeps while it looks. */
struct dup_search {
	const bson_oid_t *self;
	bool found;
	bson_oid_t first; /* the oldest open lead that matches */
};

static int
dup_visit(void *arg, const bson_t *lead)
{
	struct dup_search *d = arg;
	const char *status = tr_doc_str(lead, "status"), *id = tr_doc_str(lead, "id");
	bson_oid_t oid;

	if (!status || !id || !tr_is_object_id(id) ||
	    (strcmp(status, "new") && strcmp(status, "contacted") && strcmp(status, "qualified")))
		return 0;
	bson_oid_init_from_string(&oid, id);
	if (d->self && bson_oid_equal(&oid, d->self))
		return 0;
	if (!d->found || bson_oid_compare(&oid, &d->first) < 0)
		bson_oid_copy(&oid, &d->first);
	d->found = true;
	return 0;
}

/* An open lead (not converted or lost) with the same email or phone: two
 * lookups by equality (the only filters FerretDB hands to PostgreSQL, where
 * an index answers them), the status checked here. The oldest such lead is
 * the one named. */
static bool
find_duplicate(struct tr_ctx *c, const char *email, const char *phone_n, const bson_oid_t *self,
	       bson_t *set)
{
	struct dup_search d = {.self = self};
	int rc = TR_OK;

	if (email) {
		bson_t filter = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&filter, "email", email);
		rc = tr_db_each(c->db, LEADS, &filter, dup_visit, &d);
		bson_destroy(&filter);
	}
	if (rc == TR_OK && phone_n && *phone_n) {
		bson_t filter = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&filter, "_phone_n", phone_n);
		rc = tr_db_each(c->db, LEADS, &filter, dup_visit, &d);
		bson_destroy(&filter);
	}
	/* a check that could not run is not "no duplicate": the lead waits */
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		return false;
	}
	if (d.found)
		BSON_APPEND_OID(set, "duplicate_of", &d.first);
	return true;
}

/* The status flow: new -> contacted -> qualified (steps may be skipped),
 * any open status -> lost with a reason; converted only through /convert;
 * converted and lost are final. */
static const struct tr_transition lead_moves[] = {
    {NULL, "new", NULL, NULL},
    {"new", "contacted", NULL, NULL},
    {"new", "qualified", NULL, NULL},
    {"contacted", "qualified", NULL, NULL},
    {"new", "lost", NULL, "lost_reason"},
    {"contacted", "lost", NULL, "lost_reason"},
    {"qualified", "lost", NULL, "lost_reason"},
    {"new", "converted", "convert", NULL},
    {"contacted", "converted", "convert", NULL},
    {"qualified", "converted", "convert", NULL},
    {NULL, NULL, NULL, NULL},
};
static const struct tr_states lead_states = {"status", lead_moves};

static bool
lead_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	const char *email = after(c, set, old, "email"), *phone = after(c, set, old, "phone");
	char phone_n[32] = "";
	bson_oid_t self;
	(void)e;

	if (!source_ok(c, set))
		return false;
	if ((!email || !*email) && (!phone || !*phone)) {
		tr_problem_field(c, "email", "a lead needs an email or a phone");
		return false;
	}
	if (phone)
		normalise_phone(phone, phone_n, sizeof(phone_n));
	if (bson_has_field(set, "phone")) {
		if (phone)
			BSON_APPEND_UTF8(set, "_phone_n", phone_n);
		else
			BSON_APPEND_NULL(set, "_phone_n");
	}
	if (!old) {
		if (!find_duplicate(c, email, phone_n, NULL, set))
			return false;
		if (!bson_has_field(set, "duplicate_of"))
			BSON_APPEND_NULL(set, "duplicate_of");
	} else if (bson_has_field(set, "email") || bson_has_field(set, "phone")) {
		tr_doc_oid(old, "_id", &self);
		if (!find_duplicate(c, email, phone_n, &self, set))
			return false;
	}
	return true;
}

static bool
same_value(const bson_iter_t *a, const bson_iter_t *b)
{
	if (bson_iter_type(a) != bson_iter_type(b))
		return false;
	if (BSON_ITER_HOLDS_UTF8(a))
		return strcmp(bson_iter_utf8(a, NULL), bson_iter_utf8(b, NULL)) == 0;
	if (BSON_ITER_HOLDS_OID(a))
		return bson_oid_equal(bson_iter_oid(a), bson_iter_oid(b));
	return BSON_ITER_HOLDS_NULL(a);
}

/* What a deal made from a lead keeps of it (its day and source, for the
 * sources report) follows the lead: a change of its source or its deletion
 * reaches the deals made from it. */
static void
deals_follow(struct tr_ctx *c, const bson_t *lead, bool gone)
{
	bson_t filter = BSON_INITIALIZER, snapshot = BSON_INITIALIZER;
	bson_oid_t id;
	char(*ids)[25] = NULL;
	size_t n = 0;

	if (!tr_doc_oid(lead, "_id", &id))
		goto out;
	if (gone) {
		BSON_APPEND_NULL(&snapshot, "_lcd");
		BSON_APPEND_NULL(&snapshot, "_lch");
		BSON_APPEND_NULL(&snapshot, "_lk");
	} else {
		crm_lead_snapshot(lead, &snapshot);
	}
	BSON_APPEND_OID(&filter, "lead_id", &id);
	if (tr_res_matching_ids(c, "deals", &filter, &ids, &n) != TR_OK) {
		tr_warn("crm: the deals of a lead could not be read to follow it");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		bson_t deal, stored;
		bool same = true;
		bson_iter_t it, d;
		if (tr_db_get(c->db, "deals", ids[i], &deal) != TR_OK) {
			bson_destroy(&deal);
			continue;
		}
		bson_iter_init(&it, &snapshot);
		while (bson_iter_next(&it)) {
			bool has = bson_iter_init_find(&d, &deal, bson_iter_key(&it));
			if (BSON_ITER_HOLDS_NULL(&it) ? has && !BSON_ITER_HOLDS_NULL(&d)
						      : !has || !same_value(&it, &d))
				same = false;
		}
		bson_destroy(&deal);
		if (same)
			continue;
		if (tr_db_update(c->db, "deals", ids[i], -1, &snapshot, NULL, &stored) != TR_OK)
			tr_warn("crm: deal %s did not follow its lead", ids[i]);
		bson_destroy(&stored);
	}
out:
	free(ids);
	bson_destroy(&filter);
	bson_destroy(&snapshot);
}

/* Deals are made from a lead only by its conversion. */
static bool
may_have_deals(const bson_t *lead)
{
	const char *status = tr_doc_str(lead, "status");
	return status && strcmp(status, "converted") == 0;
}

static void
lead_saved(struct tr_ctx *c, const bson_t *lead, const bson_t *old)
{
	(void)old;
	if (may_have_deals(lead))
		deals_follow(c, lead, false);
}

static void
lead_removed(struct tr_ctx *c, const bson_t *lead)
{
	if (may_have_deals(lead))
		deals_follow(c, lead, true);
}

const struct tr_resource crm_leads = {
    .name = "lead",
    .coll = LEADS,
    .path = "/v1/crm/leads",
    .read = "crm.leads.read",
    .write = "crm.leads.write",
    .about = "Leads from users and partner API keys; a duplicate (same email or phone as an "
	     "open lead) gets duplicate_of.",
    .states = &lead_states,
    .topic = "crm.leads",
    .event = "crm.lead",
    .owner_field = "owner_id",
    .custom = "lead",
    .custom_defs = CRM_FIELDS,
    .fields = fields,
    .sorts = sorts,
    .hook = lead_hook,
    .saved = lead_saved,
    .removed = lead_removed,
    .deletable = true,
};

/* ---- conversion ---- */

static bool
may(struct tr_ctx *c, const char *permission)
{
	bool own;
	return tr_permission_check(c->req->principal.perms, permission, &own);
}

/* ---- conversion: claim, then complete ----
 *
 * POST /v1/crm/leads/{id}/convert {"create_deal", "deal_title", "amount"}:
 * the lead is claimed by one conditional update (so of concurrent
 * conversions exactly one wins; the rest get 409). The claim records the
 * ids of the client, contact and deal, and under _convert what the deal
 * needs (title, amount, pipeline, stage, by). Then the records are written.
 * A conversion stopped between the claim and its last record (the process
 * died, the database went away) is completed from the lead alone: by a
 * settle job scheduled before the claim (crm_settle_after_ms later), or by
 * a POST /convert of that lead after that time. Each record is written
 * once: its id is fixed by the claim, and an insert that finds it reads it. */

#define CONVERT_QUEUE "crm.convert"

/* The key of a pipeline's first stage, or NULL. */
static const char *
first_stage(const bson_t *pipeline)
{
	bson_iter_t st, first, k;

	if (bson_iter_init_find(&st, pipeline, "stages") && bson_iter_recurse(&st, &first) &&
	    bson_iter_next(&first) && BSON_ITER_HOLDS_DOCUMENT(&first) &&
	    bson_iter_recurse(&first, &k) && bson_iter_find(&k, "key") && BSON_ITER_HOLDS_UTF8(&k))
		return bson_iter_utf8(&k, NULL);
	return NULL;
}

/* Fault tests (debug_step_delay_ms): a pause between the claim and the
 * records, for a kill to land in. */
static void
step_pause(void)
{
	int ms = tr_cfg ? tr_cfg->debug_step_delay_ms : 0;

	if (ms > 0)
		usleep((useconds_t)ms * 1000);
}

/* A record's event: with the request (published once the answer is out),
 * or from the settle job at once. */
static void
emit_record(struct tr_ctx *c, const char *tenant, const struct tr_resource *e, const char *event,
	    const bson_t *stored)
{
	bson_t data = BSON_INITIALIZER;
	bson_oid_t id, owner;
	char hex[25], owner_hex[25] = "";

	if (c) {
		tr_res_emit(c, e, event, stored);
		return;
	}
	if (!tr_doc_oid(stored, "_id", &id))
		return;
	bson_oid_to_string(&id, hex);
	if (e->owner_field && tr_doc_oid(stored, e->owner_field, &owner))
		bson_oid_to_string(&owner, owner_hex);
	tr_render_resource(stored, &data);
	tr_emit_background(tenant, e->topic, event, hex, owner_hex[0] ? owner_hex : NULL, &data);
	bson_destroy(&data);
}

/* Inserts doc into coll unless a record of its id is there: stored is the
 * record either way; *wrote says whether this call wrote it. */
static int
insert_once(struct tr_db *db, const char *coll, const bson_t *doc, bson_t *stored, bool *wrote)
{
	bson_oid_t id;
	char hex[25];
	int rc;

	*wrote = false;
	tr_doc_oid(doc, "_id", &id);
	bson_oid_to_string(&id, hex);
	rc = tr_db_get(db, coll, hex, stored);
	if (rc != TR_ENOTFOUND)
		return rc;
	bson_destroy(stored);
	rc = tr_db_insert(db, coll, doc, stored);
	if (rc == TR_EDUPLICATE) { /* another completer was first */
		bson_destroy(stored);
		return tr_db_get(db, coll, hex, stored);
	}
	*wrote = rc == TR_OK;
	return rc;
}

static void
append_render(bson_t *out, const char *key, const bson_t *stored)
{
	bson_t res = BSON_INITIALIZER;

	tr_render_resource(stored, &res);
	BSON_APPEND_DOCUMENT(out, key, &res);
	bson_destroy(&res);
}

/* Writes what the claimed lead names and is missing, into client, contact
 * and deal (deal left empty without one). c is the request, or NULL in the
 * settle job. Emits each record's created event, and crm.lead.converted
 * (the lead with its client, contact and deal) when this call wrote the
 * last of them (the deal, or the contact without one); *wrote says
 * whether it wrote anything. */
static int
convert_complete(struct tr_db *db, struct tr_ctx *c, const char *tenant, const bson_t *lead,
		 bson_t *client, bson_t *contact, bson_t *deal, bool *wrote)
{
	bson_t doc = BSON_INITIALIZER, arr, plan, data;
	bson_oid_t client_id, contact_id, deal_id, lead_id, owner, by, pipeline_id;
	const char *name = tr_doc_str(lead, "name"), *company = tr_doc_str(lead, "company"), *v;
	bool has_owner = tr_doc_oid(lead, "owner_id", &owner), has_deal, w, last;
	bson_iter_t it;
	int rc;

	*wrote = false;
	if (!tr_doc_oid(lead, "_id", &lead_id) || !tr_doc_oid(lead, "client_id", &client_id) ||
	    !tr_doc_oid(lead, "contact_id", &contact_id))
		return TR_ENOTFOUND;
	has_deal = tr_doc_oid(lead, "deal_id", &deal_id);
	/* the client */
	BSON_APPEND_OID(&doc, "_id", &client_id);
	BSON_APPEND_UTF8(&doc, "name", company && *company ? company : name ? name : "");
	BSON_APPEND_UTF8(&doc, "kind", company && *company ? "company" : "person");
	BSON_APPEND_ARRAY_BEGIN(&doc, "group_ids", &arr);
	bson_append_array_end(&doc, &arr);
	if (has_owner)
		BSON_APPEND_OID(&doc, "owner_id", &owner);
	BSON_APPEND_OID(&doc, "lead_id", &lead_id);
	rc = insert_once(db, "clients", &doc, client, &w);
	if (rc != TR_OK)
		goto out;
	if (w)
		emit_record(c, tenant, &crm_clients, "crm.client.created", client);
	*wrote |= w;
	/* the contact */
	bson_reinit(&doc);
	BSON_APPEND_OID(&doc, "_id", &contact_id);
	BSON_APPEND_OID(&doc, "client_id", &client_id);
	BSON_APPEND_UTF8(&doc, "name", name ? name : "");
	if ((v = tr_doc_str(lead, "email")))
		BSON_APPEND_UTF8(&doc, "email", v);
	if ((v = tr_doc_str(lead, "phone")))
		BSON_APPEND_UTF8(&doc, "phone", v);
	rc = insert_once(db, "contacts", &doc, contact, &w);
	if (rc != TR_OK)
		goto out;
	*wrote |= w;
	last = w;
	/* the deal, as the claim planned it */
	if (has_deal) {
		bson_iter_t p;
		const char *title = NULL, *stage = "new";
		bool has_by = false, has_pipeline = false;
		bson_init(&plan);
		if (bson_iter_init_find(&p, lead, "_convert") && BSON_ITER_HOLDS_DOCUMENT(&p)) {
			uint32_t len;
			const uint8_t *raw;
			bson_iter_document(&p, &len, &raw);
			bson_destroy(&plan);
			bson_init_static(&plan, raw, len);
		}
		title = tr_doc_str(&plan, "title");
		stage = tr_doc_str(&plan, "stage") ? tr_doc_str(&plan, "stage") : stage;
		has_by = tr_doc_oid(&plan, "by", &by);
		has_pipeline = tr_doc_oid(&plan, "pipeline_id", &pipeline_id);
		bson_reinit(&doc);
		BSON_APPEND_OID(&doc, "_id", &deal_id);
		BSON_APPEND_OID(&doc, "client_id", &client_id);
		BSON_APPEND_UTF8(&doc, "title", title ? title : name ? name : "");
		if (bson_iter_init_find(&it, &plan, "amount"))
			bson_append_iter(&doc, "amount", -1, &it);
		else
			BSON_APPEND_NULL(&doc, "amount");
		if (has_pipeline)
			BSON_APPEND_OID(&doc, "pipeline_id", &pipeline_id);
		BSON_APPEND_UTF8(&doc, "stage", stage);
		if (has_owner)
			BSON_APPEND_OID(&doc, "owner_id", &owner);
		BSON_APPEND_UTF8(&doc, "status", "open");
		BSON_APPEND_OID(&doc, "lead_id", &lead_id);
		crm_lead_snapshot(lead, &doc);
		crm_deal_history_start(has_by ? &by : NULL, &doc, stage);
		bson_destroy(&plan);
		rc = insert_once(db, "deals", &doc, deal, &w);
		if (rc != TR_OK)
			goto out;
		if (w)
			emit_record(c, tenant, &crm_deals, "crm.deal.created", deal);
		*wrote |= w;
		last = w;
	}
	/* One conversion, one event: each record is written once, so one
	 * completer alone writes the last of them. */
	if (last) {
		bson_init(&data);
		tr_render_resource(lead, &data);
		append_render(&data, "client", client);
		append_render(&data, "contact", contact);
		if (has_deal)
			append_render(&data, "deal", deal);
		else
			BSON_APPEND_NULL(&data, "deal");
		char hex[25], owner_hex[25] = "";
		bson_oid_to_string(&lead_id, hex);
		if (has_owner)
			bson_oid_to_string(&owner, owner_hex);
		if (c)
			tr_emit_data(c, "crm.leads", "crm.lead.converted", hex,
				     owner_hex[0] ? owner_hex : NULL, &data);
		else
			tr_emit_background(tenant, "crm.leads", "crm.lead.converted", hex,
					   owner_hex[0] ? owner_hex : NULL, &data);
		bson_destroy(&data);
	}
out:
	bson_destroy(&doc);
	return rc;
}

/* The answer to a conversion: its client, contact and deal (or null). */
static void
convert_reply(struct tr_ctx *c, const bson_t *client, const bson_t *contact, const bson_t *deal)
{
	bson_t out = BSON_INITIALIZER;

	append_render(&out, "client", client);
	append_render(&out, "contact", contact);
	if (!bson_empty(deal))
		append_render(&out, "deal", deal);
	else
		BSON_APPEND_NULL(&out, "deal");
	tr_reply_json(c, 200, &out);
}

/* The settle job of one conversion: completes it if its writer stopped. */
int
crm_convert_settle(const struct tr_job *job, char *err, size_t errlen)
{
	bson_t payload, lead = BSON_INITIALIZER, client = BSON_INITIALIZER;
	bson_t contact = BSON_INITIALIZER, deal = BSON_INITIALIZER;
	struct tr_db *db = NULL;
	const char *id, *status;
	char perr[64];
	bool wrote;
	int rc = TR_OK;

	/* a payload that is not ours to read: nothing to do (out) */
	tr_json_parse(job->payload, job->payload_len, &payload, perr, sizeof(perr));
	id = tr_doc_str(&payload, "lead");
	if (!id || !tr_is_object_id(id) || !tr_is_object_id(job->tenant))
		goto out;
	if (!(db = tr_db_for_tenant(job->tenant))) {
		snprintf(err, errlen, "out of memory");
		rc = TR_ENOMEM;
		goto out;
	}
	bson_destroy(&lead);
	rc = tr_db_get(db, LEADS, id, &lead);
	if (rc == TR_ENOTFOUND) {
		rc = TR_OK; /* deleted since */
		goto out;
	}
	if (rc != TR_OK)
		goto failed;
	status = tr_doc_str(&lead, "status");
	if (!status || strcmp(status, "converted") != 0)
		goto out; /* the claim never happened: nothing to finish */
	rc = convert_complete(db, NULL, job->tenant, &lead, &client, &contact, &deal, &wrote);
	if (rc == TR_OK && wrote)
		tr_info("crm: the conversion of lead %s was completed by its settle job", id);
	if (rc != TR_OK)
		goto failed;
	goto out;
failed:
	snprintf(err, errlen, "database: %s", tr_strerror(rc));
out:
	if (db)
		tr_db_release(db);
	bson_destroy(&payload);
	bson_destroy(&lead);
	bson_destroy(&client);
	bson_destroy(&contact);
	bson_destroy(&deal);
	return rc == TR_OK ? 0 : rc;
}

/* A lead converted already. A conversion stopped halfway longer ago than
 * its settle job waits is completed now (200, its records); one younger
 * than that may still be under way in another request, and a whole one is
 * final (409 both). */
static void
convert_again(struct tr_ctx *c, const bson_t *lead)
{
	bson_t client = BSON_INITIALIZER, contact = BSON_INITIALIZER, deal = BSON_INITIALIZER;
	bson_iter_t it;
	bool wrote = false;
	int rc = TR_ENOTFOUND;

	if (bson_iter_init_find(&it, lead, "converted_at") && BSON_ITER_HOLDS_DATE_TIME(&it) &&
	    tr_now_ms() - bson_iter_date_time(&it) >= tr_config_int("crm_settle_after_ms"))
		rc = convert_complete(c->db, c, c->req->principal.tenant_hex, lead, &client,
				      &contact, &deal, &wrote);
	if (rc != TR_OK && rc != TR_ENOTFOUND)
		tr_problem_from_err(c, rc);
	else if (rc == TR_OK && wrote)
		convert_reply(c, &client, &contact, &deal);
	else
		tr_problem(c, 409, "conflict", "the lead is converted already");
	bson_destroy(&client);
	bson_destroy(&contact);
	bson_destroy(&deal);
}

void
crm_leads_convert(struct tr_ctx *c)
{
	static const char *const allowed[] = {"create_deal", "deal_title", "amount", NULL};
	static const struct tr_field amount_field = {"amount",		 TR_K_MONEY, 0,	  0,
						     1000000000000000LL, NULL,	     NULL};
	bson_t lead = BSON_INITIALIZER, claim = BSON_INITIALIZER, doc = BSON_INITIALIZER;
	bson_t client = BSON_INITIALIZER, contact = BSON_INITIALIZER, deal = BSON_INITIALIZER;
	bson_t pipeline = BSON_INITIALIZER, extra = BSON_INITIALIZER, plan;
	bson_oid_t client_id, contact_id, deal_id, pipeline_id;
	bool create_deal = false, wrote;
	const char *title = NULL, *status;
	char payload[80], lead_hex[25];
	bson_oid_t lead_id;
	bson_iter_t it;
	int rc;

	bool ok = tr_body_only(c, allowed);
	if (c->req->has_body && bson_iter_init_find(&it, &c->req->body, "create_deal")) {
		if (!BSON_ITER_HOLDS_BOOL(&it)) {
			tr_problem_field(c, "create_deal", "must be true or false");
			ok = false;
		} else {
			create_deal = bson_iter_bool(&it);
		}
	}
	ok &= tr_body_line(c, "deal_title", 1, 200, false, &title);
	ok &= tr_res_read_field(c, &amount_field, &extra);
	if (!ok)
		goto out;
	if (!may(c, "crm.clients.write") || (create_deal && !may(c, "crm.deals.write"))) {
		tr_problem(c, 403, "forbidden",
			   "converting needs crm.clients.write (and crm.deals.write for a deal)");
		goto out;
	}
	bson_destroy(&lead);
	if (!tr_res_load(c, &crm_leads, tr_param(c, 0), &lead))
		goto out;
	status = tr_doc_str(&lead, "status");
	if (status && strcmp(status, "converted") == 0) {
		convert_again(c, &lead);
		goto out;
	}
	if (!status ||
	    !tr_res_move_ok(c, &crm_leads, status, "converted", "convert", NULL, &lead)) {
		if (!c->resp->status)
			tr_problem(c, 409, "conflict", "the lead has no status");
		goto out;
	}
	if (create_deal) {
		bson_destroy(&pipeline);
		rc = crm_default_pipeline(c, &pipeline);
		if (rc != TR_OK) {
			tr_problem_from_err(c, rc);
			goto out;
		}
	}
	/* the settle job first: whatever stops this conversion after its
	 * claim, the job completes it */
	tr_doc_oid(&lead, "_id", &lead_id);
	bson_oid_to_string(&lead_id, lead_hex);
	snprintf(payload, sizeof(payload), "{\"lead\":\"%s\"}", lead_hex);
	rc = tr_job_enqueue(CONVERT_QUEUE, c->req->principal.tenant_hex, payload,
			    tr_now_ms() + tr_config_int("crm_settle_after_ms"), NULL);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	bson_oid_init(&client_id, NULL);
	bson_oid_init(&contact_id, NULL);
	bson_oid_init(&deal_id, NULL);
	BSON_APPEND_UTF8(&claim, "status", "converted");
	BSON_APPEND_DATE_TIME(&claim, "converted_at", tr_now_ms());
	BSON_APPEND_OID(&claim, "client_id", &client_id);
	BSON_APPEND_OID(&claim, "contact_id", &contact_id);
	if (create_deal) {
		const char *stage = first_stage(&pipeline);
		BSON_APPEND_OID(&claim, "deal_id", &deal_id);
		BSON_APPEND_DOCUMENT_BEGIN(&claim, "_convert", &plan);
		if (title)
			BSON_APPEND_UTF8(&plan, "title", title);
		if (bson_iter_init_find(&it, &extra, "amount"))
			bson_append_iter(&plan, "amount", -1, &it);
		if (tr_doc_oid(&pipeline, "_id", &pipeline_id))
			BSON_APPEND_OID(&plan, "pipeline_id", &pipeline_id);
		BSON_APPEND_UTF8(&plan, "stage", stage ? stage : "new");
		if (c->req->principal.user_hex[0])
			BSON_APPEND_OID(&plan, "by", &c->req->principal.user_id);
		bson_append_document_end(&claim, &plan);
	}
	rc = tr_db_update(c->db, LEADS, tr_param(c, 0), tr_doc_int(&lead, "version", 0), &claim,
			  NULL, &doc);
	if (rc == TR_EVERSION) {
		tr_problem(c, 409, "conflict", "the lead changed or was converted meanwhile");
		goto out;
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	tr_res_emit(c, &crm_leads, "crm.lead.updated", &doc);
	step_pause();
	rc = convert_complete(c->db, c, c->req->principal.tenant_hex, &doc, &client, &contact,
			      &deal, &wrote);
	if (rc != TR_OK) {
		/* the claim names the records; the settle job, or the next
		 * POST /convert, writes the rest */
		tr_problem_from_err(c, rc);
		goto out;
	}
	convert_reply(c, &client, &contact, &deal);
out:
	bson_destroy(&lead);
	bson_destroy(&claim);
	bson_destroy(&doc);
	bson_destroy(&client);
	bson_destroy(&contact);
	bson_destroy(&deal);
	bson_destroy(&pipeline);
	bson_destroy(&extra);
}
