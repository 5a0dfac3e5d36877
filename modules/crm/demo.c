/* `trellis demo seed --tenant SLUG < password`: a CRM tenant that looks
 * lived in, for a newcomer to explore after `make run`.
 *
 * It creates the tenant ("Demo Company"), one user per built-in role (three
 * for sales) sharing the password read from stdin, the default pipeline,
 * campaigns, a year of leads, clients with contacts and counterparties,
 * deals that moved through the pipeline, interactions, tasks and claims.
 *
 * Everything is planned in memory first (plan_*), from a PRNG with a fixed
 * seed, so every demo tenant holds the same story told relative to "now";
 * then the tenant and each collection are written with tr_db_import. Records are
 * written in the shape the API stores (db.c, the entity files): _id,
 * tenant_id, the fields, created_at, updated_at, version 1, references as
 * ObjectIds, dates as BSON dates, money as {amount (int64 minor units),
 * currency}. Dates lie in the past except due tasks and planned meetings;
 * updated_at is the record's last change (a status, a stage, closing).
 *
 * The writes go round tr_db_insert on purpose: it stamps created_at with
 * the current time and writes one record per call, and a demo needs both a
 * history and speed. A failed run is undone with tr_db_purge. No events
 * are emitted (nobody is subscribed to a
 * tenant that does not exist yet); reminders of open tasks due in the
 * future are queued as the API would queue them.
 *
 * Exit codes: 0 seeded, 2 bad arguments or password or the tenant exists,
 * 1 the database is unavailable (what was written is removed again). */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm.h"
#include "db.h"
#include "identity/identity.h"
#include "jobs.h"

#define DEMO_SEED 0x7e11150de11aULL
#define DEMO_TENANT_NAME "Demo Company"
#define DEMO_HISTORY_DAYS 365
#define DEMO_LEADS 2000
#define DEMO_CLIENTS 500
#define DEMO_CLAIMS 60
#define DEMO_MAX_CONVERTED 300 /* converted leads become clients: fewer than DEMO_CLIENTS */
#define DEMO_CURRENCY "EUR"

#define MINUTE_MS (60 * 1000LL)
#define HOUR_MS (60 * MINUTE_MS)
#define DAY_MS (24 * HOUR_MS)

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the cast ---- */

enum demo_user {
	U_OWNER,
	U_ADMIN,
	U_MANAGER,
	U_SALES1,
	U_SALES2,
	U_SALES3,
	U_WAREHOUSE,
	U_ACCOUNTANT,
	U_EMPLOYEE,
	NUSERS
};

static const struct {
	const char *login; /* <login>@<slug>.example */
	const char *name;
	const char *role; /* a built-in role (perm.c) */
} cast[NUSERS] = {
    {"owner", "Helen Carter", "owner"},
    {"admin", "Adam Novak", "admin"},
    {"manager", "Maria Lopez", "manager"},
    {"sales1", "Sam Patel", "sales"},
    {"sales2", "Nina Berg", "sales"},
    {"sales3", "Tom Fischer", "sales"},
    {"warehouse", "Walter Hughes", "warehouse"},
    {"accountant", "Anna Kowalski", "accountant"},
    {"employee", "Eric Dunn", "employee"},
};

/* The three sales users own most records; shares of 40, 33 and 27%. */
static const int sales_users[] = {U_SALES1, U_SALES2, U_SALES3};
static const int sales_weights[] = {40, 33, 27};

/* ---- the world they sell in ---- */

static const char *const first_names[] = {
    "Anna",  "Lukas",  "Sofia", "Jan",	 "Emma",  "Lucas",  "Mia",    "Noah",	"Elena", "Jonas",
    "Laura", "Felix",  "Clara", "David", "Julia", "Marco",  "Sara",   "Pieter", "Eva",	 "Tomas",
    "Ines",  "Oskar",  "Lena",	"Mateo", "Alice", "Henrik", "Chloe",  "Pablo",	"Nora",	 "Viktor",
    "Ida",   "Hugo",   "Marta", "Erik",	 "Zoe",	  "Luca",   "Amelie", "Karl",	"Irene", "Simon",
    "Hanna", "Adrian", "Olga",	"Bruno", "Lotte", "Rafael", "Greta",  "Milan"};
static const char *const last_names[] = {
    "Schmidt",	"Becker",  "Rossi",  "Kowalski",  "Johansson", "Martin",  "de Vries", "Garcia",
    "Novak",	"Dubois",  "Muller", "Jensen",	  "Bianchi",   "Nowak",	  "Larsen",   "Fernandez",
    "Weber",	"Moreau",  "Horvat", "Lindqvist", "Costa",     "Wagner",  "Janssen",  "Romero",
    "Hoffmann", "Leroy",   "Kral",   "Nielsen",	  "Ricci",     "Bauer",	  "Peeters",  "Svensson",
    "Lopez",	"Fischer", "Bakker", "Conti",	  "Meyer",     "Lambert", "Dvorak",   "Berg",
    "Santos",	"Klein",   "Visser", "Marino",	  "Schulz",    "Petit",	  "Varga",    "Holm"};
static const char *const company_stems[] = {
    "Nordic",  "Alpine",      "Harbor",	    "Bluebird", "Granite",   "Sunrise",	  "Riverside",
    "Oakwood", "Brightline",  "Silverleaf", "Meridian", "Northstar", "Evergreen", "Ironbridge",
    "Cedar",   "Falcon",      "Lighthouse", "Maple",	"Summit",    "Crescent",  "Atlas",
    "Beacon",  "Copperfield", "Delta",	    "Elmstone", "Fjord",     "Greenway",  "Highland",
    "Juniper", "Keystone",    "Lakeside",   "Monarch",	"Oakridge",  "Pinewood",  "Quarry",
    "Redwood", "Seaside",     "Tidewater",  "Vantage",	"Westbrook"};
static const char *const company_sectors[] = {
    "Foods", "Logistics", "Dental",    "Engineering", "Textiles",   "Software", "Hotels", "Pharma",
    "Solar", "Print",	  "Furniture", "Motors",      "Consulting", "Bakery",	"Clinic", "Retail"};
#define DEMO_COMPANIES (N(company_stems) * N(company_sectors))

static const struct country {
	const char *name, *tax_prefix, *phone_cc, *area, *legal_form, *city, *postcode, *street;
} countries[] = {
    {"Germany", "DE", "+49", "30", "GmbH", "Berlin", "10117", "Friedrichstraße"},
    {"Germany", "DE", "+49", "89", "GmbH", "München", "80331", "Leopoldstraße"},
    {"United Kingdom", "GB", "+44", "20", "Ltd", "London", "EC1A 1BB", "Baker Street"},
    {"Netherlands", "NL", "+31", "20", "B.V.", "Amsterdam", "1015 CJ", "Keizersgracht"},
    {"France", "FR", "+33", "1", "SAS", "Paris", "75001", "Rue de Rivoli"},
    {"Spain", "ES", "+34", "91", "S.L.", "Madrid", "28014", "Calle de Alcalá"},
    {"Poland", "PL", "+48", "22", "Sp. z o.o.", "Warszawa", "00-001", "ul. Marszałkowska"},
    {"Sweden", "SE", "+46", "8", "AB", "Stockholm", "111 52", "Drottninggatan"},
    {"Italy", "IT", "+39", "02", "S.r.l.", "Milano", "20123", "Via Torino"},
    {"Austria", "ATU", "+43", "1", "GmbH", "Wien", "1070", "Mariahilfer Straße"},
};
static const char *const mail_domains[] = {"mail.example", "post.example", "inbox.example"};
static const char *const positions[] = {
    "CEO",   "Head of Purchasing", "Office Manager",  "CTO",
    "Buyer", "Finance Director",   "Operations Lead", "Project Manager"};

