/* The router (server/net/router.c) over the real registry (server/registry.c):
 * which route a method and path reach, which parameters they carry, and
 * which paths are 404, 405 or refused outright as 400. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "resource.h"
#include "router.h"

#define ALL_METHODS (TR_GET | TR_HEAD | TR_POST | TR_PUT | TR_PATCH | TR_DELETE | TR_OPTIONS)

static struct tr_arena arena;

static int
router_group_setup(void **state)
{
	(void)state;
	return tr_router_init();
}

static int
router_group_teardown(void **state)
{
	(void)state;
	tr_router_free();
	return 0;
}

static int
arena_setup(void **state)
{
	(void)state;
	tr_arena_init(&arena);
	return 0;
}

static int
arena_teardown(void **state)
{
	(void)state;
	tr_arena_free(&arena);
	return 0;
}

static enum tr_match
match(enum tr_method method, const char *path, struct tr_route_match *m)
{
	return tr_router_match(method, path, &arena, m);
}

/* The path matches, and the route reached is method + pattern. */
static void
assert_reaches(enum tr_method method, const char *path, const char *pattern)
{
	struct tr_route_match m;

	assert_int_equal(match(method, path, &m), TR_MATCH_OK);
	assert_in_range(m.index, 0, tr_router_count() - 1);
	assert_int_equal(tr_router_route(m.index)->method, method);
	assert_string_equal(tr_router_route(m.index)->path, pattern);
}

/* The path gives want; anything but a match leaves no route index. */
static void
assert_match_result(enum tr_method method, const char *path, enum tr_match want)
{
	struct tr_route_match m;
	enum tr_match got = match(method, path, &m);

	if (got != want)
		fail_msg("%s %s: expected match result %d, got %d", tr_method_name(method), path,
			 want, got);
	if (want != TR_MATCH_OK)
		assert_int_equal(m.index, -1);
}

/* ---- the table ---- */

static void
test_init_flattens_every_registry_route(void **state)
{
	size_t total = 0;

	(void)state;
	/* each module's rows, and each resource's list and get, its change
	 * unless its records are immutable, its create unless records come
	 * from actions only, its delete (or deactivation) if any */
	for (size_t i = 0; i < tr_nmodules; i++) {
		total += tr_modules[i]->nroutes;
		for (size_t r = 0; r < tr_modules[i]->nresources; r++) {
			const struct tr_resource *e = tr_modules[i]->resources[r];
			total += 2 + !e->immutable + !e->no_create +
				 (!e->immutable && (e->deletable || e->retire));
		}
	}
	assert_int_equal(tr_router_count(), (int)total);
	assert_true(total > tr_modules[0]->nroutes); /* system and at least one more module */
}

static void
test_a_resource_declaration_yields_its_routes(void **state)
{
	struct tr_route_match m;
	struct tr_arena a;

	(void)state;
	tr_arena_init(&a);
	assert_int_equal(tr_router_match(TR_GET, "/v1/tags", &a, &m), TR_MATCH_OK);
	const struct tr_route *list = tr_router_route(m.index);
	assert_non_null(list->resource);
	assert_string_equal(list->resource->path, "/v1/tags");
	assert_true(list->flags & TR_PAGED);
	assert_string_equal(list->permission, list->resource->read);
	assert_int_equal(tr_router_match(TR_POST, "/v1/tags", &a, &m), TR_MATCH_OK);
	assert_true(tr_router_route(m.index)->flags & TR_IDEMPOTENT);
	assert_string_equal(tr_router_route(m.index)->permission, list->resource->write);
	assert_int_equal(tr_router_match(TR_PATCH, "/v1/crm/clients/abc/contacts/def", &a, &m),
			 TR_MATCH_OK);
	assert_non_null(tr_router_route(m.index)->resource->parent);
	assert_int_equal(m.nparams, 2);
	assert_true(tr_router_query_known(list, "name"));   /* a filter */
	assert_true(tr_router_query_known(list, "cursor")); /* paging */
	assert_false(tr_router_query_known(list, "color")); /* not a filter */
	tr_arena_free(&a);
}

