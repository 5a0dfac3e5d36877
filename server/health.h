/* Dependency health, kept current by a timer on the loop: MongoDB (and the
 * PostgreSQL behind FerretDB, when configured) pinged from a worker every tick, Redis judged by its
 * connection. Pending migrations are retried on the same tick until applied. Loop thread only. */
#ifndef TR_HEALTH_H
#define TR_HEALTH_H

#include <stdbool.h>

#include "config.h"

/* libuv's loop (uv_loop_t), named here without <uv.h> so that modules
 * including this header do not see libuv: only main.c passes one. */
struct uv_loop_s;

void tr_health_init(struct uv_loop_s *loop, const struct tr_config *cfg, bool migrations_done);
void tr_health_close(void);

bool tr_health_db_up(void);
/* The PostgreSQL behind FerretDB: is one configured, and is it up (true
 * when there is none)? */
bool tr_health_pg_configured(void);
bool tr_health_pg_up(void);
bool tr_health_redis_up(void);
bool tr_health_migrations_done(void);
/* A request found MongoDB unavailable: mark it down until the next good ping. */
void tr_health_report_db_down(void);
/* The process got SIGTERM/SIGINT: /readyz says "stopping" (503) from now
 * on, so a load balancer sends it no new requests while it drains. */
void tr_health_set_stopping(void);
bool tr_health_stopping(void);

#endif
