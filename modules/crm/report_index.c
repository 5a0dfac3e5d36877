/* The hash index of the CRM reports (reports.h): 16-byte keys (an id and a
 * tag, or a group and a currency) to dense indexes and zeroed values, in
 * insertion order, and sorted listings of them. */
#include <stdlib.h>
#include <string.h>

#include "reports.h"

/* ---- a small hash index: 16-byte keys -> dense indexes and values ---- */

void
crm_report_rindex_init(struct rindex *ix, size_t vsize)
{
	memset(ix, 0, sizeof(*ix));
	ix->vsize = vsize;
}

void
crm_report_rindex_free(struct rindex *ix)
{
	free(ix->keys);
	free(ix->vals);
	free(ix->slots);
	memset(ix, 0, sizeof(*ix));
}

static uint64_t
key_hash(const uint8_t *key)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (int i = 0; i < KEY_LEN; i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	return h;
}

const uint8_t *
crm_report_rindex_key(const struct rindex *ix, long i)
{
	return ix->keys + (size_t)i * KEY_LEN;
}

void *
crm_report_rindex_val(const struct rindex *ix, long i)
{
	return ix->vals + (size_t)i * ix->vsize;
}

/* The index of key, or -1. */
long
crm_report_rindex_find(const struct rindex *ix, const uint8_t *key)
{
	if (!ix->nslots)
		return -1;
	for (size_t s = key_hash(key) & (ix->nslots - 1);; s = (s + 1) & (ix->nslots - 1)) {
		uint32_t v = ix->slots[s];
		if (v == 0)
			return -1;
		if (memcmp(crm_report_rindex_key(ix, (long)v - 1), key, KEY_LEN) == 0)
			return (long)v - 1;
	}
}

static void
slot_put(uint32_t *slots, size_t nslots, const uint8_t *key, uint32_t v)
{
	size_t s = key_hash(key) & (nslots - 1);

	while (slots[s])
		s = (s + 1) & (nslots - 1);
	slots[s] = v;
}

/* The index of key, added (with a zeroed value) when absent; -1 when out
 * of memory. */
long
crm_report_rindex_put(struct rindex *ix, const uint8_t *key)
{
	long i = crm_report_rindex_find(ix, key);

	if (i >= 0)
		return i;
	if (ix->n >= UINT32_MAX - 1)
		return -1;
	if (ix->n == ix->cap) {
		size_t cap = ix->cap ? ix->cap * 2 : 64;
		uint8_t *keys = realloc(ix->keys, cap * KEY_LEN);
		if (!keys)
			return -1;
		ix->keys = keys;
		uint8_t *vals = realloc(ix->vals, cap * (ix->vsize ? ix->vsize : 1));
		if (!vals)
			return -1;
		ix->vals = vals;
		ix->cap = cap;
	}
	if ((ix->n + 1) * 2 > ix->nslots) {
		size_t nslots = ix->nslots ? ix->nslots * 2 : 128;
		uint32_t *slots = calloc(nslots, sizeof(*slots));
		if (!slots)
			return -1;
		for (size_t k = 0; k < ix->n; k++)
			slot_put(slots, nslots, crm_report_rindex_key(ix, (long)k),
				 (uint32_t)k + 1);
		free(ix->slots);
		ix->slots = slots;
		ix->nslots = nslots;
	}
	i = (long)ix->n++;
	memcpy(ix->keys + (size_t)i * KEY_LEN, key, KEY_LEN);
	memset(crm_report_rindex_val(ix, i), 0, ix->vsize);
	slot_put(ix->slots, ix->nslots, key, (uint32_t)i + 1);
	return i;
}

/* A key of an ObjectId and a tag byte (the rest zero). */
void
crm_report_oid_key(uint8_t key[KEY_LEN], const bson_oid_t *oid, uint8_t tag)
{
	memset(key, 0, KEY_LEN);
	if (oid)
		memcpy(key, oid->bytes, 12);
	key[12] = tag;
}

int
crm_report_key_order(const void *a, const void *b)
{
	return memcmp(((const struct ranked *)a)->key, ((const struct ranked *)b)->key, KEY_LEN);
}

/* malloc'd listing of the ix->n keys sorted by cmp (on struct ranked);
 * NULL when out of memory. */
struct ranked *
crm_report_rindex_sorted(const struct rindex *ix, int (*cmp)(const void *, const void *),
			 bool weighted)
{
	struct ranked *r = malloc((ix->n ? ix->n : 1) * sizeof(*r));

	if (!r)
		return NULL;
	for (size_t i = 0; i < ix->n; i++) {
		r[i].key = crm_report_rindex_key(ix, (long)i);
		r[i].index = (long)i;
		r[i].weight = weighted ? *(const int64_t *)crm_report_rindex_val(ix, (long)i) : 0;
	}
	qsort(r, ix->n, sizeof(*r), cmp);
	return r;
}
