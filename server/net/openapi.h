/* The OpenAPI 3.1 document of the API, generated from the route table and
 * the resource declarations (resource.h), so it describes what is served:
 * parameters, bodies, responses and problems come from the same rows the
 * router checks requests against. */
#ifndef TR_OPENAPI_H
#define TR_OPENAPI_H

#include <bson/bson.h>

/* Builds the document into doc (initialised by the caller). Needs the
 * router (tr_router_init). */
void tr_openapi_build(bson_t *doc);

#endif
