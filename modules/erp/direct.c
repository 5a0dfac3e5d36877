/* The ERP's routes for callers that hold a database handle but no request
 * (erp.h: erp_direct): the demo seed (tools/demo) makes its products,
 * purchases, sales, invoices, payments and shipments with it, through the
 * platform's direct calls (direct.h), so every reservation, moving-average
 * cost, invoice number, receivable and journal entry is the ERP's own. */
#include <string.h>

#include "direct.h"
#include "erp.h"
#include "util.h"

int
erp_direct(struct tr_db *db, const bson_oid_t *tenant, const bson_oid_t *user, const char *route,
	   const char *id, const bson_t *body, const char *key, bson_t *answer)
{
	const char *path = strchr(route, ' ');

	if (!path || strncmp(path + 1, "/v1/erp/", 8) != 0) {
		bson_init(answer);
		return TR_EINVALID;
	}
	return tr_direct(db, tenant, user, route, id, body, key, false, answer);
}
