/* `trellis-demo seed --tenant SLUG < password`: a CRM tenant that looks
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
 * written in the shape the API stores (db.c, modules/crm): _id,
 * tenant_id, the fields, created_at, updated_at, version 1, references as
 * ObjectIds, dates as BSON dates, money as {amount (int64 minor units),
 * currency}. Dates lie in the past except due tasks and planned meetings;
 * updated_at is the record's last change (a status, a stage, closing).
 *
 * The writes go round tr_db_insert on purpose: it stamps created_at with
 * the current time and writes one record per call, and a demo needs both a
 * history and speed. A failed run is undone with tr_db_purge. No events
 * are emitted for these records (nobody is subscribed to a
 * tenant that does not exist yet); reminders of open tasks due in the
 * future are queued as the API would queue them.
 *
 * Then the ERP's part (demo_erp.c, demo_erp_run.c): products,
 * warehouses, suppliers, and a year of the clients' sales orders with
 * their shipments, invoices and payments and the purchases behind them.
 * It goes round nothing: every step runs the ERP's own route code
 * (erp_direct), so its stock, costs, numbers and ledger are its own - and
 * dated by it, at the moment of seeding - and its events wait in the
 * outbox for a running server's relay. The ERP's checks must hold after
 * it.
 *
 * Exit codes: 0 seeded, 2 bad arguments or password or the tenant exists,
 * 1 the database (or Redis, which the ERP's stock moves need) is
 * unavailable or the ERP refused a step (what was written is removed
 * again). */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "erp/erp.h"
#include "identity/identity.h"
#include "jobs.h"

/* ---- the cast ---- */

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

const char *
crm_demo_cast_name(int user)
{
	return user >= 0 && user < NUSERS ? cast[user].name : "";
}

void
crm_demo_cast_email(const struct demo *d, int user, char *out, size_t len)
{
	snprintf(out, len, "%s@%s.example", user >= 0 && user < NUSERS ? cast[user].login : "",
		 d->slug);
}

static const char *const coll_names[C_COUNT] = {
    "users",	"pipelines",	  "campaigns", "crm_groups",   "leads", "clients",
    "contacts", "counterparties", "deals",     "interactions", "tasks", "claims"};

/* ---- records in the stored shape ---- */

/* A new record of coll: _id and tenant_id come first, as tr_db_insert
 * writes them; the caller appends the fields, then crm_demo_record_end. */
bson_t *
crm_demo_record_new(struct demo *d, enum demo_coll coll, const bson_oid_t *id)
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
void
crm_demo_record_end(bson_t *doc, int64_t created, int64_t updated)
{
	BSON_APPEND_DATE_TIME(doc, "created_at", created);
	BSON_APPEND_DATE_TIME(doc, "updated_at", updated > created ? updated : created);
	BSON_APPEND_INT64(doc, "version", 1);
}

void
crm_demo_append_money(bson_t *doc, const char *key, int64_t minor)
{
	bson_t m;

	BSON_APPEND_DOCUMENT_BEGIN(doc, key, &m);
	BSON_APPEND_INT64(&m, "amount", minor);
	BSON_APPEND_UTF8(&m, "currency", DEMO_CURRENCY);
	bson_append_document_end(doc, &m);
}

void
crm_demo_append_empty_doc(bson_t *doc, const char *key)
{
	bson_t empty;

	BSON_APPEND_DOCUMENT_BEGIN(doc, key, &empty);
	bson_append_document_end(doc, &empty);
}

/* An owner reference: the user's id, or nothing for nobody. */
void
crm_demo_append_user(struct demo *d, bson_t *doc, const char *key, int user)
{
	if (user >= 0)
		BSON_APPEND_OID(doc, key, &d->users[user]);
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
		bson_t *doc = crm_demo_record_new(d, C_USERS, &d->users[u]);
		BSON_APPEND_UTF8(doc, "email", email);
		BSON_APPEND_UTF8(doc, "name", cast[u].name);
		BSON_APPEND_ARRAY_BEGIN(doc, "roles", &roles);
		BSON_APPEND_UTF8(&roles, "0", cast[u].role);
		bson_append_array_end(doc, &roles);
		BSON_APPEND_BOOL(doc, "active", true);
		BSON_APPEND_UTF8(doc, "_password", password_hash);
		crm_demo_record_end(doc, d->start, d->start);
	}
}

static void
write_pipeline(struct demo *d)
{
	bson_t arr, st;

	bson_oid_init(&d->pipeline_id, NULL);
	bson_t *doc = crm_demo_record_new(d, C_PIPELINES, &d->pipeline_id);
	BSON_APPEND_UTF8(doc, "name", "Sales");
	BSON_APPEND_UTF8(doc, "slug", "default");
	BSON_APPEND_BOOL(doc, "is_default", true);
	BSON_APPEND_ARRAY_BEGIN(doc, "stages", &arr);
	for (int i = 0; i < NSTAGES; i++) {
		char idx[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, idx, sizeof(idx));
		BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &st);
		BSON_APPEND_UTF8(&st, "key", crm_demo_stages[i].key);
		BSON_APPEND_UTF8(&st, "name", crm_demo_stages[i].name);
		BSON_APPEND_INT32(&st, "probability", crm_demo_stages[i].probability);
		bson_append_document_end(&arr, &st);
	}
	bson_append_array_end(doc, &arr);
	crm_demo_record_end(doc, d->start, d->start);
}

