/* The router: every module's routes flattened into one table at start,
 * matched by path segments. Built once by the main thread before serving;
 * read-only afterwards. */
#ifndef TR_ROUTER_H
#define TR_ROUTER_H

#include "module.h"

enum tr_match {
	TR_MATCH_OK,
	TR_MATCH_NOT_FOUND,  /* no route has this path: 404 */
	TR_MATCH_BAD_METHOD, /* the path exists with other methods: 405 */
	TR_MATCH_BAD_PATH,   /* dot segments, control bytes: 400 */
};

struct tr_route_match {
	int index; /* into tr_router_route() */
	const char *params[TR_MAX_PARAMS];
	int nparams;
	unsigned allowed; /* methods the path allows, for 405's Allow */
};

int tr_router_init(void);
void tr_router_free(void);

/* Matches method + path. Parameter values are copied into the arena. */
enum tr_match tr_router_match(enum tr_method method, const char *path, struct tr_arena *arena,
			      struct tr_route_match *m);

int tr_router_count(void);
const struct tr_route *tr_router_route(int index);
const char *tr_router_module_name(int index);

/* Does route r read query parameter name? Its declared `query`, with
 * limit, cursor and sort for TR_PAGED routes and the filters of a paged
 * route's resource. */
/* Calls fn for each query parameter r reads (its `query`; for TR_PAGED
 * its filters, limit, cursor and sort), until fn returns true. */
bool tr_router_query_each(const struct tr_route *r,
			  bool (*fn)(const char *name, size_t len, void *arg), void *arg);
/* Is query parameter name (len bytes) one the route requires (declared
 * with a trailing "!", "from! to!")? The handler checks it; this tells the
 * OpenAPI document. */
bool tr_router_query_required(const struct tr_route *r, const char *name, size_t len);
bool tr_router_query_known(const struct tr_route *r, const char *name);
/* The values a query parameter takes when its row declares them
 * ("status=open|done": "open|done", *olen bytes), or NULL. */
const char *tr_router_query_options(const struct tr_route *r, const char *name, size_t len,
				    size_t *olen);
/* " (this path takes: status, owner_id, limit, ...)" into buf. */
void tr_router_query_names(const struct tr_route *r, char *buf, size_t len);

/* "GET, POST" for a method mask into buf. */
void tr_router_allow_header(unsigned methods, char *buf, size_t len);

#endif
