#include "router.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "resource.h"

#define MAX_SEGMENTS 12

struct compiled_route {
	const struct tr_route *route;
	const char *module;
	int nsegs;
	char *segs[MAX_SEGMENTS]; /* "{id}" segments are parameters */
	bool is_param[MAX_SEGMENTS];
	bool slash; /* declared with a trailing slash ("/app/"): matches only with one */
};

static struct compiled_route *table;
static int ntable;

const char *
tr_method_name(enum tr_method m)
{
	switch (m) {
	case TR_GET:
		return "GET";
	case TR_POST:
		return "POST";
	case TR_PUT:
		return "PUT";
	case TR_PATCH:
		return "PATCH";
	case TR_DELETE:
		return "DELETE";
	case TR_HEAD:
		return "HEAD";
	case TR_OPTIONS:
		return "OPTIONS";
	}
	return "?";
}

/* The routes a resource declaration yields, in made[] (owned here). */
static struct tr_route *made;
static char **made_strings;
static int nmade, nmade_strings;

static char *
keep(char *s)
{
	if (s)
		made_strings[nmade_strings++] = s;
	return s;
}

static char *printed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
printed(const char *fmt, ...)
{
	char *out = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&out, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : keep(out);
}

static void
add_made(enum tr_method method, const char *path, tr_handler_fn handler, const char *permission,
	 unsigned flags, const char *summary, const struct tr_resource *e)
{
	made[nmade++] = (struct tr_route){.method = method,
					  .path = path,
					  .handler = handler,
					  .permission = permission,
					  .flags = flags,
					  .summary = summary,
					  .resource = e};
}

static int
make_resource_routes(const struct tr_resource *e)
{
	const char *list, *item, *plural, *article = strchr("aeiou", e->name[0]) ? "an" : "a";

	if (e->parent)
		list = printed("%s/{id}/%s", e->parent->path, e->path);
	else
		list = e->path;
	item = list ? printed("%s/%s", list, e->parent ? "{cid}" : "{id}") : NULL;
	if (!list || !item)
		return -1;
	plural = strrchr(list, '/') + 1;
	add_made(TR_GET, list, tr_res_list_route, e->read, TR_PAGED, printed("List %s", plural), e);
	if (!e->no_create)
		add_made(TR_POST, list, tr_res_create_route, e->write, TR_JSON_BODY | TR_IDEMPOTENT,
			 printed("Create %s %s", article, e->name), e);
	add_made(TR_GET, item, tr_res_get_route, e->read, 0, printed("One %s", e->name), e);
	if (!e->immutable)
		add_made(TR_PATCH, item, tr_res_update_route, e->write, TR_JSON_BODY,
			 printed("Change %s %s", article, e->name), e);
	if (!e->immutable && (e->deletable || e->retire))
		add_made(TR_DELETE, item, tr_res_delete_route, e->write, 0,
			 printed("%s %s %s", e->retire ? "Deactivate" : "Delete", article, e->name),
			 e);
	return 0;
}

static int
compile(struct compiled_route *cr, const struct tr_route *route, const char *module)
{
	char *copy = strdup(route->path);
	char *segs[MAX_SEGMENTS];
	int n = 0, nparams = 0;

	cr->route = route;
	cr->module = module;
	cr->slash = strlen(route->path) > 1 && route->path[strlen(route->path) - 1] == '/';
	if (!copy)
		return -1;
	/* split in place, then keep each segment as its own string */
	char *tok = strtok(copy, "/");
	for (; tok && n < MAX_SEGMENTS; tok = strtok(NULL, "/"))
		segs[n++] = tok;
	if (tok) {
		tr_error("route %s has more than %d segments", route->path, MAX_SEGMENTS);
		free(copy);
		return -1;
	}
	for (int s = 0; s < n; s++) {
		cr->segs[s] = strdup(segs[s]);
		if (!cr->segs[s]) {
			free(copy);
			return -1;
		}
		cr->nsegs = s + 1;
		cr->is_param[s] = segs[s][0] == '{';
		nparams += cr->is_param[s];
	}
	free(copy);
	if (nparams > TR_MAX_PARAMS) {
		tr_error("route %s has more than %d parameters", route->path, TR_MAX_PARAMS);
		return -1;
	}
	return 0;
}