int64_t
crm_demo_campaign_start(const struct demo *d, int k)
{
	return d->now - crm_demo_campaigns[k].starts_days_ago * DAY_MS;
}

int64_t
crm_demo_campaign_end(const struct demo *d, int k)
{
	return d->now - crm_demo_campaigns[k].ends_days_ago * DAY_MS;
}

static void
write_campaigns(struct demo *d)
{
	for (int k = 0; k < NCAMPAIGNS; k++) {
		int64_t created = crm_demo_campaign_start(d, k) - 30 * DAY_MS;
		bson_oid_init(&d->campaigns[k], NULL);
		bson_t *doc = crm_demo_record_new(d, C_CAMPAIGNS, &d->campaigns[k]);
		BSON_APPEND_UTF8(doc, "name", crm_demo_campaigns[k].name);
		BSON_APPEND_UTF8(doc, "kind", crm_demo_campaigns[k].kind);
		BSON_APPEND_UTF8(doc, "channel", crm_demo_campaigns[k].channel);
		crm_demo_append_money(doc, "cost", crm_demo_campaigns[k].cost);
		BSON_APPEND_DATE_TIME(doc, "starts_at", crm_demo_campaign_start(d, k));
		BSON_APPEND_DATE_TIME(doc, "ends_at", crm_demo_campaign_end(d, k));
		crm_demo_record_end(doc, created, created);
	}
}

/* "Key accounts" (static: the biggest clients name it in group_ids) and
 * "Private customers" (a saved filter). */