/* The default pipeline, as crm_default_pipeline (pipelines.c) writes it:
 * keep the two in step. */
static const struct {
	const char *key, *name;
	int probability;
} stages[] = {{"new", "New", 10},
	      {"qualified", "Qualified", 25},
	      {"proposal", "Proposal", 50},
	      {"negotiation", "Negotiation", 75},
	      {"closing", "Closing", 90}};
#define NSTAGES ((int)N(stages))

/* Campaigns: when they ran (days before now), and the lead channel they
 * brought leads through. */
static const struct campaign {
	const char *name, *kind, *channel;
	int starts_days_ago, ends_days_ago, tail_days; /* leads keep coming for tail_days */
	int64_t cost;				       /* minor units */
	int force_percent; /* of leads in the window that the campaign brought */
} campaigns[] = {
    {"Industry Trade Fair", "exhibition", "event", 240, 237, 21, 1250000, 60},
    {"Webinar series: Smarter Sales", "seminar", "web", 200, 140, 10, 180000, 25},
    {"Search ads: autumn push", "ads", "ads", 120, 30, 5, 900000, 35},
};
#define NCAMPAIGNS ((int)N(campaigns))

static const char *const channels[] = {"web", "phone", "email",	  "referral",
				       "ads", "event", "partner", "other"};
static const int channel_weights[] = {28, 10, 10, 12, 14, 8, 10, 8};

enum lead_status { L_NEW, L_CONTACTED, L_QUALIFIED, L_CONVERTED, L_LOST };
static const char *const lead_statuses[] = {"new", "contacted", "qualified", "converted", "lost"};
static const char *const lead_lost_reasons[] = {
    "No budget this year",     "Chose a competitor",	   "No answer after three attempts",
    "Too small for our offer", "Only wanted a price list", "Timing: revisit next year"};

enum deal_status { D_OPEN, D_WON, D_LOST };
static const char *const deal_statuses[] = {"open", "won", "lost"};
static const char *const deal_offers[] = {
    "Annual licence",	   "Onboarding package", "Support contract renewal", "Hardware refresh",
    "Pilot project",	   "Process review",	 "Team expansion",	     "Training workshop",
    "Integration project", "Maintenance plan"};
static const char *const deal_lost_reasons[] = {
    "Price too high", "Went with a competitor",	   "Project postponed",
    "Budget frozen",  "No decision maker reached", "Requirements changed"};

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

enum claim_status { C_OPEN, C_IN_PROGRESS, C_RESOLVED, C_REJECTED };
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

/* ---- a deterministic PRNG (splitmix64) ---- */

struct rng {
	uint64_t state;
};

static uint64_t
rng_next(struct rng *r)
{
	uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double
rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

/* Uniform in [0, n). */
static int
rng_below(struct rng *r, int n)
{
	return n > 0 ? (int)(rng_unit(r) * n) : 0;
}

static bool
rng_chance(struct rng *r, int percent)
{
	return rng_below(r, 100) < percent;
}

/* Uniform in [lo, hi) (lo when the range is empty). */
static int64_t
rng_between(struct rng *r, int64_t lo, int64_t hi)
{
	return hi > lo ? lo + (int64_t)(rng_unit(r) * (double)(hi - lo)) : lo;
}

/* An index drawn with the given weights. */
static int
rng_weighted(struct rng *r, const int *weights, int n)
{
	int total = 0, x;

	for (int i = 0; i < n; i++)
		total += weights[i];
	x = rng_below(r, total);
	for (int i = 0; i < n; i++) {
		if (x < weights[i])
			return i;
		x -= weights[i];
	}
	return n - 1;
}

#define PICK(r, table) ((table)[rng_below((r), (int)N(table))])

/* ---- a set of strings (emails and phones already given out) ---- */

#define SET_SLOTS 16384 /* a power of two, well above the leads' emails and phones */

struct string_set {
	char **slots;
};

static bool
set_add(struct string_set *s, const char *key)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	for (uint32_t i = h & (SET_SLOTS - 1);; i = (i + 1) & (SET_SLOTS - 1)) {
		if (!s->slots[i]) {
			s->slots[i] = bson_strdup(key);
			return true;
		}
		if (strcmp(s->slots[i], key) == 0)
			return false;
	}
}

/* ---- the plan ---- */

struct lead_plan {
	bson_oid_t id, contact_id;
	int64_t created, updated, converted_at;
	enum lead_status status;
	int owner;   /* user index, -1: nobody yet (partner leads wait) */
	int company; /* index into the companies, -1: a private person */
	int country, channel, campaign, lost_reason;
	int duplicate_of; /* lead index or -1 */
	int client, deal; /* after conversion, or -1 */
	char name[64], email[128], phone[32], phone_n[32];
};

struct client_plan {
	bson_oid_t id;
	int64_t created, first_won; /* first_won 0: nothing won yet */
	bool company, key_account;
	int owner, company_idx, country, lead;
	char name[96];
};

struct deal_plan {
	bson_oid_t id;
	int client, lead, owner, stage, lost_reason;
	enum deal_status status;
	int64_t created, closed, amount, expected_close;
	int64_t moved[NSTAGES]; /* when it entered each stage up to `stage` */
	char title[200];
};

struct claim_plan {
	bson_oid_t id;
	int client, assignee, text;
	enum claim_status status;
	int64_t created, updated;
};

struct reminder {
	bson_oid_t task_id;
	int64_t due;
};

/* The collections written, in the order they are written. */
enum demo_coll {
	C_USERS,
	C_PIPELINES,
	C_CAMPAIGNS,
	C_GROUPS,
	C_LEADS,
	C_CLIENTS,
	C_CONTACTS,
	C_COUNTERPARTIES,
	C_DEALS,
	C_INTERACTIONS,
	C_TASKS,
	C_CLAIMS,
	C_COUNT
};
static const char *const coll_names[C_COUNT] = {
    "users",	"pipelines",	  "campaigns", "crm_groups",   "leads", "clients",
    "contacts", "counterparties", "deals",     "interactions", "tasks", "claims"};

/* The documents of one collection, written with one tr_db_import. */
struct batch {
	bson_t **docs;
	size_t n, cap;
};

/* Everything one seeding run plans and writes; owned by crm_demo_seed. */
struct demo {
	struct rng rng;
	int64_t now, start; /* start: when the tenant's history begins */
	const char *slug;
	bson_oid_t tenant_id, pipeline_id, key_accounts_id, private_clients_id;
	bson_oid_t users[NUSERS];
	bson_oid_t campaigns[NCAMPAIGNS];
	struct lead_plan *leads; /* DEMO_LEADS, oldest first */
	struct client_plan *clients;
	size_t nclients;
	struct deal_plan *deals;
	size_t ndeals, deals_cap;
	struct claim_plan claims[DEMO_CLAIMS];
	size_t nclaims;
	struct reminder *reminders;
	size_t nreminders, reminders_cap;
	struct string_set taken;
	struct batch batches[C_COUNT];
};

/* ---- records in the stored shape ---- */

