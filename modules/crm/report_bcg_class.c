/* The BCG quadrant of one item of the bcg report (reports.h; the rules are
 * at the top of report_bcg.c): growth and relative share as exact
 * fractions of integers, compared with the thresholds in 128-bit integers
 * and shown rounded half up (away from zero) to 4 decimals. */
#include <stdio.h>

#include "reports.h"

typedef __int128 s128;

/* a/b x 10^4 rounded half up; b > 0. */
static u128
scaled4(u128 a, u128 b)
{
	return (a * 20000 + b) / (b * 2);
}

void
crm_bcg_classify(int64_t revenue, int64_t previous, int64_t largest_other,
		 const struct bcg_thresholds *t, struct bcg_class *out)
{
	out->has_growth = previous > 0;
	out->growth_negative = revenue < previous;
	out->growth_scaled = 0;
	if (out->has_growth) {
		u128 change =
		    out->growth_negative ? (u128)(previous - revenue) : (u128)(revenue - previous);
		out->growth_scaled = scaled4(change, (u128)previous);
		/* (revenue - previous) / previous >= growth_bp / 10^4 */
		out->high_growth =
		    ((s128)revenue - previous) * 10000 >= (s128)t->growth_bp * previous;
	} else {
		out->high_growth = revenue > 0; /* new: nothing to grow from */
	}

	out->has_share = largest_other > 0;
	out->share_scaled = 0;
	if (out->has_share) {
		out->share_scaled = scaled4((u128)revenue, (u128)largest_other);
		/* revenue / largest_other >= share_bp / 10^4 */
		out->high_share = (u128)revenue * 10000 >= (u128)t->share_bp * (u128)largest_other;
	} else {
		out->high_share = revenue > 0; /* alone in its market */
	}

	if (out->high_growth)
		out->quadrant = out->high_share ? BCG_STAR : BCG_QUESTION_MARK;
	else
		out->quadrant = out->high_share ? BCG_CASH_COW : BCG_DOG;
}

const char *
crm_bcg_quadrant_name(enum bcg_quadrant q)
{
	switch (q) {
	case BCG_STAR:
		return "star";
	case BCG_CASH_COW:
		return "cash_cow";
	case BCG_QUESTION_MARK:
		return "question_mark";
	default:
		return "dog";
	}
}

/* A signed ratio scaled by 10^4 as "-0.2500" (never "-0.0000"). */
void
crm_report_signed_decimal4_append(bson_t *out, const char *field, bool negative, u128 scaled)
{
	char s[56];

	snprintf(s, sizeof(s), "%s%llu.%04llu", negative && scaled > 0 ? "-" : "",
		 (unsigned long long)(scaled / 10000), (unsigned long long)(scaled % 10000));
	BSON_APPEND_UTF8(out, field, s);
}