int
tr_router_init(void)
{
	int total = 0, nres = 0;

	if (table)
		tr_router_free();
	for (size_t m = 0; m < tr_nmodules; m++) {
		total += (int)tr_modules[m]->nroutes;
		nres += (int)tr_modules[m]->nresources;
	}
	total += 5 * nres;
	table = calloc((size_t)total, sizeof(*table));
	made = calloc((size_t)(5 * nres + 1), sizeof(*made));
	made_strings = calloc((size_t)(7 * nres + 1), sizeof(*made_strings));
	if (!table || !made || !made_strings)
		return -1;
	for (size_t m = 0; m < tr_nmodules; m++) {
		const struct tr_module *mod = tr_modules[m];
		int first = nmade;
		for (size_t r = 0; r < mod->nroutes; r++)
			if (compile(&table[ntable++], &mod->routes[r], mod->name) != 0)
				return -1;
		for (size_t r = 0; r < mod->nresources; r++)
			if (make_resource_routes(mod->resources[r]) != 0)
				return -1;
		for (int r = first; r < nmade; r++)
			if (compile(&table[ntable++], &made[r], mod->name) != 0)
				return -1;
	}
	return 0;
}

void
tr_router_free(void)
{
	for (int i = 0; i < ntable; i++)
		for (int s = 0; s < table[i].nsegs; s++)
			free(table[i].segs[s]);
	free(table);
	table = NULL;
	ntable = 0;
	for (int i = 0; i < nmade_strings; i++)
		free(made_strings[i]);
	free(made_strings);
	free(made);
	made_strings = NULL;
	made = NULL;
	nmade = nmade_strings = 0;
}

enum tr_match
tr_router_match(enum tr_method method, const char *path, struct tr_arena *arena,
		struct tr_route_match *m)
{
	const char *segs[MAX_SEGMENTS + 1];
	size_t lens[MAX_SEGMENTS + 1];
	int n = 0;
	const char *p = path;
	bool path_known = false;

	memset(m, 0, sizeof(*m));
	m->index = -1;
	if (*p != '/')
		return TR_MATCH_BAD_PATH;
	for (const unsigned char *q = (const unsigned char *)path; *q; q++)
		if (*q < 0x21 || *q >= 0x7f || *q == '\\')
			return TR_MATCH_BAD_PATH;
	while (*p == '/' && p[1]) {
		const char *start = ++p;
		while (*p && *p != '/')
			p++;
		size_t len = (size_t)(p - start);
		if (len == 0)
			return TR_MATCH_NOT_FOUND; /* "//" */
		if ((len == 1 && start[0] == '.') ||
		    (len == 2 && start[0] == '.' && start[1] == '.'))
			return TR_MATCH_BAD_PATH;
		if (n == MAX_SEGMENTS + 1)
			return TR_MATCH_NOT_FOUND;
		segs[n] = start;
		lens[n++] = len;
	}
	/* a trailing slash matches only a route declared with one */
	bool slash = *p == '/' && n > 0;

	for (int i = 0; i < ntable; i++) {
		const struct compiled_route *cr = &table[i];
		int s;
		if (cr->nsegs != n || cr->slash != slash)
			continue;
		for (s = 0; s < n; s++) {
			if (cr->is_param[s])
				continue;
			if (strlen(cr->segs[s]) != lens[s] ||
			    memcmp(cr->segs[s], segs[s], lens[s]) != 0)
				break;
		}
		if (s < n)
			continue;
		path_known = true;
		m->allowed |= cr->route->method;
		if (cr->route->method != method || m->index >= 0)
			continue;
		m->index = i;
		for (s = 0; s < n; s++)
			if (cr->is_param[s])
				m->params[m->nparams++] = tr_arena_strndup(arena, segs[s], lens[s]);
	}
	if (m->index >= 0)
		return TR_MATCH_OK;
	return path_known ? TR_MATCH_BAD_METHOD : TR_MATCH_NOT_FOUND;
}

