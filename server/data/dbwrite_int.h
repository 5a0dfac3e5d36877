/* What the files of the data layer's writes share (dbwrite.c: claims,
 * inserts and changes; dbwrite_effects.c: effects on registers and
 * settling what dead writers left; dbwrite_import.c: imports, purges and
 * once-only marks). Not for modules; see dbwrite.c for the design. */
#ifndef TR_DBWRITE_INT_H
#define TR_DBWRITE_INT_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "dbpool.h"

#define CLAIMS "_claims"
#define MAX_POSTINGS 512 /* postings one change may make */

enum change { CH_INSERT, CH_UPDATE, CH_DELETE };

const struct tr_effects *tr_dbw_effects_of(const char *coll);
/* The effects of a change as an array of {k: register key, d: {counter:
 * delta}} (register keys hold dots, which field names may not), deltas of
 * the same counter summed and zeros left out; *n = how many registers. */
int tr_dbw_compute_fx(const char *coll, const bson_t *before, const bson_t *after, bson_t *fx,
		      int *n);
/* Appends null to doc for each nullable field of coll's resource that
 * has (the record as given or stored) leaves out: a record shows every
 * field its schema has, null while unset, wherever it is rendered.
 * Inserts store the nulls; reads add them to records stored before. */
void tr_dbw_append_nulls(const char *coll, const bson_t *has, bson_t *doc);
/* doc, or (when it misses a nullable field) a copy of it with the nulls
 * in tmp, which the caller destroys when *copied. */
const bson_t *tr_dbw_with_nulls(const char *coll, const bson_t *doc, bson_t *tmp, bool *copied);
/* Posts the effects of a claim's change, one movement per register, each
 * named by the claim so that posting again (settling) finds the first. */
int tr_dbw_apply_fx(struct tr_db *db, const char *claim_id, const bson_t *fx);
/* The record as a change leaves it: before with set's fields replaced,
 * unset's removed, and the layer's fields moved on. */
void tr_dbw_merge(const bson_t *before, const bson_t *set, const bson_t *unset, long long version,
		  int64_t now, bson_t *after);
/* The record as stored now and its version; TR_ENOTFOUND. */
int tr_dbw_current(struct tr_db *db, const char *coll, const char *id, bson_t *doc,
		   long long *version);
/* The generation of the newest claim on key and whether it is still
 * live; *gen = -1 when there is none. */
int tr_dbw_newest_claim(struct tr_db *db, const char *key, int *gen, bool *live);
/* qsort order of register names (postings sorted by register). */
int tr_dbw_posting_name_order(const void *a, const void *b);

#endif
