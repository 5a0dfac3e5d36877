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
    {TR_GET, "/v1/observability", observability_get, "system.observability.read", 0,
     "The tenant's operational numbers: webhook success rates and lag over the window, "
     "its queued and dead jobs, its WebSocket connections (all processes) and its event "
     "stream's retention.",
     NULL, "window_hours=1..168", NULL},
};

/* GET /v1/observability's answer. A module's part (tr_module.observe) is a
 * member of its own: the webhooks module's is described here too. */
static const char observability_schema[] =
    "{\"type\":\"object\","
    "\"required\":[\"tenant_id\",\"generated_at\",\"window\",\"jobs\",\"websocket\",\"events\"],"
    "\"properties\":{"
    "\"tenant_id\":{\"type\":\"string\",\"pattern\":\"^[0-9a-f]{24}$\"},"
    "\"generated_at\":{\"type\":\"string\",\"format\":\"date-time\"},"
    "\"window\":{\"type\":\"object\",\"required\":[\"hours\",\"from\"],\"properties\":{"
    "\"hours\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":168},"
    "\"from\":{\"type\":\"string\",\"format\":\"date-time\"}}},"
    "\"webhooks\":{\"type\":\"object\",\"required\":[\"attempts_read\",\"complete\",\"endpoints\"],"
    "\"properties\":{\"attempts_read\":{\"type\":\"integer\"},\"complete\":{\"type\":\"boolean\"},"
    "\"endpoints\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
    "\"required\":[\"id\",\"url\",\"active\",\"failing_since\",\"disabled_at\",\"attempts\","
    "\"success_rate\",\"lag_ms\",\"last_success_at\",\"last_failure_at\"],"
    "\"properties\":{\"id\":{\"type\":\"string\"},\"url\":{\"type\":\"string\"},"
    "\"active\":{\"type\":\"boolean\"},"
    "\"failing_since\":{\"type\":[\"string\",\"null\"]},"
    "\"disabled_at\":{\"type\":[\"string\",\"null\"]},"
    "\"attempts\":{\"type\":\"object\",\"required\":[\"delivered\",\"pending\",\"failed\","
    "\"skipped\"],\"properties\":{\"delivered\":{\"type\":\"integer\"},"
    "\"pending\":{\"type\":\"integer\"},\"failed\":{\"type\":\"integer\"},"
    "\"skipped\":{\"type\":\"integer\"}}},"
    "\"success_rate\":{\"type\":[\"number\",\"null\"],\"minimum\":0,\"maximum\":1},"
    "\"lag_ms\":{\"type\":[\"object\",\"null\"],\"properties\":{"
    "\"p50\":{\"type\":\"integer\"},\"p99\":{\"type\":\"integer\"},"
    "\"max\":{\"type\":\"integer\"}}},"
    "\"last_success_at\":{\"type\":[\"string\",\"null\"]},"
    "\"last_failure_at\":{\"type\":[\"string\",\"null\"]},"
    "\"queued_in_order\":{\"type\":[\"integer\",\"null\"],\"minimum\":0}}}}}},"
    "\"jobs\":{\"type\":\"object\",\"required\":[\"queues\",\"ready\",\"delayed\",\"depth\","
    "\"dead\",\"exact\"],\"properties\":{"
    "\"queues\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
    "\"required\":[\"queue\",\"ready\",\"delayed\",\"exact\"],\"properties\":{"
    "\"queue\":{\"type\":\"string\"},\"ready\":{\"type\":\"integer\"},"
    "\"delayed\":{\"type\":\"integer\"},\"exact\":{\"type\":\"boolean\"}}}},"
    "\"ready\":{\"type\":\"integer\"},\"delayed\":{\"type\":\"integer\"},"
    "\"depth\":{\"type\":\"integer\"},\"dead\":{\"type\":\"integer\"},"
    "\"exact\":{\"type\":\"boolean\"}}},"
    "\"websocket\":{\"type\":\"object\",\"required\":[\"scope\",\"connections\","
    "\"queued_frames\",\"lag_max_ms\",\"processes\",\"report_every_ms\"],\"properties\":{"
    "\"scope\":{\"type\":\"string\",\"enum\":[\"cluster\"]},"
    "\"connections\":{\"type\":\"integer\"},\"queued_frames\":{\"type\":\"integer\"},"
    "\"lag_max_ms\":{\"type\":[\"integer\",\"null\"]},\"processes\":{\"type\":\"integer\"},"
    "\"report_every_ms\":{\"type\":\"integer\"}}},"
    "\"events\":{\"type\":\"object\",\"required\":[\"newest_id\",\"oldest_id\",\"oldest_at\","
    "\"oldest_age_s\",\"entries\",\"entries_added\",\"trimmed\",\"max_len\",\"max_age_s\"],"
    "\"properties\":{"
    "\"newest_id\":{\"type\":[\"string\",\"null\"]},\"oldest_id\":{\"type\":[\"string\",\"null\"]},"
    "\"oldest_at\":{\"type\":[\"string\",\"null\"]},"
    "\"oldest_age_s\":{\"type\":[\"integer\",\"null\"]},"
    "\"entries\":{\"type\":\"integer\"},\"entries_added\":{\"type\":[\"integer\",\"null\"]},"
    "\"trimmed\":{\"type\":\"boolean\"},\"max_len\":{\"type\":\"integer\"},"
    "\"max_age_s\":{\"type\":\"integer\"}}}}}";

static const struct tr_answer_schema answers[] = {
    {TR_GET, "/v1/observability", "Observability", observability_schema},
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
    {"system.observability.read", ""},
};

/* Its configuration keys (config.h). */
static const struct tr_config_key config[] = {
    {"observability_scan_max", TR_CONFIG_INT, "10000", 100, 1000000,
     "Queue entries GET /v1/observability reads at most per queue to count the tenant's jobs "
     "(queues are shared by every tenant; past it the count says exact: false)."},
};

const struct tr_module tr_system_module = {
    .name = "system",
    .permissions = permissions,
    .npermissions = sizeof(permissions) / sizeof(permissions[0]),
    .routes = routes,
    .nroutes = sizeof(routes) / sizeof(routes[0]),
    .resources = resources,
    .nresources = sizeof(resources) / sizeof(resources[0]),
    .config = config,
    .nconfig = sizeof(config) / sizeof(config[0]),
    .answers = answers,
    .nanswers = sizeof(answers) / sizeof(answers[0]),
};
