#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define MAX_SEGMENTS 12

struct compiled_route {
	const struct tr_route *route;
	const char *module;
	int nsegs;
	char *segs[MAX_SEGMENTS]; /* "{id}" segments are parameters */
	bool is_param[MAX_SEGMENTS];
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

int
tr_router_init(void)
{
	int total = 0, i = 0;

	if (table)
		tr_router_free();
	for (size_t m = 0; m < tr_nmodules; m++)
		total += (int)tr_modules[m]->nroutes;
	table = calloc((size_t)total, sizeof(*table));
	if (!table)
		return -1;
	for (size_t m = 0; m < tr_nmodules; m++) {
		for (size_t r = 0; r < tr_modules[m]->nroutes; r++, i++) {
			struct compiled_route *cr = &table[i];
			char *copy = strdup(tr_modules[m]->routes[r].path);
			char *segs[MAX_SEGMENTS];
			int n, nparams = 0;

			cr->route = &tr_modules[m]->routes[r];
			cr->module = tr_modules[m]->name;
			ntable = i + 1; /* so tr_router_free releases what is built */
			if (!copy)
				return -1;
			/* split in place, then keep each segment as its own string */
			n = 0;
			char *tok = strtok(copy, "/");
			for (; tok && n < MAX_SEGMENTS; tok = strtok(NULL, "/"))
				segs[n++] = tok;
			if (tok) {
				tr_error("route %s has more than %d segments", cr->route->path,
					 MAX_SEGMENTS);
				free(copy);
				return -1;
			}
			cr->nsegs = n;
			for (int s = 0; s < n; s++) {
				cr->segs[s] = strdup(segs[s]);
				if (!cr->segs[s]) {
					free(copy);
					return -1;
				}
				cr->is_param[s] = segs[s][0] == '{';
				nparams += cr->is_param[s];
			}
			free(copy);
			if (nparams > TR_MAX_PARAMS) {
				tr_error("route %s has more than %d parameters", cr->route->path,
					 TR_MAX_PARAMS);
				return -1;
			}
		}
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
	if (*p == '/' && n > 0)
		return TR_MATCH_NOT_FOUND; /* trailing slash */

	for (int i = 0; i < ntable; i++) {
		const struct compiled_route *cr = &table[i];
		int s;
		if (cr->nsegs != n)
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