/* A new record of coll: _id and tenant_id come first, as tr_db_insert
 * writes them; the caller appends the fields, then record_end. */
static bson_t *
record_new(struct demo *d, enum demo_coll coll, const bson_oid_t *id)
{
	struct batch *b = &d->batches[coll];
	bson_t *doc = bson_new();

	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 256;
		b->docs = bson_realloc(b->docs, b->cap * sizeof(*b->docs));
	}
	b->docs[b->n++] = doc;
	BSON_APPEND_OID(doc, "_id", id);
	BSON_APPEND_OID(doc, "tenant_id", &d->tenant_id);
	return doc;
}

/* The fields the data layer owns, last as it writes them. */
static void
record_end(bson_t *doc, int64_t created, int64_t updated)
{
	BSON_APPEND_DATE_TIME(doc, "created_at", created);
	BSON_APPEND_DATE_TIME(doc, "updated_at", updated > created ? updated : created);
	BSON_APPEND_INT64(doc, "version", 1);
}

static void
append_money(bson_t *doc, const char *key, int64_t minor)
{
	bson_t m;

	BSON_APPEND_DOCUMENT_BEGIN(doc, key, &m);
	BSON_APPEND_INT64(&m, "amount", minor);
	BSON_APPEND_UTF8(&m, "currency", DEMO_CURRENCY);
	bson_append_document_end(doc, &m);
}

static void
append_empty_doc(bson_t *doc, const char *key)
{
	bson_t empty;

	BSON_APPEND_DOCUMENT_BEGIN(doc, key, &empty);
	bson_append_document_end(doc, &empty);
}

/* An owner reference: the user's id, or nothing for nobody. */
static void
append_user(struct demo *d, bson_t *doc, const char *key, int user)
{
	if (user >= 0)
		BSON_APPEND_OID(doc, key, &d->users[user]);
}

static int
sales_user(struct demo *d)
{
	return sales_users[rng_weighted(&d->rng, sales_weights, (int)N(sales_weights))];
}

/* t, or when that is not at least ten minutes ago, a time between from
 * and then (so clamped times do not pile up on one instant). */
static int64_t
past(struct demo *d, int64_t from, int64_t t)
{
	int64_t limit = d->now - 10 * MINUTE_MS;

	if (t > limit)
		t = rng_between(&d->rng, from < limit ? from : limit, limit);
	return t < from ? from : t;
}

/* A time in [from, to) where later times are likelier: a growing business
 * (a steady third, the rest growing linearly). */
static int64_t
growing_time(struct rng *r, int64_t from, int64_t to)
{
	double x = rng_chance(r, 35) ? rng_unit(r) : sqrt(rng_unit(r));
	return from + (int64_t)((double)(to - from) * x);
}

/* ---- names ---- */

/* Lower-case letters and digits of src; spaces become sep (none if 0). */
static void
slugify(const char *src, char sep, char *out, size_t len)
{
	size_t n = 0;

	for (; *src && n + 1 < len; src++) {
		unsigned char ch = (unsigned char)*src;
		if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
			out[n++] = (char)ch;
		else if (ch >= 'A' && ch <= 'Z')
			out[n++] = (char)(ch - 'A' + 'a');
		else if (ch == ' ' && sep)
			out[n++] = sep;
	}
	out[n] = '\0';
}

/* Company i of the world: every stem with every sector once. */
static const char *
company_stem(int i)
{
	return company_stems[i % (int)N(company_stems)];
}

static const char *
company_sector(int i)
{
	return company_sectors[(i / (int)N(company_stems)) % (int)N(company_sectors)];
}

static void
company_name(int i, char *out, size_t len)
{
	snprintf(out, len, "%s %s", company_stem(i), company_sector(i));
}

static void
company_domain(int i, char *out, size_t len)
{
	char name[96];

	company_name(i, name, sizeof(name));
	slugify(name, '-', out, len - 8);
	strcat(out, ".example");
}

/* A person's email at domain, first.last, made unique with a number. */
static void
unique_email(struct demo *d, const char *first, const char *last, const char *domain, char *out,
	     size_t len)
{
	char f[32], l[32];

	slugify(first, 0, f, sizeof(f));
	slugify(last, 0, l, sizeof(l));
	snprintf(out, len, "%s.%s@%s", f, l, domain);
	for (int n = 2; !set_add(&d->taken, out); n++)
		snprintf(out, len, "%s.%s%d@%s", f, l, n, domain);
}

/* A phone in the country's format, unique among the leads; its digits
 * (as leads.c normalises them) into digits. */
static void
unique_phone(struct demo *d, const struct country *c, char *out, size_t len, char *digits,
	     size_t dlen)
{
	do {
		snprintf(out, len, "%s %s %04d %04d", c->phone_cc, c->area,
			 1000 + rng_below(&d->rng, 9000), rng_below(&d->rng, 10000));
		size_t n = 0;
		for (const char *p = out; *p && n + 1 < dlen; p++)
			if (*p >= '0' && *p <= '9')
				digits[n++] = *p;
		digits[n] = '\0';
	} while (!set_add(&d->taken, digits));
}

/* A contact person: name, email at domain, phone. */
static void
person(struct demo *d, const char *domain, int country, char *name, size_t nlen, char *email,
       size_t elen, char *phone, size_t plen)
{
	const char *first = PICK(&d->rng, first_names), *last = PICK(&d->rng, last_names);
	char digits[32];

	snprintf(name, nlen, "%s %s", first, last);
	unique_email(d, first, last, domain, email, elen);
	unique_phone(d, &countries[country], phone, plen, digits, sizeof(digits));
}

/* ---- users, pipeline, campaigns, groups ---- */

/* Every demo user logs in with the one password given: one Argon2 hash
 * (about 0.3 s) serves them all, as separate salts would protect nothing
 * that the shared password does not already give away. */
static void
write_users(struct demo *d, const char *password_hash)
{
	for (int u = 0; u < NUSERS; u++) {
		char email[128];
		bson_t roles;
		bson_oid_init(&d->users[u], NULL);
		snprintf(email, sizeof(email), "%s@%s.example", cast[u].login, d->slug);
		bson_t *doc = record_new(d, C_USERS, &d->users[u]);
		BSON_APPEND_UTF8(doc, "email", email);
		BSON_APPEND_UTF8(doc, "name", cast[u].name);
		BSON_APPEND_ARRAY_BEGIN(doc, "roles", &roles);
		BSON_APPEND_UTF8(&roles, "0", cast[u].role);
		bson_append_array_end(doc, &roles);
		BSON_APPEND_BOOL(doc, "active", true);
		BSON_APPEND_UTF8(doc, "_password", password_hash);
		record_end(doc, d->start, d->start);
	}
}

static void
write_pipeline(struct demo *d)
{
	bson_t arr, st;

	bson_oid_init(&d->pipeline_id, NULL);
	bson_t *doc = record_new(d, C_PIPELINES, &d->pipeline_id);
	BSON_APPEND_UTF8(doc, "name", "Sales");
	BSON_APPEND_UTF8(doc, "slug", "default");
	BSON_APPEND_BOOL(doc, "is_default", true);
	BSON_APPEND_ARRAY_BEGIN(doc, "stages", &arr);
	for (int i = 0; i < NSTAGES; i++) {
		char idx[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, idx, sizeof(idx));
		BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &st);
		BSON_APPEND_UTF8(&st, "key", stages[i].key);
		BSON_APPEND_UTF8(&st, "name", stages[i].name);
		BSON_APPEND_INT32(&st, "probability", stages[i].probability);
		bson_append_document_end(&arr, &st);
	}
	bson_append_array_end(doc, &arr);
	record_end(doc, d->start, d->start);
}

