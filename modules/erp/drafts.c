/* Purchase orders drafted by planning (planning.c): approved, a draft
 * becomes an open purchase order like one made by hand (received by POST
 * .../receive); cancelled, it no longer counts as on order, and the next
 * planning run may draft its shortfall again. Until then a draft changes
 * by PATCH like an open purchase order (purchasing.c) and is not received.
 * Purchase orders made by hand start open and never pass through here.
 *
 * Each move is one version-checked write from "draft": of an approval and
 * a cancellation at once, in any processes, one wins and the other answers
 * 409 with the status it found. */
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "erp.h"

#define ATTEMPTS 20

static void
move_draft(struct tr_ctx *c, const char *to, const char *event)
{
	bson_t po = BSON_INITIALIZER, set = BSON_INITIALIZER, stored = BSON_INITIALIZER;
	bson_oid_t oid;
	char id[25];
	int rc = TR_EBUSY;

	for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
		bson_destroy(&po); /* tr_res_load initialises it, found or not */
		if (!tr_res_load(c, &erp_purchase_orders, tr_param(c, 0), &po))
			goto out;
		const char *status = tr_doc_str(&po, "status");
		if (!status || strcmp(status, "draft") != 0) {
			char *m = tr_arena_alloc(c->req->arena, 128);
			if (m)
				snprintf(m, 128,
					 "the purchase order is %s: only a draft is approved or "
					 "cancelled",
					 status ? status : "without a status");
			tr_problem(c, 409, "conflict", m ? m : "the purchase order is not a draft");
			goto out;
		}
		tr_doc_oid(&po, "_id", &oid);
		bson_oid_to_string(&oid, id);
		bson_reinit(&set);
		BSON_APPEND_UTF8(&set, "status", to);
		bson_destroy(&stored);
		rc = tr_db_update(c->db, ERP_PURCHASE_ORDERS, id, tr_doc_int(&po, "version", 0),
				  &set, NULL, &stored);
		if (rc == TR_OK) {
			tr_res_emit(c, &erp_purchase_orders, event, &stored);
			tr_reply_resource(c, 200, &stored);
			goto out;
		}
		if (rc != TR_EVERSION)
			break;
	}
	tr_problem_from_err(c, rc == TR_EVERSION ? TR_EBUSY : rc);
out:
	bson_destroy(&po);
	bson_destroy(&set);
	bson_destroy(&stored);
}

void
erp_po_approve(struct tr_ctx *c)
{
	move_draft(c, "open", "erp.purchase_order.approved");
}

void
erp_po_cancel(struct tr_ctx *c)
{
	move_draft(c, "cancelled", "erp.purchase_order.cancelled");
}
