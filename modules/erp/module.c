/* The ERP (CONTRACT.md "ERP") module: what it owns and serves. So far the
 * inventory: products, warehouses, stock moves and the stock they leave
 * (catalog.c, stock.c); its other permissions and topics are declared so
 * that roles and API keys can name them before they are served. */
#include "erp.h"
#include "jobs.h"
#include "people.h"

static const struct tr_route routes[] = {
    {TR_GET, "/v1/erp/stock", erp_stock_list, "erp.stock.read", 0,
     "Stock per product and warehouse: on hand, reserved, available and value, of a "
     "product, a warehouse, both, or (up to 1000 pairs) everything.",
     NULL, "product_id warehouse_id", NULL},
    {TR_POST, "/v1/erp/stock/moves/{id}/reverse", erp_move_reverse, "erp.stock.write", 0,
     "Post the move that reverses this one, dated now (once).", &erp_moves, NULL, NULL},
    {TR_GET, "/v1/erp/journal", erp_journal_list, "erp.ledger.read", 0,
     "Journal entries, newest first (cursor: the next_cursor of the page before).", NULL,
     "limit cursor", NULL},
    {TR_POST, "/v1/erp/journal", erp_journal_create, "erp.ledger.write",
     TR_JSON_BODY | TR_IDEMPOTENT,
     "Post a journal entry: debits equal credits (422 otherwise), never changed afterwards.", NULL,
     NULL, NULL},
    {TR_GET, "/v1/erp/journal/{id}", erp_journal_get, "erp.ledger.read", 0,
     "One journal entry, with its seq and hash.", NULL, NULL, NULL},
    {TR_POST, "/v1/erp/journal/{id}/reverse", erp_journal_reverse, "erp.ledger.write", 0,
     "Post the entry that reverses this one, dated today (once).", NULL, NULL, NULL},
    {TR_GET, "/v1/erp/ledger/verify", erp_ledger_verify, "erp.ledger.read", 0,
     "Recompute the hash chain: ok, entries, head, or the first seq that breaks.", NULL, NULL,
     NULL},
    {TR_POST, "/v1/erp/periods/{period}/close", erp_period_close, "erp.ledger.write", 0,
     "Close a month that has ended: no entry may be dated in it or before it afterwards.", NULL,
     NULL, NULL},
    {TR_POST, "/v1/erp/orders/{id}/confirm", erp_order_confirm, "erp.orders.write", 0,
     "Reserve every line, or none (409 insufficient-stock naming the lines).", &erp_orders, NULL,
     NULL},
    {TR_POST, "/v1/erp/orders/{id}/cancel", erp_order_cancel, "erp.orders.write", 0,
     "Cancel a draft or confirmed order, releasing what it reserved.", &erp_orders, NULL, NULL},
    {TR_POST, "/v1/erp/orders/{id}/invoice", erp_order_invoice, "erp.invoices.write", 0,
     "Invoice a confirmed order: INV-<year>-<n>, numbered without gaps per tenant and year.",
     &erp_orders, NULL, NULL},
    {TR_POST, "/v1/erp/orders/{id}/payments", erp_order_pay, "erp.payments.write",
     TR_JSON_BODY | TR_IDEMPOTENT,
     "Pay an invoiced order in part or whole (more than what is open: 409); the payment "
     "that closes it publishes erp.order.paid.",
     &erp_orders, NULL, NULL},
    {TR_POST, "/v1/erp/orders/{id}/shipments", erp_order_ship, "erp.shipments.write",
     TR_JSON_BODY | TR_IDEMPOTENT,
     "Ship part or all of a confirmed order: reserved stock leaves at its moving-average "
     "cost (more than remains: 409).",
     &erp_orders, NULL, NULL},
    {TR_POST, "/v1/erp/purchase-orders/{id}/receive", erp_po_receive, "erp.purchasing.write",
     TR_JSON_BODY | TR_IDEMPOTENT,
     "Receive part or all of a purchase order as stock receipts at its unit costs (more than "
     "ordered: 409).",
     &erp_purchase_orders, NULL, NULL},
    {TR_POST, "/v1/erp/boms/{id}/activate", erp_bom_activate, "erp.production.write", 0,
     "Make this bill its product's active one again (422 when it would make a loop).", &erp_boms,
     NULL, NULL},
    {TR_GET, "/v1/erp/boms/{id}/explosion", erp_bom_explosion, "erp.production.read", 0,
     "The components of making a quantity (default: the bill's) by this bill, and below each "
     "the components of its own active bill; materials: the totals of what has no bill.",
     &erp_boms, "quantity", NULL},
    {TR_POST, "/v1/erp/work-orders/{id}/release", erp_wo_release, "erp.production.write", 0,
     "Reserve every component, or none (409 insufficient-stock naming them).", &erp_work_orders,
     NULL, NULL},
    {TR_POST, "/v1/erp/work-orders/{id}/complete", erp_wo_complete, "erp.production.write",
     TR_JSON_BODY | TR_IDEMPOTENT,
     "Make part or all of the quantity: its components are consumed at their moving-average "
     "cost and the product received at that cost plus labour (more than remains: 409).",
     &erp_work_orders, NULL, NULL},
    {TR_POST, "/v1/erp/work-orders/{id}/cancel", erp_wo_cancel, "erp.production.write", 0,
     "Cancel a planned or released work order, releasing what it still holds reserved.",
     &erp_work_orders, NULL, NULL},
    {TR_POST, "/v1/erp/purchase-orders/{id}/approve", erp_po_approve, "erp.purchasing.write", 0,
     "Approve a draft purchase order (one planning drafted): it becomes open, to be received.",
     &erp_purchase_orders, NULL, NULL},
    {TR_POST, "/v1/erp/purchase-orders/{id}/cancel", erp_po_cancel, "erp.purchasing.write", 0,
     "Cancel a draft purchase order: it no longer counts as on order, so the next planning run "
     "may draft its shortfall again.",
     &erp_purchase_orders, NULL, NULL},
    {TR_POST, "/v1/erp/planning/run", erp_planning_run_route, "erp.purchasing.write", 0,
     "Run reorder planning now: a draft purchase order per supplier (and warehouse and "
     "currency) for every reorder rule whose available stock plus what is on order is below "
     "its point, never twice for one shortfall. Answers {\"drafts\", \"short\"}.",
     NULL, NULL, NULL},
    {TR_GET, "/v1/erp/checks", erp_checks, "erp.ledger.read", 0,
     "The ERP's invariants, recomputed: ledger balanced, stock equal to the fold of its "
     "movements and to the inventory account, no forbidden negative stock.",
     NULL, NULL, NULL},
    {TR_GET, "/v1/erp/reports/stock-valuation", erp_stock_valuation, "erp.ledger.read", 0,
     "The stock's value per product and warehouse, with its total beside the inventory "
     "account (1300) per currency: they are equal.",
     NULL, NULL, NULL},
    {TR_GET, "/v1/erp/reports/ar-aging", erp_ar_aging, "erp.invoices.read", 0,
     "What invoices still have open at a date (default now), by days past due: current, "
     "1-30, 31-60, 61-90, 90+.",
     NULL, "at currency", NULL},
    {TR_GET, "/v1/erp/reports/trial-balance", erp_trial_balance, "erp.ledger.read", 0,
     "Debit and credit balance per account at a date (default today), in one currency.", NULL,
     "at currency", NULL},
    {TR_GET, "/v1/erp/org-chart", erp_org_chart, "erp.hr.read", 0,
     "The department tree, roots first and sub-departments nested, each in name order with "
     "its head and its active employees; employees in no department under unassigned.",
     NULL, NULL, NULL},
    {TR_GET, "/v1/erp/employees/head-of", erp_head_of_route, "erp.hr.read", 0,
     "Who heads this user's department (the head of the department above when the user "
     "heads it; up the tree while a department has no head who can act): user_id and "
     "employee_id, or 404.",
     NULL, "user_id!", NULL},
};

