/* The request arena (server/arena.c): what tr_arena_alloc promises its
 * callers - memory aligned for any type, zeroed, valid until the arena is
 * freed however many chunks it grows to - and the string copies built on it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "arena.h"

static int
arena_setup(void **state)
{
	static struct tr_arena arena;

	tr_arena_init(&arena);
	*state = &arena;
	return 0;
}

static int
arena_teardown(void **state)
{
	tr_arena_free(*state);
	return 0;
}

static void
test_init_leaves_the_arena_empty(void **state)
{
	struct tr_arena *arena = *state;

	assert_null(arena->head);
}

static void
test_every_allocation_is_aligned_for_any_type(void **state)
{
	struct tr_arena *arena = *state;
	static const size_t sizes[] = {1, 3, 7, 8, 13, 16, 17, 31, 100, 1, 2};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *p = tr_arena_alloc(arena, sizes[i]);
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % _Alignof(max_align_t), 0);
	}
}

static void
test_allocations_are_zeroed(void **state)
{
	struct tr_arena *arena = *state;

	for (int round = 0; round < 3; round++) {
		unsigned char *p = tr_arena_alloc(arena, 300);
		assert_non_null(p);
		for (size_t i = 0; i < 300; i++)
			assert_int_equal(p[i], 0);
	}
}

static void
test_allocations_do_not_overlap(void **state)
{
	struct tr_arena *arena = *state;
	unsigned char *a = tr_arena_alloc(arena, 5);
	unsigned char *b = tr_arena_alloc(arena, 5);

	assert_non_null(a);
	assert_non_null(b);
	memset(a, 0x11, 5);
	memset(b, 0x22, 5);
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(a[i], 0x11);
	assert_true(b >= a + 5 || a >= b + 5);
}

static void
test_allocation_larger_than_a_chunk_is_whole_and_zeroed(void **state)
{
	struct tr_arena *arena = *state;
	const size_t big = 100 * 1000;
	unsigned char *p = tr_arena_alloc(arena, big);

	assert_non_null(p);
	assert_int_equal((uintptr_t)p % _Alignof(max_align_t), 0);
	for (size_t i = 0; i < big; i++)
		assert_int_equal(p[i], 0);
	/* ASan reports a heap overflow here if the chunk is short. */
	memset(p, 0x5a, big);
}

static void
test_earlier_allocations_survive_the_arena_growing(void **state)
{
	struct tr_arena *arena = *state;
	char *first = tr_arena_strdup(arena, "first");

	assert_non_null(first);
	for (int i = 0; i < 50; i++)
		assert_non_null(tr_arena_alloc(arena, 1000));
	assert_non_null(tr_arena_alloc(arena, 20000));
	char *last = tr_arena_strdup(arena, "last");
	assert_non_null(last);
	assert_string_equal(first, "first");
	assert_string_equal(last, "last");
}

static void
test_size_that_overflows_when_rounded_up_returns_null(void **state)
{
	struct tr_arena *arena = *state;

	/* Rounding SIZE_MAX up to the alignment wraps; a non-NULL answer would be
	 * a block far smaller than asked for. */
	assert_null(tr_arena_alloc(arena, SIZE_MAX));
}

static void
test_strndup_copies_at_most_len_bytes_and_terminates(void **state)
{
	struct tr_arena *arena = *state;
	const char src[] = "tags/abc/rest";
	char *s = tr_arena_strndup(arena, src + 5, 3);

	assert_non_null(s);
	assert_string_equal(s, "abc");
	assert_ptr_not_equal(s, src + 5);
}

static void
test_strndup_of_zero_bytes_is_the_empty_string(void **state)
{
	struct tr_arena *arena = *state;
	char *s = tr_arena_strndup(arena, "xyz", 0);

	assert_non_null(s);
	assert_string_equal(s, "");
}

static void
test_strndup_copies_embedded_bytes_verbatim(void **state)
{
	struct tr_arena *arena = *state;
	const char src[] = {'a', '\0', 'b'};
	char *s = tr_arena_strndup(arena, src, sizeof(src));

	assert_non_null(s);
	assert_memory_equal(s, src, sizeof(src));
	assert_int_equal(s[3], '\0');
}

static void
test_strdup_copy_is_independent_of_the_source(void **state)
{
	struct tr_arena *arena = *state;
	char src[] = "original";
	char *s = tr_arena_strdup(arena, src);

	assert_non_null(s);
	src[0] = 'X';
	assert_string_equal(s, "original");
}

static void
test_free_empties_the_arena_and_it_can_be_reused(void **state)
{
	struct tr_arena *arena = *state;

	assert_non_null(tr_arena_alloc(arena, 64));
	assert_non_null(tr_arena_alloc(arena, 10000));
	tr_arena_free(arena);
	assert_null(arena->head);
	assert_string_equal(tr_arena_strdup(arena, "again"), "again");
}

#define T(f) cmocka_unit_test_setup_teardown(f, arena_setup, arena_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_init_leaves_the_arena_empty),
	    T(test_every_allocation_is_aligned_for_any_type),
	    T(test_allocations_are_zeroed),
	    T(test_allocations_do_not_overlap),
	    T(test_allocation_larger_than_a_chunk_is_whole_and_zeroed),
	    T(test_earlier_allocations_survive_the_arena_growing),
	    T(test_size_that_overflows_when_rounded_up_returns_null),
	    T(test_strndup_copies_at_most_len_bytes_and_terminates),
	    T(test_strndup_of_zero_bytes_is_the_empty_string),
	    T(test_strndup_copies_embedded_bytes_verbatim),
	    T(test_strdup_copy_is_independent_of_the_source),
	    T(test_free_empties_the_arena_and_it_can_be_reused),
	};

	return cmocka_run_group_tests_name("arena", tests, NULL, NULL);
}