static void
test_routes_keep_registry_order_and_module_name(void **state)
{
	(void)state;
	size_t li = tr_nmodules - 1;

	assert_string_equal(tr_router_route(0)->path, "/healthz");
	assert_string_equal(tr_router_module_name(0), "system");
	/* the system module's rows come first, in table order */
	int last_system = (int)tr_modules[0]->nroutes - 1;
	assert_ptr_equal(tr_router_route(last_system), &tr_modules[0]->routes[last_system]);
	assert_string_equal(tr_router_module_name(last_system), "system");
	/* then the routes of its resources, then the next module's */
	int made = 0;
	for (size_t r = 0; r < tr_modules[0]->nresources; r++)
		made += 3 + !tr_modules[0]->resources[r]->no_create +
			tr_modules[0]->resources[r]->deletable;
	assert_true(made > 0);
	assert_ptr_equal(tr_router_route(last_system + 1)->resource, tr_modules[0]->resources[0]);
	assert_string_equal(tr_router_module_name(last_system + made), "system");
	assert_string_equal(tr_router_module_name(last_system + made + 1), tr_modules[1]->name);
	/* the last row belongs to the last module with routes */
	while (li > 0 && tr_modules[li]->nroutes == 0 && tr_modules[li]->nresources == 0)
		li--;
	assert_string_equal(tr_router_module_name(tr_router_count() - 1), tr_modules[li]->name);
}

/* ---- matches ---- */

static void
test_public_paths_reach_their_routes(void **state)
{
	(void)state;
	assert_reaches(TR_GET, "/healthz", "/healthz");
	assert_reaches(TR_GET, "/readyz", "/readyz");
	assert_reaches(TR_GET, "/metrics", "/metrics");
	assert_reaches(TR_GET, "/v1/openapi.json", "/v1/openapi.json");
}

static void
test_same_path_different_methods_reach_different_routes(void **state)
{
	(void)state;
	assert_reaches(TR_GET, "/v1/tags", "/v1/tags");
	assert_reaches(TR_POST, "/v1/tags", "/v1/tags");
	assert_reaches(TR_GET, "/v1/tags/abc", "/v1/tags/{id}");
	assert_reaches(TR_PATCH, "/v1/tags/abc", "/v1/tags/{id}");
	assert_reaches(TR_DELETE, "/v1/tags/abc", "/v1/tags/{id}");
}

static void
test_match_reports_the_methods_the_path_allows(void **state)
{
	struct tr_route_match m;

	(void)state;
	assert_int_equal(match(TR_GET, "/v1/tags", &m), TR_MATCH_OK);
	assert_int_equal(m.allowed, TR_GET | TR_POST);
}

static void
test_parameter_segment_is_captured(void **state)
{
	struct tr_route_match m;

	(void)state;
	assert_int_equal(match(TR_GET, "/v1/tags/65a1b2c3d4e5f60718293a4b", &m), TR_MATCH_OK);
	assert_int_equal(m.nparams, 1);
	assert_string_equal(m.params[0], "65a1b2c3d4e5f60718293a4b");
}

static void
test_parameter_is_copied_out_of_the_path(void **state)
{
	char path[] = "/v1/tags/abc";
	struct tr_route_match m;

	(void)state;
	assert_int_equal(match(TR_GET, path, &m), TR_MATCH_OK);
	assert_int_equal(m.nparams, 1);
	assert_true(m.params[0] < path || m.params[0] >= path + sizeof(path));
	memset(path, 'z', sizeof(path) - 1);
	assert_string_equal(m.params[0], "abc");
}

static void
test_route_without_parameters_captures_none(void **state)
{
	struct tr_route_match m;

	(void)state;
	assert_int_equal(match(TR_GET, "/v1/tags", &m), TR_MATCH_OK);
	assert_int_equal(m.nparams, 0);
	assert_null(m.params[0]);
}

static void
test_parameter_may_hold_punctuation_other_than_slash(void **state)
{
	struct tr_route_match m;

	(void)state;
	assert_int_equal(match(TR_GET, "/v1/tags/a.b-c_d~e%20", &m), TR_MATCH_OK);
	assert_string_equal(m.params[0], "a.b-c_d~e%20");
}

/* A module's own row wins over a resource's {id} route on the same path
 * (module rows come first): GET /v1/erp/employees/head-of is the lookup,
 * not the employee "head-of"; other methods there are the {id} routes. */
static void
test_a_module_row_wins_over_a_resource_id_on_its_path(void **state)
{
	struct tr_route_match m;

	(void)state;
	assert_int_equal(match(TR_GET, "/v1/erp/employees/head-of", &m), TR_MATCH_OK);
	assert_null(tr_router_route(m.index)->resource);
	assert_int_equal(m.nparams, 0);
	assert_int_equal(match(TR_PATCH, "/v1/erp/employees/head-of", &m), TR_MATCH_OK);
	assert_non_null(tr_router_route(m.index)->resource);
	assert_int_equal(m.nparams, 1);
}

/* ---- 404 ---- */

static void
test_unknown_path_is_not_found(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/nope", TR_MATCH_NOT_FOUND);
	assert_match_result(TR_GET, "/v2/tags", TR_MATCH_NOT_FOUND);
}

