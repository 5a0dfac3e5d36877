/* `trellis-demo seed` (demo.h): the leads, the clients with their
 * contacts and counterparties, and the deals - planned from the PRNG, then
 * written in the shape the API stores them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

/* The three sales users own most records; shares of 40, 33 and 27%. */
static const int sales_users[] = {U_SALES1, U_SALES2, U_SALES3};
static const int sales_weights[] = {40, 33, 27};

static const char *const mail_domains[] = {"mail.example", "post.example", "inbox.example"};
static const char *const positions[] = {
    "CEO",   "Head of Purchasing", "Office Manager",  "CTO",
    "Buyer", "Finance Director",   "Operations Lead", "Project Manager"};

static const char *const channels[] = {"web", "phone", "email",	  "referral",
				       "ads", "event", "partner", "other"};
static const int channel_weights[] = {28, 10, 10, 12, 14, 8, 10, 8};

static const char *const lead_statuses[] = {"new", "contacted", "qualified", "converted", "lost"};
static const char *const lead_lost_reasons[] = {
    "No budget this year",     "Chose a competitor",	   "No answer after three attempts",
    "Too small for our offer", "Only wanted a price list", "Timing: revisit next year"};

static const char *const deal_statuses[] = {"open", "won", "lost"};
static const char *const deal_offers[] = {
    "Annual licence",	   "Onboarding package", "Support contract renewal", "Hardware refresh",
    "Pilot project",	   "Process review",	 "Team expansion",	     "Training workshop",
    "Integration project", "Maintenance plan"};
static const char *const deal_lost_reasons[] = {
    "Price too high", "Went with a competitor",	   "Project postponed",
    "Budget frozen",  "No decision maker reached", "Requirements changed"};

static int
sales_user(struct demo *d)
{
	return sales_users[crm_demo_rng_weighted(&d->rng, sales_weights, (int)N(sales_weights))];
}

/* A time in [from, to) where later times are likelier: a growing business
 * (a steady third, the rest growing linearly). */
static int64_t
growing_time(struct rng *r, int64_t from, int64_t to)
{
	double x = crm_demo_rng_chance(r, 35) ? crm_demo_rng_unit(r) : sqrt(crm_demo_rng_unit(r));
	return from + (int64_t)((double)(to - from) * x);
}

/* ---- leads ---- */

