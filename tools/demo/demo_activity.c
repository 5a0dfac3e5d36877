/* `trellis-demo seed` (demo.h): what happens around the leads, clients
 * and deals - interactions, claims and tasks (with the reminders of tasks
 * still to do) - drawn and written in one go. */
#include <stdio.h>

#include "demo.h"

static const char *const interaction_kinds[] = {"meeting", "call_in", "call_out", "sms", "email"};
static const int interaction_weights[] = {20, 15, 30, 5, 30};
/* Summaries per kind (same order as interaction_kinds); %s is who. */
static const char *const summaries[][3] = {
    {"Meeting with %s: walked through the offer and agreed next steps.",
     "On-site visit at %s: saw their current process and noted requirements.",
     "Video call with %s: product demo for the team."},
    {"%s called with questions about pricing and delivery times.",
     "%s called to ask for a revised quote.", "%s called about the last invoice."},
    {"Called %s to follow up; asked for a decision by the end of the month.",
     "Intro call with %s: needs, budget and timeline.", "Called %s, no answer; left a voicemail."},
    {"Texted %s a reminder of tomorrow's appointment.", "Sent %s the meeting link by SMS.",
     "Texted %s: the quote is in their inbox."},
    {"Sent the proposal to %s.", "%s replied: interested, asked for references.",
     "Sent %s the product brochure and price list."},
};

static const char *const claim_statuses[] = {"open", "in_progress", "resolved", "rejected"};
static const struct {
	const char *subject, *description;
} claim_texts[] = {
    {"Delivery arrived damaged",
     "Two of the boxes in the last delivery were crushed; photos are in the customer's email."},
    {"Invoice does not match the offer", "The invoice is 8% higher than the signed offer."},
    {"Late delivery",
     "The order promised for Monday arrived on Thursday; the customer lost a day of work."},
    {"Missing items in shipment", "The packing list shows 12 units; 10 were delivered."},
    {"Product defect",
     "One unit stopped working after two weeks; the customer asks for a replacement."},
    {"Service outage", "The customer could not log in for three hours on Tuesday morning."},
    {"Wrong product delivered",
     "The standard model arrived instead of the pro model that was ordered."},
    {"Training cancelled at short notice",
     "Our trainer cancelled the day before; the customer wants a new date and a discount."},
};

/* ---- interactions ---- */

struct links {
	const bson_oid_t *client, *deal, *lead;
};

static void
write_interaction(struct demo *d, struct links links, int kind, int64_t at, const char *who,
		  int user)
{
	char summary[300];
	bson_oid_t id;

	bson_oid_init(&id, NULL);
	snprintf(summary, sizeof(summary), summaries[kind][crm_demo_rng_below(&d->rng, 3)], who);
	bson_t *doc = crm_demo_record_new(d, C_INTERACTIONS, &id);
	if (links.client)
		BSON_APPEND_OID(doc, "client_id", links.client);
	if (links.deal)
		BSON_APPEND_OID(doc, "deal_id", links.deal);
	if (links.lead)
		BSON_APPEND_OID(doc, "lead_id", links.lead);
	BSON_APPEND_UTF8(doc, "kind", interaction_kinds[kind]);
	BSON_APPEND_DATE_TIME(doc, "at", at);
	BSON_APPEND_UTF8(doc, "summary", summary);
	crm_demo_append_user(d, doc, "user_id", user);
	/* recorded when it happened; planned meetings when planned */
	int64_t created =
	    at < d->now ? at : d->now - crm_demo_rng_between(&d->rng, HOUR_MS, 3 * DAY_MS);
	crm_demo_record_end(doc, created, created);
}

static int
interaction_kind(struct demo *d)
{
	return crm_demo_rng_weighted(&d->rng, interaction_weights, (int)N(interaction_weights));
}

/* Leads someone worked on have calls and emails; deals have meetings
 * too (some planned for the coming days); some clients call in. */
