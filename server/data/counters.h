/* A small map from names to int64 values, for registers' counters and
 * the postings of a change. Not thread-safe: one owner at a time. */
#ifndef TR_COUNTERS_H
#define TR_COUNTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct counters {
	char **names; /* in insertion order */
	int64_t *values;
	size_t n, cap;
	uint32_t *slots; /* 0: empty, else index + 1; nslots is a power of two */
	size_t nslots;
};

/* FNV-1a of a string. */
uint32_t tr_name_hash(const char *s);

void counters_free(struct counters *m);
/* The index of name, or -1. */
long counters_find(const struct counters *m, const char *name);
/* The value of name (0 when absent). */
int64_t counters_get(const struct counters *m, const char *name);
/* Sets name to value; false when out of memory. */
bool counters_set(struct counters *m, const char *name, int64_t value);
/* A copy into *to (initialised by the call); false when out of memory. */
bool counters_copy(const struct counters *from, struct counters *to);

#endif
