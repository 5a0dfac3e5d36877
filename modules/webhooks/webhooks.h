/* Webhooks: a tenant's HTTP endpoints that receive its events. Each event
 * on a webhook's topics becomes one delivery job (queue "webhooks"),
 * enqueued by the same Redis call that publishes the event, and POSTed
 * with an HMAC-SHA256 signature; failed deliveries are retried with
 * backoff and end in the dead letters (GET /v1/jobs?state=dead). */
#ifndef TR_WEBHOOKS_H
#define TR_WEBHOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "jobs.h"
#include "module.h"

#define WEBHOOKS "webhooks"
/* The delivery log: one record per attempt (deliveries.c). */
#define WEBHOOK_DELIVERIES "webhook_deliveries"
/* The topic of the module's own events (system.webhook.disabled). */
#define WEBHOOKS_TOPIC "admin.webhooks"

#define WEBHOOKS_SECRET_MAX 64
#define WEBHOOKS_MSGID_MAX 40

/* The webhooks resource (/v1/webhooks): url, topics, description, active,
 * ordered. An ordered webhook's deliveries are jobs of one lane, named by
 * its id (jobs.h): one at a time, in event order, in every process. */
struct tr_resource;
extern const struct tr_resource webhooks_resource;

/* The delivery job (job thread). */
/* The event sink (tr_module.event_sink): the tenant's active webhooks on a
 * topic. */
int webhooks_subscribers(struct tr_db *db, const char *topic, char (*ids)[25], bool *ordered,
			 int max);
/* Does the webhook (stored or rendered) keep event order? */
bool webhooks_is_ordered(const bson_t *hook);
int webhooks_deliver(const struct tr_job *job, char *err, size_t errlen);

/* Signing (signing.c). A new secret, "whsec_<base64 of 24 random bytes>". */
void webhooks_secret_new(char out[WEBHOOKS_SECRET_MAX]);
/* The webhook-id of an event's deliveries to one webhook: "msg_<32 hex>",
 * the same for every attempt, retry and replay. */
void webhooks_message_id(const char *event_id, const char *hook_id, char out[WEBHOOKS_MSGID_MAX]);
/* "v1,<base64 HMAC-SHA256(key, "<msg_id>.<timestamp>.<body>")>" into out,
 * the key being the secret's base64 after "whsec_". 0, or -1 for a secret
 * that is not base64 or an out too short. */
int webhooks_sign(const char *secret, const char *msg_id, long timestamp, const char *body,
		  size_t blen, char *out, size_t olen);

/* Routes (deliveries.c): the delivery log, replays and secret rotation. */
struct tr_ctx;
void webhooks_rotate_secret(struct tr_ctx *c);
void webhooks_deliveries_list(struct tr_ctx *c);
void webhooks_delivery_replay(struct tr_ctx *c);
void webhooks_replay_since(struct tr_ctx *c);

/* The module's part of GET /v1/observability (observe.c): "webhooks":
 * {"attempts_read", "complete", "endpoints": [...]}. */
int webhooks_observe(struct tr_db *db, int64_t since_ms, bson_t *out);

/* Is this a literal address webhooks may not reach (loopback, private,
 * link-local, unspecified)? host is a numeric IPv4/IPv6 text. */
bool webhooks_address_blocked(const struct sockaddr *sa);

#endif
