#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK 4096

struct tr_arena_chunk {
	struct tr_arena_chunk *next;
	size_t used, cap;
	max_align_t data[];
};

void
tr_arena_init(struct tr_arena *a)
{
	a->head = NULL;
}

void
tr_arena_free(struct tr_arena *a)
{
	struct tr_arena_chunk *c = a->head;

	while (c) {
		struct tr_arena_chunk *next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
}

void *
tr_arena_alloc(struct tr_arena *a, size_t size)
{
	const size_t align = sizeof(max_align_t);
	struct tr_arena_chunk *c = a->head;
	void *p;

	if (size > SIZE_MAX / 2)
		return NULL; /* rounding and the chunk header would overflow */
	size = (size + align - 1) / align * align;
	if (!c || c->cap - c->used < size) {
		size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->used = 0;
		c->cap = cap;
		c->next = a->head;
		a->head = c;
	}
	p = (char *)c->data + c->used;
	c->used += size;
	memset(p, 0, size);
	return p;
}

char *
tr_arena_strndup(struct tr_arena *a, const char *s, size_t len)
{
	char *p = tr_arena_alloc(a, len + 1);

	if (!p)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *
tr_arena_strdup(struct tr_arena *a, const char *s)
{
	return tr_arena_strndup(a, s, strlen(s));
}
