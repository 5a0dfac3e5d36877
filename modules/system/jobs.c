/* The tenant's view of the task queue: its dead jobs, and retrying one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "system.h"
#include "util.h"

/* GET /v1/jobs?state=dead: newest first. Only dead jobs are listed: the
 * others are moving and belong to /metrics. */
void
jobs_list(struct tr_ctx *c)
{
	const char *state = tr_query(c, "state");
	size_t len = 0;
	char *items, *body;

	if (!state || strcmp(state, "dead") != 0) {
		tr_problem_field(c, "state",
				 "must be \"dead\" (the jobs that ran out of attempts)");
		return;
	}
	items = tr_jobs_dead_json(c->req->principal.tenant_hex, &len);
	if (!items) {
		tr_problem_from_err(c, TR_EUNAVAILABLE);
		return;
	}
	body = tr_arena_alloc(c->req->arena, len + 40);
	if (!body) {
		free(items);
		tr_problem_from_err(c, TR_ENOMEM);
		return;
	}
	int n = snprintf(body, len + 40, "{\"items\":%s,\"next_cursor\":null}", items);
	free(items);
	tr_reply_text(c, 200, "application/json", body, (size_t)n);
}

/* POST /v1/jobs/{id}/retry: back on its queue with fresh attempts. */
void
jobs_retry(struct tr_ctx *c)
{
	char queue[64] = "";
	bson_t doc = BSON_INITIALIZER;
	int rc = tr_jobs_retry(c->req->principal.tenant_hex, tr_param(c, 0), queue, sizeof(queue));

	if (rc == TR_ENOTFOUND) {
		tr_problem(c, 404, "not-found", "no dead job with this id in your tenant");
	} else if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
	} else {
		BSON_APPEND_UTF8(&doc, "id", tr_param(c, 0));
		BSON_APPEND_UTF8(&doc, "queue", queue);
		BSON_APPEND_UTF8(&doc, "state", "queued");
		tr_reply_json(c, 202, &doc);
	}
	bson_destroy(&doc);
}
