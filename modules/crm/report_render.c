/* Numbers and errors of a CRM report's answer (reports.h): ratios rounded
 * half up, 4-decimal strings, array keys, and the problem a failed walk
 * answers. */
#include <stdio.h>

#include "db.h"
#include "json.h"
#include "reports.h"

/* ---- numbers ---- */

/* num/den rounded half up to 4 decimals, as a number; null when den is 0. */
void
crm_report_ratio_append(bson_t *out, const char *field, int64_t num, int64_t den)
{
	if (den <= 0) {
		BSON_APPEND_NULL(out, field);
		return;
	}
	u128 q = ((u128)num * 20000 + (u128)den) / ((u128)den * 2);
	BSON_APPEND_DOUBLE(out, field, (double)(int64_t)q / 10000.0);
}

/* A ratio scaled by 10^4 as "0.4500". */
void
crm_report_decimal4_append(bson_t *out, const char *field, u128 scaled)
{
	char s[48];

	snprintf(s, sizeof(s), "%llu.%04llu", (unsigned long long)(scaled / 10000),
		 (unsigned long long)(scaled % 10000));
	BSON_APPEND_UTF8(out, field, s);
}

const char *
crm_report_array_key(uint32_t i, char *buf, size_t len)
{
	const char *k;

	bson_uint32_to_string(i, &k, buf, len);
	return k;
}

/* Tells the client what went wrong in a walk. */
void
crm_report_failed(struct tr_ctx *c, int rc)
{
	if (rc == TR_ELIMIT)
		tr_problem(c, 422, "validation-failed",
			   "the amounts in this period add up to more than an amount can hold; "
			   "choose a shorter period");
	else if (rc == TR_ENOMEM)
		tr_problem(c, 500, "internal", "the report did not fit in memory");
	else
		tr_problem_from_err(c, rc);
}
