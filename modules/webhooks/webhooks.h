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

/* The webhooks resource (/v1/webhooks): url, topics, description, active. */
struct tr_resource;
extern const struct tr_resource webhooks_resource;

/* The delivery job (job thread). */
/* The event sink (tr_module.event_sink): the tenant's active webhooks on a
 * topic. */
int webhooks_subscribers(struct tr_db *db, const char *topic, char (*ids)[25], int max);
int webhooks_deliver(const struct tr_job *job, char *err, size_t errlen);

/* Is this a literal address webhooks may not reach (loopback, private,
 * link-local, unspecified)? host is a numeric IPv4/IPv6 text. */
bool webhooks_address_blocked(const struct sockaddr *sa);

#endif
