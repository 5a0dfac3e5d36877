/* Internal to `trellis-demo seed` (tools/demo): what its files share.
 * main.c is the program, demo.c runs the command and writes everything,
 * demo_world.c holds the world the story is told in (names, companies,
 * countries, the pipeline, campaigns) with the deterministic PRNG and the
 * names drawn from it, demo_plan.c plans leads, clients and deals and
 * writes their records, demo_activity.c the interactions, claims and
 * tasks around them. demo_erp.c plans the ERP's story (what is sold and
 * bought, the sales orders of the clients and what became of them) and
 * demo_erp_run.c makes it through the ERP's own routes (erp_direct).
 *
 * One seeding run is a struct demo: the plan, then the records in batches.
 * Every draw comes from d->rng in a fixed order, so the same seed tells
 * the same story; calls that draw must keep their order. */
#ifndef TR_DEMO_H
#define TR_DEMO_H

#include "crm/crm.h"
#include "db.h"

#define DEMO_SEED 0x7e11150de11aULL
#define DEMO_TENANT_NAME "Demo Company"
#define DEMO_HISTORY_DAYS 365
#define DEMO_LEADS 2000
#define DEMO_CLIENTS 500
#define DEMO_CLAIMS 60
#define DEMO_MAX_CONVERTED 300 /* converted leads become clients: fewer than DEMO_CLIENTS */
#define DEMO_CURRENCY "EUR"

#define MINUTE_MS (60 * 1000LL)
#define HOUR_MS (60 * MINUTE_MS)
#define DAY_MS (24 * HOUR_MS)

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* The sizes of the tables of the world that other files index or pick from
 * (demo_world.c defines them with these counts). */
#define DEMO_NFIRST_NAMES 48
#define DEMO_NLAST_NAMES 48
#define DEMO_NCOUNTRIES 10
#define DEMO_COMPANIES 640 /* every company stem with every sector (demo_world.c) */
#define NSTAGES 5
#define NCAMPAIGNS 3

/* ---- the cast ---- */

enum demo_user {
	U_OWNER,
	U_ADMIN,
	U_MANAGER,
	U_SALES1,
	U_SALES2,
	U_SALES3,
	U_WAREHOUSE,
	U_ACCOUNTANT,
	U_EMPLOYEE,
	NUSERS
};

/* ---- the world they sell in (demo_world.c) ---- */

struct country {
	const char *name, *tax_prefix, *phone_cc, *area, *legal_form, *city, *postcode, *street;
};

struct demo_stage {
	const char *key, *name;
	int probability;
};

struct campaign {
	const char *name, *kind, *channel;
	int starts_days_ago, ends_days_ago, tail_days; /* leads keep coming for tail_days */
	int64_t cost;				       /* minor units */
	int force_percent; /* of leads in the window that the campaign brought */
};

/* Given names and family names people are drawn from. */
extern const char *const crm_demo_first_names[DEMO_NFIRST_NAMES];
extern const char *const crm_demo_last_names[DEMO_NLAST_NAMES];
/* Where clients live: a city, its phone and tax formats, a legal form. */
extern const struct country crm_demo_countries[DEMO_NCOUNTRIES];
/* The default pipeline's stages, as crm_default_pipeline writes them. */
extern const struct demo_stage crm_demo_stages[NSTAGES];
/* The campaigns of the year. */
extern const struct campaign crm_demo_campaigns[NCAMPAIGNS];

enum lead_status { L_NEW, L_CONTACTED, L_QUALIFIED, L_CONVERTED, L_LOST };
enum deal_status { D_OPEN, D_WON, D_LOST };
enum claim_status { C_OPEN, C_IN_PROGRESS, C_RESOLVED, C_REJECTED };

/* ---- a deterministic PRNG (splitmix64, demo_world.c) ---- */

struct rng {
	uint64_t state;
};

