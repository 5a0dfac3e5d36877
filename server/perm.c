#include "perm.h"

#include <string.h>

/* The catalogue. CRM, ERP and BPM names exist before their modules so that
 * roles can be defined once. */
const char *const tr_permissions[] = {
    "system.users.read",     "system.users.write",    "system.roles.read",
    "system.roles.write",    "system.api_keys.read",  "system.api_keys.write",
    "system.audit.read",     "system.tags.read",      "system.tags.write",
    "system.jobs.read",	     "system.jobs.write",     "system.webhooks.read",
    "system.webhooks.write", "system.balances.read",  "system.balances.write",
    "crm.leads.read",	     "crm.leads.write",	      "crm.clients.read",
    "crm.clients.write",     "crm.deals.read",	      "crm.deals.write",
    "crm.deals.import",	     "crm.interactions.read", "crm.interactions.write",
    "crm.tasks.read",	     "crm.tasks.write",	      "crm.campaigns.read",
    "crm.campaigns.write",   "crm.claims.read",	      "crm.claims.write",
    "crm.reports.read",	     "crm.settings.write",    "erp.products.read",
    "erp.products.write",    "erp.stock.read",	      "erp.stock.write",
    "erp.orders.read",	     "erp.orders.write",      "erp.invoices.read",
    "erp.invoices.write",    "erp.payments.read",     "erp.payments.write",
    "erp.shipments.read",    "erp.shipments.write",   "erp.ledger.read",
    "erp.ledger.write",	     "erp.purchasing.read",   "erp.purchasing.write",
    "erp.hr.read",	     "erp.hr.write",	      "bpm.processes.read",
    "bpm.processes.write",   "bpm.instances.read",    "bpm.instances.write",
    "bpm.tasks.read",	     "bpm.tasks.write",	      NULL};

static const char *const manager[] = {"system.users.read",
				      "system.tags.read",
				      "system.tags.write",
				      "crm.leads.read",
				      "crm.leads.write",
				      "crm.clients.read",
				      "crm.clients.write",
				      "crm.deals.read",
				      "crm.deals.write",
				      "crm.interactions.read",
				      "crm.interactions.write",
				      "crm.tasks.read",
				      "crm.tasks.write",
				      "crm.campaigns.read",
				      "crm.campaigns.write",
				      "crm.claims.read",
				      "crm.claims.write",
				      "crm.reports.read",
				      "erp.products.read",
				      "erp.stock.read",
				      "erp.orders.read",
				      "erp.invoices.read",
				      "erp.payments.read",
				      "erp.shipments.read",
				      "bpm.processes.read",
				      "bpm.processes.write",
				      "bpm.instances.read",
				      "bpm.instances.write",
				      "bpm.tasks.read",
				      "bpm.tasks.write",
				      NULL};
static const char *const sales[] = {"system.tags.read",
				    "crm.leads.read:own",
				    "crm.leads.write:own",
				    "crm.clients.read",
				    "crm.clients.write:own",
				    "crm.deals.read:own",
				    "crm.deals.write:own",
				    "crm.interactions.read:own",
				    "crm.interactions.write:own",
				    "crm.tasks.read:own",
				    "crm.tasks.write:own",
				    "crm.campaigns.read",
				    "crm.claims.read:own",
				    "crm.claims.write:own",
				    "bpm.tasks.read:own",
				    "bpm.tasks.write:own",
				    NULL};
static const char *const warehouse[] = {"system.tags.read",    "erp.products.read",
					"erp.stock.read",      "erp.stock.write",
					"erp.orders.read",     "erp.shipments.read",
					"erp.shipments.write", "bpm.tasks.read:own",
					"bpm.tasks.write:own", NULL};
static const char *const accountant[] = {"system.tags.read",	"crm.clients.read",
					 "crm.reports.read",	"erp.orders.read",
					 "erp.invoices.read",	"erp.invoices.write",
					 "erp.payments.read",	"erp.payments.write",
					 "erp.ledger.read",	"erp.ledger.write",
					 "erp.purchasing.read", "bpm.tasks.read:own",
					 "bpm.tasks.write:own", NULL};
static const char *const employee[] = {"system.tags.read", "crm.clients.read", "bpm.tasks.read:own",
				       "bpm.tasks.write:own", NULL};

const struct tr_builtin_role tr_builtin_roles[] = {
    {"owner", NULL},	    {"admin", NULL},	      {"manager", manager},
    {"sales", sales},	    {"warehouse", warehouse}, {"accountant", accountant},
    {"employee", employee},
};
const size_t tr_nbuiltin_roles = sizeof(tr_builtin_roles) / sizeof(tr_builtin_roles[0]);

const struct tr_builtin_role *
tr_builtin_role(const char *name)
{
	for (size_t i = 0; i < tr_nbuiltin_roles; i++)
		if (strcmp(tr_builtin_roles[i].name, name) == 0)
			return &tr_builtin_roles[i];
	return NULL;
}

bool
tr_permission_valid(const char *p)
{
	size_t n = strlen(p);

	if (n > 4 && strcmp(p + n - 4, ":own") == 0)
		n -= 4;
	for (const char *const *k = tr_permissions; *k; k++)
		if (strlen(*k) == n && strncmp(*k, p, n) == 0)
			return true;
	return false;
}

bool
tr_permission_check(const char *granted, const char *required, bool *own_only)
{
	size_t rlen = strlen(required);
	bool own = false;

	*own_only = false;
	for (const char *p = granted; p && *p;) {
		const char *end = strchr(p, ' ');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == rlen && strncmp(p, required, rlen) == 0)
			return true; /* the full permission wins over :own */
		if (len == rlen + 4 && strncmp(p, required, rlen) == 0 &&
		    strncmp(p + rlen, ":own", 4) == 0)
			own = true;
		p = end ? end + 1 : NULL;
	}
	*own_only = own;
	return own;
}

bool
tr_role_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n < 2 || n > 40)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '_' || name[i] == '-'))
			return false;
	return true;
}

/* Event topics and the permissions reading each needs (the ":own" form of
 * a permission is enough: delivery then filters records by owner).
 * admin.users carries user, role and API key changes. */
static const struct topic {
	const char *name;
	const char *permissions[3];
} topics[] = {
    {"admin.users", {"system.users.read", "system.roles.read", "system.api_keys.read"}},
    {"crm.leads", {"crm.leads.read"}},
    {"crm.deals", {"crm.deals.read"}},
    {"crm.clients", {"crm.clients.read"}},
    {"crm.tasks", {"crm.tasks.read"}},
    {"crm.claims", {"crm.claims.read"}},
    {"erp.orders", {"erp.orders.read"}},
    {"erp.stock", {"erp.stock.read"}},
    {"erp.invoices", {"erp.invoices.read"}},
    {"erp.shipments", {"erp.shipments.read"}},
    {"bpm.tasks", {"bpm.tasks.read"}},
};

int
tr_topic_find(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
		if (strlen(topics[i].name) == len && memcmp(topics[i].name, name, len) == 0)
			return (int)i;
	return -1;
}

bool
tr_topic_may_read(const char *perms, int topic, bool *own_only)
{
	*own_only = false;
	for (int i = 0; i < 3 && topics[topic].permissions[i]; i++) {
		bool own;
		if (!tr_permission_check(perms, topics[topic].permissions[i], &own))
			return false;
		*own_only |= own;
	}
	return true;
}
