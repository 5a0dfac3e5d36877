/* The ERP (CONTRACT.md "ERP") module. So far it declares what it owns - its permissions, with
 * the built-in roles that hold them, and its event topics - so that roles
 * and API keys can be defined before its resources are served. */
#include "module.h"

/* The permissions this module owns and the built-in roles holding each
 * (owner and admin hold all; "sales:own" holds the ":own" form). */
static const struct tr_permission permissions[] = {
    {"erp.products.read", "manager warehouse"},
    {"erp.products.write", ""},
    {"erp.stock.read", "manager warehouse"},
    {"erp.stock.write", "warehouse"},
    {"erp.orders.read", "manager warehouse accountant"},
    {"erp.orders.write", ""},
    {"erp.invoices.read", "manager accountant"},
    {"erp.invoices.write", "accountant"},
    {"erp.payments.read", "manager accountant"},
    {"erp.payments.write", "accountant"},
    {"erp.shipments.read", "manager warehouse"},
    {"erp.shipments.write", "warehouse"},
    {"erp.ledger.read", "accountant"},
    {"erp.ledger.write", "accountant"},
    {"erp.purchasing.read", "accountant"},
    {"erp.purchasing.write", ""},
    {"erp.hr.read", ""},
    {"erp.hr.write", ""},
};

/* Its event topics and what reading each needs. */
static const struct tr_topic topics[] = {
    {"erp.orders", "erp.orders.read"},
    {"erp.stock", "erp.stock.read"},
    {"erp.invoices", "erp.invoices.read"},
    {"erp.shipments", "erp.shipments.read"},
};

const struct tr_module tr_erp_module = {
    .name = "erp",
    .permissions = permissions,
    .npermissions = sizeof(permissions) / sizeof(permissions[0]),
    .topics = topics,
    .ntopics = sizeof(topics) / sizeof(topics[0]),
};
