/* The audit log: who changed which user, role or API key, and when.
 * Written after each successful change; read by owners and admins. */
#include <stdio.h>
#include <stdlib.h>

#include "db.h"
#include "identity.h"
#include "log.h"

#define AUDIT "audit"

void
identity_audit(struct tr_ctx *c, const char *action, const char *target_type, const char *target_id)
{
	bson_t rec = BSON_INITIALIZER, actor, target, stored;
	int rc;

	BSON_APPEND_UTF8(&rec, "action", action);
	BSON_APPEND_DOCUMENT_BEGIN(&rec, "actor", &actor);
	BSON_APPEND_UTF8(&actor, "type", c->req->api_key ? "api_key" : "user");
	BSON_APPEND_UTF8(&actor, "id", c->req->principal.user_hex);
	bson_append_document_end(&rec, &actor);
	BSON_APPEND_DOCUMENT_BEGIN(&rec, "target", &target);
	BSON_APPEND_UTF8(&target, "type", target_type);
	BSON_APPEND_UTF8(&target, "id", target_id);
	bson_append_document_end(&rec, &target);
	BSON_APPEND_UTF8(&rec, "request_id", c->req->request_id);
	rc = tr_db_insert(c->db, AUDIT, &rec, &stored);
	if (rc != TR_OK)
		tr_error("audit: %s on %s %s not recorded: %s", action, target_type, target_id,
			 tr_strerror(rc));
	bson_destroy(&stored);
	bson_destroy(&rec);
}

void
audit_list(struct tr_ctx *c)
{
	bson_t filter = BSON_INITIALIZER;
	const char *action = tr_query(c, "action");

	if (action)
		BSON_APPEND_UTF8(&filter, "action", action);
	tr_list_reply(c, AUDIT, &filter, c->req->route->sorts);
	bson_destroy(&filter);
}
