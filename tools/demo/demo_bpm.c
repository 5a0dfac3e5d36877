/* The demo's process: "fulfil a won deal" (approve -> make the order ->
 * wait for its payment -> ship it, with an SLA on the approval), defined
 * and started through the BPM's own routes (direct.h) for the latest won
 * deals, so their owners find the approvals in their inboxes and the
 * instances run on like any other once they approve. */
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "demo.h"
#include "direct.h"

#define DEMO_BPM_STARTS 3 /* the latest won deals get an instance */

const char *const crm_demo_bpm_colls[] = {
    "bpm_definitions", "bpm_instances", "bpm_tasks", "bpm_history",
    "bpm_incidents",   "bpm_waits",	NULL};

/* The definition, with the demo's first warehouse and product. */
static void
definition(const struct demo *d, bson_t *def)
{
	bson_t nodes, flows, n, sub, arr, line, money;
	const struct demo_product *p = &crm_demo_products[0];
	static const char *const flow[][3] = {
	    {"start", "approve", NULL},
	    {"approve", "ok", NULL},
	    {"ok", "order", "approved == true"},
	    {"ok", "rejected", NULL},
	    {"order", "paid", NULL},
	    {"paid", "ship", NULL},
	    {"ship", "done", NULL},
	};
	char k[16];
	const char *kk;

	BSON_APPEND_UTF8(def, "key", "fulfilment");
	BSON_APPEND_UTF8(def, "name", "Fulfil a won deal");
	BSON_APPEND_ARRAY_BEGIN(def, "nodes", &nodes);

	BSON_APPEND_DOCUMENT_BEGIN(&nodes, "0", &n);
	BSON_APPEND_UTF8(&n, "id", "approve");
	BSON_APPEND_UTF8(&n, "type", "user_task");
	BSON_APPEND_UTF8(&n, "name", "Approve the order");
	BSON_APPEND_UTF8(&n, "instructions",
			 "Check the deal's amount and the client's payment history, then approve "
			 "or reject the order.");
	BSON_APPEND_DOCUMENT_BEGIN(&n, "assignee", &sub);
	BSON_APPEND_UTF8(&sub, "field", "owner_id");
	bson_append_document_end(&n, &sub);
	BSON_APPEND_ARRAY_BEGIN(&n, "form", &arr);
	BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &sub);
	BSON_APPEND_UTF8(&sub, "key", "approved");
	BSON_APPEND_UTF8(&sub, "type", "bool");
	BSON_APPEND_BOOL(&sub, "required", true);
	bson_append_document_end(&arr, &sub);
	BSON_APPEND_DOCUMENT_BEGIN(&arr, "1", &sub);
	BSON_APPEND_UTF8(&sub, "key", "note");
	BSON_APPEND_UTF8(&sub, "type", "string");
	bson_append_document_end(&arr, &sub);
	bson_append_array_end(&n, &arr);
	BSON_APPEND_UTF8(&n, "due_in", "PT4H");
	BSON_APPEND_UTF8(&n, "escalate_after", "PT8H");
	BSON_APPEND_DOCUMENT_BEGIN(&n, "escalate_to", &sub);
	BSON_APPEND_UTF8(&sub, "role", "manager");
	bson_append_document_end(&n, &sub);
	bson_append_document_end(&nodes, &n);

	BSON_APPEND_DOCUMENT_BEGIN(&nodes, "1", &n);
	BSON_APPEND_UTF8(&n, "id", "ok");
	BSON_APPEND_UTF8(&n, "type", "exclusive");
	BSON_APPEND_UTF8(&n, "default", "rejected");
	bson_append_document_end(&nodes, &n);

	BSON_APPEND_DOCUMENT_BEGIN(&nodes, "2", &n);
	BSON_APPEND_UTF8(&n, "id", "order");
	BSON_APPEND_UTF8(&n, "type", "service");
	BSON_APPEND_UTF8(&n, "action", "erp.create_order_from_deal");
	BSON_APPEND_DOCUMENT_BEGIN(&n, "input", &sub);
	BSON_APPEND_UTF8(&sub, "warehouse_id", d->erp.warehouses[0]);
	BSON_APPEND_UTF8(&sub, "currency", "EUR");
	BSON_APPEND_ARRAY_BEGIN(&sub, "lines", &arr);
	BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &line);
	BSON_APPEND_UTF8(&line, "product_id", d->erp.products[0]);
	BSON_APPEND_INT64(&line, "quantity", 1);
	BSON_APPEND_DOCUMENT_BEGIN(&line, "unit_price", &money);
	BSON_APPEND_INT64(&money, "amount", p->price);
	BSON_APPEND_UTF8(&money, "currency", "EUR");
	bson_append_document_end(&line, &money);
	bson_append_document_end(&arr, &line);
	bson_append_array_end(&sub, &arr);
	bson_append_document_end(&n, &sub);
	bson_append_document_end(&nodes, &n);

	BSON_APPEND_DOCUMENT_BEGIN(&nodes, "3", &n);
	BSON_APPEND_UTF8(&n, "id", "paid");
	BSON_APPEND_UTF8(&n, "type", "wait_event");
	BSON_APPEND_UTF8(&n, "event", "erp.order.paid");
	BSON_APPEND_UTF8(&n, "correlate", "order_id");
	bson_append_document_end(&nodes, &n);

	BSON_APPEND_DOCUMENT_BEGIN(&nodes, "4", &n);
	BSON_APPEND_UTF8(&n, "id", "ship");
	BSON_APPEND_UTF8(&n, "type", "service");
	BSON_APPEND_UTF8(&n, "action", "erp.ship_order");
	bson_append_document_end(&nodes, &n);

	BSON_APPEND_DOCUMENT_BEGIN(&nodes, "5", &n);
	BSON_APPEND_UTF8(&n, "id", "done");
	BSON_APPEND_UTF8(&n, "type", "end");
	bson_append_document_end(&nodes, &n);
	BSON_APPEND_DOCUMENT_BEGIN(&nodes, "6", &n);
	BSON_APPEND_UTF8(&n, "id", "rejected");
	BSON_APPEND_UTF8(&n, "type", "end");
	bson_append_document_end(&nodes, &n);
	bson_append_array_end(def, &nodes);

	BSON_APPEND_ARRAY_BEGIN(def, "flows", &flows);
	for (size_t i = 0; i < sizeof(flow) / sizeof(flow[0]); i++) {
		bson_uint32_to_string((uint32_t)i, &kk, k, sizeof(k));
		BSON_APPEND_DOCUMENT_BEGIN(&flows, kk, &n);
		BSON_APPEND_UTF8(&n, "from", flow[i][0]);
		BSON_APPEND_UTF8(&n, "to", flow[i][1]);
		if (flow[i][2])
			BSON_APPEND_UTF8(&n, "when", flow[i][2]);
		bson_append_document_end(&flows, &n);
	}
	bson_append_array_end(def, &flows);
}

