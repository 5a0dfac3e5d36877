/* The world of `trellis-demo seed` (demo.h): the people, companies and
 * countries the demo tenant's story is told with, the default pipeline's
 * stages and the campaigns of the year; the deterministic PRNG every draw
 * comes from; the set of emails and phones already given out; the times
 * and names drawn from them. */
#include <stdio.h>
#include <string.h>

#include "demo.h"

/* ---- the world they sell in ---- */

const char *const crm_demo_first_names[DEMO_NFIRST_NAMES] = {
    "Anna",  "Lukas",  "Sofia", "Jan",	 "Emma",  "Lucas",  "Mia",    "Noah",	"Elena", "Jonas",
    "Laura", "Felix",  "Clara", "David", "Julia", "Marco",  "Sara",   "Pieter", "Eva",	 "Tomas",
    "Ines",  "Oskar",  "Lena",	"Mateo", "Alice", "Henrik", "Chloe",  "Pablo",	"Nora",	 "Viktor",
    "Ida",   "Hugo",   "Marta", "Erik",	 "Zoe",	  "Luca",   "Amelie", "Karl",	"Irene", "Simon",
    "Hanna", "Adrian", "Olga",	"Bruno", "Lotte", "Rafael", "Greta",  "Milan"};
const char *const crm_demo_last_names[DEMO_NLAST_NAMES] = {
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
_Static_assert(N(company_stems) * N(company_sectors) == DEMO_COMPANIES,
	       "DEMO_COMPANIES counts every stem with every sector");

const struct country crm_demo_countries[DEMO_NCOUNTRIES] = {
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

/* The default pipeline, as crm_default_pipeline (modules/crm/pipelines.c)
 * writes it: keep the two in step. */
const struct demo_stage crm_demo_stages[NSTAGES] = {{"new", "New", 10},
						    {"qualified", "Qualified", 25},
						    {"proposal", "Proposal", 50},
						    {"negotiation", "Negotiation", 75},
						    {"closing", "Closing", 90}};

/* Campaigns: when they ran (days before now), and the lead channel they
 * brought leads through. */
const struct campaign crm_demo_campaigns[NCAMPAIGNS] = {
    {"Industry Trade Fair", "exhibition", "event", 240, 237, 21, 1250000, 60},
    {"Webinar series: Smarter Sales", "seminar", "web", 200, 140, 10, 180000, 25},
    {"Search ads: autumn push", "ads", "ads", 120, 30, 5, 900000, 35},
};

/* ---- a deterministic PRNG (splitmix64) ---- */

static uint64_t
rng_next(struct rng *r)
{
	uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
double
crm_demo_rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

/* Uniform in [0, n). */
int
crm_demo_rng_below(struct rng *r, int n)
{
	return n > 0 ? (int)(crm_demo_rng_unit(r) * n) : 0;
}

bool
crm_demo_rng_chance(struct rng *r, int percent)
{
	return crm_demo_rng_below(r, 100) < percent;
}

/* Uniform in [lo, hi) (lo when the range is empty). */
int64_t
crm_demo_rng_between(struct rng *r, int64_t lo, int64_t hi)
{
	return hi > lo ? lo + (int64_t)(crm_demo_rng_unit(r) * (double)(hi - lo)) : lo;
}

/* An index drawn with the given weights. */
int
crm_demo_rng_weighted(struct rng *r, const int *weights, int n)
{
	int total = 0, x;

	for (int i = 0; i < n; i++)
		total += weights[i];
	x = crm_demo_rng_below(r, total);
	for (int i = 0; i < n; i++) {
		if (x < weights[i])
			return i;
		x -= weights[i];
	}
	return n - 1;
}

/* ---- a set of strings (emails and phones already given out) ---- */

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
/* ---- times ---- */

/* t, or when that is not at least ten minutes ago, a time between from
 * and then (so clamped times do not pile up on one instant). */
int64_t
crm_demo_past(struct demo *d, int64_t from, int64_t t)
{
	int64_t limit = d->now - 10 * MINUTE_MS;

	if (t > limit)
		t = crm_demo_rng_between(&d->rng, from < limit ? from : limit, limit);
	return t < from ? from : t;
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

void
crm_demo_company_name(int i, char *out, size_t len)
{
	snprintf(out, len, "%s %s", company_stem(i), company_sector(i));
}

void
crm_demo_company_domain(int i, char *out, size_t len)
{
	char name[96];

	crm_demo_company_name(i, name, sizeof(name));
	slugify(name, '-', out, len - 8);
	strcat(out, ".example");
}

/* A person's email at domain, first.last, made unique with a number. */
void
crm_demo_unique_email(struct demo *d, const char *first, const char *last, const char *domain,
		      char *out, size_t len)
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
void
crm_demo_unique_phone(struct demo *d, const struct country *c, char *out, size_t len, char *digits,
		      size_t dlen)
{
	do {
		snprintf(out, len, "%s %s %04d %04d", c->phone_cc, c->area,
			 1000 + crm_demo_rng_below(&d->rng, 9000),
			 crm_demo_rng_below(&d->rng, 10000));
		size_t n = 0;
		for (const char *p = out; *p && n + 1 < dlen; p++)
			if (*p >= '0' && *p <= '9')
				digits[n++] = *p;
		digits[n] = '\0';
	} while (!set_add(&d->taken, digits));
}

/* A contact person: name, email at domain, phone. */
void
crm_demo_person(struct demo *d, const char *domain, int country, char *name, size_t nlen,
		char *email, size_t elen, char *phone, size_t plen)
{
	const char *first = PICK(&d->rng, crm_demo_first_names),
		   *last = PICK(&d->rng, crm_demo_last_names);
	char digits[32];

	snprintf(name, nlen, "%s %s", first, last);
	crm_demo_unique_email(d, first, last, domain, email, elen);
	crm_demo_unique_phone(d, &crm_demo_countries[country], phone, plen, digits, sizeof(digits));
}