void
crm_demo_write_interactions(struct demo *d)
{
	static const int lost_lead[] = {30, 50, 20}; /* 0, 1 or 2 interactions */

	for (int i = 0; i < DEMO_LEADS; i++) {
		const struct lead_plan *l = &d->leads[i];
		if (l->status == L_NEW || l->owner < 0)
			continue;
		int n = l->status == L_LOST ? crm_demo_rng_weighted(&d->rng, lost_lead, 3)
					    : 1 + crm_demo_rng_chance(&d->rng, 30);
		for (int k = 0; k < n; k++) {
			struct links links = {NULL, NULL, &l->id};
			int kind = l->email[0] ? interaction_kind(d) : 2 /* call_out */;
			write_interaction(d, links, kind,
					  crm_demo_rng_between(&d->rng, l->created, l->updated + 1),
					  l->name, l->owner);
		}
	}
	for (size_t i = 0; i < d->ndeals; i++) {
		const struct deal_plan *deal = &d->deals[i];
		const struct client_plan *c = &d->clients[deal->client];
		struct links links = {&c->id, &deal->id, NULL};
		int64_t end = deal->status == D_OPEN ? d->now - 10 * MINUTE_MS : deal->closed;
		int n = 1 + crm_demo_rng_below(&d->rng, c->key_account ? 5 : 3);
		for (int k = 0; k < n; k++)
			write_interaction(d, links, interaction_kind(d),
					  crm_demo_rng_between(&d->rng, deal->created, end),
					  c->name, deal->owner);
		if (deal->status == D_OPEN && crm_demo_rng_chance(&d->rng, 10))
			write_interaction(d, links, 0 /* meeting */,
					  d->now +
					      crm_demo_rng_between(&d->rng, DAY_MS, 14 * DAY_MS),
					  c->name, deal->owner);
	}
	for (size_t i = 0; i < d->nclients; i++) {
		const struct client_plan *c = &d->clients[i];
		struct links links = {&c->id, NULL, NULL};
		if (crm_demo_rng_chance(&d->rng, 40))
			write_interaction(
			    d, links, crm_demo_rng_chance(&d->rng, 50) ? 1 : 4,
			    crm_demo_rng_between(&d->rng, c->created, d->now - HOUR_MS), c->name,
			    c->owner);
	}
}

/* ---- claims ---- */

void
crm_demo_plan_claims(struct demo *d)
{
	static const int fresh[] = {60, 40, 0, 0};
	static const int recent[] = {15, 35, 40, 10};
	static const int old[] = {0, 5, 75, 20};
	int eligible = 0;

	for (size_t i = 0; i < d->nclients; i++)
		eligible +=
		    d->clients[i].first_won && d->clients[i].first_won < d->now - 3 * DAY_MS;
	while (eligible && d->nclaims < DEMO_CLAIMS) {
		int c = crm_demo_rng_below(&d->rng, (int)d->nclients);
		const struct client_plan *client = &d->clients[c];
		if (!client->first_won || client->first_won >= d->now - 3 * DAY_MS)
			continue;
		struct claim_plan *claim = &d->claims[d->nclaims++];
		bson_oid_init(&claim->id, NULL);
		claim->client = c;
		claim->text = crm_demo_rng_below(&d->rng, (int)N(claim_texts));
		claim->assignee = crm_demo_rng_chance(&d->rng, 70) ? client->owner : U_MANAGER;
		claim->created = crm_demo_past(
		    d, client->first_won,
		    client->first_won + crm_demo_rng_between(&d->rng, 2 * DAY_MS, 60 * DAY_MS));
		int64_t age = d->now - claim->created;
		claim->status =
		    (enum claim_status)crm_demo_rng_weighted(&d->rng,
							     age < 7 * DAY_MS	 ? fresh
							     : age < 30 * DAY_MS ? recent
										 : old,
							     4);
		claim->updated =
		    claim->status == C_OPEN
			? claim->created
			: crm_demo_past(d, claim->created,
					claim->created +
					    crm_demo_rng_between(&d->rng, HOUR_MS, 10 * DAY_MS));
	}
}

void
crm_demo_write_claim(struct demo *d, const struct claim_plan *claim)
{
	bson_t *doc = crm_demo_record_new(d, C_CLAIMS, &claim->id);

	BSON_APPEND_OID(doc, "client_id", &d->clients[claim->client].id);
	BSON_APPEND_UTF8(doc, "subject", claim_texts[claim->text].subject);
	BSON_APPEND_UTF8(doc, "description", claim_texts[claim->text].description);
	BSON_APPEND_UTF8(doc, "status", claim_statuses[claim->status]);
	crm_demo_append_user(d, doc, "assignee_id", claim->assignee);
	crm_demo_record_end(doc, claim->created, claim->updated);
}