static void
test_root_is_not_found(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/", TR_MATCH_NOT_FOUND);
}

static void
test_trailing_slash_is_not_found(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/healthz/", TR_MATCH_NOT_FOUND);
	assert_match_result(TR_GET, "/v1/tags/", TR_MATCH_NOT_FOUND);
	assert_match_result(TR_GET, "/v1/tags/abc/", TR_MATCH_NOT_FOUND);
}

static void
test_double_slash_is_not_found(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "//", TR_MATCH_NOT_FOUND);
	assert_match_result(TR_GET, "//healthz", TR_MATCH_NOT_FOUND);
	assert_match_result(TR_GET, "/v1//tags", TR_MATCH_NOT_FOUND);
}

static void
test_extra_segment_is_not_found(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/v1/tags/abc/more", TR_MATCH_NOT_FOUND);
}

static void
test_paths_are_case_sensitive(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/HEALTHZ", TR_MATCH_NOT_FOUND);
	assert_match_result(TR_GET, "/V1/tags", TR_MATCH_NOT_FOUND);
}

static void
test_prefix_of_a_segment_is_not_found(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/health", TR_MATCH_NOT_FOUND);
	assert_match_result(TR_GET, "/healthzz", TR_MATCH_NOT_FOUND);
}

static void
test_path_with_many_segments_is_not_found(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/a/b/c/d/e/f/g/h/i/j/k/l/m", TR_MATCH_NOT_FOUND);
	assert_match_result(TR_GET, "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t", TR_MATCH_NOT_FOUND);
}

/* ---- 405 ---- */

static void
test_wrong_method_on_item_path_is_bad_method_with_its_allowed_methods(void **state)
{
	struct tr_route_match m;

	(void)state;
	assert_int_equal(match(TR_POST, "/v1/tags/abc", &m), TR_MATCH_BAD_METHOD);
	assert_int_equal(m.allowed, TR_GET | TR_PATCH | TR_DELETE);
	assert_int_equal(m.index, -1);
	assert_int_equal(m.nparams, 0);
}

static void
test_wrong_method_on_collection_is_bad_method_with_get_and_post(void **state)
{
	struct tr_route_match m;

	(void)state;
	assert_int_equal(match(TR_DELETE, "/v1/tags", &m), TR_MATCH_BAD_METHOD);
	assert_int_equal(m.allowed, TR_GET | TR_POST);
}

static void
test_post_to_healthz_is_bad_method_allowing_get(void **state)
{
	struct tr_route_match m;

	(void)state;
	assert_int_equal(match(TR_POST, "/healthz", &m), TR_MATCH_BAD_METHOD);
	assert_int_equal(m.allowed, TR_GET);
}

static void
test_unknown_path_allows_no_methods(void **state)
{
	struct tr_route_match m;

	(void)state;
	assert_int_equal(match(TR_GET, "/nope", &m), TR_MATCH_NOT_FOUND);
	assert_int_equal(m.allowed, 0);
}

/* ---- Allow header ---- */

static void
test_allow_header_for_item_path_lists_get_patch_delete(void **state)
{
	char buf[128];

	(void)state;
	tr_router_allow_header(TR_GET | TR_PATCH | TR_DELETE, buf, sizeof(buf));
	assert_string_equal(buf, "GET, PATCH, DELETE");
}

static void
test_allow_header_from_a_405_match(void **state)
{
	struct tr_route_match m;
	char buf[128];

	(void)state;
	assert_int_equal(match(TR_PUT, "/v1/tags", &m), TR_MATCH_BAD_METHOD);
	tr_router_allow_header(m.allowed, buf, sizeof(buf));
	assert_string_equal(buf, "GET, POST");
}