/* Uniform in [0, 1). */
double crm_demo_rng_unit(struct rng *r);
/* Uniform in [0, n). */
int crm_demo_rng_below(struct rng *r, int n);
/* True percent times in a hundred. */
bool crm_demo_rng_chance(struct rng *r, int percent);
/* Uniform in [lo, hi) (lo when the range is empty). */
int64_t crm_demo_rng_between(struct rng *r, int64_t lo, int64_t hi);
/* An index drawn with the given weights. */
int crm_demo_rng_weighted(struct rng *r, const int *weights, int n);

#define PICK(r, table) ((table)[crm_demo_rng_below((r), (int)N(table))])

/* ---- a set of strings (emails and phones already given out, demo_world.c) ---- */

#define SET_SLOTS 16384 /* a power of two, well above the leads' emails and phones */

struct string_set {
	char **slots;
};

/* ---- the plan ---- */

struct lead_plan {
	bson_oid_t id, contact_id;
	int64_t created, updated, converted_at;
	enum lead_status status;
	int owner;   /* user index, -1: nobody yet (partner leads wait) */
	int company; /* index into the companies, -1: a private person */
	int country, channel, campaign, lost_reason;
	int duplicate_of; /* lead index or -1 */
	int client, deal; /* after conversion, or -1 */
	char name[64], email[128], phone[32], phone_n[32];
};

struct client_plan {
	bson_oid_t id;
	int64_t created, first_won; /* first_won 0: nothing won yet */
	bool company, key_account;
	int owner, company_idx, country, lead;
	char name[96];
	bool has_counterparty; /* the legal entity active now, once written */
	bson_oid_t counterparty;
};

struct deal_plan {
	bson_oid_t id;
	int client, lead, owner, stage, lost_reason;
	enum deal_status status;
	int64_t created, closed, amount, expected_close;
	int64_t moved[NSTAGES]; /* when it entered each stage up to `stage` */
	char title[200];
};

struct claim_plan {
	bson_oid_t id;
	int client, assignee, text;
	enum claim_status status;
	int64_t created, updated;
};

struct reminder {
	bson_oid_t task_id;
	int64_t due;
};

/* The collections written, in the order they are written. */
enum demo_coll {
	C_USERS,
	C_PIPELINES,
	C_CAMPAIGNS,
	C_GROUPS,
	C_LEADS,
	C_CLIENTS,
	C_CONTACTS,
	C_COUNTERPARTIES,
	C_DEALS,
	C_INTERACTIONS,
	C_TASKS,
	C_CLAIMS,
	C_COUNT
};

/* The documents of one collection, written with one tr_db_import. */
struct batch {
	bson_t **docs;
	size_t n, cap;
};

/* ---- the ERP's story (demo_erp.c plans it, demo_erp_run.c makes it) ----
 * What the company stocks and sells, from whom it buys, and a year of sales
 * orders of the CRM's clients (many from their won deals) with what became
 * of them - confirmed, shipped, invoiced, paid, cancelled - and the
 * purchases that keep the stock up. The plan is steps in the story's
 * order; the ERP dates what each step posts itself, at the moment of
 * seeding (README, "The CRM in five minutes"). */

#define DEMO_ERP_SEED 0x5eed0e4b1a7eULL /* the ERP's draws: a stream of their own */
#define DEMO_ORDERS 200			/* sales orders, at most */
#define DEMO_NPRODUCTS 24
#define DEMO_NWAREHOUSES 2
#define DEMO_NSUPPLIERS 4
#define DEMO_DOC_LINES 10 /* lines of a planned sales or purchase order, at most */

struct demo_product {
	const char *sku, *name, *uom;
	int scale;		  /* uom_scale: quantities are in 1/10^scale of uom */
	int64_t cost, price;	  /* per uom, minor units: what it costs, what it sells for */
	int tax_bp, supplier;	  /* tax rate (basis points), who it is bought from */
	int weight;		  /* how often it is on an order */
	int64_t step, most, pack; /* sold in steps of, at most per line; bought in packs of */
	bool retail;		  /* private persons buy it too */
};

struct demo_place {
	const char *code, *name;
};

/* The catalogue, the warehouses and the suppliers (demo_erp.c). */
extern const struct demo_product crm_demo_products[DEMO_NPRODUCTS];
extern const struct demo_place crm_demo_warehouses[DEMO_NWAREHOUSES];
extern const struct demo_place crm_demo_suppliers[DEMO_NSUPPLIERS];