static void
write_groups(struct demo *d)
{
	bson_t rule;

	bson_oid_init(&d->key_accounts_id, NULL);
	bson_t *doc = crm_demo_record_new(d, C_GROUPS, &d->key_accounts_id);
	BSON_APPEND_UTF8(doc, "name", "Key accounts");
	BSON_APPEND_DOCUMENT_BEGIN(doc, "rule", &rule);
	BSON_APPEND_UTF8(&rule, "type", "static");
	bson_append_document_end(doc, &rule);
	crm_demo_record_end(doc, d->start, d->start);

	bson_oid_init(&d->private_clients_id, NULL);
	doc = crm_demo_record_new(d, C_GROUPS, &d->private_clients_id);
	BSON_APPEND_UTF8(doc, "name", "Private customers");
	BSON_APPEND_DOCUMENT_BEGIN(doc, "rule", &rule);
	BSON_APPEND_UTF8(&rule, "type", "filter");
	BSON_APPEND_UTF8(&rule, "kind", "person");
	bson_append_document_end(doc, &rule);
	crm_demo_record_end(doc, d->start, d->start);
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

/* Writes the tenant, then every batch, then makes the ERP's story; on
 * failure removes what this run wrote (best effort: the database may be
 * gone) and returns the TR_E* code. The tenant goes first so that a slug
 * taken meanwhile (TR_EDUPLICATE) stops the run before anything else is
 * written. *erp_s: the seconds the ERP's part took. */
static int
write_all(struct demo *d, bson_t *tenant, double *erp_s)
{
	struct tr_db *db = tr_db_open(NULL);
	int rc = TR_OK, written = -1;
	bool erp = false;

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
	if (rc == TR_OK) {
		uint64_t t0 = tr_mono_ns();
		erp = true;
		rc = crm_demo_make_erp(d, db);
		if (rc == TR_OK)
			rc = crm_demo_make_bpm(d, db);
		*erp_s = (double)(tr_mono_ns() - t0) / 1e9;
	}
	if (rc == TR_OK)
		goto out;
	/* undo: this tenant's records, then the tenant */
	for (int c = 0; c <= written; c++)
		tr_db_purge(db, coll_names[c]);
	for (const char *const *c = crm_demo_erp_colls; erp && *c; c++)
		tr_db_purge(db, *c);
	for (const char *const *c = crm_demo_bpm_colls; erp && *c; c++)
		tr_db_purge(db, *c);
	tr_db_purge(db, TENANTS);
out:
	tr_db_close(db);
	return rc;
}

/* Queues the reminders of open tasks due in the future, as tasks created
 * through the API get (modules/crm/activities.c). Without Redis the seed
 * still stands; the reminders are missing and that is said. */
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

/* The whole story for tenant slug, told up to now: the tenant's record
 * into *tenant, the users (sharing password_hash), the CRM's records in
 * their batches, the ERP's steps. Every draw in a fixed order, so the
 * same now gives the same story (ids aside). */
static void
plan_story(struct demo *d, const char *slug, int64_t now, const char *password_hash, bson_t *tenant)
{
	d->rng.state = DEMO_SEED;
	d->slug = slug;
	d->now = now;
	d->start = d->now - DEMO_HISTORY_DAYS * DAY_MS;
	d->leads = bson_malloc0(DEMO_LEADS * sizeof(*d->leads));
	d->clients = bson_malloc0(DEMO_CLIENTS * sizeof(*d->clients));
	d->taken.slots = bson_malloc0(SET_SLOTS * sizeof(*d->taken.slots));
	bson_oid_init(&d->tenant_id, NULL);
	BSON_APPEND_OID(tenant, "_id", &d->tenant_id);
	BSON_APPEND_OID(tenant, "tenant_id", &d->tenant_id);
	BSON_APPEND_UTF8(tenant, "name", DEMO_TENANT_NAME);
	BSON_APPEND_UTF8(tenant, "slug", slug);
	crm_demo_record_end(tenant, d->start - DAY_MS, d->start - DAY_MS);

	write_users(d, password_hash);
	write_pipeline(d);
	write_campaigns(d);
	write_groups(d);
	crm_demo_plan_leads(d);
	crm_demo_plan_clients(d);
	crm_demo_plan_deals(d);
	crm_demo_plan_claims(d);
	for (int i = 0; i < DEMO_LEADS; i++)
		crm_demo_write_lead(d, &d->leads[i]);
	for (size_t i = 0; i < d->nclients; i++)
		crm_demo_write_client(d, &d->clients[i]);
	for (size_t i = 0; i < d->ndeals; i++)
		crm_demo_write_deal(d, &d->deals[i]);
	crm_demo_write_interactions(d);
	for (size_t i = 0; i < d->nclaims; i++)
		crm_demo_write_claim(d, &d->claims[i]);
	crm_demo_write_tasks(d);
	crm_demo_plan_erp(d);
}

void
crm_demo_usage(void)
{
	fprintf(stderr, "usage: trellis-demo seed --tenant SLUG < password\n"
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
print_summary(const struct demo *d, uint64_t t0, double hashing, double writing, double erp_s,
	      size_t reminders)
{
	const size_t *made = d->erp.made;

	printf("Seeded tenant \"%s\" (%s) in %.2f s (password hash %.2f s, writing %.2f s, of "
	       "which the ERP %.2f s):\n",
	       d->slug, DEMO_TENANT_NAME, since(t0), hashing, writing, erp_s);
	printf("  %zu leads, %zu clients, %zu contacts, %zu counterparties, %zu deals,\n",
	       d->batches[C_LEADS].n, d->batches[C_CLIENTS].n, d->batches[C_CONTACTS].n,
	       d->batches[C_COUNTERPARTIES].n, d->batches[C_DEALS].n);
	printf("  %zu interactions, %zu tasks (%zu reminders queued), %zu claims, %zu campaigns,\n",
	       d->batches[C_INTERACTIONS].n, d->batches[C_TASKS].n, reminders,
	       d->batches[C_CLAIMS].n, d->batches[C_CAMPAIGNS].n);
	printf("  %zu client groups, the default pipeline and %d users;\n", d->batches[C_GROUPS].n,
	       NUSERS);
	printf("  ERP: %d products in %d warehouses, %d suppliers, %zu purchase orders (%zu "
	       "receipts),\n",
	       DEMO_NPRODUCTS, DEMO_NWAREHOUSES, DEMO_NSUPPLIERS, made[ES_PURCHASE],
	       made[ES_RECEIVE]);
	printf("  %zu sales orders (%zu confirmed, %zu cancelled), %zu shipments, %zu invoices, "
	       "%zu payments,\n",
	       made[ES_ORDER], made[ES_CONFIRM], made[ES_CANCEL], made[ES_SHIP], made[ES_INVOICE],
	       made[ES_PAY]);
	printf("  %zu transfers, %zu write-offs; %lld journal entries, every ERP check ok.\n",
	       made[ES_TRANSFER], made[ES_WRITE_OFF], d->erp.entries);
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
	crm_demo_erp_free(d);
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
			crm_demo_usage();
			goto out;
		}
	}
	if (!slug || !slug_ok(slug)) {
		if (slug)
			fprintf(stderr, "trellis: --tenant must be 3 to 40 of a-z, 0-9 and -\n");
		crm_demo_usage();
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

	plan_story(&d, slug, tr_now_ms(), hash, &tenant);

	t1 = tr_mono_ns();
	double erp_s = 0;
	int wrc = write_all(&d, &tenant, &erp_s);
	double writing = since(t1);
	if (wrc == TR_EDUPLICATE) { /* someone took the slug meanwhile */
		fprintf(stderr, "trellis: tenant exists: %s (choose another --tenant)\n", slug);
		goto out;
	}
	if (wrc != TR_OK) {
		fprintf(stderr, "trellis: seeding failed (%s); nothing was kept\n",
			tr_strerror(wrc));
		rc = 1;
		goto out;
	}
	size_t reminders = queue_reminders(&d);
	print_summary(&d, t0, hashing, writing, erp_s, reminders);
	rc = 0;
out:
	sodium_memzero(password, sizeof(password));
	sodium_memzero(hash, sizeof(hash));
	bson_destroy(&tenant);
	demo_free(&d);
	return rc;
}
