/* Sales by product (sales.h): the question goes to the module that declared
 * the hook answering it, the first in registry order. */
#include "sales.h"

#include "module.h"
#include "util.h"

int
tr_sales_by_product(struct tr_db *db, const struct tr_sales_query *q, tr_sales_line_fn line,
		    void *arg)
{
	for (size_t m = 0; m < tr_nmodules; m++)
		if (tr_modules[m]->sales_by_product)
			return tr_modules[m]->sales_by_product(db, q, line, arg);
	return TR_OK;
}
