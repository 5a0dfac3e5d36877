#include "webhooks.h"

static const char *const by_created[] = {"-created_at", "created_at", NULL};

static const struct tr_route routes[] = {
    {TR_GET, "/v1/webhooks", webhooks_list, "system.webhooks.read", TR_PAGED,
     "The tenant's webhooks (cursor pagination; no secrets).", NULL, NULL, by_created},
    {TR_POST, "/v1/webhooks", webhooks_create, "system.webhooks.write", TR_JSON_BODY,
     "Register an endpoint for events of some topics; the signing secret is shown once.", NULL,
     NULL, NULL},
    {TR_GET, "/v1/webhooks/{id}", webhooks_get, "system.webhooks.read", 0, "One webhook.", NULL,
     NULL, NULL},
    {TR_DELETE, "/v1/webhooks/{id}", webhooks_delete, "system.webhooks.write", 0,
     "Remove a webhook: no further deliveries start.", NULL, NULL, NULL},
};

static const struct tr_job_handler jobs[] = {
    {"webhooks", webhooks_deliver},
};

/* The permissions this module owns and the built-in roles holding each
 * (owner and admin hold all; "sales:own" holds the ":own" form). */
static const struct tr_permission permissions[] = {
    {"system.webhooks.read", ""},
    {"system.webhooks.write", ""},
};

/* Every event on a webhook's topics becomes one delivery job. */
static const struct tr_event_sink sink = {"webhooks", "webhook_id", webhooks_subscribers};

const struct tr_module tr_webhooks_module = {
    .name = "webhooks",
    .permissions = permissions,
    .npermissions = sizeof(permissions) / sizeof(permissions[0]),
    .routes = routes,
    .nroutes = sizeof(routes) / sizeof(routes[0]),
    .event_sink = &sink,
    .jobs = jobs,
    .njobs = sizeof(jobs) / sizeof(jobs[0]),
};
