/* The ERP's invariants checked all the time, per tenant, and shown as
 * metrics (erp.h).
 *
 * ERP work that changes stock or money touches its tenant: at most once per
 * erp_checks_every_ms (in this process) that schedules a check job, which
 * computes what GET /v1/erp/checks answers. A check that fails is asked
 * again once, after the settle jobs of any work then under way have run
 * (a move's stock posted before its entry is a mismatch for a moment, not
 * a violation); what the second run sees is recorded. Each process
 * records the checks its job threads ran, and GET /metrics shows them:
 *
 *   trellis_erp_invariant_ok{tenant, check}   1 held, 0 violated
 *   trellis_erp_invariant_checked_seconds{tenant}   when, Unix time
 *
 * so an alert on min by (tenant, check) (trellis_erp_invariant_ok) == 0
 * names the tenant and the invariant. The table keeps the tenants checked
 * last (ERP_HEALTH_TENANTS); one evicted is checked again at its next
 * write. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "erp.h"
#include "jobs.h"
#include "json.h"
#include "log.h"
#include "util.h"

#define ERP_HEALTH_TENANTS 1024
#define AGAIN_AFTER_MS 5000

struct tenant_health {
	char tenant[25];
	int64_t touched_ms; /* a check was last scheduled */
	int64_t checked_ms; /* 0: never checked here */
	bool ok[ERP_NCHECKS];
};

static struct {
	pthread_mutex_t lock;
	struct tenant_health t[ERP_HEALTH_TENANTS];
	int n;
} H = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The tenant's row, made (evicting the least recently touched) when asked
 * to; under H.lock. */
static struct tenant_health *
row(const char *tenant, bool make)
{
	int oldest = 0;

	for (int i = 0; i < H.n; i++) {
		if (strcmp(H.t[i].tenant, tenant) == 0)
			return &H.t[i];
		if (H.t[i].touched_ms < H.t[oldest].touched_ms)
			oldest = i;
	}
	if (!make)
		return NULL;
	struct tenant_health *r = &H.t[H.n < ERP_HEALTH_TENANTS ? H.n++ : oldest];
	memset(r, 0, sizeof(*r));
	snprintf(r->tenant, sizeof(r->tenant), "%s", tenant);
	return r;
}

void
erp_health_touch(const char *tenant)
{
	int64_t now = tr_now_ms(), every = tr_config_int("erp_checks_every_ms");
	bool due;

	if (!tenant || !tr_is_object_id(tenant))
		return;
	pthread_mutex_lock(&H.lock);
	struct tenant_health *r = row(tenant, true);
	due = r->touched_ms == 0 || now - r->touched_ms >= every;
	if (due)
		r->touched_ms = now;
	pthread_mutex_unlock(&H.lock);
	/* after the work's own settle job: what it left is settled by then */
	if (due &&
	    tr_job_enqueue(ERP_CHECKS_QUEUE, tenant, "{}", erp_settle_at() + 1000, NULL) != TR_OK) {
		pthread_mutex_lock(&H.lock);
		if ((r = row(tenant, false)))
			r->touched_ms = 0; /* the next write tries again */
		pthread_mutex_unlock(&H.lock);
	}
}

void
erp_health_record(const char *tenant, const bool ok[ERP_NCHECKS])
{
	pthread_mutex_lock(&H.lock);
	struct tenant_health *r = row(tenant, true);
	if (r->touched_ms == 0)
		r->touched_ms = tr_now_ms();
	r->checked_ms = tr_now_ms();
	memcpy(r->ok, ok, sizeof(r->ok));
	pthread_mutex_unlock(&H.lock);
}

int
erp_checks_run(const struct tr_job *job, char *err, size_t errlen)
{
	struct tr_db *db;
	bool ok[ERP_NCHECKS], all = true, again;
	int rc;

	if (!tr_is_object_id(job->tenant))
		return 0; /* not a tenant's: nothing to do */
	again = job->payload_len > 2 && strstr(job->payload, "\"again\"");
	if (!(db = tr_db_for_tenant(job->tenant))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = erp_checks_compute(db, NULL, ok);
	tr_db_release(db);
	if (rc != TR_OK) {
		snprintf(err, errlen, "checking the ERP's invariants: %s", tr_strerror(rc));
		return -1;
	}
	for (int i = 0; i < ERP_NCHECKS; i++)
		all &= ok[i];
	if (!all && !again &&
	    tr_job_enqueue(ERP_CHECKS_QUEUE, job->tenant, "{\"again\":true}",
			   erp_settle_at() + AGAIN_AFTER_MS, NULL) == TR_OK)
		return 0; /* maybe work under way: the second look decides */
	if (!all)
		tr_warn(
		    "erp: tenant %s: an invariant does not hold (GET /v1/erp/checks says which)",
		    job->tenant);
	erp_health_record(job->tenant, ok);
	return 0;
}

char *
erp_metrics(void)
{
	size_t cap = 512 + (size_t)ERP_HEALTH_TENANTS * (ERP_NCHECKS + 1) * 128, len = 0;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	len += (size_t)snprintf(out + len, cap - len,
				"# HELP trellis_erp_invariant_ok 1 when the ERP invariant held at "
				"the tenant's last check in this process, 0 when it did not.\n"
				"# TYPE trellis_erp_invariant_ok gauge\n");
	pthread_mutex_lock(&H.lock);
	for (int i = 0; i < H.n; i++)
		for (int k = 0; H.t[i].checked_ms && k < ERP_NCHECKS; k++)
			len += (size_t)snprintf(
			    out + len, cap - len,
			    "trellis_erp_invariant_ok{tenant=\"%s\",check=\"%s\"} "
			    "%d\n",
			    H.t[i].tenant, erp_check_names[k], H.t[i].ok[k] ? 1 : 0);
	len += (size_t)snprintf(out + len, cap - len,
				"# HELP trellis_erp_invariant_checked_seconds When this process "
				"last checked the tenant's ERP invariants (Unix time).\n"
				"# TYPE trellis_erp_invariant_checked_seconds gauge\n");
	for (int i = 0; i < H.n; i++)
		if (H.t[i].checked_ms)
			len += (size_t)snprintf(
			    out + len, cap - len,
			    "trellis_erp_invariant_checked_seconds{tenant=\"%s\"} %.3f\n",
			    H.t[i].tenant, (double)H.t[i].checked_ms / 1000.0);
	pthread_mutex_unlock(&H.lock);
	return out;
}
