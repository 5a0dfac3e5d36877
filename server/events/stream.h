/* A tenant's event stream as Redis holds it (t:<tenant>:events, written by
 * events.c): the one reading of its entries and of its bounds, shared by
 * the platform's two readers - WebSocket catch-up (ws_hub.c, ws_protocol.c,
 * loop thread) and the changes feed (changes.c, worker threads). Platform
 * only: it names hiredis types, so modules reach the stream through
 * events.h (tr_changes_read). Pure functions; any thread. */
#ifndef TR_STREAM_H
#define TR_STREAM_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "events.h"

/* KEYS[1] the tenant's stream. Returns {last generated id, oldest id still
 * held ("" when none), entries ever added (-1 when Redis does not say),
 * entries held}; {"0-0", "", 0, 0} when the stream does not exist. */
extern const char tr_stream_bounds_lua[];

/* What the bounds script answered. trimmed: retention removed entries
 * (more were ever added than are held; unknown counts as trimmed). */
struct tr_stream_bounds {
	struct tr_evid last, first;
	bool held; /* the stream holds entries; first is the oldest */
	bool trimmed;
	long long added;  /* entries ever added; -1 when Redis does not say */
	long long length; /* entries held now */
};

/* Parses the bounds script's reply; false when it is not one. */
bool tr_stream_bounds_parse(const redisReply *r, struct tr_stream_bounds *out);

/* One entry of XRANGE: [id, [field, value, ...]] with t (topic), o (owner)
 * and b (the event frame after its id). id_str and tail point into the
 * reply: valid while it lives. */
struct tr_stream_entry {
	struct tr_evid id;
	const char *id_str;
	size_t id_len;
	int topic;		   /* tr_topic_find's index */
	char owner[TR_OWNERS_LEN]; /* events.h; "" when the record has none */
	const char *tail;
	size_t tail_len;
};

/* Parses one XRANGE entry; false for one not written by events.c or of a
 * topic no module declares (readers skip it: id and id_str are set, id_len
 * non-zero, whenever the entry's id could be read). */
bool tr_stream_entry_parse(const redisReply *e, struct tr_stream_entry *out);

#endif