/* ---- tasks ---- */

/* A task about a record (related_key "deal_id", "lead_id" or
 * "client_id"). Open tasks due in the future get a reminder; open ones
 * already due were reminded (reminded_for, as the reminder job marks). */
static void
write_task(struct demo *d, const char *title, int64_t due, bool done, int assignee,
	   const char *related_key, const bson_oid_t *related_id, int64_t created)
{
	bson_t related;
	bson_oid_t id;

	bson_oid_init(&id, NULL);
	bson_t *doc = crm_demo_record_new(d, C_TASKS, &id);
	BSON_APPEND_UTF8(doc, "title", title);
	BSON_APPEND_DATE_TIME(doc, "due_at", due);
	crm_demo_append_user(d, doc, "assignee_id", assignee);
	BSON_APPEND_DOCUMENT_BEGIN(doc, "related", &related);
	BSON_APPEND_OID(&related, related_key, related_id);
	bson_append_document_end(doc, &related);
	BSON_APPEND_BOOL(doc, "done", done);
	if (!done && due <= d->now)
		BSON_APPEND_DATE_TIME(doc, "reminded_for", due);
	created = crm_demo_past(d, 0, created < due ? created : due - HOUR_MS);
	crm_demo_record_end(doc, created, done ? crm_demo_past(d, created, due) : created);
	if (!done && due > d->now) {
		if (d->nreminders == d->reminders_cap) {
			d->reminders_cap = d->reminders_cap ? d->reminders_cap * 2 : 256;
			d->reminders =
			    bson_realloc(d->reminders, d->reminders_cap * sizeof(*d->reminders));
		}
		bson_oid_copy(&id, &d->reminders[d->nreminders].task_id);
		d->reminders[d->nreminders++].due = due;
	}
}

/* Follow-ups on open deals (some overdue), proposals sent for closed
 * ones, calls to make to new leads, claims to resolve. */
void
crm_demo_write_tasks(struct demo *d)
{
	char title[300];

	for (size_t i = 0; i < d->ndeals; i++) {
		const struct deal_plan *deal = &d->deals[i];
		if (deal->status == D_OPEN && crm_demo_rng_chance(&d->rng, 70)) {
			int64_t due =
			    crm_demo_rng_chance(&d->rng, 80)
				? d->now + crm_demo_rng_between(&d->rng, HOUR_MS, 21 * DAY_MS)
				: d->now - crm_demo_rng_between(&d->rng, DAY_MS, 7 * DAY_MS);
			snprintf(title, sizeof(title), "Follow up: %s", deal->title);
			write_task(d, title, due, false, deal->owner, "deal_id", &deal->id,
				   due - 7 * DAY_MS > deal->created ? due - 7 * DAY_MS
								    : deal->created);
		} else if (deal->status != D_OPEN && crm_demo_rng_chance(&d->rng, 50)) {
			int64_t due = deal->created + (deal->closed - deal->created) / 3;
			snprintf(title, sizeof(title), "Send proposal: %s", deal->title);
			write_task(d, title, due, true, deal->owner, "deal_id", &deal->id,
				   deal->created);
		}
	}
	for (int i = 0; i < DEMO_LEADS; i++) {
		const struct lead_plan *l = &d->leads[i];
		if (l->owner < 0 || l->status > L_QUALIFIED || !crm_demo_rng_chance(&d->rng, 30))
			continue;
		int64_t due = l->updated + crm_demo_rng_between(&d->rng, DAY_MS, 3 * DAY_MS);
		bool done = due < d->now && crm_demo_rng_chance(&d->rng, 70);
		snprintf(title, sizeof(title),
			 l->status == L_NEW ? "Call %s" : "Send the information pack to %s",
			 l->name);
		write_task(d, title, due, done, l->owner, "lead_id", &l->id, l->updated);
	}
	for (size_t i = 0; i < d->nclaims; i++) {
		const struct claim_plan *claim = &d->claims[i];
		if (claim->status > C_IN_PROGRESS)
			continue;
		snprintf(title, sizeof(title), "Resolve claim: %s",
			 claim_texts[claim->text].subject);
		write_task(d, title, d->now + crm_demo_rng_between(&d->rng, HOUR_MS, 7 * DAY_MS),
			   false, claim->assignee, "client_id", &d->clients[claim->client].id,
			   claim->created);
	}
}
