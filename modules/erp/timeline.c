/* The ERP's part of a client's timeline (timeline.h): the client's sales
 * orders and their invoices, each kind only for a caller who may read its
 * list, and as much of it as that list would show.
 *
 * An order shows {id, status, total, deal_id, created_at}, at its
 * creation, to a caller holding erp.orders.read; ":own" limits it to the
 * orders the caller owns, as the orders list does. An invoice shows {id,
 * number, order_id, total, status, issued_at, due_at}, at its issue, to a
 * caller holding erp.invoices.read. Invoices have no owner of their own;
 * with ":own" the caller sees the invoices of the orders they own.
 *
 * Invoices name their order, not its client, so they are found through the
 * client's orders: one read per invoiced order. An invoice is never older
 * than its order, so orders made after the page's position are passed
 * over. */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "erp.h"
#include "json.h"
#include "perm.h"
#include "timeline.h"

/* from.field as to.as, when it is there and not null */
static void
copy_field(const bson_t *from, const char *field, const char *as, bson_t *to)
{
	bson_iter_t it;

	if (bson_iter_init_find(&it, from, field) && !BSON_ITER_HOLDS_NULL(&it))
		bson_append_iter(to, as, -1, &it);
}

/* The client's orders (the owner's only, when owner) past the window. */
static int
order_items(struct tr_db *db, const bson_oid_t *client_id, const bson_oid_t *owner,
	    const struct tr_timeline_window *w, struct tr_timeline_items *out)
{
	bson_t filter = BSON_INITIALIZER, page = BSON_INITIALIZER;
	struct tr_list_query q;
	char *next = NULL;
	bson_iter_t it;
	int rc;

	BSON_APPEND_OID(&filter, "client_id", client_id);
	if (owner)
		BSON_APPEND_OID(&filter, erp_orders.owner_field, owner);
	tr_timeline_query(w, "order", "created_at", &q);
	rc = tr_db_list(db, ERP_ORDERS, &filter, &q, &page, &next);
	if (rc == TR_OK && bson_iter_init(&it, &page))
		while (rc == TR_OK && bson_iter_next(&it)) {
			bson_t order, shown = BSON_INITIALIZER;
			const char *id, *ts;
			const uint8_t *data;
			uint32_t len;
			int64_t at = 0;
			bson_oid_t oid;
			bson_iter_document(&it, &len, &data);
			if (bson_init_static(&order, data, len) &&
			    (id = tr_doc_str(&order, "id")) && tr_is_object_id(id)) {
				bson_oid_init_from_string(&oid, id);
				if ((ts = tr_doc_str(&order, "created_at")))
					tr_parse_time(ts, &at);
				copy_field(&order, "id", "id", &shown);
				copy_field(&order, "status", "status", &shown);
				copy_field(&order, "total", "total", &shown);
				copy_field(&order, "deal_id", "deal_id", &shown);
				copy_field(&order, "created_at", "created_at", &shown);
				rc = tr_timeline_add(out, "order", &oid, at, &shown);
			}
			bson_destroy(&shown);
		}
	free(next);
	bson_destroy(&filter);
	bson_destroy(&page);
	return rc;
}

/* The invoices to read: those of the client's orders that may hold one
 * past the window. */
struct invoiced {
	const struct tr_timeline_window *w;
	char (*ids)[25];
	size_t n, cap;
};

static int
note_invoice(void *arg, const bson_t *order)
{
	struct invoiced *v = arg;
	const char *inv = tr_doc_str(order, "invoice_id"), *ts = tr_doc_str(order, "created_at");
	int64_t at;

	if (!inv || !tr_is_object_id(inv))
		return 0;
	if (v->w->has_after && ts && tr_parse_time(ts, &at) && at > v->w->after_at)
		return 0; /* its invoice is newer still: on a page before */
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		char(*ids)[25] = realloc(v->ids, cap * sizeof(*ids));
		if (!ids)
			return TR_ENOMEM;
		v->ids = ids;
		v->cap = cap;
	}
	memcpy(v->ids[v->n++], inv, 25);
	return 0;
}

/* The invoices of the client's orders (the owner's only, when owner) past
 * the window. */
static int
invoice_items(struct tr_db *db, const bson_oid_t *client_id, const bson_oid_t *owner,
	      const struct tr_timeline_window *w, struct tr_timeline_items *out)
{
	bson_t filter = BSON_INITIALIZER;
	struct invoiced v = {.w = w};
	int rc;

	BSON_APPEND_OID(&filter, "client_id", client_id);
	if (owner)
		BSON_APPEND_OID(&filter, erp_orders.owner_field, owner);
	rc = tr_db_each(db, ERP_ORDERS, &filter, note_invoice, &v);
	for (size_t i = 0; rc == TR_OK && i < v.n; i++) {
		bson_t stored, invoice = BSON_INITIALIZER, shown = BSON_INITIALIZER;
		bson_iter_t it;
		bson_oid_t oid;
		int64_t at = 0;
		rc = tr_db_get(db, ERP_INVOICES, v.ids[i], &stored);
		if (rc == TR_ENOTFOUND) /* named before it was written: not issued yet */
			rc = TR_OK;
		else if (rc == TR_OK && tr_doc_oid(&stored, "_id", &oid)) {
			if (bson_iter_init_find(&it, &stored, "created_at") &&
			    BSON_ITER_HOLDS_DATE_TIME(&it))
				at = bson_iter_date_time(&it);
			if (tr_timeline_after(w, "invoice", at, &oid)) {
				tr_render_resource(&stored, &invoice);
				copy_field(&invoice, "id", "id", &shown);
				copy_field(&invoice, "number", "number", &shown);
				copy_field(&invoice, "order_id", "order_id", &shown);
				copy_field(&invoice, "total", "total", &shown);
				copy_field(&invoice, "status", "status", &shown);
				copy_field(&invoice, "created_at", "issued_at", &shown);
				copy_field(&invoice, "due_at", "due_at", &shown);
				rc = tr_timeline_add(out, "invoice", &oid, at, &shown);
			}
		}
		bson_destroy(&stored);
		bson_destroy(&invoice);
		bson_destroy(&shown);
	}
	free(v.ids);
	bson_destroy(&filter);
	return rc;
}

static int
client_timeline(struct tr_db *db, const struct tr_principal *caller, const bson_oid_t *client_id,
		const struct tr_timeline_window *w, struct tr_timeline_items *out)
{
	bool own;
	int rc = TR_OK;

	if (tr_permission_check(caller->perms, erp_orders.read, &own))
		rc = order_items(db, client_id, own ? &caller->user_id : NULL, w, out);
	if (rc == TR_OK && tr_permission_check(caller->perms, erp_invoices.read, &own))
		rc = invoice_items(db, client_id, own ? &caller->user_id : NULL, w, out);
	return rc;
}

static const struct tr_timeline_kind kinds[] = {
    {"order", NULL,
     "A sales order of the client, at its creation: id, status, total, deal_id (when made "
     "from a deal), created_at."},
    {"invoice", NULL,
     "The invoice of one of the client's orders, at its issue: id, number, order_id, total, "
     "status, issued_at, due_at."},
};

const struct tr_timeline erp_timeline = {
    .kinds = kinds,
    .nkinds = sizeof(kinds) / sizeof(kinds[0]),
    .items = client_timeline,
};
