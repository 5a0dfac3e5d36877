/* Domain events: recorded with the write, published to the tenant's Redis
 * Stream (which gives the event id) and fanned out to every process over
 * Redis pub/sub.
 *
 * A handler that changes a record calls tr_emit() after the write, on its
 * worker thread. The event is stored in the outbox collection before the
 * response is sent; once the response is written, the loop thread
 * publishes it and deletes the outbox record. If the process dies in
 * between, the relay (every process runs one) publishes records older than
 * outbox_grace_ms. Publishing is idempotent per outbox record, so a record
 * published twice appears once in the stream. */
#ifndef TR_EVENTS_H
#define TR_EVENTS_H

#include <bson/bson.h>
#include <stdbool.h>

#include "config.h"
#include "module.h"

/* libuv's loop (uv_loop_t), named here without <uv.h> so that modules
 * including this header do not see libuv: only main.c passes one. */
struct uv_loop_s;

/* Records an event of the record `stored` (as the data layer returned it;
 * data is the record rendered as GET renders it, owner its "owner_id").
 * For a deleted record pass the last stored state, or NULL: data is then
 * {"id": entity_id}. topic like "crm.leads", event like "crm.lead.created".
 * Worker thread. Returns TR_OK; the request does not fail when the outbox
 * is unavailable (the event is then published without it). */
int tr_emit(struct tr_ctx *c, const char *topic, const char *event, const char *entity_id,
	    const bson_t *stored);

/* Who an event is for under ":own" (tr_event_visible): its record's
 * owner, or for a record several people may act on (a step offered to the
 * holders of a role) up to TR_AUDIENCE_MAX user ids, comma-separated.
 * TR_OWNERS_LEN holds the longest list and its NUL. */
#define TR_AUDIENCE_MAX 16
#define TR_OWNERS_LEN (TR_AUDIENCE_MAX * 25)

/* A list of owners (above) of len bytes into out: false, out "", when it
 * is not one (empty, over TR_AUDIENCE_MAX, not ids). */
bool tr_owners_parse(const char *s, size_t len, char out[TR_OWNERS_LEN]);

/* Is user_hex among owners? */
bool tr_owners_has(const char *owners, const char *user_hex);

/* The same with the resource already rendered (data) and who it is for
 * (owners, above; NULL for no one). */
int tr_emit_data(struct tr_ctx *c, const char *topic, const char *event, const char *entity_id,
		 const char *owner, const bson_t *data);

/* Subscribers of the event sink one event may go to (a tenant may have this
 * many webhooks). */
#define TR_MAX_SUBSCRIBERS 10

/* For background work (job threads), after the change it tells of:
 * publishes the event at once, or when Redis is away records it in the
 * outbox for the relay. */
int tr_emit_background(const char *tenant_hex, const char *topic, const char *event,
		       const char *entity_id, const char *owner, const bson_t *data);

/* An event waiting to be published (an outbox record). */
struct tr_event_out {
	char tenant[25];
	char outbox_id[25]; /* "" when the outbox write failed */
	char topic[48];
	char event[64];		   /* "crm.deal.won" */
	char owner[TR_OWNERS_LEN]; /* owners, above */
	char *tail;		   /* the event frame after its id: "\"topic\":...}" */
	size_t tail_len;
	char subscribers[TR_MAX_SUBSCRIBERS][25]; /* of the event sink, who get the event */
	bool ordered[TR_MAX_SUBSCRIBERS];	  /* subscribers[i]'s deliveries keep event order */
	int nsubscribers;
	bool listen; /* the event listener (module.h) takes it */
	/* while publishing (events.c): the step under way, the queue steps
	 * not answered yet and whether one failed, the stream id */
	int stage, pending;
	bool failed;
	char id[48];
	struct tr_event_out *next;
};

/* Loop thread. Registers the publish scripts; before tr_redis_init. */
void tr_events_register(const struct tr_config *cfg);
/* Loop thread, after tr_redis_init: subscribes to the event and revocation
 * channels and starts the relay timer. */
void tr_events_start(struct uv_loop_s *loop);
void tr_events_stop(void);
/* Loop thread: publishes a finished request's events (takes the list). */
void tr_events_publish(struct tr_event_out *list);
/* Any thread: frees events recorded by work that has no response to
 * publish them after (takes the list). Each stays in the outbox, where the
 * relay of a running server publishes it as it does a crashed writer's. */