enum erp_step_kind {
	ES_PURCHASE, /* a purchase order is placed */
	ES_RECEIVE,  /* (part of) it arrives */
	ES_ORDER,    /* a sales order is taken (a draft) */
	ES_CONFIRM,  /* its stock is reserved */
	ES_SHIP,     /* (part of) it leaves the warehouse */
	ES_INVOICE,
	ES_PAY, /* (part of) what it costs is paid */
	ES_CANCEL,
	ES_WRITE_OFF, /* damaged stock leaves */
	ES_TRANSFER,  /* stock moves to the other warehouse */
};

/* A line of a planned document: a product, a quantity in its smallest
 * unit, a price (sales: the unit price; purchases: the unit cost), a
 * discount (sales). The ERP prices the lines itself. */
struct doc_line {
	int product;
	int64_t quantity, price, discount_bp;
};

struct sales_plan {
	int client, deal; /* deal -1: a repeat order of the client */
	int warehouse, nlines;
	int64_t created;
	bool retail;
	struct doc_line lines[DEMO_DOC_LINES];
	/* as made (demo_erp_run.c): its id, its invoice's number, and what
	 * the ERP says it costs */
	char id[25], number[24];
	int64_t total, paid;
};

struct purchase_plan {
	int supplier, warehouse, nlines;
	struct doc_line lines[DEMO_DOC_LINES];
	char id[25];
};

/* One step of the story: what happens to which document when. */
struct erp_step {
	int64_t at;
	enum erp_step_kind kind;
	int doc;   /* the sales or purchase order (for moves: the product) */
	int part;  /* which receipt, shipment or payment of it (1, 2) */
	bool last; /* a payment of what is still open (else half the total) */
	int warehouse, to_warehouse, method, reason; /* moves; payments' method */
	int64_t qty[DEMO_DOC_LINES]; /* per line of doc: what this part takes; a move's in [0] */
};

struct erp_plan {
	struct rng rng;
	int64_t limit; /* nothing later than this has happened yet */
	struct sales_plan *orders;
	size_t norders, orders_cap;
	struct purchase_plan *purchases;
	size_t npurchases, purchases_cap;
	struct erp_step *steps;
	size_t nsteps, steps_cap;
	/* ids as made */
	char products[DEMO_NPRODUCTS][25], warehouses[DEMO_NWAREHOUSES][25],
	    suppliers[DEMO_NSUPPLIERS][25];
	size_t made[ES_TRANSFER + 1]; /* steps made, by kind */
	long long entries;	      /* in the ledger, as its verify counts them */
};

/* Everything one seeding run plans and writes; owned by crm_demo_seed. */
struct demo {
	struct rng rng;
	int64_t now, start; /* start: when the tenant's history begins */
	const char *slug;
	bson_oid_t tenant_id, pipeline_id, key_accounts_id, private_clients_id;
	bson_oid_t users[NUSERS];
	bson_oid_t campaigns[NCAMPAIGNS];
	struct lead_plan *leads; /* DEMO_LEADS, oldest first */
	struct client_plan *clients;
	size_t nclients;
	struct deal_plan *deals;
	size_t ndeals, deals_cap;
	struct claim_plan claims[DEMO_CLAIMS];
	size_t nclaims;
	struct reminder *reminders;
	size_t nreminders, reminders_cap;
	struct string_set taken;
	struct batch batches[C_COUNT];
	struct erp_plan erp;
};

/* ---- the command (demo.c) ---- */

/* `trellis-demo seed` with the arguments after "seed": the process's exit
 * code (see demo.c). main.c runs it through tr_command_run (command.h). */
int crm_demo_seed(int argc, char **argv);
/* Prints the command's usage to stderr. */
void crm_demo_usage(void);

/* ---- records in the stored shape (demo.c) ---- */

/* A new record of coll, with _id and tenant_id; the caller appends the
 * fields, then crm_demo_record_end. */
