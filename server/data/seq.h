/* List buckets. FerretDB v1.24 never pushes a sort or a limit down when a
 * query has a filter, so "the newest 50 leads of this tenant" costs as much
 * as reading all of them, unless the page is chosen by a pushed-down
 * equality. Every tenant record therefore gets, when it is inserted,
 *
 *   _b = "<tenant>:<n>"
 *
 * the list bucket it belongs to. A tenant's buckets of a collection are
 * numbered 0, 1, 2, ... in the order they were opened, and each holds the
 * records created while it was the newest: a list in created_at order
 * reads bucket after bucket by equality on _b, newest (or oldest) first,
 * and orders each bucket by created_at and _id (dblist.c).
 *
 * Buckets are opened in the database, not in a counter: a marker
 * {_id: "<tenant>/<coll>/<n>"} in _buckets, inserted (a unique key) before
 * any record of bucket n is written, so markers run from 0 without a gap and
 * the newest bucket is found by probing. Each process keeps the bucket it
 * writes to and how many records it put there; it opens the next one after
 * TR_SEQ_BUCKET of its own, and moves on as soon as it sees that another
 * process opened a newer one (it looks at most every few milliseconds). A
 * bucket so holds about TR_SEQ_BUCKET records times the processes writing
 * to it at once, and across processes the order of records created within
 * those milliseconds of each other may differ from their created_at.
 *
 * Worker threads only (MongoDB). */
#ifndef TR_SEQ_H
#define TR_SEQ_H

#include <bson/bson.h>
#include <stdint.h>

#include "module.h"

#define TR_SEQ_BUCKET 64

/* The bucket a new record of coll goes to (the handle's tenant). */
int tr_seq_bucket_for_insert(struct tr_db *db, const char *coll, int64_t *bucket);

/* Opens n new buckets of coll at once for records imported together; the
 * first one's number goes to *first (the rest follow it). */
int tr_seq_open_buckets(struct tr_db *db, const char *coll, int64_t n, int64_t *first);

/* The newest bucket of coll (-1: none yet). */
int tr_seq_newest(struct tr_db *db, const char *coll, int64_t *newest);

/* Appends _b for bucket to doc. */
void tr_seq_stamp(const struct tr_db *db, bson_t *doc, int64_t bucket);

/* The _b value of bucket for the handle's tenant, into out (64 bytes). */
void tr_seq_bucket(const struct tr_db *db, int64_t bucket, char *out);

/* The bucket number of a stored record (-1: it has none). */
int64_t tr_seq_of(const bson_t *doc);

#endif
