/* A map from names to int64 counters (open addressing, names copied). */
#include "counters.h"

#include <stdlib.h>
#include <string.h>

uint32_t
tr_name_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

void
counters_free(struct counters *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->names[i]);
	free(m->names);
	free(m->values);
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

long
counters_find(const struct counters *m, const char *name)
{
	if (!m->nslots)
		return -1;
	for (size_t s = tr_name_hash(name) & (m->nslots - 1);; s = (s + 1) & (m->nslots - 1)) {
		if (!m->slots[s])
			return -1;
		if (strcmp(m->names[m->slots[s] - 1], name) == 0)
			return (long)m->slots[s] - 1;
	}
}

int64_t
counters_get(const struct counters *m, const char *name)
{
	long i = counters_find(m, name);
	return i < 0 ? 0 : m->values[i];
}

bool
counters_set(struct counters *m, const char *name, int64_t value)
{
	long i = counters_find(m, name);

	if (i >= 0) {
		m->values[i] = value;
		return true;
	}
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		char **names = realloc(m->names, cap * sizeof(*names));
		if (!names)
			return false;
		m->names = names;
		int64_t *values = realloc(m->values, cap * sizeof(*values));
		if (!values)
			return false;
		m->values = values;
		m->cap = cap;
	}
	if ((m->n + 1) * 2 > m->nslots) { /* rehash at half full */
		size_t nslots = m->nslots ? m->nslots * 2 : 32;
		uint32_t *slots = calloc(nslots, sizeof(*slots));
		if (!slots)
			return false;
		for (size_t k = 0; k < m->n; k++) {
			size_t s = tr_name_hash(m->names[k]) & (nslots - 1);
			while (slots[s])
				s = (s + 1) & (nslots - 1);
			slots[s] = (uint32_t)k + 1;
		}
		free(m->slots);
		m->slots = slots;
		m->nslots = nslots;
	}
	char *copy = strdup(name);
	if (!copy)
		return false;
	size_t s = tr_name_hash(name) & (m->nslots - 1);
	while (m->slots[s])
		s = (s + 1) & (m->nslots - 1);
	m->names[m->n] = copy;
	m->values[m->n] = value;
	m->slots[s] = (uint32_t)++m->n;
	return true;
}

bool
counters_copy(const struct counters *from, struct counters *to)
{
	memset(to, 0, sizeof(*to));
	for (size_t i = 0; i < from->n; i++)
		if (!counters_set(to, from->names[i], from->values[i])) {
			counters_free(to);
			return false;
		}
	return true;
}