static int64_t
campaign_start(const struct demo *d, int k)
{
	return d->now - campaigns[k].starts_days_ago * DAY_MS;
}

static int64_t
campaign_end(const struct demo *d, int k)
{
	return d->now - campaigns[k].ends_days_ago * DAY_MS;
}

static void
write_campaigns(struct demo *d)
{
	for (int k = 0; k < NCAMPAIGNS; k++) {
		int64_t created = campaign_start(d, k) - 30 * DAY_MS;
		bson_oid_init(&d->campaigns[k], NULL);
		bson_t *doc = record_new(d, C_CAMPAIGNS, &d->campaigns[k]);
		BSON_APPEND_UTF8(doc, "name", campaigns[k].name);
		BSON_APPEND_UTF8(doc, "kind", campaigns[k].kind);
		BSON_APPEND_UTF8(doc, "channel", campaigns[k].channel);
		append_money(doc, "cost", campaigns[k].cost);
		BSON_APPEND_DATE_TIME(doc, "starts_at", campaign_start(d, k));
		BSON_APPEND_DATE_TIME(doc, "ends_at", campaign_end(d, k));
		record_end(doc, created, created);
	}
}

/* "Key accounts" (static: the biggest clients name it in group_ids) and
 * "Private customers" (a saved filter). */
static void
write_groups(struct demo *d)
{
	bson_t rule;

	bson_oid_init(&d->key_accounts_id, NULL);
	bson_t *doc = record_new(d, C_GROUPS, &d->key_accounts_id);
	BSON_APPEND_UTF8(doc, "name", "Key accounts");
	BSON_APPEND_DOCUMENT_BEGIN(doc, "rule", &rule);
	BSON_APPEND_UTF8(&rule, "type", "static");
	bson_append_document_end(doc, &rule);
	record_end(doc, d->start, d->start);

	bson_oid_init(&d->private_clients_id, NULL);
	doc = record_new(d, C_GROUPS, &d->private_clients_id);
	BSON_APPEND_UTF8(doc, "name", "Private customers");
	BSON_APPEND_DOCUMENT_BEGIN(doc, "rule", &rule);
	BSON_APPEND_UTF8(&rule, "type", "filter");
	BSON_APPEND_UTF8(&rule, "kind", "person");
	bson_append_document_end(doc, &rule);
	record_end(doc, d->start, d->start);
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
	l->channel = rng_weighted(&d->rng, channel_weights, (int)N(channel_weights));
	for (int k = 0; k < NCAMPAIGNS; k++) {
		if (l->created < campaign_start(d, k) ||
		    l->created >= campaign_end(d, k) + campaigns[k].tail_days * DAY_MS)
			continue;
		bool same_channel = strcmp(channels[l->channel], campaigns[k].channel) == 0;
		if (rng_chance(&d->rng, campaigns[k].force_percent) ||
		    (same_channel && rng_chance(&d->rng, 50))) {
			for (int c = 0; c < (int)N(channels); c++)
				if (strcmp(channels[c], campaigns[k].channel) == 0)
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

	return (enum lead_status)rng_weighted(&d->rng, w, 5);
}

static void
plan_leads(struct demo *d)
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
		int j = i - 1 - rng_below(&d->rng, 100);
		if (i > 100 && rng_chance(&d->rng, 2) && d->leads[j].duplicate_of < 0 &&
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
		l->company = rng_chance(&d->rng, 75) ? rng_below(&d->rng, (int)DEMO_COMPANIES) : -1;
		l->country = rng_below(&d->rng, (int)N(countries));
		const char *first = PICK(&d->rng, first_names), *last = PICK(&d->rng, last_names);
		char domain[96];
		snprintf(l->name, sizeof(l->name), "%s %s", first, last);
		if (l->company >= 0)
			company_domain(l->company, domain, sizeof(domain));
		else
			snprintf(domain, sizeof(domain), "%s", PICK(&d->rng, mail_domains));
		/* some give only a phone, some only an email */
		int contact = rng_below(&d->rng, 100);
		if (contact >= 8)
			unique_email(d, first, last, domain, l->email, sizeof(l->email));
		if (contact < 8 || contact >= 20)
			unique_phone(d, &countries[l->country], l->phone, sizeof(l->phone),
				     l->phone_n, sizeof(l->phone_n));
		l->status = plan_status(d, age);
		if (l->status == L_CONVERTED && converted >= DEMO_MAX_CONVERTED)
			l->status = L_QUALIFIED;
		converted += l->status == L_CONVERTED;
		/* partner leads arrive through the API without an owner */
		l->owner = sales_user(d);
		if (l->status == L_NEW && strcmp(channels[l->channel], "partner") == 0 &&
		    rng_chance(&d->rng, 60))
			l->owner = -1;
		switch (l->status) {
		case L_NEW:
			l->updated = l->created;
			break;
		case L_CONTACTED:
			l->updated = l->created + rng_between(&d->rng, HOUR_MS, 5 * DAY_MS);
			break;
		case L_QUALIFIED:
			l->updated = l->created + rng_between(&d->rng, 2 * DAY_MS, 20 * DAY_MS);
			break;
		case L_LOST:
			l->updated = l->created + rng_between(&d->rng, 3 * DAY_MS, 45 * DAY_MS);
			l->lost_reason = rng_below(&d->rng, (int)N(lead_lost_reasons));
			break;
		case L_CONVERTED:
			l->updated = l->created + rng_between(&d->rng, 5 * DAY_MS, 40 * DAY_MS);
			break;
		}
		l->updated = past(d, l->created, l->updated);
		l->converted_at = l->status == L_CONVERTED ? l->updated : 0;
	}
}

static void
write_lead(struct demo *d, const struct lead_plan *l)
{
	bson_t *doc = record_new(d, C_LEADS, &l->id), source;
	char company[96];

	BSON_APPEND_UTF8(doc, "name", l->name);
	if (l->email[0])
		BSON_APPEND_UTF8(doc, "email", l->email);
	if (l->phone[0])
		BSON_APPEND_UTF8(doc, "phone", l->phone);
	if (l->company >= 0) {
		company_name(l->company, company, sizeof(company));
		BSON_APPEND_UTF8(doc, "company", company);
	}
	append_user(d, doc, "owner_id", l->owner);
	BSON_APPEND_UTF8(doc, "status", lead_statuses[l->status]);
	if (l->status == L_LOST)
		BSON_APPEND_UTF8(doc, "lost_reason", lead_lost_reasons[l->lost_reason]);
	append_empty_doc(doc, "custom");
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
	record_end(doc, l->created, l->updated);
}

/* ---- clients, their contacts and counterparties ---- */

static void
write_contact(struct demo *d, const struct client_plan *c, const bson_oid_t *id, const char *name,
	      const char *email, const char *phone, const char *position, int64_t created)
{
	bson_t *doc = record_new(d, C_CONTACTS, id);

	BSON_APPEND_UTF8(doc, "name", name);
	if (email && *email)
		BSON_APPEND_UTF8(doc, "email", email);
	if (phone && *phone)
		BSON_APPEND_UTF8(doc, "phone", phone);
	if (position)
		BSON_APPEND_UTF8(doc, "position", position);
	BSON_APPEND_OID(doc, "client_id", &c->id);
	record_end(doc, created, created);
}

/* A legal entity of c, valid from `from` (to `to`, 0: still), recorded
 * at `created` (when it became the client's, or the client's start). */
static void
write_counterparty(struct demo *d, const struct client_plan *c, int64_t from, int64_t to,
		   int64_t created)
{
	const struct country *k = &countries[c->country];
	char legal[160], tax[32], address[200];
	bson_oid_t id;

	bson_oid_init(&id, NULL);
	snprintf(legal, sizeof(legal), "%s %s", c->name, k->legal_form);
	snprintf(tax, sizeof(tax), "%s%09d", k->tax_prefix, rng_below(&d->rng, 1000000000));
	snprintf(address, sizeof(address), "%s %d\n%s %s\n%s", k->street,
		 1 + rng_below(&d->rng, 180), k->postcode, k->city, k->name);
	bson_t *doc = record_new(d, C_COUNTERPARTIES, &id);
	BSON_APPEND_UTF8(doc, "legal_name", legal);
	BSON_APPEND_UTF8(doc, "tax_id", tax);
	BSON_APPEND_UTF8(doc, "address", address);
	BSON_APPEND_DATE_TIME(doc, "active_from", from);
	if (to)
		BSON_APPEND_DATE_TIME(doc, "active_to", to);
	BSON_APPEND_OID(doc, "client_id", &c->id);
	record_end(doc, created, to ? to : created);
}

/* Clients: first the converted leads' (with the contact the conversion
 * made), then the customer base: a third already there when the history
 * starts, the rest won over the year. */
static void
plan_clients(struct demo *d)
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
			company_name(l->company, c->name, sizeof(c->name));
			used[l->company] = true;
		} else {
			snprintf(c->name, sizeof(c->name), "%s", l->name);
		}
	}
	while (d->nclients < DEMO_CLIENTS) {
		struct client_plan *c = &d->clients[d->nclients++];
		bson_oid_init(&c->id, NULL);
		c->lead = -1;
		c->created = rng_chance(&d->rng, 35)
				 ? d->start + rng_between(&d->rng, 0, 3 * DAY_MS)
				 : growing_time(&d->rng, d->start, d->now - 2 * DAY_MS);
		c->company = rng_chance(&d->rng, 75);
		c->country = rng_below(&d->rng, (int)N(countries));
		c->owner = sales_user(d);
		c->company_idx = -1;
		if (c->company) {
			int k = rng_below(&d->rng, (int)DEMO_COMPANIES);
			while (used[k])
				k = (k + 1) % (int)DEMO_COMPANIES;
			used[k] = true;
			c->company_idx = k;
			c->key_account = rng_chance(&d->rng, 6);
			company_name(k, c->name, sizeof(c->name));
		} else {
			snprintf(c->name, sizeof(c->name), "%s %s", PICK(&d->rng, first_names),
				 PICK(&d->rng, last_names));
		}
	}
}

