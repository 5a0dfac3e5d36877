/* The ledger of `make bench` (section erp): journal entries of a tenant that
 * exists already (signed up through the API), posted through the ERP
 * module's own erp_ledger_post, one after the other, as
 * POST /v1/erp/journal posts them: the same operation id
 * ("erp.entry:<id>"), the same register, the same hash chain, reckoned by
 * the same code. Nothing is written beside the ledger's chain logic, so
 * GET /v1/erp/ledger/verify checks exactly what the API would have made.
 *
 * Why not HTTP: the journal is one register per tenant, so its entries are
 * appended one at a time whoever sends them; clients in parallel only
 * collide on the next sequence and retry. Through HTTP every entry would
 * also pay for the request path and a lookup of each line's account; here
 * it costs one insert (the register's state stays cached in this process).
 *
 *   build/load_erp TENANT_ID ENTRIES [DAYS]
 *
 * The database comes from the environment as for the server
 * (TRELLIS_MONGO_URI, TRELLIS_POSTGRESQL_URI, ...). Entries are dated over
 * the DAYS days (default 365) up to today, oldest first: sales (receivable
 * against sales and tax), their payments (bank against receivable) and
 * expenses (expense against bank) in turn; a fixed seed makes every run
 * the same. Prints one JSON object: entries posted, seconds, and the
 * ledger's seq after the last one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "db.h"
#include "dbpool.h"
#include "erp/erp.h"
#include "log.h"
#include "util.h"

#define DAY_S (24L * 3600)

static uint64_t rng_state = 0x1ed9e5eedULL;

static uint64_t
rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void
line(struct erp_entry *en, const char *account, int64_t debit, int64_t credit)
{
	struct erp_line *l = &en->lines[en->nlines++];

	snprintf(l->account, sizeof(l->account), "%s", account);
	l->debit = debit;
	l->credit = credit;
}

/* Entry i of n: a sale, its payment or an expense, dated between days ago
 * and today. */
static void
make_entry(struct erp_entry *en, long i, long n, long days, time_t today)
{
	bson_oid_t id;
	struct tm tm;
	time_t at = today - (time_t)((double)days * DAY_S * (double)(n - 1 - i) / (double)n);
	int64_t net = 1000 + (int64_t)(rng() % 500000), tax = net / 5;

	memset(en, 0, sizeof(*en));
	bson_oid_init(&id, NULL);
	bson_oid_to_string(&id, en->id);
	gmtime_r(&at, &tm);
	strftime(en->date, sizeof(en->date), "%Y-%m-%d", &tm);
	snprintf(en->currency, sizeof(en->currency), "EUR");
	snprintf(en->source, sizeof(en->source), "manual");
	switch (i % 3) {
	case 0:
		snprintf(en->memo, sizeof(en->memo), "bench sale %ld", i);
		line(en, "1200", net + tax, 0);
		line(en, "4000", 0, net);
		line(en, "2100", 0, tax);
		break;
	case 1:
		snprintf(en->memo, sizeof(en->memo), "bench payment %ld", i);
		line(en, "1100", net + tax, 0);
		line(en, "1200", 0, net + tax);
		break;
	default:
		snprintf(en->memo, sizeof(en->memo), "bench expense %ld", i);
		line(en, "6000", net, 0);
		line(en, "1100", 0, net);
		break;
	}
}

int
main(int argc, char **argv)
{
	static struct tr_config cfg;
	static struct erp_entry en;
	char err[512], *end;
	long n, days = 365, posted = 0;
	long long seq = 0;
	uint64_t t0 = tr_mono_ns();
	bson_oid_t tenant;
	struct tr_db *db;
	int rc = TR_OK;

	if (argc < 3 || argc > 4 || !tr_is_object_id(argv[1]) ||
	    (n = strtol(argv[2], &end, 10)) < 1 || *end ||
	    (argc == 4 && ((days = strtol(argv[3], &end, 10)) < 1 || *end))) {
		fprintf(stderr, "usage: load_erp TENANT_ID ENTRIES [DAYS] (see the comment in "
				"tests/load/load_erp.c)\n");
		return 2;
	}
	if (tr_config_load(&cfg, NULL, err, sizeof(err)) != 0 ||
	    tr_dbpool_init(&cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "load_erp: %s\n", err);
		return 2;
	}
	tr_log_set_level((enum tr_log_level)tr_log_level_parse(cfg.log_level));
	bson_oid_init_from_string(&tenant, argv[1]);
	db = tr_db_open(NULL);
	if (!db) {
		fprintf(stderr, "load_erp: out of memory\n");
		tr_dbpool_free();
		return 1;
	}
	tr_db_set_tenant(db, &tenant);
	rc = erp_chart_ensure(db);
	time_t today = time(NULL);
	for (long i = 0; i < n && rc == TR_OK; i++) {
		bson_t movement;
		bool replayed;
		char op[64];
		make_entry(&en, i, n, days, today);
		snprintf(op, sizeof(op), "erp.entry:%s", en.id);
		rc = erp_ledger_post(db, &en, op, &movement, &replayed);
		if (rc == TR_OK) {
			bson_iter_t it, sub;
			if (bson_iter_init(&it, &movement) &&
			    bson_iter_find_descendant(&it, "after.n", &sub))
				seq = bson_iter_as_int64(&sub);
			posted++;
		}
		bson_destroy(&movement);
		if (posted % 10000 == 0 && posted > 0 && rc == TR_OK)
			fprintf(stderr, "load_erp: %ld entries, %.1f s\n", posted,
				(double)(tr_mono_ns() - t0) / 1e9);
	}
	tr_db_close(db);
	tr_dbpool_free();
	if (rc != TR_OK) {
		fprintf(stderr, "load_erp: posting entry %ld failed: %s\n", posted + 1,
			tr_strerror(rc));
		return 1;
	}
	printf("{\"entries\": %ld, \"seconds\": %.1f, \"seq\": %lld}\n", posted,
	       (double)(tr_mono_ns() - t0) / 1e9, seq);
	return 0;
}
