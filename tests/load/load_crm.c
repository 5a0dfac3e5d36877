/* The data set of `make bench` (section data): CRM records of tenants that
 * exist already (signed up through the API), written through the data
 * layer's import (tr_db_import), so that they carry what records written
 * by the API carry - list buckets, days, the report totals in registers -
 * computed by the server's own code, at the speed of insert_many.
 *
 *   build/load_crm SPEC
 *
 * SPEC has one tenant per line:
 *   TENANT_ID OWNER_ID PIPELINE_ID STAGE,STAGE,... LEADS DEALS CLIENTS DAYS
 * The database comes from the environment as for the server
 * (TRELLIS_MONGO_URI, TRELLIS_POSTGRESQL_URI, ...). Records are spread over
 * the DAYS days before now, oldest first; a fixed seed makes every run the
 * same. Prints one JSON object: what was written and how long it took. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "dbpool.h"
#include "log.h"
#include "util.h"

#define CHUNK 5000
#define DAY_MS (24LL * 3600 * 1000)

static uint64_t rng_state = 0x5eed1234abcdULL;

static uint64_t
rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int
pick(int n)
{
	return (int)(rng() % (uint64_t)n);
}

static const char *const channels[] = {"web", "phone", "email",	  "referral",
				       "ads", "event", "partner", "other"};

struct tenant {
	bson_oid_t id, owner, pipeline;
	char stages[16][48];
	int nstages;
	long leads, deals, clients, days;
};

static int
flush(struct tr_db *db, const char *coll, bson_t **docs, size_t *n)
{
	int rc = tr_db_import(db, coll, docs, *n);

	for (size_t i = 0; i < *n; i++)
		bson_destroy(docs[i]);
	*n = 0;
	if (rc != TR_OK)
		fprintf(stderr, "load_crm: import of %s failed: %s\n", coll, tr_strerror(rc));
	return rc;
}

static void
stamps(bson_t *doc, int64_t created, int64_t updated)
{
	BSON_APPEND_DATE_TIME(doc, "created_at", created);
	BSON_APPEND_DATE_TIME(doc, "updated_at", updated);
	BSON_APPEND_INT64(doc, "version", 1);
}

static bson_t *
record(const struct tenant *t, bson_oid_t *id)
{
	bson_t *doc = bson_new();

	bson_oid_init(id, NULL);
	BSON_APPEND_OID(doc, "_id", id);
	BSON_APPEND_OID(doc, "tenant_id", &t->id);
	return doc;
}

/* Times of n records over the tenant's days, oldest first. */
static int64_t
time_of(const struct tenant *t, long i, long n, int64_t now)
{
	int64_t span = t->days * DAY_MS;
	return now - span + (int64_t)((double)span * (double)i / (double)(n ? n : 1)) -
	       (int64_t)(rng() % 60000);
}

static int
load_clients(struct tr_db *db, const struct tenant *t, int64_t now, bson_oid_t *ids)
{
	bson_t *docs[CHUNK];
	size_t n = 0;
	int rc = TR_OK;

	for (long i = 0; i < t->clients && rc == TR_OK; i++) {
		bson_t *doc = record(t, &ids[i]), groups;
		char name[64];
		int64_t at = time_of(t, i, t->clients, now);
		snprintf(name, sizeof(name), "Client %ld", i);
		BSON_APPEND_UTF8(doc, "name", name);
		BSON_APPEND_UTF8(doc, "kind", i % 4 ? "company" : "person");
		BSON_APPEND_ARRAY_BEGIN(doc, "group_ids", &groups);
		bson_append_array_end(doc, &groups);
		BSON_APPEND_OID(doc, "owner_id", &t->owner);
		BSON_APPEND_DOCUMENT_BEGIN(doc, "custom", &groups);
		bson_append_document_end(doc, &groups);
		stamps(doc, at, at);
		docs[n++] = doc;
		if (n == CHUNK)
			rc = flush(db, "clients", docs, &n);
	}
	return rc == TR_OK && n ? flush(db, "clients", docs, &n) : rc;
}

