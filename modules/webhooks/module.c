/* The webhooks module's surface: the webhooks resource (a table, served
 * by the engine), the delivery job, and the event sink that turns events
 * into deliveries. */
#include "webhooks.h"

static const struct tr_resource *const resources[] = {&webhooks_resource};

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

/* Its configuration keys (config.h). */
static const struct tr_config_key config[] = {
    {"webhook_allow_private", TR_CONFIG_INT, "0", 0, 1,
     "1 lets webhooks reach loopback and private addresses (development, tests)."},
    {"webhook_timeout_ms", TR_CONFIG_INT, "5000", 100, 60000,
     "How long a webhook receiver may take to answer."},
};

const struct tr_module tr_webhooks_module = {
    .name = "webhooks",
    .permissions = permissions,
    .npermissions = sizeof(permissions) / sizeof(permissions[0]),
    .resources = resources,
    .nresources = sizeof(resources) / sizeof(resources[0]),
    .event_sink = &sink,
    .jobs = jobs,
    .njobs = sizeof(jobs) / sizeof(jobs[0]),
    .config = config,
    .nconfig = sizeof(config) / sizeof(config[0]),
    .migrations = "modules/webhooks/migrations",
};
