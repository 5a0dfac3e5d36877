/* Rendering responses (any thread). The helpers handlers call are declared
 * in module.h. */
#ifndef TR_RESPONSE_H
#define TR_RESPONSE_H

#include "module.h"

/* The body bytes at out + pre (malloc'd; free()); *len excludes the
 * headroom. */
char *tr_resp_render(const struct tr_resp *r, size_t pre, size_t *len);
const char *tr_resp_content_type(const struct tr_resp *r);

#endif
