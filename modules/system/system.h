/* The built-in system module: operations endpoints, tenant tags, balances
 * and the jobs API. */
#ifndef TR_SYSTEM_H
#define TR_SYSTEM_H

#include "module.h"
#include "resource.h"

void system_healthz(struct tr_ctx *c);
void system_readyz(struct tr_ctx *c);
void system_metrics(struct tr_ctx *c);
void system_openapi(struct tr_ctx *c);
void system_ws_upgrade_required(struct tr_ctx *c);

extern const struct tr_resource system_tags; /* tags.c */

void balances_move(struct tr_ctx *c);
void balances_get(struct tr_ctx *c);
void balances_movements(struct tr_ctx *c);
void balances_movement(struct tr_ctx *c);
void balances_reverse(struct tr_ctx *c);

void jobs_list(struct tr_ctx *c);
void changes_list(struct tr_ctx *c); /* changes.c */
void jobs_retry(struct tr_ctx *c);
void observability_get(struct tr_ctx *c); /* observability.c */

#endif
