/* The webhooks module's surface: the webhooks resource (a table, served
 * by the engine), the delivery job, and the event sink that turns events
 * into deliveries. */
#include "webhooks.h"

/* Its own routes, served before the resource's. */
static const struct tr_route routes[] = {
    {TR_POST, "/v1/webhooks/{id}/rotate-secret", webhooks_rotate_secret, "system.webhooks.write", 0,
     "A new signing secret, shown once; for webhook_secret_overlap_ms deliveries carry the old "
     "one's signature too.",
     NULL, NULL, NULL},
    {TR_GET, "/v1/webhooks/{id}/deliveries", webhooks_deliveries_list, "system.webhooks.read",
     TR_PAGED,
     "The webhook's delivery attempts, newest first: event, webhook-id, attempt, status "
     "(delivered|pending|failed|skipped), response code, duration, error, next attempt.",
     NULL, NULL, NULL},
    {TR_POST, "/v1/webhooks/{id}/deliveries/{did}/replay", webhooks_delivery_replay,
     "system.webhooks.write", 0,
     "Deliver a logged delivery's event again, with the same webhook-id, as a new chain of "
     "attempts.",
     NULL, NULL, NULL},
    {TR_POST, "/v1/webhooks/{id}/replay", webhooks_replay_since, "system.webhooks.write",
     TR_JSON_BODY,
     "Deliver again every event of the webhook's topics after {\"since\": event id}, in order "
     "(410 resync-required when the stream no longer reaches back to it).",
     NULL, NULL, NULL},
};

/* Its event topic: the webhooks' own events (system.webhook.disabled). */
static const struct tr_topic topics[] = {
    {WEBHOOKS_TOPIC, "system.webhooks.read"},
};

static const struct tr_resource *const resources[] = {&webhooks_resource};

static const struct tr_job_handler jobs[] = {
    {"webhooks", webhooks_deliver, "webhook_max_attempts", "webhook_backoff_max_ms"},
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
    {"webhook_secret_overlap_ms", TR_CONFIG_INT, "86400000", 1000, 604800000,
     "How long after a rotation deliveries are signed with the previous secret too."},
    {"webhook_max_attempts", TR_CONFIG_INT, "120", 1, 1000,
     "Attempts of one delivery before it is dead-lettered (the default, with the waits below, "
     "keeps retrying for about 3.4 days - each wait at the cap is 30 to 60 minutes - longer "
     "than a failing webhook stays enabled)."},
    {"webhook_backoff_max_ms", TR_CONFIG_INT, "3600000", 1, 86400000,
     "Longest wait between two attempts of a delivery (the waits double from job_backoff_ms)."},
    {"webhook_disable_after_ms", TR_CONFIG_INT, "259200000", 1000, 2592000000,
     "A webhook failing without a success for this long is paused (system.webhook.disabled)."},
    {"webhook_replay_max", TR_CONFIG_INT, "10000", 1, 100000,
     "Events one POST /v1/webhooks/{id}/replay reads from the stream at most."},
    {"webhook_observe_max", TR_CONFIG_INT, "50000", 100, 10000000,
     "Delivery attempts GET /v1/observability reads at most for the webhooks' window (past "
     "it the numbers say complete: false)."},
};

const struct tr_module tr_webhooks_module = {
    .name = "webhooks",
    .permissions = permissions,
    .npermissions = sizeof(permissions) / sizeof(permissions[0]),
    .topics = topics,
    .ntopics = sizeof(topics) / sizeof(topics[0]),
    .routes = routes,
    .nroutes = sizeof(routes) / sizeof(routes[0]),
    .resources = resources,
    .nresources = sizeof(resources) / sizeof(resources[0]),
    .event_sink = &sink,
    .jobs = jobs,
    .njobs = sizeof(jobs) / sizeof(jobs[0]),
    .config = config,
    .nconfig = sizeof(config) / sizeof(config[0]),
    .migrations = "modules/webhooks/migrations",
    .observe = webhooks_observe,
};
