/* CRM reports (CONTRACT.md "Reports"). Not built yet: 501 until then. */
#include "crm.h"

static void
not_yet(struct tr_ctx *c)
{
	tr_problem(c, 501, "not-implemented", "this report is not available yet");
}

void
reports_funnel(struct tr_ctx *c)
{
	not_yet(c);
}

void
reports_abc_xyz(struct tr_ctx *c)
{
	not_yet(c);
}

void
reports_managers(struct tr_ctx *c)
{
	not_yet(c);
}

void
reports_sources(struct tr_ctx *c)
{
	not_yet(c);
}
