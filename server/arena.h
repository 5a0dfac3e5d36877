/* A request arena: everything that lives exactly as long as one request is
 * allocated here and released at once by tr_arena_free. Not thread-safe: a
 * request's arena is used by one thread at a time (the loop thread, or the
 * worker while the request is handed to it). */
#ifndef TR_ARENA_H
#define TR_ARENA_H

#include <stddef.h>

struct tr_arena_chunk;

struct tr_arena {
	struct tr_arena_chunk *head;
};

void tr_arena_init(struct tr_arena *a);
void tr_arena_free(struct tr_arena *a);
/* Returns zeroed memory aligned for any type; NULL only when out of memory. */
void *tr_arena_alloc(struct tr_arena *a, size_t size);
char *tr_arena_strndup(struct tr_arena *a, const char *s, size_t len);
char *tr_arena_strdup(struct tr_arena *a, const char *s);

#endif