/* The latest won deals, newest first, into picks; how many. */
static int
latest_won(const struct demo *d, int picks[DEMO_BPM_STARTS])
{
	int n = 0;

	for (int k = 0; k < DEMO_BPM_STARTS; k++) {
		int best = -1;
		for (size_t i = 0; i < d->ndeals; i++) {
			bool taken = false;
			if (d->deals[i].status != D_WON)
				continue;
			for (int j = 0; j < n; j++)
				taken |= picks[j] == (int)i;
			if (!taken && (best < 0 || d->deals[i].closed > d->deals[best].closed))
				best = (int)i;
		}
		if (best < 0)
			break;
		picks[n++] = best;
	}
	return n;
}

int
crm_demo_make_bpm(struct demo *d, struct tr_db *db)
{
	bson_t def = BSON_INITIALIZER, answer;
	int picks[DEMO_BPM_STARTS];
	int status, n, rc = TR_OK;

	definition(d, &def);
	status = tr_direct(db, &d->tenant_id, &d->users[0], "POST /v1/bpm/definitions", NULL, &def,
			   NULL, false, &answer);
	bson_destroy(&def);
	if (status != 201) {
		char *json = bson_as_relaxed_extended_json(&answer, NULL);
		fprintf(stderr, "trellis: the demo's process was refused (%d): %s\n", status,
			json ? json : "");
		bson_free(json);
		bson_destroy(&answer);
		return TR_EINTERNAL;
	}
	bson_destroy(&answer);
	n = latest_won(d, picks);
	for (int i = 0; i < n && rc == TR_OK; i++) {
		const struct deal_plan *deal = &d->deals[picks[i]];
		bson_t body = BSON_INITIALIZER, subject;
		char hex[25];
		bson_oid_to_string(&deal->id, hex);
		BSON_APPEND_UTF8(&body, "definition_key", "fulfilment");
		BSON_APPEND_DOCUMENT_BEGIN(&body, "subject", &subject);
		BSON_APPEND_UTF8(&subject, "type", "crm.deal");
		BSON_APPEND_UTF8(&subject, "id", hex);
		bson_append_document_end(&body, &subject);
		status = tr_direct(db, &d->tenant_id, &d->users[deal->owner],
				   "POST /v1/bpm/instances", NULL, &body, NULL, false, &answer);
		if (status != 201) {
			char *json = bson_as_relaxed_extended_json(&answer, NULL);
			fprintf(stderr, "trellis: the demo's process did not start (%d): %s\n",
				status, json ? json : "");
			bson_free(json);
			rc = TR_EINTERNAL;
		}
		bson_destroy(&answer);
		bson_destroy(&body);
	}
	return rc;
}