static int
cmp_time(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Where a lead came from: campaigns bring a share of the leads created
 * while they run (and a little after); the rest by channel weights. */
static void
plan_source(struct demo *d, struct lead_plan *l)
{
	l->campaign = -1;
	l->channel = crm_demo_rng_weighted(&d->rng, channel_weights, (int)N(channel_weights));
	for (int k = 0; k < NCAMPAIGNS; k++) {
		if (l->created < crm_demo_campaign_start(d, k) ||
		    l->created >=
			crm_demo_campaign_end(d, k) + crm_demo_campaigns[k].tail_days * DAY_MS)
			continue;
		bool same_channel =
		    strcmp(channels[l->channel], crm_demo_campaigns[k].channel) == 0;
		if (crm_demo_rng_chance(&d->rng, crm_demo_campaigns[k].force_percent) ||
		    (same_channel && crm_demo_rng_chance(&d->rng, 50))) {
			for (int c = 0; c < (int)N(channels); c++)
				if (strcmp(channels[c], crm_demo_campaigns[k].channel) == 0)
					l->channel = c;
			l->campaign = k;
		}
	}
}

/* Status by age: fresh leads are new; older ones were worked on. */
static enum lead_status
plan_status(struct demo *d, int64_t age)
{
	static const int fresh[] = {80, 20, 0, 0, 0};
	static const int recent[] = {30, 35, 20, 5, 10};
	static const int old[] = {5, 15, 20, 12, 48};
	const int *w = age < 7 * DAY_MS ? fresh : age < 30 * DAY_MS ? recent : old;

	return (enum lead_status)crm_demo_rng_weighted(&d->rng, w, 5);
}

void
crm_demo_plan_leads(struct demo *d)
{
	int64_t created[DEMO_LEADS];
	int converted = 0;

	for (int i = 0; i < DEMO_LEADS; i++)
		created[i] = growing_time(&d->rng, d->start, d->now - HOUR_MS);
	qsort(created, DEMO_LEADS, sizeof(created[0]), cmp_time);
	for (int i = 0; i < DEMO_LEADS; i++) {
		struct lead_plan *l = &d->leads[i];
		int64_t age = d->now - created[i];
		bson_oid_init(&l->id, NULL);
		l->created = created[i];
		l->duplicate_of = l->client = l->deal = -1;
		plan_source(d, l);
		/* now and then someone asks again while their first lead is open */
		int j = i - 1 - crm_demo_rng_below(&d->rng, 100);
		if (i > 100 && crm_demo_rng_chance(&d->rng, 2) && d->leads[j].duplicate_of < 0 &&
		    d->leads[j].status <= L_QUALIFIED && d->leads[j].owner >= 0) {
			const struct lead_plan *original = &d->leads[j];
			l->duplicate_of = j;
			l->company = original->company;
			l->country = original->country;
			l->owner = original->owner;
			l->status = L_NEW;
			memcpy(l->name, original->name, sizeof(l->name));
			memcpy(l->email, original->email, sizeof(l->email));
			memcpy(l->phone, original->phone, sizeof(l->phone));
			memcpy(l->phone_n, original->phone_n, sizeof(l->phone_n));
			l->updated = l->created;
			continue;
		}
		l->company = crm_demo_rng_chance(&d->rng, 75)
				 ? crm_demo_rng_below(&d->rng, (int)DEMO_COMPANIES)
				 : -1;
		l->country = crm_demo_rng_below(&d->rng, (int)N(crm_demo_countries));
		const char *first = PICK(&d->rng, crm_demo_first_names),
			   *last = PICK(&d->rng, crm_demo_last_names);
		char domain[96];
		snprintf(l->name, sizeof(l->name), "%s %s", first, last);
		if (l->company >= 0)
			crm_demo_company_domain(l->company, domain, sizeof(domain));
		else
			snprintf(domain, sizeof(domain), "%s", PICK(&d->rng, mail_domains));
		/* some give only a phone, some only an email */
		int contact = crm_demo_rng_below(&d->rng, 100);
		if (contact >= 8)
			crm_demo_unique_email(d, first, last, domain, l->email, sizeof(l->email));
		if (contact < 8 || contact >= 20)
			crm_demo_unique_phone(d, &crm_demo_countries[l->country], l->phone,
					      sizeof(l->phone), l->phone_n, sizeof(l->phone_n));
		l->status = plan_status(d, age);
		if (l->status == L_CONVERTED && converted >= DEMO_MAX_CONVERTED)
			l->status = L_QUALIFIED;
		converted += l->status == L_CONVERTED;
		/* partner leads arrive through the API without an owner */
		l->owner = sales_user(d);
		if (l->status == L_NEW && strcmp(channels[l->channel], "partner") == 0 &&
		    crm_demo_rng_chance(&d->rng, 60))
			l->owner = -1;
		switch (l->status) {
		case L_NEW:
			l->updated = l->created;
			break;
		case L_CONTACTED:
			l->updated =
			    l->created + crm_demo_rng_between(&d->rng, HOUR_MS, 5 * DAY_MS);
			break;
		case L_QUALIFIED:
			l->updated =
			    l->created + crm_demo_rng_between(&d->rng, 2 * DAY_MS, 20 * DAY_MS);
			break;
		case L_LOST:
			l->updated =
			    l->created + crm_demo_rng_between(&d->rng, 3 * DAY_MS, 45 * DAY_MS);
			l->lost_reason = crm_demo_rng_below(&d->rng, (int)N(lead_lost_reasons));
			break;
		case L_CONVERTED:
			l->updated =
			    l->created + crm_demo_rng_between(&d->rng, 5 * DAY_MS, 40 * DAY_MS);
			break;
		}
		l->updated = crm_demo_past(d, l->created, l->updated);
		l->converted_at = l->status == L_CONVERTED ? l->updated : 0;
	}
}

void
crm_demo_write_lead(struct demo *d, const struct lead_plan *l)
{
	bson_t *doc = crm_demo_record_new(d, C_LEADS, &l->id), source;
	char company[96];

	BSON_APPEND_UTF8(doc, "name", l->name);
	if (l->email[0])
		BSON_APPEND_UTF8(doc, "email", l->email);
	if (l->phone[0])
		BSON_APPEND_UTF8(doc, "phone", l->phone);
	if (l->company >= 0) {
		crm_demo_company_name(l->company, company, sizeof(company));
		BSON_APPEND_UTF8(doc, "company", company);
	}
	crm_demo_append_user(d, doc, "owner_id", l->owner);
	BSON_APPEND_UTF8(doc, "status", lead_statuses[l->status]);
	if (l->status == L_LOST)
		BSON_APPEND_UTF8(doc, "lost_reason", lead_lost_reasons[l->lost_reason]);
	crm_demo_append_empty_doc(doc, "custom");
	BSON_APPEND_DOCUMENT_BEGIN(doc, "source", &source);
	BSON_APPEND_UTF8(&source, "channel", channels[l->channel]);
	if (l->campaign >= 0)
		BSON_APPEND_OID(&source, "campaign_id", &d->campaigns[l->campaign]);
	else
		BSON_APPEND_NULL(&source, "campaign_id");
	bson_append_document_end(doc, &source);
	if (l->phone[0])
		BSON_APPEND_UTF8(doc, "_phone_n", l->phone_n);
	if (l->duplicate_of >= 0)
		BSON_APPEND_OID(doc, "duplicate_of", &d->leads[l->duplicate_of].id);
	else
		BSON_APPEND_NULL(doc, "duplicate_of");
	if (l->status == L_CONVERTED) {
		BSON_APPEND_DATE_TIME(doc, "converted_at", l->converted_at);
		BSON_APPEND_OID(doc, "client_id", &d->clients[l->client].id);
		BSON_APPEND_OID(doc, "contact_id", &l->contact_id);
		if (l->deal >= 0)
			BSON_APPEND_OID(doc, "deal_id", &d->deals[l->deal].id);
	}
	crm_demo_record_end(doc, l->created, l->updated);
}

/* ---- clients, their contacts and counterparties ---- */

static void
write_contact(struct demo *d, const struct client_plan *c, const bson_oid_t *id, const char *name,
	      const char *email, const char *phone, const char *position, int64_t created)
{
	bson_t *doc = crm_demo_record_new(d, C_CONTACTS, id);

	BSON_APPEND_UTF8(doc, "name", name);
	if (email && *email)
		BSON_APPEND_UTF8(doc, "email", email);
	if (phone && *phone)
		BSON_APPEND_UTF8(doc, "phone", phone);
	if (position)
		BSON_APPEND_UTF8(doc, "position", position);
	BSON_APPEND_OID(doc, "client_id", &c->id);
	crm_demo_record_end(doc, created, created);
}

/* A legal entity of c, valid from `from` (to `to`, 0: still), recorded
 * at `created` (when it became the client's, or the client's start); the
 * one still valid is the client's counterparty (sales orders name it). */
static void
write_counterparty(struct demo *d, struct client_plan *c, int64_t from, int64_t to, int64_t created)
{
	const struct country *k = &crm_demo_countries[c->country];
	char legal[160], tax[32], address[200];
	bson_oid_t id;

	bson_oid_init(&id, NULL);
	if (!to) {
		c->counterparty = id;
		c->has_counterparty = true;
	}
	snprintf(legal, sizeof(legal), "%s %s", c->name, k->legal_form);
	snprintf(tax, sizeof(tax), "%s%09d", k->tax_prefix,
		 crm_demo_rng_below(&d->rng, 1000000000));
	snprintf(address, sizeof(address), "%s %d\n%s %s\n%s", k->street,
		 1 + crm_demo_rng_below(&d->rng, 180), k->postcode, k->city, k->name);
	bson_t *doc = crm_demo_record_new(d, C_COUNTERPARTIES, &id);
	BSON_APPEND_UTF8(doc, "legal_name", legal);
	BSON_APPEND_UTF8(doc, "tax_id", tax);
	BSON_APPEND_UTF8(doc, "address", address);
	BSON_APPEND_DATE_TIME(doc, "active_from", from);
	if (to)
		BSON_APPEND_DATE_TIME(doc, "active_to", to);
	BSON_APPEND_OID(doc, "client_id", &c->id);
	crm_demo_record_end(doc, created, to ? to : created);
}

/* Clients: first the converted leads' (with the contact the conversion
 * made), then the customer base: a third already there when the history
 * starts, the rest won over the year. */
void
crm_demo_plan_clients(struct demo *d)
{
	bool used[DEMO_COMPANIES] = {false};

	for (int i = 0; i < DEMO_LEADS; i++) {
		struct lead_plan *l = &d->leads[i];
		if (l->status != L_CONVERTED)
			continue;
		struct client_plan *c = &d->clients[d->nclients];
		l->client = (int)d->nclients++;
		bson_oid_init(&c->id, NULL);
		bson_oid_init(&l->contact_id, NULL);
		c->created = l->converted_at;
		c->company = l->company >= 0;
		c->company_idx = l->company;
		c->country = l->country;
		c->owner = l->owner;
		c->lead = i;
		if (c->company) {
			crm_demo_company_name(l->company, c->name, sizeof(c->name));
			used[l->company] = true;
		} else {
			snprintf(c->name, sizeof(c->name), "%s", l->name);
		}
	}
	while (d->nclients < DEMO_CLIENTS) {
		struct client_plan *c = &d->clients[d->nclients++];
		bson_oid_init(&c->id, NULL);
		c->lead = -1;
		c->created = crm_demo_rng_chance(&d->rng, 35)
				 ? d->start + crm_demo_rng_between(&d->rng, 0, 3 * DAY_MS)
				 : growing_time(&d->rng, d->start, d->now - 2 * DAY_MS);
		c->company = crm_demo_rng_chance(&d->rng, 75);
		c->country = crm_demo_rng_below(&d->rng, (int)N(crm_demo_countries));
		c->owner = sales_user(d);
		c->company_idx = -1;
		if (c->company) {
			int k = crm_demo_rng_below(&d->rng, (int)DEMO_COMPANIES);
			while (used[k])
				k = (k + 1) % (int)DEMO_COMPANIES;
			used[k] = true;
			c->company_idx = k;
			c->key_account = crm_demo_rng_chance(&d->rng, 6);
			crm_demo_company_name(k, c->name, sizeof(c->name));
		} else {
			snprintf(c->name, sizeof(c->name), "%s %s",
				 PICK(&d->rng, crm_demo_first_names),
				 PICK(&d->rng, crm_demo_last_names));
		}
	}
}

void
crm_demo_write_client(struct demo *d, struct client_plan *c)
{
	bson_t *doc = crm_demo_record_new(d, C_CLIENTS, &c->id), groups;
	int64_t updated = c->created;

	BSON_APPEND_UTF8(doc, "name", c->name);
	BSON_APPEND_UTF8(doc, "kind", c->company ? "company" : "person");
	BSON_APPEND_ARRAY_BEGIN(doc, "group_ids", &groups);
	if (c->key_account) {
		BSON_APPEND_OID(&groups, "0", &d->key_accounts_id);
		updated = c->created + DAY_MS;
	}
	bson_append_array_end(doc, &groups);
	crm_demo_append_user(d, doc, "owner_id", c->owner);
	if (c->lead >= 0)
		BSON_APPEND_OID(doc, "lead_id", &d->leads[c->lead].id);
	else
		crm_demo_append_empty_doc(doc, "custom");
	crm_demo_record_end(doc, c->created, crm_demo_past(d, c->created, updated));

	/* contacts: the converted lead's, and a few more at companies */
	char domain[96], name[64], email[128], phone[32];
	if (c->company)
		crm_demo_company_domain(c->company_idx, domain, sizeof(domain));
	else
		snprintf(domain, sizeof(domain), "%s", PICK(&d->rng, mail_domains));
	if (c->lead >= 0) {
		const struct lead_plan *l = &d->leads[c->lead];
		write_contact(d, c, &l->contact_id, l->name, l->email, l->phone,
			      c->company ? PICK(&d->rng, positions) : NULL, c->created);
	}
	int more = c->company ? crm_demo_rng_below(&d->rng, c->key_account ? 4 : 3) + (c->lead < 0)
			      : (c->lead < 0 && crm_demo_rng_chance(&d->rng, 50));
	for (int i = 0; i < more; i++) {
		bson_oid_t id;
		bson_oid_init(&id, NULL);
		if (c->company) {
			crm_demo_person(d, domain, c->country, name, sizeof(name), email,
					sizeof(email), phone, sizeof(phone));
			write_contact(d, c, &id, name, email, phone, PICK(&d->rng, positions),
				      crm_demo_past(d, c->created, c->created + i * 20 * DAY_MS));
		} else {
			char first[32], last[32], digits[32];
			sscanf(c->name, "%31s %31[^\n]", first, last);
			crm_demo_unique_email(d, first, last, domain, email, sizeof(email));
			crm_demo_unique_phone(d, &crm_demo_countries[c->country], phone,
					      sizeof(phone), digits, sizeof(digits));
			write_contact(d, c, &id, c->name, email, phone, NULL, c->created);
		}
	}
	/* counterparties: most companies have one legal entity; some moved
	 * to a new one during the year */
	if (c->company && crm_demo_rng_chance(&d->rng, 75)) {
		int64_t from = c->created - crm_demo_rng_between(&d->rng, 30, 3000) * DAY_MS;
		int64_t created = c->created;
		if (crm_demo_rng_chance(&d->rng, 12) && c->created < d->now - 60 * DAY_MS) {
			int64_t switched = crm_demo_rng_between(&d->rng, c->created + 30 * DAY_MS,
								d->now - DAY_MS);
			write_counterparty(d, c, from, switched, c->created);
			from = created = switched;
		}
		write_counterparty(d, c, from, 0, created);
	}
}

/* ---- deals ---- */

static struct deal_plan *
new_deal(struct demo *d)
{
	if (d->ndeals == d->deals_cap) {
		d->deals_cap = d->deals_cap ? d->deals_cap * 2 : 1024;
		d->deals = bson_realloc(d->deals, d->deals_cap * sizeof(*d->deals));
	}
	struct deal_plan *deal = &d->deals[d->ndeals++];
	memset(deal, 0, sizeof(*deal));
	bson_oid_init(&deal->id, NULL);
	deal->lead = -1;
	return deal;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Status, stage and the moves through the stages. Old deals are mostly
 * closed; won ones went through every stage, lost ones stopped somewhere,
 * open ones stand in one (earlier stages fuller). */
static void
plan_deal_progress(struct demo *d, struct deal_plan *deal)
{
	static const int young[] = {65, 20, 15};
	static const int old[] = {12, 48, 40};
	static const int open_stage[] = {35, 25, 20, 12, 8};
	static const int lost_stage[] = {30, 25, 25, 15, 5};
	int64_t age = d->now - deal->created, end;
	double at[NSTAGES];

	deal->status = age < 14 * DAY_MS ? D_OPEN
					 : (enum deal_status)crm_demo_rng_weighted(
					       &d->rng, age < 60 * DAY_MS ? young : old, 3);
	if (deal->status == D_OPEN) {
		deal->stage = crm_demo_rng_weighted(&d->rng, open_stage, NSTAGES);
		end = d->now - crm_demo_rng_between(&d->rng, HOUR_MS,
						    (age / 3 > HOUR_MS ? age / 3 : HOUR_MS));
		deal->expected_close =
		    d->now + crm_demo_rng_between(&d->rng, 7 * DAY_MS, 100 * DAY_MS);
	} else {
		int64_t longest = age < 90 * DAY_MS ? age : 90 * DAY_MS;
		deal->stage = deal->status == D_WON
				  ? NSTAGES - 1
				  : crm_demo_rng_weighted(&d->rng, lost_stage, NSTAGES);
		deal->closed = crm_demo_past(
		    d, deal->created,
		    deal->created + crm_demo_rng_between(&d->rng, 7 * DAY_MS, longest));
		end = deal->closed;
		deal->expected_close =
		    deal->closed + crm_demo_rng_between(&d->rng, -10 * DAY_MS, 10 * DAY_MS);
		if (deal->expected_close < deal->created)
			deal->expected_close = deal->created + DAY_MS;
		deal->lost_reason = crm_demo_rng_below(&d->rng, (int)N(deal_lost_reasons));
	}
	if (end < deal->created)
		end = deal->created;
	for (int i = 0; i < deal->stage; i++)
		at[i] = crm_demo_rng_unit(&d->rng);
	qsort(at, (size_t)deal->stage, sizeof(at[0]), cmp_double);
	deal->moved[0] = deal->created;
	for (int i = 1; i <= deal->stage; i++)
		deal->moved[i] =
		    deal->created + (int64_t)(at[i - 1] * (double)(end - deal->created));
}

static void
plan_deal(struct demo *d, struct deal_plan *deal, int client)
{
	struct client_plan *c = &d->clients[client];
	double lo, hi;

	deal->client = client;
	if (deal->lead < 0)
		deal->owner = c->owner;
	/* amounts: log-uniform; companies buy more, key accounts most */
	if (c->company) {
		lo = log(1500.0), hi = log(60000.0);
		deal->amount =
		    (int64_t)(exp(lo + crm_demo_rng_unit(&d->rng) * (hi - lo)) / 50.0) * 50 * 100;
		if (c->key_account)
			deal->amount *= 3;
	} else {
		lo = log(250.0), hi = log(4000.0);
		deal->amount =
		    (int64_t)(exp(lo + crm_demo_rng_unit(&d->rng) * (hi - lo)) / 10.0) * 10 * 100;
	}
	snprintf(deal->title, sizeof(deal->title), "%s - %s", PICK(&d->rng, deal_offers), c->name);
	plan_deal_progress(d, deal);
	if (deal->status == D_WON && (!c->first_won || deal->closed < c->first_won))
		c->first_won = deal->closed;
}

/* Deals: most converted leads came with one; clients have more over time
 * (key accounts several, private persons one at most). */
void
crm_demo_plan_deals(struct demo *d)
{
	static const int company_deals[] = {20, 40, 25, 15};

	for (int i = 0; i < DEMO_LEADS; i++) {
		struct lead_plan *l = &d->leads[i];
		if (l->status != L_CONVERTED || !crm_demo_rng_chance(&d->rng, 70))
			continue;
		struct deal_plan *deal = new_deal(d);
		deal->lead = i;
		deal->owner = l->owner;
		deal->created = l->converted_at;
		l->deal = (int)(d->ndeals - 1);
		plan_deal(d, deal, l->client);
	}
	for (size_t c = 0; c < d->nclients; c++) {
		const struct client_plan *client = &d->clients[c];
		int n = client->key_account ? 4 + crm_demo_rng_below(&d->rng, 5)
			: client->company   ? crm_demo_rng_weighted(&d->rng, company_deals, 4)
					    : crm_demo_rng_chance(&d->rng, 60);
		if (client->lead >= 0)
			n = crm_demo_rng_chance(&d->rng, 30);
		if (client->created + DAY_MS >= d->now - HOUR_MS)
			n = 0; /* a client of today has no further deals yet */
		for (int i = 0; i < n; i++) {
			struct deal_plan *deal = new_deal(d);
			deal->created = crm_demo_rng_between(&d->rng, client->created + DAY_MS,
							     d->now - HOUR_MS);
			plan_deal(d, deal, (int)c);
		}
	}
}

void
crm_demo_write_deal(struct demo *d, const struct deal_plan *deal)
{
	bson_t *doc = crm_demo_record_new(d, C_DEALS, &deal->id), hist, e;

	BSON_APPEND_OID(doc, "client_id", &d->clients[deal->client].id);
	BSON_APPEND_UTF8(doc, "title", deal->title);
	crm_demo_append_money(doc, "amount", deal->amount);
	BSON_APPEND_OID(doc, "pipeline_id", &d->pipeline_id);
	BSON_APPEND_UTF8(doc, "stage", crm_demo_stages[deal->stage].key);
	crm_demo_append_user(d, doc, "owner_id", deal->owner);
	BSON_APPEND_DATE_TIME(doc, "expected_close", deal->expected_close);
	BSON_APPEND_UTF8(doc, "status", deal_statuses[deal->status]);
	if (deal->status == D_LOST)
		BSON_APPEND_UTF8(doc, "lost_reason", deal_lost_reasons[deal->lost_reason]);
	if (deal->status != D_OPEN) {
		BSON_APPEND_DATE_TIME(doc, "closed_at", deal->closed);
		crm_deal_closed_day(doc);
	}
	crm_demo_append_empty_doc(doc, "custom");
	if (deal->lead >= 0) {
		/* what the conversion keeps of the lead (modules/crm/totals.c) */
		const struct lead_plan *l = &d->leads[deal->lead];
		char day[16];
		BSON_APPEND_OID(doc, "lead_id", &l->id);
		tr_format_day(l->created, day);
		BSON_APPEND_UTF8(doc, "_lcd", day);
		BSON_APPEND_UTF8(doc, "_lch", channels[l->channel]);
		if (l->campaign >= 0)
			BSON_APPEND_OID(doc, "_lk", &d->campaigns[l->campaign]);
		else
			BSON_APPEND_NULL(doc, "_lk");
	}
	BSON_APPEND_ARRAY_BEGIN(doc, "stage_history", &hist);
	for (int i = 0; i <= deal->stage; i++) {
		char idx[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, idx, sizeof(idx));
		BSON_APPEND_DOCUMENT_BEGIN(&hist, k, &e);
		BSON_APPEND_UTF8(&e, "stage", crm_demo_stages[i].key);
		if (i > 0)
			BSON_APPEND_UTF8(&e, "from", crm_demo_stages[i - 1].key);
		else
			BSON_APPEND_NULL(&e, "from");
		BSON_APPEND_DATE_TIME(&e, "at", deal->moved[i]);
		if (deal->owner >= 0)
			BSON_APPEND_OID(&e, "by", &d->users[deal->owner]);
		else
			BSON_APPEND_NULL(&e, "by");
		bson_append_document_end(&hist, &e);
	}
	bson_append_array_end(doc, &hist);
	crm_demo_record_end(doc, deal->created,
			    deal->status == D_OPEN ? deal->moved[deal->stage] : deal->closed);
}