bson_t *crm_demo_record_new(struct demo *d, enum demo_coll coll, const bson_oid_t *id);
/* created_at, updated_at and version, last as the data layer writes them. */
void crm_demo_record_end(bson_t *doc, int64_t created, int64_t updated);
/* A money field: {amount (minor units), currency}. */
void crm_demo_append_money(bson_t *doc, const char *key, int64_t minor);
/* An empty document field (custom). */
void crm_demo_append_empty_doc(bson_t *doc, const char *key);
/* An owner reference: the user's id, or nothing for nobody. */
void crm_demo_append_user(struct demo *d, bson_t *doc, const char *key, int user);
/* When campaign k started and ended. */
int64_t crm_demo_campaign_start(const struct demo *d, int k);
int64_t crm_demo_campaign_end(const struct demo *d, int k);

/* ---- times and names (demo_world.c) ---- */

/* t, or when that is not at least ten minutes ago, a time between from and then. */
int64_t crm_demo_past(struct demo *d, int64_t from, int64_t t);
/* Company i of the world ("Nordic Foods") and its mail domain. */
void crm_demo_company_name(int i, char *out, size_t len);
void crm_demo_company_domain(int i, char *out, size_t len);
/* first.last@domain, made unique with a number. */
void crm_demo_unique_email(struct demo *d, const char *first, const char *last, const char *domain,
			   char *out, size_t len);
/* A phone in the country's format, unique among the leads, and its digits. */
void crm_demo_unique_phone(struct demo *d, const struct country *c, char *out, size_t len,
			   char *digits, size_t dlen);
/* A contact person: name, email at domain, phone. */
void crm_demo_person(struct demo *d, const char *domain, int country, char *name, size_t nlen,
		     char *email, size_t elen, char *phone, size_t plen);

/* ---- leads, clients, deals (demo_plan.c) ---- */

/* Plan the leads, the clients, the deals (in this order: each reads the last). */
void crm_demo_plan_leads(struct demo *d);
void crm_demo_plan_clients(struct demo *d);
void crm_demo_plan_deals(struct demo *d);
/* The records of one planned lead, client (with contacts and counterparties), deal. */
void crm_demo_write_lead(struct demo *d, const struct lead_plan *l);
void crm_demo_write_client(struct demo *d, struct client_plan *c);
void crm_demo_write_deal(struct demo *d, const struct deal_plan *deal);

/* ---- interactions, claims, tasks (demo_activity.c) ---- */

/* Plan the claims of clients who bought something. */
void crm_demo_plan_claims(struct demo *d);
/* The interactions of leads, deals and clients. */
void crm_demo_write_interactions(struct demo *d);
/* The record of one planned claim. */
void crm_demo_write_claim(struct demo *d, const struct claim_plan *claim);
/* The tasks around deals, leads and claims, with their reminders. */
void crm_demo_write_tasks(struct demo *d);

/* ---- the ERP (demo_erp.c, demo_erp_run.c) ---- */

/* Plans the ERP's story from the CRM's plan (clients, won deals). */
void crm_demo_plan_erp(struct demo *d);
/* Makes it on db (the tenant's, with its CRM records written) through the
 * ERP's routes, then asks the ERP's checks: TR_OK, or a TR_E* code after
 * saying on stderr what was refused. */
int crm_demo_make_erp(struct demo *d, struct tr_db *db);
/* The company's departments and an employee for each demo user, through
 * the ERP's routes (demo_people.c). */
int crm_demo_make_people(struct demo *d, struct tr_db *db);
/* The demo's process, "fulfil a won deal", and an instance of it for each
 * of the latest won deals, through the BPM's routes (demo_bpm.c). */
int crm_demo_make_bpm(struct demo *d, struct tr_db *db);
extern const char *const crm_demo_bpm_colls[];
/* A demo user's name and e-mail address (demo.c). */
const char *crm_demo_cast_name(int user);
void crm_demo_cast_email(const struct demo *d, int user, char *out, size_t len);
/* The ERP's collections, for undoing a failed run. */
extern const char *const crm_demo_erp_colls[];
void crm_demo_erp_free(struct demo *d);

#endif