static const struct tr_resource *const resources[] = {
    &erp_products, &erp_warehouses,  &erp_moves,       &erp_accounts,  &erp_orders,
    &erp_invoices, &erp_payments,    &erp_shipments,   &erp_suppliers, &erp_purchase_orders,
    &erp_boms,	   &erp_work_orders, &erp_departments, &erp_employees, &erp_reorder_rules};

static const struct tr_job_handler jobs[] = {
    {.queue = ERP_SETTLE_QUEUE, .run = erp_settle_run},
    {.queue = ERP_CHECKS_QUEUE, .run = erp_checks_run},
    {.queue = ERP_PLANNING_QUEUE, .run = erp_planning_job},
};

/* Its configuration keys (config.h). */
static const struct tr_config_key config[] = {
    {"erp_settle_after_ms", TR_CONFIG_INT, "60000", 500, 86400000,
     "A stock move, an order's confirmation or a shipment whose writer stopped halfway is "
     "finished or undone by a job this long after it began."},
    {"erp_checks_every_ms", TR_CONFIG_INT, "300000", 1000, 86400000,
     "A tenant whose stock or money changed has its invariants checked (GET /metrics: "
     "trellis_erp_invariant_ok) at most this often per process."},
    {"erp_planning_every_ms", TR_CONFIG_INT, "86400000", 1000, 2592000000L,
     "Reorder planning runs by itself for each tenant with reorder rules at every multiple of "
     "this since the epoch (the default: daily at 00:00 UTC)."},
};

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
    {"erp.production.read", "manager warehouse"},
    {"erp.production.write", "warehouse"},
    {"erp.hr.read", "manager"},
    {"erp.hr.write", ""},
};

/* Its event topics and what reading each needs. */
static const struct tr_topic topics[] = {
    {"erp.orders", "erp.orders.read"},
    {"erp.stock", "erp.stock.read"},
    {"erp.invoices", "erp.invoices.read"},
    {"erp.shipments", "erp.shipments.read"},
    {"erp.payments", "erp.payments.read"},
    {"erp.purchasing", "erp.purchasing.read"},
    {"erp.ledger", "erp.ledger.read"},
    {"erp.production", "erp.production.read"},
    {"erp.hr", "erp.hr.read"},
};

const struct tr_module tr_erp_module = {
    .name = "erp",
    .permissions = permissions,
    .npermissions = sizeof(permissions) / sizeof(permissions[0]),
    .topics = topics,
    .ntopics = sizeof(topics) / sizeof(topics[0]),
    .routes = routes,
    .nroutes = sizeof(routes) / sizeof(routes[0]),
    .resources = resources,
    .nresources = sizeof(resources) / sizeof(resources[0]),
    .jobs = jobs,
    .njobs = sizeof(jobs) / sizeof(jobs[0]),
    .config = config,
    .nconfig = sizeof(config) / sizeof(config[0]),
    .migrations = "modules/erp/migrations",
    .metrics = erp_metrics,
    .timeline = &erp_timeline,
    .head_of = erp_head_of,
    .sales_by_product = erp_sales_by_product,
};