void tr_events_leave(struct tr_event_out *list);

/* Job threads and commands (never the loop thread: it waits for Redis):
 * publishes events recorded by work that has no response (a direct call,
 * direct.h) now, as the relay would later, deletes their outbox records
 * and frees the list. One that cannot be published stays in the outbox
 * for the relay. */
void tr_events_flush(struct tr_event_out *list);

/* Event ids are Redis Stream ids "<ms>-<seq>". */
struct tr_evid {
	unsigned long long ms, seq;
};
bool tr_evid_parse(const char *s, size_t len, struct tr_evid *out);
int tr_evid_cmp(const struct tr_evid *a, const struct tr_evid *b);

/* May a reader see an event of topic (tr_topic_find's index) whose
 * owners (above; "" for none) are owner? topics has a bit per topic the reader
 * takes; own_only a bit per topic it may read only as ":own"
 * (tr_topic_may_read), where only the events whose owners include user_hex
 * pass. The one rule of WebSocket delivery and the changes feed. */
bool tr_event_visible(int topic, const char *owner, unsigned topics, unsigned own_only,
		      const char *user_hex);

/* The changes feed (CONTRACT.md "Partner gateway"): a reader's page of
 * its tenant's stream, the same events with the same ids, in the same
 * order, that WebSocket delivery gives it. */
struct tr_changes_query {
	const char *tenant_hex;
	const char *user_hex; /* the reader, for topics read as ":own" */
	bool has_since;	      /* without: from the oldest event held */
	struct tr_evid since; /* the events after this one */
	unsigned topics;      /* as tr_event_visible takes them */
	unsigned own_only;
	int limit; /* items at most */
};

/* Appends the page's items to `items` (an array being built, from key
 * "0"): {"id", "topic", "event", "entity_id", "actor", "ts", "data"}, the
 * event frame's members, with data null for a deletion (an event named
 * "*.deleted": its frame carries the record's last state). next (at least
 * 48 bytes) is the id to pass as since for the rest; it is past the
 * events the reader may not see as well. has_more is true when the stream
 * holds more for the reader, or when the page stopped after examining
 * changes_scan entries (config.h) without knowing. Worker thread (waits
 * for Redis). TR_OK; TR_EGONE when since is older than retention (the
 * stream was trimmed past it) or is later than any event of the tenant:
 * the reader must resync; TR_EUNAVAILABLE without Redis. */
int tr_changes_read(const struct tr_changes_query *q, bson_t *items, char *next, bool *has_more);

/* What a tenant's event stream holds now (the retention the changes feed,
 * WebSocket resume and webhook replays reach back through), for tenant
 * admins (GET /v1/observability). Ids are "<ms>-<seq>", "" when none. */
struct tr_stream_stats {
	char newest[48];  /* the last id ever generated ("" before any) */
	char oldest[48];  /* the oldest entry still held ("" when none) */
	long long length; /* entries held */
	long long added;  /* entries ever added; -1 when Redis does not say */
	bool trimmed;	  /* retention has removed entries */
	int max_len;	  /* events_max_len */
	int max_age_s;	  /* events_max_age */
};

/* Worker threads (waits for Redis): TR_OK or TR_EUNAVAILABLE. */
int tr_events_stream_stats(const char *tenant_hex, struct tr_stream_stats *out);

/* Published events and deliveries, for /metrics. */
void tr_events_metrics(unsigned long long *published, unsigned long long *relayed);

/* Worker threads: the tenant's events after the event id `after`
 * (exclusive), oldest first, at most max of them: visit gets each one's
 * id, topic and JSON ({"id", "topic", "event", ..., "data"}: what a
 * webhook receives) and returns non-zero to stop. The id of the last
 * entry read goes to last ("" when none). TR_OK; TR_ENOTFOUND when
 * `after` is older than the first event the stream still keeps (or it
 * keeps none): events after it may be gone; TR_EINVALID for a malformed
 * id; TR_EUNAVAILABLE when Redis is down. */
int tr_events_after(const char *tenant_hex, const char *after, int max,
		    int (*visit)(void *arg, const char *id, const char *topic, const char *json,
				 size_t len),
		    void *arg, char last[64]);

#endif
