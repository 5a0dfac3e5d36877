/* Small helpers the ERP's files share (erp.h). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "erp.h"
#include "jobs.h"
#include "json.h"
#include "util.h"

int64_t
erp_counter(const bson_t *doc, const char *sub, const char *name)
{
	bson_iter_t it, child;

	if (bson_iter_init_find(&it, doc, sub) && BSON_ITER_HOLDS_DOCUMENT(&it) &&
	    bson_iter_recurse(&it, &child) && bson_iter_find(&child, name) &&
	    BSON_ITER_HOLDS_NUMBER(&child))
		return bson_iter_as_int64(&child);
	return 0;
}

int64_t
erp_after(const bson_t *movement, const char *counter)
{
	return erp_counter(movement, "after", counter);
}

int64_t
erp_money_amount(const bson_t *doc, const char *field)
{
	bson_iter_t it, sub;
	char path[64];

	snprintf(path, sizeof(path), "%s.amount", field);
	if (bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &sub) &&
	    BSON_ITER_HOLDS_NUMBER(&sub))
		return bson_iter_as_int64(&sub);
	return 0;
}

void
erp_append_money(bson_t *doc, const char *name, int64_t amount, const char *currency)
{
	bson_t m;

	BSON_APPEND_DOCUMENT_BEGIN(doc, name, &m);
	BSON_APPEND_INT64(&m, "amount", amount);
	BSON_APPEND_UTF8(&m, "currency", currency);
	bson_append_document_end(doc, &m);
}

void
erp_unfinished(struct tr_ctx *c, int rc)
{
	(void)rc;
	tr_problem(c, 503, "unavailable",
		   "the change is under way but not finished: ask again with the same "
		   "Idempotency-Key to finish it");
	c->resp->retry_after = 1;
}

bool
erp_currency_ok(const char *s)
{
	return s && strlen(s) == 3 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 3;
}

int64_t
erp_settle_at(void)
{
	return tr_now_ms() + tr_config_int("erp_settle_after_ms");
}

int
erp_schedule_settle(const char *tenant, const char *payload)
{
	int rc = tr_job_enqueue(ERP_SETTLE_QUEUE, tenant, payload, erp_settle_at(), NULL);

	if (rc == TR_OK)
		erp_health_touch(tenant);
	return rc;
}

void
erp_step_pause(void)
{
	int ms = tr_cfg ? tr_cfg->debug_step_delay_ms : 0;

	if (ms > 0)
		usleep((useconds_t)ms * 1000);
}

void
erp_derived_id(const char *seed, char out[25])
{
	uint8_t digest[32];

	crypto_hash_sha256(digest, (const unsigned char *)seed, strlen(seed));
	sodium_bin2hex(out, 25, digest, 12);
}

void
erp_request_id(const struct tr_ctx *c, const char *kind, const char *record, char out[25])
{
	char seed[200];

	if (c->req->idempotency_key) {
		snprintf(seed, sizeof(seed), "%s:%s:%s:%.100s", kind, record,
			 c->req->principal.user_hex, c->req->idempotency_key);
	} else {
		bson_oid_t fresh;
		char hex[25];
		bson_oid_init(&fresh, NULL);
		bson_oid_to_string(&fresh, hex);
		snprintf(seed, sizeof(seed), "%s:%s", kind, hex);
	}
	erp_derived_id(seed, out);
}

int
erp_post_lines(struct tr_db *db, const char *id, const char *memo, const char *currency,
	       const char *source, const struct erp_line *lines, int n)
{
	struct erp_entry *en = calloc(1, sizeof(*en));
	bson_t mv;
	bool replayed;
	char op[64];
	int rc;

	if (!en)
		return TR_ENOMEM;
	if ((rc = erp_chart_ensure(db)) != TR_OK) {
		free(en);
		return rc;
	}
	snprintf(en->id, sizeof(en->id), "%s", id);
	erp_today(en->date);
	snprintf(en->memo, sizeof(en->memo), "%s", memo);
	snprintf(en->currency, sizeof(en->currency), "%s", currency);
	snprintf(en->source, sizeof(en->source), "%s", source);
	for (int i = 0; i < n; i++)
		if (lines[i].debit || lines[i].credit)
			en->lines[en->nlines++] = lines[i];
	snprintf(op, sizeof(op), "erp.entry:%s", id);
	rc = en->nlines >= 2 ? erp_ledger_post(db, en, op, &mv, &replayed) : TR_OK;
	if (en->nlines >= 2)
		bson_destroy(&mv);
	free(en);
	return rc;
}
