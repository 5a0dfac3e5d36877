#include "health.h"

#include <stdlib.h>
#include <uv.h>

#include "dbpool.h"
#include "log.h"
#include "migrate.h"
#include "pg.h"
#include "redis.h"
#include "util.h"

#define TICK_MS 500
#define MAINTENANCE_EVERY_TICKS (3600 * 1000 / TICK_MS)
#define SETTLE_EVERY_TICKS (2000 / TICK_MS)

/* The loop thread owns this; the probe's worker writes only its own
 * struct probe, read back in after_probe. */
static struct {
	uv_loop_t *loop;
	const struct tr_config *cfg;
	uv_timer_t timer;
	bool db_up, pg_up, migrations_done, probing, closing, stopping;
	long ticks;
} S;

struct probe {
	uv_work_t work;
	bool check_migrations, maintenance, settle;
	int ping_rc, pg_rc, migrate_rc;
};

static void
probe_work(uv_work_t *w)
{
	struct probe *p = w->data;
	char err[512];

	p->ping_rc = tr_dbpool_ping();
	p->pg_rc = tr_pg_configured(S.cfg) ? tr_pg_ping(S.cfg) : TR_OK;
	if (p->ping_rc == TR_OK && p->check_migrations)
		p->migrate_rc = tr_migrate_run(S.cfg, err, sizeof(err));
	if (p->ping_rc == TR_OK && p->check_migrations && p->migrate_rc != 0)
		tr_error("migrations: %s", err);
	if (p->ping_rc == TR_OK && p->settle && !p->check_migrations && tr_db_settle() != TR_OK)
		tr_warn("maintenance: settling stale claims failed");
	if (p->ping_rc == TR_OK && p->maintenance && tr_idem_expire() != TR_OK)
		tr_warn("maintenance: expiring idempotency keys failed");
}

static void
after_probe(uv_work_t *w, int status)
{
	struct probe *p = w->data;
	bool up = status == 0 && p->ping_rc == TR_OK;

	if (up != S.db_up)
		tr_log(up ? TR_LOG_INFO : TR_LOG_WARN, "mongodb: %s",
		       up ? "reachable" : "unreachable");
	S.db_up = up;
	bool pg_up = status == 0 && p->pg_rc == TR_OK;
	if (pg_up != S.pg_up)
		tr_log(pg_up ? TR_LOG_INFO : TR_LOG_WARN, "postgresql: %s",
		       pg_up ? "reachable" : "unreachable");
	S.pg_up = pg_up;
	if (p->check_migrations && up && p->migrate_rc == 0) {
		S.migrations_done = true;
		tr_info("migrations: applied");
	}
	S.probing = false;
	free(p);
}

static void
tick(uv_timer_t *t)
{
	struct probe *p;
	(void)t;

	S.ticks++;
	if (S.probing || S.closing)
		return;
	p = calloc(1, sizeof(*p));
	if (!p)
		return;
	p->work.data = p;
	p->check_migrations = !S.migrations_done;
	p->maintenance = S.ticks % MAINTENANCE_EVERY_TICKS == 1;
	p->settle = S.ticks % SETTLE_EVERY_TICKS == 0;
	S.probing = true;
	if (uv_queue_work(S.loop, &p->work, probe_work, after_probe) != 0) {
		S.probing = false;
		free(p);
	}
}

void
tr_health_init(uv_loop_t *loop, const struct tr_config *cfg, bool migrations_done)
{
	S.loop = loop;
	S.cfg = cfg;
	S.db_up = migrations_done; /* a successful migration run just talked to it */
	S.pg_up = migrations_done;
	S.migrations_done = migrations_done;
	uv_timer_init(loop, &S.timer);
	uv_timer_start(&S.timer, tick, 0, TICK_MS);
}

void
tr_health_close(void)
{
	S.closing = true;
	uv_timer_stop(&S.timer);
	uv_close((uv_handle_t *)&S.timer, NULL);
}

bool
tr_health_db_up(void)
{
	return S.db_up;
}

bool
tr_health_pg_configured(void)
{
	return S.cfg && tr_pg_configured(S.cfg);
}

bool
tr_health_pg_up(void)
{
	return S.pg_up;
}

bool
tr_health_redis_up(void)
{
	return tr_redis_up();
}

bool
tr_health_migrations_done(void)
{
	return S.migrations_done;
}

void
tr_health_report_db_down(void)
{
	S.db_up = false;
}

void
tr_health_set_stopping(void)
{
	S.stopping = true;
}

bool
tr_health_stopping(void)
{
	return S.stopping;
}