static int
load_leads(struct tr_db *db, const struct tenant *t, int64_t now)
{
	static const char *const statuses[] = {"new",	    "new",	 "new",	      "new",
					       "new",	    "contacted", "contacted", "qualified",
					       "qualified", "lost"};
	bson_t *docs[CHUNK];
	size_t n = 0;
	char tid[25];
	int rc = TR_OK;

	bson_oid_to_string(&t->id, tid);
	for (long i = 0; i < t->leads && rc == TR_OK; i++) {
		bson_oid_t id;
		bson_t *doc = record(t, &id), source, custom;
		char name[64], email[96];
		int64_t at = time_of(t, i, t->leads, now);
		/* picked once: BSON_APPEND_UTF8 reads its value twice */
		const char *status = statuses[pick(10)], *channel = channels[pick(8)];
		snprintf(name, sizeof(name), "Lead %ld", i);
		snprintf(email, sizeof(email), "lead%ld-%.8s@bench.example", i, tid + 16);
		BSON_APPEND_UTF8(doc, "name", name);
		BSON_APPEND_UTF8(doc, "email", email);
		BSON_APPEND_UTF8(doc, "company", "Bench Ltd");
		BSON_APPEND_DOCUMENT_BEGIN(doc, "source", &source);
		BSON_APPEND_UTF8(&source, "channel", channel);
		BSON_APPEND_NULL(&source, "campaign_id");
		bson_append_document_end(doc, &source);
		BSON_APPEND_OID(doc, "owner_id", &t->owner);
		BSON_APPEND_UTF8(doc, "status", status);
		if (strcmp(status, "lost") == 0)
			BSON_APPEND_UTF8(doc, "lost_reason", "no budget");
		BSON_APPEND_NULL(doc, "duplicate_of");
		BSON_APPEND_DOCUMENT_BEGIN(doc, "custom", &custom);
		bson_append_document_end(doc, &custom);
		stamps(doc, at, at);
		docs[n++] = doc;
		if (n == CHUNK)
			rc = flush(db, "leads", docs, &n);
	}
	return rc == TR_OK && n ? flush(db, "leads", docs, &n) : rc;
}

static int
load_deals(struct tr_db *db, const struct tenant *t, int64_t now, const bson_oid_t *clients)
{
	bson_t *docs[CHUNK];
	size_t n = 0;
	int rc = TR_OK;

	for (long i = 0; i < t->deals && rc == TR_OK; i++) {
		bson_oid_t id;
		bson_t *doc = record(t, &id), amount, hist, e, custom;
		char title[64], day[16];
		int64_t at = time_of(t, i, t->deals, now), closed = 0;
		int r = pick(100), stage = pick(t->nstages);
		const char *status = r < 60 ? "open" : r < 85 ? "won" : "lost";
		snprintf(title, sizeof(title), "Deal %ld", i);
		BSON_APPEND_OID(doc, "client_id", &clients[pick((int)t->clients)]);
		BSON_APPEND_UTF8(doc, "title", title);
		BSON_APPEND_DOCUMENT_BEGIN(doc, "amount", &amount);
		BSON_APPEND_INT64(&amount, "amount", 1000 + (int64_t)(rng() % 5000000));
		BSON_APPEND_UTF8(&amount, "currency", "EUR");
		bson_append_document_end(doc, &amount);
		BSON_APPEND_OID(doc, "pipeline_id", &t->pipeline);
		BSON_APPEND_UTF8(doc, "stage", t->stages[stage]);
		BSON_APPEND_OID(doc, "owner_id", &t->owner);
		BSON_APPEND_NULL(doc, "expected_close");
		BSON_APPEND_UTF8(doc, "status", status);
		if (strcmp(status, "lost") == 0)
			BSON_APPEND_UTF8(doc, "lost_reason", "price");
		if (strcmp(status, "open") != 0) {
			closed = at + (int64_t)(rng() % (uint64_t)(now - at + 1));
			if (closed > now)
				closed = now;
			BSON_APPEND_DATE_TIME(doc, "closed_at", closed);
			tr_format_day(closed, day);
			BSON_APPEND_UTF8(doc, "_xd", day);
		}
		BSON_APPEND_DOCUMENT_BEGIN(doc, "custom", &custom);
		bson_append_document_end(doc, &custom);
		BSON_APPEND_ARRAY_BEGIN(doc, "stage_history", &hist);
		for (int s = 0; s <= stage; s++) {
			char k[16];
			const char *key;
			bson_uint32_to_string((uint32_t)s, &key, k, sizeof(k));
			BSON_APPEND_DOCUMENT_BEGIN(&hist, key, &e);
			BSON_APPEND_UTF8(&e, "stage", t->stages[s]);
			if (s)
				BSON_APPEND_UTF8(&e, "from", t->stages[s - 1]);
			else
				BSON_APPEND_NULL(&e, "from");
			BSON_APPEND_DATE_TIME(&e, "at", at);
			BSON_APPEND_OID(&e, "by", &t->owner);
			bson_append_document_end(&hist, &e);
		}
		bson_append_array_end(doc, &hist);
		stamps(doc, at, closed ? closed : at);
		docs[n++] = doc;
		if (n == CHUNK)
			rc = flush(db, "deals", docs, &n);
	}
	return rc == TR_OK && n ? flush(db, "deals", docs, &n) : rc;
}