static void
test_allow_header_uses_fixed_order_not_bit_order(void **state)
{
	char buf[128];

	(void)state;
	tr_router_allow_header(ALL_METHODS, buf, sizeof(buf));
	assert_string_equal(buf, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
	tr_router_allow_header(TR_OPTIONS | TR_HEAD, buf, sizeof(buf));
	assert_string_equal(buf, "HEAD, OPTIONS");
}

static void
test_allow_header_of_no_methods_is_empty(void **state)
{
	char buf[8] = "garbage";

	(void)state;
	tr_router_allow_header(0, buf, sizeof(buf));
	assert_string_equal(buf, "");
}

static void
test_allow_header_stays_within_a_small_buffer(void **state)
{
	char buf[16];

	(void)state;
	memset(buf, 'x', sizeof(buf));
	tr_router_allow_header(ALL_METHODS, buf, 10);
	assert_non_null(memchr(buf, '\0', 10));
	assert_int_equal(buf[10], 'x');
	assert_true(strncmp(buf, "GET, HEAD", 9) == 0);
}

/* ---- 400 ---- */

static void
test_dot_segment_is_bad_path(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/v1/tags/.", TR_MATCH_BAD_PATH);
	assert_match_result(TR_GET, "/./healthz", TR_MATCH_BAD_PATH);
}

static void
test_dot_dot_segment_is_bad_path(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/v1/tags/..", TR_MATCH_BAD_PATH);
	assert_match_result(TR_GET, "/v1/../healthz", TR_MATCH_BAD_PATH);
	assert_match_result(TR_GET, "/..", TR_MATCH_BAD_PATH);
}

static void
test_control_bytes_are_bad_path(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/v1/tags/a\x01", TR_MATCH_BAD_PATH);
	assert_match_result(TR_GET, "/v1/tags/a\tb", TR_MATCH_BAD_PATH);
	assert_match_result(TR_GET, "/healthz\r\n", TR_MATCH_BAD_PATH);
}

static void
test_space_is_bad_path(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/v1/tags/a b", TR_MATCH_BAD_PATH);
}

static void
test_delete_byte_is_bad_path(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/v1/tags/\x7f", TR_MATCH_BAD_PATH);
}

static void
test_non_ascii_bytes_are_bad_path(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/v1/tags/caf\xc3\xa9", TR_MATCH_BAD_PATH);
	assert_match_result(TR_GET, "/v1/tags/\xff", TR_MATCH_BAD_PATH);
	assert_match_result(TR_GET, "/v1/tags/\x80", TR_MATCH_BAD_PATH);
}

static void
test_backslash_is_bad_path(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "/v1\\tags", TR_MATCH_BAD_PATH);
	assert_match_result(TR_GET, "/v1/tags/..\\..", TR_MATCH_BAD_PATH);
}

static void
test_path_without_leading_slash_is_bad_path(void **state)
{
	(void)state;
	assert_match_result(TR_GET, "healthz", TR_MATCH_BAD_PATH);
	assert_match_result(TR_GET, "", TR_MATCH_BAD_PATH);
}

static void
test_bad_path_wins_over_unknown_method(void **state)
{
	struct tr_route_match m;

	(void)state;
	assert_int_equal(match(TR_PUT, "/v1/tags/..", &m), TR_MATCH_BAD_PATH);
	assert_int_equal(m.allowed, 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, arena_setup, arena_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_init_flattens_every_registry_route),
	    T(test_routes_keep_registry_order_and_module_name),
	    T(test_a_resource_declaration_yields_its_routes),
	    T(test_public_paths_reach_their_routes),
	    T(test_same_path_different_methods_reach_different_routes),
	    T(test_match_reports_the_methods_the_path_allows),
	    T(test_parameter_segment_is_captured),
	    T(test_parameter_is_copied_out_of_the_path),
	    T(test_route_without_parameters_captures_none),
	    T(test_parameter_may_hold_punctuation_other_than_slash),
	    T(test_a_module_row_wins_over_a_resource_id_on_its_path),
	    T(test_unknown_path_is_not_found),
	    T(test_root_is_not_found),
	    T(test_trailing_slash_is_not_found),
	    T(test_double_slash_is_not_found),
	    T(test_extra_segment_is_not_found),
	    T(test_paths_are_case_sensitive),
	    T(test_prefix_of_a_segment_is_not_found),
	    T(test_path_with_many_segments_is_not_found),
	    T(test_wrong_method_on_item_path_is_bad_method_with_its_allowed_methods),
	    T(test_wrong_method_on_collection_is_bad_method_with_get_and_post),
	    T(test_post_to_healthz_is_bad_method_allowing_get),
	    T(test_unknown_path_allows_no_methods),
	    T(test_allow_header_for_item_path_lists_get_patch_delete),
	    T(test_allow_header_from_a_405_match),
	    T(test_allow_header_uses_fixed_order_not_bit_order),
	    T(test_allow_header_of_no_methods_is_empty),
	    T(test_allow_header_stays_within_a_small_buffer),
	    T(test_dot_segment_is_bad_path),
	    T(test_dot_dot_segment_is_bad_path),
	    T(test_control_bytes_are_bad_path),
	    T(test_space_is_bad_path),
	    T(test_delete_byte_is_bad_path),
	    T(test_non_ascii_bytes_are_bad_path),
	    T(test_backslash_is_bad_path),
	    T(test_path_without_leading_slash_is_bad_path),
	    T(test_bad_path_wins_over_unknown_method),
	};

	return cmocka_run_group_tests_name("router", tests, router_group_setup,
					   router_group_teardown);
}