static void
write_client(struct demo *d, const struct client_plan *c)
{
	bson_t *doc = record_new(d, C_CLIENTS, &c->id), groups;
	int64_t updated = c->created;

	BSON_APPEND_UTF8(doc, "name", c->name);
	BSON_APPEND_UTF8(doc, "kind", c->company ? "company" : "person");
	BSON_APPEND_ARRAY_BEGIN(doc, "group_ids", &groups);
	if (c->key_account) {
		BSON_APPEND_OID(&groups, "0", &d->key_accounts_id);
		updated = c->created + DAY_MS;
	}
	bson_append_array_end(doc, &groups);
	append_user(d, doc, "owner_id", c->owner);
	if (c->lead >= 0)
		BSON_APPEND_OID(doc, "lead_id", &d->leads[c->lead].id);
	else
		append_empty_doc(doc, "custom");
	record_end(doc, c->created, past(d, c->created, updated));

	/* contacts: the converted lead's, and a few more at companies */
	char domain[96], name[64], email[128], phone[32];
	if (c->company)
		company_domain(c->company_idx, domain, sizeof(domain));
	else
		snprintf(domain, sizeof(domain), "%s", PICK(&d->rng, mail_domains));
	if (c->lead >= 0) {
		const struct lead_plan *l = &d->leads[c->lead];
		write_contact(d, c, &l->contact_id, l->name, l->email, l->phone,
			      c->company ? PICK(&d->rng, positions) : NULL, c->created);
	}
	int more = c->company ? rng_below(&d->rng, c->key_account ? 4 : 3) + (c->lead < 0)
			      : (c->lead < 0 && rng_chance(&d->rng, 50));
	for (int i = 0; i < more; i++) {
		bson_oid_t id;
		bson_oid_init(&id, NULL);
		if (c->company) {
			person(d, domain, c->country, name, sizeof(name), email, sizeof(email),
			       phone, sizeof(phone));
			write_contact(d, c, &id, name, email, phone, PICK(&d->rng, positions),
				      past(d, c->created, c->created + i * 20 * DAY_MS));
		} else {
			char first[32], last[32], digits[32];
			sscanf(c->name, "%31s %31[^\n]", first, last);
			unique_email(d, first, last, domain, email, sizeof(email));
			unique_phone(d, &countries[c->country], phone, sizeof(phone), digits,
				     sizeof(digits));
			write_contact(d, c, &id, c->name, email, phone, NULL, c->created);
		}
	}
	/* counterparties: most companies have one legal entity; some moved
	 * to a new one during the year */
	if (c->company && rng_chance(&d->rng, 75)) {
		int64_t from = c->created - rng_between(&d->rng, 30, 3000) * DAY_MS;
		int64_t created = c->created;
		if (rng_chance(&d->rng, 12) && c->created < d->now - 60 * DAY_MS) {
			int64_t switched =
			    rng_between(&d->rng, c->created + 30 * DAY_MS, d->now - DAY_MS);
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

	deal->status =
	    age < 14 * DAY_MS
		? D_OPEN
		: (enum deal_status)rng_weighted(&d->rng, age < 60 * DAY_MS ? young : old, 3);
	if (deal->status == D_OPEN) {
		deal->stage = rng_weighted(&d->rng, open_stage, NSTAGES);
		end =
		    d->now - rng_between(&d->rng, HOUR_MS, (age / 3 > HOUR_MS ? age / 3 : HOUR_MS));
		deal->expected_close = d->now + rng_between(&d->rng, 7 * DAY_MS, 100 * DAY_MS);
	} else {
		int64_t longest = age < 90 * DAY_MS ? age : 90 * DAY_MS;
		deal->stage = deal->status == D_WON ? NSTAGES - 1
						    : rng_weighted(&d->rng, lost_stage, NSTAGES);
		deal->closed = past(d, deal->created,
				    deal->created + rng_between(&d->rng, 7 * DAY_MS, longest));
		end = deal->closed;
		deal->expected_close =
		    deal->closed + rng_between(&d->rng, -10 * DAY_MS, 10 * DAY_MS);
		if (deal->expected_close < deal->created)
			deal->expected_close = deal->created + DAY_MS;
		deal->lost_reason = rng_below(&d->rng, (int)N(deal_lost_reasons));
	}
	if (end < deal->created)
		end = deal->created;
	for (int i = 0; i < deal->stage; i++)
		at[i] = rng_unit(&d->rng);
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
		deal->amount = (int64_t)(exp(lo + rng_unit(&d->rng) * (hi - lo)) / 50.0) * 50 * 100;
		if (c->key_account)
			deal->amount *= 3;
	} else {
		lo = log(250.0), hi = log(4000.0);
		deal->amount = (int64_t)(exp(lo + rng_unit(&d->rng) * (hi - lo)) / 10.0) * 10 * 100;
	}
	snprintf(deal->title, sizeof(deal->title), "%s - %s", PICK(&d->rng, deal_offers), c->name);
	plan_deal_progress(d, deal);
	if (deal->status == D_WON && (!c->first_won || deal->closed < c->first_won))
		c->first_won = deal->closed;
}

/* Deals: most converted leads came with one; clients have more over time
 * (key accounts several, private persons one at most). */
static void
plan_deals(struct demo *d)
{
	static const int company_deals[] = {20, 40, 25, 15};

	for (int i = 0; i < DEMO_LEADS; i++) {
		struct lead_plan *l = &d->leads[i];
		if (l->status != L_CONVERTED || !rng_chance(&d->rng, 70))
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
		int n = client->key_account ? 4 + rng_below(&d->rng, 5)
			: client->company   ? rng_weighted(&d->rng, company_deals, 4)
					    : rng_chance(&d->rng, 60);
		if (client->lead >= 0)
			n = rng_chance(&d->rng, 30);
		if (client->created + DAY_MS >= d->now - HOUR_MS)
			n = 0; /* a client of today has no further deals yet */
		for (int i = 0; i < n; i++) {
			struct deal_plan *deal = new_deal(d);
			deal->created =
			    rng_between(&d->rng, client->created + DAY_MS, d->now - HOUR_MS);
			plan_deal(d, deal, (int)c);
		}
	}
}

static void
write_deal(struct demo *d, const struct deal_plan *deal)
{
	bson_t *doc = record_new(d, C_DEALS, &deal->id), hist, e;

	BSON_APPEND_OID(doc, "client_id", &d->clients[deal->client].id);
	BSON_APPEND_UTF8(doc, "title", deal->title);
	append_money(doc, "amount", deal->amount);
	BSON_APPEND_OID(doc, "pipeline_id", &d->pipeline_id);
	BSON_APPEND_UTF8(doc, "stage", stages[deal->stage].key);
	append_user(d, doc, "owner_id", deal->owner);
	BSON_APPEND_DATE_TIME(doc, "expected_close", deal->expected_close);
	BSON_APPEND_UTF8(doc, "status", deal_statuses[deal->status]);
	if (deal->status == D_LOST)
		BSON_APPEND_UTF8(doc, "lost_reason", deal_lost_reasons[deal->lost_reason]);
	if (deal->status != D_OPEN) {
		BSON_APPEND_DATE_TIME(doc, "closed_at", deal->closed);
		crm_deal_closed_day(doc);
	}
	append_empty_doc(doc, "custom");
	if (deal->lead >= 0) {
		/* what the conversion keeps of the lead (totals.c) */
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
		BSON_APPEND_UTF8(&e, "stage", stages[i].key);
		if (i > 0)
			BSON_APPEND_UTF8(&e, "from", stages[i - 1].key);
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
	record_end(doc, deal->created,
		   deal->status == D_OPEN ? deal->moved[deal->stage] : deal->closed);
}

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
	snprintf(summary, sizeof(summary), summaries[kind][rng_below(&d->rng, 3)], who);
	bson_t *doc = record_new(d, C_INTERACTIONS, &id);
	if (links.client)
		BSON_APPEND_OID(doc, "client_id", links.client);
	if (links.deal)
		BSON_APPEND_OID(doc, "deal_id", links.deal);
	if (links.lead)
		BSON_APPEND_OID(doc, "lead_id", links.lead);
	BSON_APPEND_UTF8(doc, "kind", interaction_kinds[kind]);
	BSON_APPEND_DATE_TIME(doc, "at", at);
	BSON_APPEND_UTF8(doc, "summary", summary);
	append_user(d, doc, "user_id", user);
	/* recorded when it happened; planned meetings when planned */
	int64_t created = at < d->now ? at : d->now - rng_between(&d->rng, HOUR_MS, 3 * DAY_MS);
	record_end(doc, created, created);
}

static int
interaction_kind(struct demo *d)
{
	return rng_weighted(&d->rng, interaction_weights, (int)N(interaction_weights));
}

/* Leads someone worked on have calls and emails; deals have meetings
 * too (some planned for the coming days); some clients call in. */
static void
write_interactions(struct demo *d)
{
	static const int lost_lead[] = {30, 50, 20}; /* 0, 1 or 2 interactions */

	for (int i = 0; i < DEMO_LEADS; i++) {
		const struct lead_plan *l = &d->leads[i];
		if (l->status == L_NEW || l->owner < 0)
			continue;
		int n = l->status == L_LOST ? rng_weighted(&d->rng, lost_lead, 3)
					    : 1 + rng_chance(&d->rng, 30);
		for (int k = 0; k < n; k++) {
			struct links links = {NULL, NULL, &l->id};
			int kind = l->email[0] ? interaction_kind(d) : 2 /* call_out */;
			write_interaction(d, links, kind,
					  rng_between(&d->rng, l->created, l->updated + 1), l->name,
					  l->owner);
		}
	}
	for (size_t i = 0; i < d->ndeals; i++) {
		const struct deal_plan *deal = &d->deals[i];
		const struct client_plan *c = &d->clients[deal->client];
		struct links links = {&c->id, &deal->id, NULL};
		int64_t end = deal->status == D_OPEN ? d->now - 10 * MINUTE_MS : deal->closed;
		int n = 1 + rng_below(&d->rng, c->key_account ? 5 : 3);
		for (int k = 0; k < n; k++)
			write_interaction(d, links, interaction_kind(d),
					  rng_between(&d->rng, deal->created, end), c->name,
					  deal->owner);
		if (deal->status == D_OPEN && rng_chance(&d->rng, 10))
			write_interaction(d, links, 0 /* meeting */,
					  d->now + rng_between(&d->rng, DAY_MS, 14 * DAY_MS),
					  c->name, deal->owner);
	}
	for (size_t i = 0; i < d->nclients; i++) {
		const struct client_plan *c = &d->clients[i];
		struct links links = {&c->id, NULL, NULL};
		if (rng_chance(&d->rng, 40))
			write_interaction(d, links, rng_chance(&d->rng, 50) ? 1 : 4,
					  rng_between(&d->rng, c->created, d->now - HOUR_MS),
					  c->name, c->owner);
	}
}

/* ---- claims ---- */

static void
plan_claims(struct demo *d)
{
	static const int fresh[] = {60, 40, 0, 0};
	static const int recent[] = {15, 35, 40, 10};
	static const int old[] = {0, 5, 75, 20};
	int eligible = 0;

	for (size_t i = 0; i < d->nclients; i++)
		eligible +=
		    d->clients[i].first_won && d->clients[i].first_won < d->now - 3 * DAY_MS;
	while (eligible && d->nclaims < DEMO_CLAIMS) {
		int c = rng_below(&d->rng, (int)d->nclients);
		const struct client_plan *client = &d->clients[c];
		if (!client->first_won || client->first_won >= d->now - 3 * DAY_MS)
			continue;
		struct claim_plan *claim = &d->claims[d->nclaims++];
		bson_oid_init(&claim->id, NULL);
		claim->client = c;
		claim->text = rng_below(&d->rng, (int)N(claim_texts));
		claim->assignee = rng_chance(&d->rng, 70) ? client->owner : U_MANAGER;
		claim->created =
		    past(d, client->first_won,
			 client->first_won + rng_between(&d->rng, 2 * DAY_MS, 60 * DAY_MS));
		int64_t age = d->now - claim->created;
		claim->status = (enum claim_status)rng_weighted(&d->rng,
								age < 7 * DAY_MS    ? fresh
								: age < 30 * DAY_MS ? recent
										    : old,
								4);
		claim->updated =
		    claim->status == C_OPEN
			? claim->created
			: past(d, claim->created,
			       claim->created + rng_between(&d->rng, HOUR_MS, 10 * DAY_MS));
	}
}

static void
write_claim(struct demo *d, const struct claim_plan *claim)
{
	bson_t *doc = record_new(d, C_CLAIMS, &claim->id);

	BSON_APPEND_OID(doc, "client_id", &d->clients[claim->client].id);
	BSON_APPEND_UTF8(doc, "subject", claim_texts[claim->text].subject);
	BSON_APPEND_UTF8(doc, "description", claim_texts[claim->text].description);
	BSON_APPEND_UTF8(doc, "status", claim_statuses[claim->status]);
	append_user(d, doc, "assignee_id", claim->assignee);
	record_end(doc, claim->created, claim->updated);
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
	bson_t *doc = record_new(d, C_TASKS, &id);
	BSON_APPEND_UTF8(doc, "title", title);
	BSON_APPEND_DATE_TIME(doc, "due_at", due);
	append_user(d, doc, "assignee_id", assignee);
	BSON_APPEND_DOCUMENT_BEGIN(doc, "related", &related);
	BSON_APPEND_OID(&related, related_key, related_id);
	bson_append_document_end(doc, &related);
	BSON_APPEND_BOOL(doc, "done", done);
	if (!done && due <= d->now)
		BSON_APPEND_DATE_TIME(doc, "reminded_for", due);
	created = past(d, 0, created < due ? created : due - HOUR_MS);
	record_end(doc, created, done ? past(d, created, due) : created);
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
static void
write_tasks(struct demo *d)
{
	char title[300];

	for (size_t i = 0; i < d->ndeals; i++) {
		const struct deal_plan *deal = &d->deals[i];
		if (deal->status == D_OPEN && rng_chance(&d->rng, 70)) {
			int64_t due = rng_chance(&d->rng, 80)
					  ? d->now + rng_between(&d->rng, HOUR_MS, 21 * DAY_MS)
					  : d->now - rng_between(&d->rng, DAY_MS, 7 * DAY_MS);
			snprintf(title, sizeof(title), "Follow up: %s", deal->title);
			write_task(d, title, due, false, deal->owner, "deal_id", &deal->id,
				   due - 7 * DAY_MS > deal->created ? due - 7 * DAY_MS
								    : deal->created);
		} else if (deal->status != D_OPEN && rng_chance(&d->rng, 50)) {
			int64_t due = deal->created + (deal->closed - deal->created) / 3;
			snprintf(title, sizeof(title), "Send proposal: %s", deal->title);
			write_task(d, title, due, true, deal->owner, "deal_id", &deal->id,
				   deal->created);
		}
	}
	for (int i = 0; i < DEMO_LEADS; i++) {
		const struct lead_plan *l = &d->leads[i];
		if (l->owner < 0 || l->status > L_QUALIFIED || !rng_chance(&d->rng, 30))
			continue;
		int64_t due = l->updated + rng_between(&d->rng, DAY_MS, 3 * DAY_MS);
		bool done = due < d->now && rng_chance(&d->rng, 70);
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
		write_task(d, title, d->now + rng_between(&d->rng, HOUR_MS, 7 * DAY_MS), false,
			   claim->assignee, "client_id", &d->clients[claim->client].id,
			   claim->created);
	}
}

/* ---- writing ---- */

static int64_t
created_at_of(const bson_t *doc)
{
	bson_iter_t it;

	return bson_iter_init_find(&it, doc, "created_at") && BSON_ITER_HOLDS_DATE_TIME(&it)
		   ? bson_iter_date_time(&it)
		   : 0;
}

static int
by_created_at(const void *a, const void *b)
{
	int64_t x = created_at_of(*(bson_t *const *)a), y = created_at_of(*(bson_t *const *)b);
	return x < y ? -1 : x > y;
}

/* Writes the tenant, then every batch; on failure removes what this run
 * wrote (best effort: the database may be gone) and returns the TR_E*
 * code. The tenant goes first so that a slug taken meanwhile
 * (TR_EDUPLICATE) stops the run before anything else is written. */
static int
write_all(struct demo *d, bson_t *tenant)
{
	struct tr_db *db = tr_db_open(NULL);
	int rc = TR_OK, written = -1;

	if (!db) {
		rc = TR_ENOMEM;
		goto out;
	}
	tr_db_set_tenant(db, &d->tenant_id);
	rc = tr_db_import(db, TENANTS, &tenant, 1);
	if (rc != TR_OK)
		goto out;
	for (int c = 0; c < C_COUNT && rc == TR_OK; c++) {
		struct batch *b = &d->batches[c];
		written = c;
		/* list positions follow the history: oldest first */
		qsort(b->docs, b->n, sizeof(b->docs[0]), by_created_at);
		rc = tr_db_import(db, coll_names[c], b->docs, b->n);
		if (rc != TR_OK)
			fprintf(stderr, "trellis: writing %s failed: %s\n", coll_names[c],
				tr_strerror(rc));
	}
	if (rc == TR_OK)
		goto out;
	/* undo: this tenant's records, then the tenant */
	for (int c = 0; c <= written; c++)
		tr_db_purge(db, coll_names[c]);
	tr_db_purge(db, TENANTS);
out:
	tr_db_close(db);
	return rc;
}

/* Queues the reminders of open tasks due in the future, as tasks created
 * through the API get (activities.c). Without Redis the seed still
 * stands; the reminders are missing and that is said. */
static size_t
queue_reminders(struct demo *d)
{
	char tenant_hex[25], task_hex[25], payload[96];
	size_t n = 0;

	bson_oid_to_string(&d->tenant_id, tenant_hex);
	for (; n < d->nreminders; n++) {
		bson_oid_to_string(&d->reminders[n].task_id, task_hex);
		snprintf(payload, sizeof(payload), "{\"task_id\":\"%s\",\"due_at\":%lld}", task_hex,
			 (long long)d->reminders[n].due);
		if (tr_job_enqueue("crm.reminders", tenant_hex, payload, d->reminders[n].due,
				   NULL) != TR_OK) {
			fprintf(stderr,
				"trellis: warning: Redis unavailable: %zu task reminders were not "
				"queued\n",
				d->nreminders - n);
			break;
		}
	}
	return n;
}

/* ---- the command ---- */

static bool
slug_ok(const char *slug)
{
	size_t n = strlen(slug);
	return n >= 3 && n <= 40 && strspn(slug, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/* One line from stdin without its newline: 10 to 256 characters of valid
 * UTF-8 without control characters (the rule of `trellis user create`). */
static bool
read_password(char *buf, size_t len)
{
	size_t n, chars = 0;

	if (!fgets(buf, (int)len, stdin)) {
		fprintf(stderr, "trellis: the password is read from standard input (one line)\n");
		return false;
	}
	buf[strcspn(buf, "\r\n")] = '\0';
	n = strlen(buf);
	bool ok = bson_utf8_validate(buf, n, false);
	for (size_t i = 0; ok && i < n; i++) {
		unsigned char ch = (unsigned char)buf[i];
		ok = ch >= 0x20 && ch != 0x7f;
		chars += (ch & 0xC0) != 0x80;
	}
	if (!ok || chars < 10 || chars > 256) {
		sodium_memzero(buf, len);
		fprintf(stderr, "trellis: the password must be 10 to 256 characters\n");
		return false;
	}
	return true;
}

static void
usage(void)
{
	fprintf(stderr, "usage: trellis demo seed --tenant SLUG < password\n"
			"       (a new tenant of a-z, 0-9 and -, 3 to 40 characters; the\n"
			"       password, one line of at least 10 characters, is every demo "
			"user's)\n");
}

/* Does a tenant with this slug exist? TR_OK (yes), TR_ENOTFOUND, or the
 * database's error. */
static int
tenant_exists(const char *slug)
{
	struct tr_db *db = tr_db_open(NULL);
	bson_t filter = BSON_INITIALIZER, found;
	int rc;

	BSON_APPEND_UTF8(&filter, "slug", slug);
	rc = tr_db_find_global(db, TENANTS, &filter, &found);
	bson_destroy(&found);
	bson_destroy(&filter);
	tr_db_close(db);
	return rc;
}

/* Seconds since t0 (tr_mono_ns). */
static double
since(uint64_t t0)
{
	return (double)(tr_mono_ns() - t0) / 1e9;
}

static void
print_summary(const struct demo *d, uint64_t t0, double hashing, double writing, size_t reminders)
{
	printf("Seeded tenant \"%s\" (%s) in %.2f s (password hash %.2f s, writing %.2f s):\n",
	       d->slug, DEMO_TENANT_NAME, since(t0), hashing, writing);
	printf("  %zu leads, %zu clients, %zu contacts, %zu counterparties, %zu deals,\n",
	       d->batches[C_LEADS].n, d->batches[C_CLIENTS].n, d->batches[C_CONTACTS].n,
	       d->batches[C_COUNTERPARTIES].n, d->batches[C_DEALS].n);
	printf("  %zu interactions, %zu tasks (%zu reminders queued), %zu claims, %zu campaigns,\n",
	       d->batches[C_INTERACTIONS].n, d->batches[C_TASKS].n, reminders,
	       d->batches[C_CLAIMS].n, d->batches[C_CAMPAIGNS].n);
	printf("  %zu client groups, the default pipeline and %d users.\n", d->batches[C_GROUPS].n,
	       NUSERS);
	printf("Log in with tenant_slug \"%s\" and the password you gave:\n", d->slug);
	for (int u = 0; u < NUSERS; u++)
		printf("  %-11s %s@%s.example\n", cast[u].role, cast[u].login, d->slug);
}

static void
demo_free(struct demo *d)
{
	for (int c = 0; c < C_COUNT; c++) {
		for (size_t i = 0; i < d->batches[c].n; i++)
			bson_destroy(d->batches[c].docs[i]);
		bson_free(d->batches[c].docs);
	}
	if (d->taken.slots)
		for (size_t i = 0; i < SET_SLOTS; i++)
			bson_free(d->taken.slots[i]);
	bson_free(d->taken.slots);
	bson_free(d->leads);
	bson_free(d->clients);
	bson_free(d->deals);
	bson_free(d->reminders);
}

int
crm_demo_seed(int argc, char **argv)
{
	struct demo d;
	char password[1100], hash[crypto_pwhash_STRBYTES] = "";
	const char *slug = NULL;
	bson_t tenant = BSON_INITIALIZER;
	uint64_t t0 = tr_mono_ns(), t1;
	double hashing;
	int rc = 2;

	memset(&d, 0, sizeof(d));
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--tenant") == 0 && i + 1 < argc && !slug) {
			slug = argv[++i];
		} else {
			fprintf(stderr, "trellis: unexpected argument %s\n", argv[i]);
			usage();
			goto out;
		}
	}
	if (!slug || !slug_ok(slug)) {
		if (slug)
			fprintf(stderr, "trellis: --tenant must be 3 to 40 of a-z, 0-9 and -\n");
		usage();
		goto out;
	}
	if (!read_password(password, sizeof(password)))
		goto out;
	int found = tenant_exists(slug);
	if (found == TR_OK) {
		fprintf(stderr, "trellis: tenant exists: %s (choose another --tenant)\n", slug);
		goto out;
	}
	if (found != TR_ENOTFOUND) {
		fprintf(stderr, "trellis: cannot reach the database (%s)\n", tr_strerror(found));
		rc = 1;
		goto out;
	}
	t1 = tr_mono_ns();
	bool hashed = identity_hash_password(password, hash);
	sodium_memzero(password, sizeof(password));
	if (!hashed) {
		fprintf(stderr, "trellis: hashing the password failed (out of memory)\n");
		rc = 1;
		goto out;
	}
	hashing = since(t1);

	d.rng.state = DEMO_SEED;
	d.slug = slug;
	d.now = tr_now_ms();
	d.start = d.now - DEMO_HISTORY_DAYS * DAY_MS;
	d.leads = bson_malloc0(DEMO_LEADS * sizeof(*d.leads));
	d.clients = bson_malloc0(DEMO_CLIENTS * sizeof(*d.clients));
	d.taken.slots = bson_malloc0(SET_SLOTS * sizeof(*d.taken.slots));
	bson_oid_init(&d.tenant_id, NULL);
	BSON_APPEND_OID(&tenant, "_id", &d.tenant_id);
	BSON_APPEND_OID(&tenant, "tenant_id", &d.tenant_id);
	BSON_APPEND_UTF8(&tenant, "name", DEMO_TENANT_NAME);
	BSON_APPEND_UTF8(&tenant, "slug", slug);
	record_end(&tenant, d.start - DAY_MS, d.start - DAY_MS);

	write_users(&d, hash);
	write_pipeline(&d);
	write_campaigns(&d);
	write_groups(&d);
	plan_leads(&d);
	plan_clients(&d);
	plan_deals(&d);
	plan_claims(&d);
	for (int i = 0; i < DEMO_LEADS; i++)
		write_lead(&d, &d.leads[i]);
	for (size_t i = 0; i < d.nclients; i++)
		write_client(&d, &d.clients[i]);
	for (size_t i = 0; i < d.ndeals; i++)
		write_deal(&d, &d.deals[i]);
	write_interactions(&d);
	for (size_t i = 0; i < d.nclaims; i++)
		write_claim(&d, &d.claims[i]);
	write_tasks(&d);

	t1 = tr_mono_ns();
	int wrc = write_all(&d, &tenant);
	double writing = since(t1);
	if (wrc == TR_EDUPLICATE) { /* someone took the slug meanwhile */
		fprintf(stderr, "trellis: tenant exists: %s (choose another --tenant)\n", slug);
		goto out;
	}
	if (wrc != TR_OK) {
		fprintf(stderr, "trellis: writing to the database failed (%s); nothing was kept\n",
			tr_strerror(wrc));
		rc = 1;
		goto out;
	}
	size_t reminders = queue_reminders(&d);
	print_summary(&d, t0, hashing, writing, reminders);
	rc = 0;
out:
	sodium_memzero(password, sizeof(password));
	sodium_memzero(hash, sizeof(hash));
	bson_destroy(&tenant);
	demo_free(&d);
	return rc;
}
