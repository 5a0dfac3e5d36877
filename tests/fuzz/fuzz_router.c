/* The router (server/net/router.c) over the real registry, and the checks
 * handlers make of the path parameters it hands them. An input is a
 * method byte, then the request target: a path and, after a '?', the name
 * of a query parameter to ask the matched route about.
 *
 * Beyond not crashing: a match reaches a route of the asked method whose
 * parameters are non-empty single segments; anything else leaves no
 * route; tr_is_object_id says yes exactly to 24 hex digits. */
#include "fuzz.h"

#include <stdbool.h>

#include "arena.h"
#include "perm.h"
#include "router.h"
#include "util.h"

/* 0 is how the HTTP layer asks about a method it does not know. */
static const enum tr_method methods[] = {0,	   TR_GET,    TR_POST, TR_PUT,
					 TR_PATCH, TR_DELETE, TR_HEAD, TR_OPTIONS};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (tr_router_init() != 0)
		fuzz_fail("tr_router_init failed");
	return 0;
}

static bool
all_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
		      (s[i] >= 'A' && s[i] <= 'F')))
			return false;
	return true;
}

/* What handlers do with a parameter before it reaches the data layer. */
static void
check_param(const char *p)
{
	size_t n;
	long long version;

	if (!p || !*p || strchr(p, '/'))
		fuzz_fail("path parameter \"%s\" is not one segment", p ? p : "(null)");
	n = strlen(p);
	if (tr_is_object_id(p) != (n == 24 && all_hex(p, n)))
		fuzz_fail("tr_is_object_id(\"%s\") is wrong", p);
	(void)tr_role_name_valid(p);
	(void)tr_builtin_role(p);
	(void)tr_parse_int(p, 1, 1000000000, &version);
}

/* The matched route's answers about a query parameter name. */
static void
check_query(const struct tr_route *r, const char *name)
{
	char names[512];
	size_t olen = 0;
	const char *options;

	(void)tr_router_query_known(r, name);
	(void)tr_router_query_required(r, name, strlen(name));
	options = tr_router_query_options(r, name, strlen(name), &olen);
	if (options && strnlen(options, olen) != olen)
		fuzz_fail("query options of \"%s\" run past their string", name);
	tr_router_query_names(r, names, sizeof(names));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tr_arena arena;
	struct tr_route_match m;
	enum tr_method method;
	char *target, *query, allow[64];
	enum tr_match got;

	if (size < 1)
		return 0;
	method = methods[data[0] % (sizeof(methods) / sizeof(methods[0]))];
	target = fuzz_cstring(data + 1, size - 1);
	query = strchr(target, '?');
	if (query)
		*query++ = '\0';
	tr_arena_init(&arena);
	got = tr_router_match(method, target, &arena, &m);
	if (got == TR_MATCH_OK) {
		const struct tr_route *r;
		if (m.index < 0 || m.index >= tr_router_count())
			fuzz_fail("a match with route index %d", m.index);
		r = tr_router_route(m.index);
		if (r->method != method || !(m.allowed & method))
			fuzz_fail("%s %s reached a %s route", tr_method_name(method), target,
				  tr_method_name(r->method));
		if (m.nparams < 0 || m.nparams > TR_MAX_PARAMS)
			fuzz_fail("%d path parameters", m.nparams);
		for (int i = 0; i < m.nparams; i++)
			check_param(m.params[i]);
		(void)tr_router_module_name(m.index);
		if (query)
			check_query(r, query);
	} else if (m.index != -1) {
		fuzz_fail("match result %d with route index %d", got, m.index);
	}
	if (got == TR_MATCH_BAD_METHOD && !m.allowed)
		fuzz_fail("405 for %s without any allowed method", target);
	tr_router_allow_header(m.allowed, allow, sizeof(allow));
	tr_arena_free(&arena);
	free(target);
	return 0;
}