int
tr_router_count(void)
{
	return ntable;
}

const struct tr_route *
tr_router_route(int index)
{
	return table[index].route;
}

const char *
tr_router_module_name(int index)
{
	return table[index].module;
}

bool
tr_router_query_each(const struct tr_route *r, bool (*fn)(const char *name, size_t len, void *arg),
		     void *arg)
{
	static const char *const paging[] = {"limit", "cursor", "sort"};

	for (const char *p = r->query; p && *p;) {
		size_t len = strcspn(p, " "), name = strcspn(p, " =!");
		p += len;
		if (len && fn(p - len, name, arg))
			return true;
		p += *p == ' ';
	}
	if (!(r->flags & TR_PAGED))
		return false;
	if (r->resource)
		for (const struct tr_field *f = r->resource->fields; f->name; f++)
			if ((f->flags & TR_F_FILTER) && fn(f->name, strlen(f->name), arg))
				return true;
	for (size_t i = 0; i < sizeof(paging) / sizeof(paging[0]); i++)
		if (fn(paging[i], strlen(paging[i]), arg))
			return true;
	return false;
}

static bool
same_name(const char *name, size_t len, void *arg)
{
	const char *want = arg;
	return strlen(want) == len && memcmp(want, name, len) == 0;
}

bool
tr_router_query_required(const struct tr_route *r, const char *name, size_t len)
{
	for (const char *p = r->query; p && *p;) {
		size_t n = strcspn(p, " ");
		if (n == len + 1 && p[len] == '!' && memcmp(p, name, len) == 0)
			return true;
		p += n;
		p += *p == ' ';
	}
	return false;
}

const char *
tr_router_query_options(const struct tr_route *r, const char *name, size_t len, size_t *olen)
{
	for (const char *p = r->query; p && *p;) {
		size_t n = strcspn(p, " ");
		if (n > len + 1 && p[len] == '=' && memcmp(p, name, len) == 0) {
			*olen = n - len - 1;
			return p + len + 1;
		}
		p += n;
		p += *p == ' ';
	}
	return NULL;
}

bool
tr_router_query_known(const struct tr_route *r, const char *name)
{
	return tr_router_query_each(r, same_name, (void *)name);
}

struct names_buf {
	char *buf;
	size_t len, n;
};

static bool
append_name(const char *name, size_t len, void *arg)
{
	struct names_buf *b = arg;
	int w = snprintf(b->buf + b->n, b->len - b->n, "%s%.*s", b->n ? ", " : "", (int)len, name);
	if (w < 0 || (size_t)w >= b->len - b->n)
		return true; /* full */
	b->n += (size_t)w;
	return false;
}

void
tr_router_query_names(const struct tr_route *r, char *buf, size_t len)
{
	char names[400] = "";
	struct names_buf b = {names, sizeof(names), 0};

	tr_router_query_each(r, append_name, &b);
	if (b.n)
		snprintf(buf, len, " (this path takes: %s)", names);
	else
		snprintf(buf, len, " (this path takes none)");
}

void
tr_router_allow_header(unsigned methods, char *buf, size_t len)
{
	static const enum tr_method order[] = {TR_GET,	 TR_HEAD,   TR_POST,   TR_PUT,
					       TR_PATCH, TR_DELETE, TR_OPTIONS};
	size_t pos = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (!(methods & order[i]))
			continue;
		pos += (size_t)snprintf(buf + pos, len - pos, "%s%s", pos ? ", " : "",
					tr_method_name(order[i]));
		if (pos >= len)
			break;
	}
}
