/* The system module's surface, one row per endpoint. */
#include "system.h"

static const struct tr_route routes[] = {
    {TR_GET, "/healthz", system_healthz, NULL, TR_PUBLIC | TR_INLINE,
     "Liveness: the process is serving.", NULL, NULL, NULL},
    {TR_GET, "/readyz", system_readyz, NULL, TR_PUBLIC | TR_INLINE,
     "Readiness: MongoDB and Redis reachable, migrations applied (503 names what is missing).",
     NULL, NULL, NULL},
    {TR_GET, "/metrics", system_metrics, NULL, TR_PUBLIC | TR_INLINE, "Prometheus metrics.", NULL,
     NULL, NULL},
    {TR_GET, "/v1/openapi.json", system_openapi, NULL, TR_PUBLIC | TR_INLINE,
     "This API's OpenAPI document.", NULL, NULL, NULL},
    {TR_GET, "/v1/ws", system_ws_upgrade_required, NULL, TR_PUBLIC | TR_INLINE,
     "WebSocket push: upgrade, then the protocol of CONTRACT.md (auth, subscribe, ping).", NULL,
     NULL, NULL},
    {TR_GET, "/v1/balances/{key}", balances_get, "system.balances.read", 0,
     "A balance: {key, balance, seq} (0 before its first movement).", NULL, NULL, NULL},
    {TR_GET, "/v1/balances/{key}/movements", balances_movements, "system.balances.read", 0,
     "A balance's movements, newest first (cursor pagination).", NULL, "limit cursor", NULL},
    {TR_POST, "/v1/balances/{key}/movements", balances_move, "system.balances.write", TR_JSON_BODY,
     "Move a balance by amount, once per operation_id; never below zero (409 "
     "insufficient-balance).",
     NULL, NULL, NULL},
    {TR_GET, "/v1/balances/{key}/movements/{seq}", balances_movement, "system.balances.read", 0,
     "One movement of a balance.", NULL, NULL, NULL},
    {TR_POST, "/v1/balances/{key}/movements/{seq}/reverse", balances_reverse,
     "system.balances.write", 0, "Reverse a movement (once); the balance may not go below zero.",
     NULL, NULL, NULL},
    {TR_GET, "/v1/jobs", jobs_list, "system.jobs.read", 0,
     "The tenant's background jobs that ran out of attempts (?state=dead).", NULL, "state!", NULL},
    {TR_GET, "/v1/changes", changes_list, NULL, 0,
     "The changes feed: the tenant's events after since (an event id, as WebSocket events "
     "carry), in order, for the topics the caller may read; a deletion's data is null; 410 "
     "resync-required when since is older than retention.",
     NULL, "since topics limit=1..500", NULL},
    {TR_POST, "/v1/jobs/{id}/retry", jobs_retry, "system.jobs.write", 0,
     "Put a dead job back on its queue with fresh attempts.", NULL, NULL, NULL},
};

static const struct tr_resource *const resources[] = {&system_tags};

/* The permissions this module owns and the built-in roles holding each
 * (owner and admin hold all; "sales:own" holds the ":own" form). */
static const struct tr_permission permissions[] = {
    {"system.tags.read", "manager sales warehouse accountant employee"},
    {"system.tags.write", "manager"},
    {"system.jobs.read", ""},
    {"system.jobs.write", ""},
    {"system.balances.read", ""},
    {"system.balances.write", ""},
};

const struct tr_module tr_system_module = {
    .name = "system",
    .permissions = permissions,
    .npermissions = sizeof(permissions) / sizeof(permissions[0]),
    .routes = routes,
    .nroutes = sizeof(routes) / sizeof(routes[0]),
    .resources = resources,
    .nresources = sizeof(resources) / sizeof(resources[0]),
};
