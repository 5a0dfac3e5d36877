/* Sales as the platform offers them to every module: what was sold, by
 * product, that one module records (the ERP, from its invoiced sales
 * orders) and another reports on (the CRM's BCG matrix), without either
 * including the other's headers. The recording module declares the hook
 * in its tr_module (module.h, sales_by_product); this call finds it. */
#ifndef TR_SALES_H
#define TR_SALES_H

#include <bson/bson.h>
#include <stdint.h>

struct tr_db;

/* Which sales: invoiced in [from, to) (unix ms), in currency (ISO 4217,
 * "EUR"), and, when owner is not NULL, only those of records that user
 * owns (a ":own" reader). Borrowed by the call. */
struct tr_sales_query {
	int64_t from, to;
	const char *currency;
	const bson_oid_t *owner;
};

/* Called once per line sold: the product, when it was sold (unix ms) and
 * the line's net amount in minor units (after discount, before tax). A
 * non-zero return (a TR_E* code) stops the walk and is returned. */
typedef int (*tr_sales_line_fn)(void *arg, const bson_oid_t *product, int64_t at, int64_t net);

/* Calls line for every line sold that q selects, in db's tenant, through
 * the module that records sales (module.h, tr_module.sales_by_product):
 * TR_OK (no call at all when no module records sales), or the first error
 * of the data layer or of line. Worker threads (it reads the database). */
int tr_sales_by_product(struct tr_db *db, const struct tr_sales_query *q, tr_sales_line_fn line,
			void *arg);

#endif