static bool
parse_line(char *line, struct tenant *t)
{
	char tid[32], owner[32], pipeline[32], stages[800];
	char *save = NULL;

	memset(t, 0, sizeof(*t));
	if (sscanf(line, "%31s %31s %31s %799s %ld %ld %ld %ld", tid, owner, pipeline, stages,
		   &t->leads, &t->deals, &t->clients, &t->days) != 8 ||
	    !tr_is_object_id(tid) || !tr_is_object_id(owner) || !tr_is_object_id(pipeline) ||
	    t->days < 1 || (t->deals > 0 && t->clients < 1))
		return false;
	bson_oid_init_from_string(&t->id, tid);
	bson_oid_init_from_string(&t->owner, owner);
	bson_oid_init_from_string(&t->pipeline, pipeline);
	for (char *s = strtok_r(stages, ",", &save); s && t->nstages < 16;
	     s = strtok_r(NULL, ",", &save))
		snprintf(t->stages[t->nstages++], sizeof(t->stages[0]), "%s", s);
	return t->nstages > 0;
}

int
main(int argc, char **argv)
{
	static struct tr_config cfg;
	char err[512], line[1024];
	long leads = 0, deals = 0, clients = 0, tenants = 0;
	uint64_t t0 = tr_mono_ns();
	FILE *spec;
	int rc = TR_OK;

	if (argc != 2 || !(spec = fopen(argv[1], "r"))) {
		fprintf(stderr,
			"usage: load_crm SPEC (see the comment in tests/load/load_crm.c)\n");
		return 2;
	}
	if (tr_config_load(&cfg, NULL, err, sizeof(err)) != 0 ||
	    tr_dbpool_init(&cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "load_crm: %s\n", err);
		return 2;
	}
	tr_log_set_level((enum tr_log_level)tr_log_level_parse(cfg.log_level));
	int64_t now = tr_now_ms() - 3600 * 1000;
	while (rc == TR_OK && fgets(line, sizeof(line), spec)) {
		struct tenant t;
		struct tr_db *db;
		bson_oid_t *ids;
		if (!parse_line(line, &t)) {
			fprintf(stderr, "load_crm: bad line: %s", line);
			rc = TR_EINVALID;
			break;
		}
		ids = calloc((size_t)(t.clients ? t.clients : 1), sizeof(*ids));
		db = tr_db_open(NULL);
		tr_db_set_tenant(db, &t.id);
		rc = load_clients(db, &t, now, ids);
		if (rc == TR_OK)
			rc = load_leads(db, &t, now);
		if (rc == TR_OK)
			rc = load_deals(db, &t, now, ids);
		tr_db_close(db);
		free(ids);
		leads += t.leads;
		deals += t.deals;
		clients += t.clients;
		tenants++;
		if (tenants % 10 == 0 || t.leads >= 100000)
			fprintf(stderr, "load_crm: %ld tenants, %ld leads, %.1f s\n", tenants,
				leads, (double)(tr_mono_ns() - t0) / 1e9);
	}
	fclose(spec);
	tr_dbpool_free();
	if (rc != TR_OK)
		return 1;
	printf("{\"tenants\": %ld, \"leads\": %ld, \"deals\": %ld, \"clients\": %ld, "
	       "\"seconds\": %.1f}\n",
	       tenants, leads, deals, clients, (double)(tr_mono_ns() - t0) / 1e9);
	return 0;
}
