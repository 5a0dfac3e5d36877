/* Money per group and currency in the CRM reports (reports.h): sums kept
 * in a hash index and listed by currency. */
#include <string.h>

#include "db.h"
#include "reports.h"

/* ---- money per group and currency ---- */

void
crm_report_ledger_init(struct ledger *l)
{
	crm_report_rindex_init(&l->ix, sizeof(int64_t));
	l->order = NULL;
}

void
crm_report_ledger_free(struct ledger *l)
{
	crm_report_rindex_free(&l->ix);
	free(l->order);
	l->order = NULL;
}

/* Adds amount to group's currency sum; TR_ELIMIT when the sum would not
 * fit an amount. */
int
crm_report_ledger_add(struct ledger *l, const uint8_t group[13], const char *currency,
		      int64_t amount)
{
	uint8_t key[KEY_LEN];
	long i;

	memcpy(key, group, 13);
	memcpy(key + 13, currency, 3);
	i = crm_report_rindex_put(&l->ix, key);
	if (i < 0)
		return TR_ENOMEM;
	int64_t *sum = crm_report_rindex_val(&l->ix, i);
	if (__builtin_add_overflow(*sum, amount, sum))
		return TR_ELIMIT;
	return TR_OK;
}

int
crm_report_ledger_close(struct ledger *l)
{
	l->order = crm_report_rindex_sorted(&l->ix, crm_report_key_order, false);
	return l->order ? TR_OK : TR_ENOMEM;
}

/* Appends field: [{"amount", "currency"}...] of group, by currency. */
void
crm_report_ledger_append(bson_t *out, const char *field, const struct ledger *l,
			 const uint8_t group[13])
{
	size_t lo = 0, hi = l->ix.n;
	bson_t arr, money;
	uint32_t n = 0;

	while (lo < hi) { /* the first key not below group */
		size_t mid = (lo + hi) / 2;
		if (memcmp(l->order[mid].key, group, 13) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	BSON_APPEND_ARRAY_BEGIN(out, field, &arr);
	for (; lo < l->ix.n && memcmp(l->order[lo].key, group, 13) == 0; lo++) {
		const uint8_t *key = l->order[lo].key;
		char idx[16], currency[4];
		const char *k;
		bson_uint32_to_string(n++, &k, idx, sizeof(idx));
		memcpy(currency, key + 13, 3);
		currency[3] = '\0';
		BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &money);
		BSON_APPEND_INT64(&money, "amount",
				  *(int64_t *)crm_report_rindex_val(&l->ix, l->order[lo].index));
		BSON_APPEND_UTF8(&money, "currency", currency);
		bson_append_document_end(&arr, &money);
	}
	bson_append_array_end(out, &arr);
}

void
crm_report_money_append(bson_t *out, const char *field, int64_t amount, const char *currency)
{
	bson_t money;

	BSON_APPEND_DOCUMENT_BEGIN(out, field, &money);
	BSON_APPEND_INT64(&money, "amount", amount);
	BSON_APPEND_UTF8(&money, "currency", currency);
	bson_append_document_end(out, &money);
}
