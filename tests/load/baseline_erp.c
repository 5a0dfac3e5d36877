/*
 * baseline_erp - the database floor under the ERP figures of `make bench`
 * (section erp): the same work sent straight to FerretDB (or MongoDB) from
 * C with the raw driver - no HTTP, JWT, Redis or server code in front of
 * it - in the same run on the same database, as baseline_find stands
 * beside GET /v1/tags/{id}.
 *
 *   baseline_erp verify URI TENANT_HEX N [READS]
 *   baseline_erp append URI TENANT_HEX THREADS SECONDS [KEYS]
 *   baseline_erp orderflow URI TENANT_HEX THREADS SECONDS [minimal|today [PRODUCTS [LINES]]]
 *
 * The database is the one the URI names. When TRELLIS_POSTGRESQL_URI is set
 * (FerretDB on PostgreSQL, as bench.sh runs it), the throwaway collections
 * get the GIN expression indexes the server's migrations build for the
 * real ones (server/data/pg.c), so every pushed-down equality is served
 * alike. Output (stdout): one key=value per line, the figure last. Exit
 * status 0 on success, 1 on an error or a check that does not hold, 2 on
 * bad arguments. Every run uses new ids and register keys with a run tag,
 * so runs on one database never meet; the throwaway collections are named
 * baseline_*.
 *
 * verify - the floor of GET /v1/erp/ledger/verify. Reads the tenant's
 * journal movements (the real register_moves with key "erp.ledger", as
 * build/load_erp posted them; read only) and checks the chain as
 * modules/erp/ledger_check.c does: each entry's hash is SHA-256 (libsodium,
 * as the server) of the head before it and its canonical bytes (ledger.c
 * canonical()), its lines balance and are its deltas, the entries are
 * numbered 1..N without a gap, each following the head the one before
 * left. READS (comma separated, default "sorted,natural") are ways of
 * reading the same movements, each timed and checked on its own (and the
 * fastest that found the whole chain is named: on FerretDB the decoding
 * of each movement, not the way it is asked for, is what takes the time):
 *   sorted     one cursor, {tenant_id, key} sorted by seq, whole documents:
 *              what a verify in seq order must ask for (the figure);
 *   projected  the same with a projection of what the check reads
 *              (seq, d, a, meta);
 *   natural    that projection without the sort, ordered here in C
 *              (FerretDB then streams instead of reading, decoding and
 *              sorting every match in Go first);
 *   buckets    the server's own pattern (tr_register_movements): one find
 *              per bucket of 64 movements by {rb}, N / 64 finds.
 * Each must find exactly N entries and an unbroken chain.
 *
 * append - the floor of a register append on one hot key, as
 * server/data/register_post.c appends: a movement {_id: "<tenant>/<key>#<seq>",
 * tenant_id, key, seq, op, d, a, at, rb} into a throwaway collection with
 * register_moves' indexes (unique (tenant_id, op); rb; the _id's own
 * uniqueness). The THREADS threads of a process share one known state of
 * the key behind one lock, as a server process's workers share the
 * register's stripe lock and state cache, and each loops: insert seq + 1
 * on the known state (one insert); on a duplicate key another process took
 * seq + 1, so read on (one find of seq + 1 by _id, then its bucket's
 * movements by rb: catch_up() in register.c) and insert again, after a
 * pause of up to 2 ms from the second attempt on. bench.sh runs three
 * processes at once, like the three servers of the hot-product figure, and
 * checks that the key's newest sequence equals the appends they made. KEYS
 * (comma separated, default baseline.hot) are the registers one append
 * posts to, one after the other: "erp.stock/hot,erp.ledger" is a stock
 * move's two hot registers. Left out of the floor: snapshots (2 statements
 * every 64 movements, which make cold reads short; every state here is
 * read warm) and the server's lookup of the operation id after every
 * collision - FerretDB's duplicate-key error does not say which index
 * refused, but a read-on that finds seq + 1 free does, so the floor looks
 * the operation up only then.
 *
 * orderflow - the floor of one sales order through create -> confirm ->
 * invoice -> pay -> ship: THREADS threads, each one order at a time for
 * SECONDS (no order started after it), LINES lines (default 3) of 1-5
 * units of PRODUCTS products (default 1000, each received with 1,000,000
 * units first), on throwaway collections with the real ones' indexes. The
 * variant "minimal" sends the fewest statements the five steps need under
 * ARCHITECTURE.md's rules while making the same records, register
 * movements, journal entries and events as the server (L = LINES):
 *
 *   create   find warehouse (the reference exists), find each product (its
 *            price and tax rate), insert order, insert + delete outbox
 *                                                                4 + L
 *   confirm  find order (status, version, lines), find warehouse (may its
 *            stock go negative?), L reservations (a register insert each,
 *            floored at zero available), claim (insert _claims
 *            {<coll>/<id>/<version>}), findAndModify of that version to
 *            confirmed, delete claim, insert + delete outbox      7 + L
 *   invoice  find order, the next invoice number (a register insert on
 *            the tenant's year), the receivable opened (register insert),
 *            the journal entry (one insert on the tenant's hash-chained
 *            ledger register), insert invoice, claim + findAndModify +
 *            delete claim (invoiced), insert + delete outbox        10
 *   pay      find order, the payment off the receivable (register insert,
 *            floored at zero open), journal entry, insert payment, find
 *            invoice + claim + findAndModify + delete claim (paid), claim +
 *            findAndModify + delete claim of the order (paid), one outbox
 *            record for both events + its delete                   13
 *   ship     find order, claim + findAndModify + delete claim (the
 *            quantities shipped, the shipment named, completed), L stock
 *            movements at the moving average, journal entry, insert
 *            shipment, insert + delete outbox                    8 + L
 *
 * 51 statements with 3 lines: 10 finds and 41 writes (26 inserts, 5
 * findAndModify, 10 deletes), each write its own PostgreSQL commit. Why
 * this is the floor: a record changes only under a claim of its version
 * before a version-checked write (FerretDB makes nothing but a unique
 * insert atomic), so a change is read + claim + write; the claim's delete
 * counts too (without TTL indexes it has to go some time, and later costs
 * the same statement). Balances are register movements, one insert each on
 * a known state; the journal is one hash-chained register per tenant, so
 * each entry is one insert on one hot key; invoice numbers come gapless
 * from a register; every event is in the outbox before the answer and
 * leaves it once published. What the server sends beyond it (93
 * statements with 3 lines, counted on the wire with one order at a time
 * on a stack of its own) none of those guarantees needs:
 *   - reads of what the step has read already: the record again before
 *     each version-checked write (tr_db_update reads it itself), the
 *     order up to three times more in pay, the invoice twice; the
 *     shipment looked up before a shipment; a register operation looked up
 *     before posting it (its unique index answers that); a new register's
 *     state read before its first movement (the insert of seq 1 does);
 *   - lookups a process could keep: the webhook subscribers of each
 *     event's topic, the list-bucket marker of each insert (_buckets), the
 *     chart of accounts before each journal entry;
 *   - writes the flow's own ids make redundant: the Idempotency-Key record
 *     (insert + update) of pay and ship, whose effects are idempotent by
 *     ids derived from the key already; the once-mark of erp.order.paid
 *     (the version-checked write to paid happens once); the transient
 *     "confirming" write (reservations are keyed by the version the
 *     confirmation writes, so a lost race only replays them); the
 *     shipment's second write of the order (un-pending it): the first
 *     write names it and sets the status, and the shipment record's
 *     existence says it is done;
 *   - one outbox record per event where a step has two (pay).
 * The variant "today" replays the server's 93 statements in the order the
 * wire showed (the same collections, filters and documents), to tell what
 * the statements cost from what the server adds around them. Both leave
 * out Redis (the settle jobs, publishing) and HTTP. Every record has one
 * writer here, so claims are never contended; registers are, on the
 * tenant's ledger and invoice-number keys, which every order appends to one
 * after the other (the chain needs the head before it): the time an order
 * waited for them is register_wait_ms_per_order.
 */
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256
#define MAX_SECONDS 3600
#define MAX_PRODUCTS 100000
#define MAX_LINES 10
#define MAX_KEYS 4
#define ERROR_SIZE (BSON_ERROR_BUFFER_SIZE + 256)
#define BUCKET 64	 /* movements per bucket (TR_REG_BUCKET) */
#define REG_ATTEMPTS 400 /* appends tried before giving up (register_post.c) */
#define REG_COUNTERS 24	 /* counters of one register here: the ledger's ~17 */
#define REG_TABLE 131072 /* registers one process may know (slots of the cache) */
#define OPENING_STOCK 1000000
#define LEDGER_COLL "register_moves"
#define LEDGER_KEY "erp.ledger"
#define ENTRY_LINES 40 /* ERP_MAX_LINES */

/* ---- collections ----
 * The throwaway collections and their indexes: the real collection's
 * createIndexes and GIN equality fields (migrations/, modules/erp/migrations). */

enum coll_id {
	C_MOVES,
	C_CLAIMS,
	C_OUTBOX,
	C_ORDERS,
	C_INVOICES,
	C_PAYMENTS,
	C_SHIPMENTS,
	C_PRODUCTS,
	C_WAREHOUSES,
	C_IDEMPOTENCY, /* today's extras from here on */
	C_WEBHOOKS,
	C_BUCKETS,
	C_ACCOUNTS,
	C_ONCE,
	C_SNAPS,
	C_COUNT
};

struct coll_spec {
	const char *name;
	const char *indexes; /* JSON: {"indexes": [...]} as createIndexes takes them */
	const char *gin[9];  /* fields of the GIN equality indexes */
};

static const struct coll_spec colls[C_COUNT] = {
    [C_MOVES] =
	{"baseline_register_moves",
	 "{\"indexes\": [{\"key\": {\"tenant_id\": 1, \"op\": 1}, \"name\": \"t_op_unique\", "
	 "\"unique\": true}, {\"key\": {\"rb\": 1}, \"name\": \"rb\"}]}",
	 {"_id", "tenant_id", "op", "rb"}},
    [C_CLAIMS] = {"baseline_claims",
		  "{\"indexes\": [{\"key\": {\"rk\": 1}, \"name\": \"rk\"}]}",
		  {"_id", "rk"}},
    [C_OUTBOX] = {"baseline_outbox",
		  "{\"indexes\": [{\"key\": {\"created_at\": 1}, \"name\": \"created\"}]}",
		  {"_id"}},
    [C_ORDERS] = {"baseline_erp_orders",
		  "{\"indexes\": [{\"key\": {\"tenant_id\": 1, \"created_at\": -1, \"_id\": -1}, "
		  "\"name\": \"t_created_at__id\"}, {\"key\": {\"tenant_id\": 1, \"deal_id\": 1}, "
		  "\"name\": \"t_deal_id\"}, {\"key\": {\"_b\": 1}, \"name\": \"list_bucket\"}]}",
		  {"_id", "tenant_id", "status", "owner_id", "client_id", "warehouse_id", "deal_id",
		   "_b"}},
    [C_INVOICES] = {"baseline_erp_invoices",
		    "{\"indexes\": [{\"key\": {\"tenant_id\": 1, \"number\": 1}, \"name\": "
		    "\"t_number_unique\", \"unique\": true}, {\"key\": {\"tenant_id\": 1, "
		    "\"created_at\": -1, \"_id\": -1}, \"name\": \"t_created_at__id\"}, {\"key\": "
		    "{\"_b\": 1}, \"name\": \"list_bucket\"}]}",
		    {"_id", "tenant_id", "order_id", "number", "status", "_b"}},
    [C_PAYMENTS] =
	{"baseline_erp_payments",
	 "{\"indexes\": [{\"key\": {\"tenant_id\": 1, \"created_at\": -1, \"_id\": -1}, "
	 "\"name\": \"t_created_at__id\"}, {\"key\": {\"tenant_id\": 1, \"order_id\": 1}, "
	 "\"name\": \"t_order_id\"}, {\"key\": {\"_b\": 1}, \"name\": \"list_bucket\"}]}",
	 {"_id", "tenant_id", "order_id", "method", "_b"}},
    [C_SHIPMENTS] =
	{"baseline_erp_shipments",
	 "{\"indexes\": [{\"key\": {\"tenant_id\": 1, \"created_at\": -1, \"_id\": -1}, "
	 "\"name\": \"t_created_at__id\"}, {\"key\": {\"tenant_id\": 1, \"order_id\": "
	 "1}, \"name\": \"t_order_id\"}, {\"key\": {\"_b\": 1}, \"name\": "
	 "\"list_bucket\"}]}",
	 {"_id", "tenant_id", "order_id", "_b"}},
    [C_PRODUCTS] = {"baseline_erp_products",
		    "{\"indexes\": [{\"key\": {\"tenant_id\": 1, \"sku\": 1}, \"name\": "
		    "\"t_sku_unique\", \"unique\": true}, {\"key\": {\"tenant_id\": 1, "
		    "\"created_at\": -1, \"_id\": -1}, \"name\": \"t_created_at__id\"}, {\"key\": "
		    "{\"_b\": 1}, \"name\": \"list_bucket\"}]}",
		    {"_id", "tenant_id", "sku", "active", "_b"}},
    [C_WAREHOUSES] = {"baseline_erp_warehouses",
		      "{\"indexes\": [{\"key\": {\"tenant_id\": 1, \"code\": 1}, \"name\": "
		      "\"t_code_unique\", \"unique\": true}, {\"key\": {\"_b\": 1}, \"name\": "
		      "\"list_bucket\"}]}",
		      {"_id", "tenant_id", "code", "active", "_b"}},
    [C_IDEMPOTENCY] = {"baseline_idempotency_keys",
		       "{\"indexes\": [{\"key\": {\"tenant_id\": 1, \"principal\": 1, \"key\": 1}, "
		       "\"name\": \"tenant_principal_key_unique\", \"unique\": true}, {\"key\": "
		       "{\"created_at\": 1}, \"name\": \"created_at_expiry\"}]}",
		       {"_id", "tenant_id", "principal", "key"}},
    [C_WEBHOOKS] = {"baseline_webhooks",
		    "{\"indexes\": [{\"key\": {\"tenant_id\": 1, \"topics\": 1, \"active\": 1}, "
		    "\"name\": \"t_topics_active\"}]}",
		    {"_id", "tenant_id", "topics", "active", "_b"}},
    [C_BUCKETS] =
	{"baseline_buckets",
	 "{\"indexes\": [{\"key\": {\"tenant_id\": 1, \"coll\": 1}, \"name\": \"t_coll\"}]}",
	 {"_id"}},
    [C_ACCOUNTS] = {"baseline_erp_accounts",
		    "{\"indexes\": [{\"key\": {\"tenant_id\": 1, \"code\": 1}, \"name\": "
		    "\"t_code_unique\", \"unique\": true}]}",
		    {"_id", "tenant_id", "code", "type", "_b"}},
    [C_ONCE] = {"baseline_once_marks", NULL, {"_id"}},
    [C_SNAPS] = {"baseline_register_snaps",
		 "{\"indexes\": [{\"key\": {\"tenant_id\": 1, \"key\": 1}, \"name\": \"t_key\"}]}",
		 {"_id"}},
};

/* ---- time, numbers, arguments ---- */

static uint64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int64_t
wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_us(long us)
{
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
	nanosleep(&ts, NULL);
}

/* splitmix64: each thread's own generator. */
static uint64_t
rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int
parse_count(const char *text, long max, long *out)
{
	char *end = NULL;
	long value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < 1 || value > max)
		return -1;
	*out = value;
	return 0;
}

/* q * num / den rounded half to even, as erp_muldiv_half_even. */
static int64_t
muldiv_half_even(int64_t q, int64_t num, int64_t den)
{
	__int128 p = (__int128)q * num, quo = p / den, rem = p % den;

	if (rem != 0) {
		__int128 twice = rem < 0 ? -2 * rem : 2 * rem;
		if (twice > den || (twice == den && quo % 2 != 0))
			quo += p < 0 ? -1 : 1;
	}
	return (int64_t)quo;
}

static int
by_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The q-quantile of n sorted values. */
static double
quantile(const double *v, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(q * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

/* ---- the database's CPU ----
 * BASELINE_ERP_CPU="ferretdb=PID,postgresql=PID" names the database's
 * processes; each one's CPU (user + system, its children's included: a
 * postmaster's backends) is read when timing starts and ends, so a figure
 * can say what it cost the database per order, append or entry. A child
 * that ended meanwhile is missed (FerretDB keeps its connections). */

#define CPU_PROBES 4

struct cpu_probes {
	int n;
	char name[CPU_PROBES][32];
	int pid[CPU_PROBES];
	double at_start[CPU_PROBES];
};

/* utime + stime of a /proc/<pid>/stat, in seconds; its parent into *ppid. */
static double
stat_cpu(const char *path, long *ppid)
{
	char buf[1024];
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	unsigned long utime = 0, stime = 0;

	if (f)
		fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	*ppid = -1;
	/* after "pid (comm) ": state ppid ... utime (12th) stime (13th) */
	if (!p || sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", ppid, &utime,
			 &stime) != 3)
		return 0;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double
tree_cpu(int pid)
{
	char path[64];
	long ppid;
	double total;
	DIR *d;
	struct dirent *e;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	total = stat_cpu(path, &ppid);
	if (!(d = opendir("/proc")))
		return total;
	while ((e = readdir(d)))
		if (e->d_name[0] >= '1' && e->d_name[0] <= '9') {
			double c;
			snprintf(path, sizeof(path), "/proc/%.20s/stat", e->d_name);
			c = stat_cpu(path, &ppid);
			if (ppid == pid)
				total += c;
		}
	closedir(d);
	return total;
}

static void
cpu_probes_start(struct cpu_probes *c)
{
	const char *env = getenv("BASELINE_ERP_CPU");
	char list[256], *save = NULL;

	c->n = 0;
	snprintf(list, sizeof(list), "%s", env ? env : "");
	for (char *item = strtok_r(list, ",", &save); item && c->n < CPU_PROBES;
	     item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		if (!eq || atoi(eq + 1) <= 0)
			continue;
		*eq = '\0';
		snprintf(c->name[c->n], sizeof(c->name[0]), "%s", item);
		c->pid[c->n] = atoi(eq + 1);
		c->at_start[c->n] = tree_cpu(c->pid[c->n]);
		c->n++;
	}
}

/* Prints <name>_cpu_seconds since the start and, when units > 0,
 * <name>_cpu_ms_per_<unit>. */
static void
cpu_probes_print(const struct cpu_probes *c, const char *prefix, const char *unit, double units)
{
	for (int i = 0; i < c->n; i++) {
		double used = tree_cpu(c->pid[i]) - c->at_start[i];
		printf("%s%s_cpu_seconds=%.2f\n", prefix, c->name[i], used);
		if (units > 0)
			printf("%s%s_cpu_ms_per_%s=%.2f\n", prefix, c->name[i], unit,
			       1000 * used / units);
	}
}

/* ---- the run and each thread's session ---- */

/* What every thread shares: set up by main before the threads start, then
 * only read (the starting gun aside). */
struct run {
	mongoc_client_pool_t *pool;
	const char *database;
	bson_oid_t tenant;
	char tenant_hex[25];
	char tag[13]; /* this run's, in register keys */
	/* the starting gun: main sets state (under lock) to 1 (run) or -1
	 * (abort) once every thread exists; deadline is written before */
	pthread_mutex_t lock;
	pthread_cond_t changed;
	int state;
	uint64_t deadline_ns;
};

static int
gun_wait(struct run *r)
{
	int state;

	pthread_mutex_lock(&r->lock);
	while (r->state == 0)
		pthread_cond_wait(&r->changed, &r->lock);
	state = r->state;
	pthread_mutex_unlock(&r->lock);
	return state;
}

static void
gun_fire(struct run *r, int state, long seconds)
{
	pthread_mutex_lock(&r->lock);
	r->deadline_ns = now_ns() + (uint64_t)seconds * 1000000000ull;
	r->state = state;
	pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
}

enum stmt { S_FIND, S_INSERT, S_MODIFY, S_DELETE, S_KINDS };
static const char *const stmt_names[S_KINDS] = {"find", "insert", "modify", "delete"};

/* Statements sent and the time spent in each kind. */
struct tally {
	uint64_t n[S_KINDS];
	uint64_t ns[S_KINDS];
	uint64_t conflicts; /* register appends that lost the race for seq + 1 */
	uint64_t replays;   /* register appends that found their operation posted */
	uint64_t wait_ns;   /* waiting for this process's lock of a register */
};

static void
tally_sum(struct tally *into, const struct tally *t)
{
	for (int k = 0; k < S_KINDS; k++) {
		into->n[k] += t->n[k];
		into->ns[k] += t->ns[k];
	}
	into->conflicts += t->conflicts;
	into->replays += t->replays;
	into->wait_ns += t->wait_ns;
}

static uint64_t
tally_statements(const struct tally *t)
{
	uint64_t n = 0;
	for (int k = 0; k < S_KINDS; k++)
		n += t->n[k];
	return n;
}

/* One thread's client and collections; the thread owns all of it. */
struct session {
	const struct run *run;
	mongoc_client_t *client;
	mongoc_collection_t *coll[C_COUNT];
	struct tally tally;
	uint64_t rng;
	char error[ERROR_SIZE];
};

static void
session_open(struct session *s, const struct run *r, uint64_t seed)
{
	memset(s, 0, sizeof(*s));
	s->run = r;
	s->rng = seed;
	s->client = mongoc_client_pool_pop(r->pool);
	for (int c = 0; c < C_COUNT; c++)
		s->coll[c] = mongoc_client_get_collection(s->client, r->database, colls[c].name);
}

static void
session_close(struct session *s)
{
	for (int c = 0; c < C_COUNT; c++)
		mongoc_collection_destroy(s->coll[c]);
	if (s->client)
		mongoc_client_pool_push(s->run->pool, s->client);
	s->client = NULL;
}

/* ---- statements: each one counted and timed ---- */

static int
failed(struct session *s, const char *what, enum coll_id c, const bson_error_t *e)
{
	snprintf(s->error, sizeof(s->error), "%s on %s: %s", what, colls[c].name, e->message);
	return -1;
}

static bool
duplicate(const bson_error_t *e)
{
	/* as tr_db_err_from_mongoc: FerretDB may answer with PostgreSQL's */
	return e->code == 11000 || e->code == 11001 ||
	       (e->domain == MONGOC_ERROR_SERVER && e->code == 1 &&
		strstr(e->message, "SQLSTATE 23505"));
}

static void
tally_add(struct session *s, enum stmt k, uint64_t t0)
{
	s->tally.n[k]++;
	s->tally.ns[k] += now_ns() - t0;
}

/* The first document matching filter into *out (initialised by the
 * caller; replaced when found): 1, 0 when none matches, -1. */
static int
find_one(struct session *s, enum coll_id c, const bson_t *filter, bson_t *out)
{
	bson_t opts = BSON_INITIALIZER;
	const bson_t *doc;
	bson_error_t error;
	mongoc_cursor_t *cur;
	uint64_t t0 = now_ns();
	int rc = 0;

	BSON_APPEND_INT64(&opts, "limit", 1);
	cur = mongoc_collection_find_with_opts(s->coll[c], filter, &opts, NULL);
	if (mongoc_cursor_next(cur, &doc)) {
		if (out) {
			bson_destroy(out);
			bson_copy_to(doc, out);
		}
		rc = 1;
	} else if (mongoc_cursor_error(cur, &error)) {
		rc = failed(s, "find", c, &error);
	}
	mongoc_cursor_destroy(cur);
	bson_destroy(&opts);
	tally_add(s, S_FIND, t0);
	return rc;
}

/* Finds by a string _id (most of today's extra reads). */
static int
find_by_str_id(struct session *s, enum coll_id c, const char *id, bson_t *out)
{
	bson_t filter = BSON_INITIALIZER;
	int rc;

	BSON_APPEND_UTF8(&filter, "_id", id);
	rc = find_one(s, c, &filter, out);
	bson_destroy(&filter);
	return rc;
}

static int
find_by_oid(struct session *s, enum coll_id c, const bson_oid_t *id, bson_t *out)
{
	bson_t filter = BSON_INITIALIZER;
	int rc;

	BSON_APPEND_OID(&filter, "_id", id);
	rc = find_one(s, c, &filter, out);
	bson_destroy(&filter);
	return rc;
}

/* 0, 1 when a unique index refused it, -1. */
static int
insert(struct session *s, enum coll_id c, const bson_t *doc)
{
	bson_error_t error;
	uint64_t t0 = now_ns();
	int rc = 0;

	if (!mongoc_collection_insert_one(s->coll[c], doc, NULL, NULL, &error))
		rc = duplicate(&error) ? 1 : failed(s, "insert", c, &error);
	tally_add(s, S_INSERT, t0);
	return rc;
}

/* findAndModify returning the new document into *out (initialised by the
 * caller): 1, 0 when nothing matched, -1. */
static int
modify(struct session *s, enum coll_id c, const bson_t *query, const bson_t *update, bson_t *out)
{
	mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
	bson_t reply = BSON_INITIALIZER;
	bson_error_t error;
	bson_iter_t it;
	uint64_t t0 = now_ns();
	int rc = 0;

	mongoc_find_and_modify_opts_set_update(opts, update);
	mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
	if (!mongoc_collection_find_and_modify_with_opts(s->coll[c], query, opts, &reply, &error)) {
		rc = failed(s, "findAndModify", c, &error);
	} else if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
		const uint8_t *data;
		uint32_t len;
		bson_t value;
		bson_iter_document(&it, &len, &data);
		if (out && bson_init_static(&value, data, len)) {
			bson_destroy(out);
			bson_copy_to(&value, out);
		}
		rc = 1;
	}
	bson_destroy(&reply);
	mongoc_find_and_modify_opts_destroy(opts);
	tally_add(s, S_MODIFY, t0);
	return rc;
}

static int
update(struct session *s, enum coll_id c, const bson_t *filter, const bson_t *change, bool upsert)
{
	bson_t opts = BSON_INITIALIZER;
	bson_error_t error;
	uint64_t t0 = now_ns();
	int rc = 0;

	if (upsert)
		BSON_APPEND_BOOL(&opts, "upsert", true);
	if (!mongoc_collection_update_one(s->coll[c], filter, change, &opts, NULL, &error))
		rc = failed(s, "update", c, &error);
	bson_destroy(&opts);
	tally_add(s, S_MODIFY, t0);
	return rc;
}

/* delete_one, or delete_many when many (the server's claim release). */
static int
delete_docs(struct session *s, enum coll_id c, const bson_t *filter, bool many)
{
	bson_error_t error;
	uint64_t t0 = now_ns();
	bool ok = many ? mongoc_collection_delete_many(s->coll[c], filter, NULL, NULL, &error)
		       : mongoc_collection_delete_one(s->coll[c], filter, NULL, NULL, &error);

	tally_add(s, S_DELETE, t0);
	return ok ? 0 : failed(s, "delete", c, &error);
}

/* ---- setting up the throwaway collections ---- */

/* FerretDB's table for a collection, as server/data/pg.c finds it. */
static bool
pg_table_of(PGconn *conn, const char *schema, const char *coll, char *table, size_t len)
{
	char *qschema = PQescapeIdentifier(conn, schema, strlen(schema));
	char sql[512];
	const char *params[1] = {coll};
	bool found = false;

	if (!qschema)
		return false;
	snprintf(sql, sizeof(sql),
		 "SELECT _jsonb->>'table' FROM %s._ferretdb_database_metadata "
		 "WHERE _jsonb->'_id' = to_jsonb($1::text)",
		 qschema);
	PQfreemem(qschema);
	PGresult *res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    !PQgetisnull(res, 0, 0) && strlen(PQgetvalue(res, 0, 0)) < len) {
		snprintf(table, len, "%s", PQgetvalue(res, 0, 0));
		found = true;
	}
	PQclear(res);
	return found;
}

static bool
pg_exec(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

	if (!ok)
		snprintf(err, errlen, "postgresql: %s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
	return ok;
}

static void
pg_quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* The GIN equality indexes of the collections in need (a mask of
 * coll_ids), named and built as server/data/pg.c does; the processes that
 * set up at once (append) take turns under an advisory lock. */
static int
pg_equality_indexes(const char *pg_uri, const char *schema, unsigned need, char *err, size_t errlen)
{
	PGconn *conn = PQconnectdb(pg_uri);
	int rc = -1;

	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(err, errlen, "postgresql: connecting: %s", PQerrorMessage(conn));
		goto out;
	}
	PQsetNoticeProcessor(conn, pg_quiet, NULL); /* "already exists, skipping" */
	if (!pg_exec(conn, "SELECT pg_advisory_lock(4242017)", err, errlen))
		goto out;
	for (int c = 0; c < C_COUNT; c++) {
		char table[256], name[128], sql[1024];
		if (!(need & (1u << c)))
			continue;
		if (!pg_table_of(conn, schema, colls[c].name, table, sizeof(table))) {
			snprintf(err, errlen, "postgresql: FerretDB has no table for %s.%s", schema,
				 colls[c].name);
			goto out;
		}
		for (const char *const *f = colls[c].gin; *f; f++) {
			if ((size_t)snprintf(name, sizeof(name), "%s_eq_%s", table, *f) > 63) {
				snprintf(err, errlen, "postgresql: index name %s is too long",
					 name);
				goto out;
			}
			char *qschema = PQescapeIdentifier(conn, schema, strlen(schema));
			char *qname = PQescapeIdentifier(conn, name, strlen(name));
			char *qtable = PQescapeIdentifier(conn, table, strlen(table));
			char *qfield = PQescapeLiteral(conn, *f, strlen(*f));
			snprintf(sql, sizeof(sql),
				 "CREATE INDEX IF NOT EXISTS %s ON %s.%s USING gin "
				 "((_jsonb->%s) jsonb_path_ops)",
				 qname, qschema, qtable, qfield);
			PQfreemem(qschema);
			PQfreemem(qname);
			PQfreemem(qtable);
			PQfreemem(qfield);
			if (!pg_exec(conn, sql, err, errlen))
				goto out;
		}
	}
	rc = 0;
out:
	PQfinish(conn);
	return rc;
}

/* Runs cmd on the database; processes that set up at once may race
 * FerretDB's creation of a collection, so a few tries. */
static bool
setup_command(mongoc_database_t *db, const bson_t *cmd, bool exists_ok, bson_error_t *error)
{
	for (int attempt = 0; attempt < 5; attempt++) {
		if (mongoc_database_write_command_with_opts(db, cmd, NULL, NULL, error))
			return true;
		if (exists_ok && strstr(error->message, "already exists"))
			return true;
		sleep_us(200000);
	}
	return false;
}

/* createIndexes of each collection in need (which creates it too), then
 * the GIN indexes when PostgreSQL is there to build them. One index per
 * command: FerretDB v1.24 drops the connection (a panic in its handler)
 * when one createIndexes names several indexes that exist already. */
static int
setup_collections(const struct run *r, unsigned need, char *err, size_t errlen)
{
	mongoc_client_t *client = mongoc_client_pool_pop(r->pool);
	mongoc_database_t *db = mongoc_client_get_database(client, r->database);
	const char *pg_uri = getenv("TRELLIS_POSTGRESQL_URI");
	int rc = -1;

	for (int c = 0; c < C_COUNT; c++) {
		bson_t *spec = NULL;
		bson_error_t error;
		bson_iter_t it, list;
		if (!(need & (1u << c)))
			continue;
		if (!colls[c].indexes) {
			bson_t cmd = BSON_INITIALIZER;
			BSON_APPEND_UTF8(&cmd, "create", colls[c].name);
			bool ok = setup_command(db, &cmd, true, &error);
			bson_destroy(&cmd);
			if (!ok) {
				snprintf(err, errlen, "creating %s: %s", colls[c].name,
					 error.message);
				goto out;
			}
			continue;
		}
		spec = bson_new_from_json((const uint8_t *)colls[c].indexes, -1, &error);
		if (!spec || !bson_iter_init_find(&it, spec, "indexes") ||
		    !bson_iter_recurse(&it, &list)) {
			snprintf(err, errlen, "bad index spec of %s", colls[c].name);
			bson_destroy(spec);
			goto out;
		}
		while (bson_iter_next(&list)) {
			bson_t cmd = BSON_INITIALIZER, indexes;
			BSON_APPEND_UTF8(&cmd, "createIndexes", colls[c].name);
			BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
			bson_append_iter(&indexes, "0", -1, &list);
			bson_append_array_end(&cmd, &indexes);
			bool ok = setup_command(db, &cmd, false, &error);
			bson_destroy(&cmd);
			if (!ok) {
				snprintf(err, errlen, "indexes of %s: %s", colls[c].name,
					 error.message);
				bson_destroy(spec);
				goto out;
			}
		}
		bson_destroy(spec);
	}
	rc = pg_uri && *pg_uri ? pg_equality_indexes(pg_uri, r->database, need, err, errlen) : 0;
out:
	mongoc_database_destroy(db);
	mongoc_client_pool_push(r->pool, client);
	return rc;
}

/* ---- registers (server/data/register.c and register_post.c) ---- */

struct reg_state {
	long long seq;
	int n;
	struct {
		char name[40];
		int64_t value;
	} c[REG_COUNTERS];
};

static int64_t
reg_get(const struct reg_state *st, const char *name)
{
	for (int i = 0; i < st->n; i++)
		if (strcmp(st->c[i].name, name) == 0)
			return st->c[i].value;
	return 0;
}

static bool
reg_set(struct reg_state *st, const char *name, int64_t value)
{
	for (int i = 0; i < st->n; i++)
		if (strcmp(st->c[i].name, name) == 0) {
			st->c[i].value = value;
			return true;
		}
	if (st->n == REG_COUNTERS || strlen(name) >= sizeof(st->c[0].name))
		return false;
	snprintf(st->c[st->n].name, sizeof(st->c[0].name), "%s", name);
	st->c[st->n++].value = value;
	return true;
}

/* A register this process knows: its state as of its newest movement seen
 * here, behind the lock its writers take in turn (the server's stripe lock
 * and state cache, one per key here: the floor has no false sharing and
 * never forgets a state). */
struct reg_slot {
	pthread_mutex_t lock;
	char key[160];
	struct reg_state state;
};

static struct {
	pthread_mutex_t lock;
	struct reg_slot **slot;
} R = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t
name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* The slot of key, made (with an empty state) on first use; NULL when
 * the table is full. */
static struct reg_slot *
reg_slot_of(const char *key)
{
	struct reg_slot *found = NULL;
	uint64_t h = name_hash(key);

	pthread_mutex_lock(&R.lock);
	if (!R.slot)
		R.slot = calloc(REG_TABLE, sizeof(*R.slot));
	for (size_t i = 0; R.slot && i < REG_TABLE / 2; i++) {
		struct reg_slot **at = &R.slot[(h + i) % REG_TABLE];
		if (!*at) {
			*at = calloc(1, sizeof(**at));
			if (*at) {
				pthread_mutex_init(&(*at)->lock, NULL);
				snprintf((*at)->key, sizeof((*at)->key), "%s", key);
			}
			found = *at;
			break;
		}
		if (strcmp((*at)->key, key) == 0) {
			found = *at;
			break;
		}
	}
	pthread_mutex_unlock(&R.lock);
	return found;
}

/* "<tenant>/<key>#<suffix><n>": a movement's _id (suffix ""), its bucket
 * (suffix "b"), as reg_name_of. */
static void
reg_name(const struct run *r, const char *key, const char *suffix, long long n, char *out,
	 size_t len)
{
	snprintf(out, len, "%s/%s#%s%lld", r->tenant_hex, key, suffix, n);
}

static long long
doc_int(const bson_t *doc, const char *path)
{
	bson_iter_t it, sub;
	return bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &sub) &&
		       BSON_ITER_HOLDS_NUMBER(&sub)
		   ? bson_iter_as_int64(&sub)
		   : 0;
}

struct bucket_doc {
	long long seq;
	bson_t *doc;
};

static int
by_bucket_seq(const void *a, const void *b)
{
	long long x = ((const struct bucket_doc *)a)->seq, y = ((const struct bucket_doc *)b)->seq;
	return x < y ? -1 : x > y;
}

/* Reads on from st to the register's newest movement, as catch_up() in
 * register.c: one find of seq + 1 by _id (most reads find nothing new),
 * then the movements of its bucket (by rb, sorted here), and of the next
 * bucket while the one read was complete. *moved: whether anything came. */
static int
reg_catch_up(struct session *s, const char *key, struct reg_state *st, bool *moved)
{
	char id[256];
	int rc;

	*moved = false;
	reg_name(s->run, key, "", st->seq + 1, id, sizeof(id));
	if ((rc = find_by_str_id(s, C_MOVES, id, NULL)) <= 0)
		return rc;
	for (;;) {
		long long n = (st->seq + 1) / BUCKET;
		bson_t filter = BSON_INITIALIZER;
		struct bucket_doc docs[BUCKET + 1];
		size_t count = 0;
		const bson_t *doc;
		bson_error_t error;
		uint64_t t0 = now_ns();

		reg_name(s->run, key, "b", n, id, sizeof(id));
		BSON_APPEND_UTF8(&filter, "rb", id);
		mongoc_cursor_t *cur =
		    mongoc_collection_find_with_opts(s->coll[C_MOVES], &filter, NULL, NULL);
		while (mongoc_cursor_next(cur, &doc))
			if (count < BUCKET + 1) {
				docs[count].seq = doc_int(doc, "seq");
				docs[count++].doc = bson_copy(doc);
			}
		rc = mongoc_cursor_error(cur, &error) ? failed(s, "find", C_MOVES, &error) : 0;
		mongoc_cursor_destroy(cur);
		bson_destroy(&filter);
		tally_add(s, S_FIND, t0);
		qsort(docs, count, sizeof(docs[0]), by_bucket_seq);
		for (size_t i = 0; i < count; i++) {
			bson_iter_t it, after;
			if (rc == 0 && docs[i].seq == st->seq + 1 &&
			    bson_iter_init_find(&it, docs[i].doc, "a") &&
			    bson_iter_recurse(&it, &after)) {
				while (bson_iter_next(&after))
					if (!reg_set(st, bson_iter_key(&after),
						     bson_iter_as_int64(&after))) {
						snprintf(s->error, sizeof(s->error),
							 "%s: too many counters", key);
						rc = -1;
					}
				st->seq = docs[i].seq;
				*moved = true;
			}
			bson_destroy(docs[i].doc);
		}
		if (rc != 0 || (st->seq + 1) % BUCKET != 0 || st->seq + 1 <= n * BUCKET)
			return rc; /* the bucket is not complete: this is the newest */
	}
}

struct reg_delta {
	const char *counter;
	int64_t delta;
};

struct reg_post {
	const char *key;
	const char *op;
	struct reg_delta *deltas; /* set by reckon on every attempt when there is one */
	int n;
	bool has_floor; /* no counter the movement lowers may end below floor */
	int64_t floor;
	bool (*reckon)(void *arg, const struct reg_state *st, struct reg_delta *d, int n);
	void *reckon_arg;
	const bson_t *meta;
};

/* The movement that appends p after st. */
static void
reg_build(const struct run *r, const struct reg_post *p, const struct reg_state *st, bson_t *doc)
{
	char id[256], rb[256];
	bson_t d, a;

	reg_name(r, p->key, "", st->seq + 1, id, sizeof(id));
	reg_name(r, p->key, "b", (st->seq + 1) / BUCKET, rb, sizeof(rb));
	BSON_APPEND_UTF8(doc, "_id", id);
	BSON_APPEND_OID(doc, "tenant_id", &r->tenant);
	BSON_APPEND_UTF8(doc, "key", p->key);
	BSON_APPEND_INT64(doc, "seq", st->seq + 1);
	BSON_APPEND_UTF8(doc, "op", p->op);
	BSON_APPEND_DOCUMENT_BEGIN(doc, "d", &d);
	for (int i = 0; i < p->n; i++)
		BSON_APPEND_INT64(&d, p->deltas[i].counter, p->deltas[i].delta);
	bson_append_document_end(doc, &d);
	BSON_APPEND_DOCUMENT_BEGIN(doc, "a", &a);
	for (int i = 0; i < p->n; i++)
		BSON_APPEND_INT64(&a, p->deltas[i].counter,
				  reg_get(st, p->deltas[i].counter) + p->deltas[i].delta);
	bson_append_document_end(doc, &a);
	BSON_APPEND_DATE_TIME(doc, "at", wall_ms());
	BSON_APPEND_UTF8(doc, "rb", rb);
	if (p->meta)
		BSON_APPEND_DOCUMENT(doc, "meta", p->meta);
}

/* Whether p may follow st: its reckoning, its floor. */
static bool
reg_allowed(const struct reg_post *p, const struct reg_state *st)
{
	if (p->reckon && !p->reckon(p->reckon_arg, st, p->deltas, p->n))
		return false;
	for (int i = 0; i < p->n; i++)
		if (p->has_floor && p->deltas[i].delta < 0 &&
		    reg_get(st, p->deltas[i].counter) + p->deltas[i].delta < p->floor)
			return false;
	return true;
}

/* The movement posted under op, if any: 1 (*seq its seq), 0, -1. */
static int
reg_find_op(struct session *s, const char *op, long long *seq)
{
	bson_t filter = BSON_INITIALIZER, found = BSON_INITIALIZER;
	int rc;

	BSON_APPEND_OID(&filter, "tenant_id", &s->run->tenant);
	BSON_APPEND_UTF8(&filter, "op", op);
	rc = find_one(s, C_MOVES, &filter, &found);
	if (rc == 1)
		*seq = doc_int(&found, "seq");
	bson_destroy(&filter);
	bson_destroy(&found);
	return rc;
}

/* Appends one movement under this process's lock of the key: 0 (*seq the
 * movement's, or the earlier one's posted under the same op), 1 refused
 * (floor or reckoning on the newest state), -1. The first attempt trusts
 * the state this process knows (a new key's is empty): sequences have no
 * gaps, so the insert of seq + 1 succeeds only if it was the newest;
 * otherwise it collides, and the next attempt reads on first. A read-on
 * that finds seq + 1 free after a collision means the operation id was
 * what collided: its movement is the answer. */
static int
reg_post(struct session *s, const struct reg_post *p, long long *seq)
{
	enum { NONE, REFUSED, COLLIDED } last = NONE;
	struct reg_slot *slot = reg_slot_of(p->key);
	int rc = -1;

	if (!slot) {
		snprintf(s->error, sizeof(s->error), "more than %d registers", REG_TABLE / 2);
		return -1;
	}
	uint64_t t0 = now_ns();
	pthread_mutex_lock(&slot->lock);
	s->tally.wait_ns += now_ns() - t0;
	for (int attempt = 0; attempt < REG_ATTEMPTS; attempt++) {
		bson_t doc = BSON_INITIALIZER;
		if (attempt > 0) {
			bool moved;
			if ((rc = reg_catch_up(s, p->key, &slot->state, &moved)) < 0)
				break;
			if (!moved && last == COLLIDED) {
				rc = reg_find_op(s, p->op, seq);
				if (rc == 1) {
					s->tally.replays++;
					rc = 0;
					break;
				}
				if (rc < 0)
					break;
				/* neither: a writer between its read and insert */
			}
		}
		if (!reg_allowed(p, &slot->state)) {
			rc = 1;
			bson_destroy(&doc);
			if (attempt > 0)
				break;
			last = REFUSED; /* judged on a state that may be old: read on */
			continue;
		}
		reg_build(s->run, p, &slot->state, &doc);
		rc = insert(s, C_MOVES, &doc);
		bson_destroy(&doc);
		if (rc < 0)
			break;
		if (rc == 0) {
			for (int i = 0; i < p->n; i++)
				reg_set(&slot->state, p->deltas[i].counter,
					reg_get(&slot->state, p->deltas[i].counter) +
					    p->deltas[i].delta);
			*seq = ++slot->state.seq;
			break;
		}
		last = COLLIDED;
		rc = -1;
		s->tally.conflicts++;
		if (attempt > 0)
			sleep_us((long)(rng_next(&s->rng) % 2000));
	}
	pthread_mutex_unlock(&slot->lock);
	if (rc < 0 && last == COLLIDED && !s->error[0])
		snprintf(s->error, sizeof(s->error), "append to %s: no attempt of %d got in",
			 p->key, REG_ATTEMPTS);
	return rc;
}

/* ---- the journal: entries, their canonical bytes, the chain ----
 * (modules/erp/ledger.c, erp.h: the same field sizes, so the same bytes) */

struct entry {
	char id[25];
	char date[11];
	char memo[504];
	char currency[4];
	char source[24];
	char reverses[25];
	int nlines;
	struct {
		char account[16];
		int64_t debit, credit;
	} lines[ENTRY_LINES];
};

static const char *const hword[8] = {"h0", "h1", "h2", "h3", "h4", "h5", "h6", "h7"};

static size_t
canonical(const struct entry *en, long long number, char *out, size_t len)
{
	size_t n = (size_t)snprintf(out, len, "%lld|%s|%s|%s|%s|%s|%s", number, en->id, en->date,
				    en->currency, en->memo, en->source, en->reverses);
	for (int i = 0; i < en->nlines && n < len; i++)
		n +=
		    (size_t)snprintf(out + n, len - n, "|%s:%lld:%lld", en->lines[i].account,
				     (long long)en->lines[i].debit, (long long)en->lines[i].credit);
	return n < len ? n : len - 1;
}

static void
chain_hash(const uint8_t prev[32], const struct entry *en, long long number, uint8_t out[32])
{
	crypto_hash_sha256_state st;
	char buf[8192];
	size_t n = canonical(en, number, buf, sizeof(buf));

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, prev, 32);
	crypto_hash_sha256_update(&st, (const unsigned char *)buf, n);
	crypto_hash_sha256_final(&st, out);
}

static void
bytes_of(const int64_t w[8], uint8_t h[32])
{
	for (int i = 0; i < 8; i++) {
		uint32_t v = (uint32_t)w[i];
		h[4 * i] = (uint8_t)(v >> 24);
		h[4 * i + 1] = (uint8_t)(v >> 16);
		h[4 * i + 2] = (uint8_t)(v >> 8);
		h[4 * i + 3] = (uint8_t)v;
	}
}

static void
words_of(const uint8_t h[32], int64_t w[8])
{
	for (int i = 0; i < 8; i++)
		w[i] = (int64_t)((uint32_t)h[4 * i] << 24 | (uint32_t)h[4 * i + 1] << 16 |
				 (uint32_t)h[4 * i + 2] << 8 | (uint32_t)h[4 * i + 3]);
}

/* The entry's hash and number on the state it follows (ledger.c chain()). */
struct chain_step {
	const struct entry *en;
	int naccounts; /* deltas[0..naccounts) are the accounts', already set */
};

static bool
chain_reckon(void *arg, const struct reg_state *st, struct reg_delta *d, int n)
{
	const struct chain_step *cs = arg;
	int64_t prev_w[8], next_w[8];
	uint8_t prev[32], next[32];

	for (int k = 0; k < 8; k++)
		prev_w[k] = reg_get(st, hword[k]);
	bytes_of(prev_w, prev);
	chain_hash(prev, cs->en, reg_get(st, "n") + 1, next);
	words_of(next, next_w);
	for (int i = cs->naccounts; i < n; i++) {
		if (strcmp(d[i].counter, "n") == 0)
			d[i].delta = 1;
		for (int k = 0; k < 8; k++)
			if (strcmp(d[i].counter, hword[k]) == 0)
				d[i].delta = next_w[k] - prev_w[k];
	}
	return true;
}

/* Posts the entry on the ledger register key under "erp.entry:<id>", as
 * erp_ledger_post: one counter per account and currency, n and the head. */
static int
ledger_post(struct session *s, const char *key, const struct entry *en)
{
	char names[ENTRY_LINES][40], op[64];
	struct reg_delta d[ENTRY_LINES + 9];
	bson_t meta = BSON_INITIALIZER, e, lines, line;
	int na = 0, rc;
	long long seq = 0;

	for (int i = 0; i < en->nlines; i++) {
		char name[40];
		int j;
		snprintf(name, sizeof(name), "a:%s:%s", en->lines[i].account, en->currency);
		for (j = 0; j < na && strcmp(names[j], name) != 0; j++)
			;
		if (j == na) {
			snprintf(names[na], sizeof(names[na]), "%s", name);
			d[na] = (struct reg_delta){names[na], 0};
			na++;
		}
		d[j].delta += en->lines[i].debit - en->lines[i].credit;
	}
	d[na] = (struct reg_delta){"n", 1};
	for (int k = 0; k < 8; k++)
		d[na + 1 + k] = (struct reg_delta){hword[k], 0};
	BSON_APPEND_DOCUMENT_BEGIN(&meta, "entry", &e);
	BSON_APPEND_UTF8(&e, "id", en->id);
	BSON_APPEND_UTF8(&e, "date", en->date);
	BSON_APPEND_UTF8(&e, "memo", en->memo);
	BSON_APPEND_UTF8(&e, "currency", en->currency);
	BSON_APPEND_UTF8(&e, "source", en->source);
	BSON_APPEND_UTF8(&e, "reverses", en->reverses);
	BSON_APPEND_ARRAY_BEGIN(&e, "lines", &lines);
	for (int i = 0; i < en->nlines; i++) {
		char k[16];
		const char *kk;
		bson_uint32_to_string((uint32_t)i, &kk, k, sizeof(k));
		BSON_APPEND_DOCUMENT_BEGIN(&lines, kk, &line);
		BSON_APPEND_UTF8(&line, "account_code", en->lines[i].account);
		BSON_APPEND_INT64(&line, "debit", en->lines[i].debit);
		BSON_APPEND_INT64(&line, "credit", en->lines[i].credit);
		bson_append_document_end(&lines, &line);
	}
	bson_append_array_end(&e, &lines);
	bson_append_document_end(&meta, &e);
	snprintf(op, sizeof(op), "erp.entry:%s", en->id);
	struct chain_step cs = {.en = en, .naccounts = na};
	struct reg_post p = {.key = key,
			     .op = op,
			     .deltas = d,
			     .n = na + 9,
			     .reckon = chain_reckon,
			     .reckon_arg = &cs,
			     .meta = &meta};
	rc = reg_post(s, &p, &seq);
	bson_destroy(&meta);
	if (rc == 1)
		snprintf(s->error, sizeof(s->error), "journal entry %s refused", en->id);
	return rc == 0 ? 0 : -1;
}

/* ---- verify ---- */

/* What the chain check keeps of one entry: the rest of it is checked as
 * it streams by (its own hash, lines and deltas need nothing else). */
struct checked {
	long long seq;	  /* the movement's */
	long long number; /* the entry's: after.n */
	uint8_t before[32], after[32];
	bool holds;
};

static int64_t
sub_counter(const bson_t *doc, const char *sub, const char *name)
{
	bson_iter_t it, child;
	return bson_iter_init_find(&it, doc, sub) && BSON_ITER_HOLDS_DOCUMENT(&it) &&
		       bson_iter_recurse(&it, &child) && bson_iter_find(&child, name) &&
		       BSON_ITER_HOLDS_NUMBER(&child)
		   ? bson_iter_as_int64(&child)
		   : 0;
}

/* The entry a journal movement carries (erp_entry_of); false for a
 * period's close. */
static bool
entry_of(const bson_t *mv, struct entry *en)
{
	bson_iter_t it, e, in_entry, arr, line;
	static const struct {
		const char *name;
		size_t off, len;
	} text[] = {
	    {"id", offsetof(struct entry, id), sizeof(((struct entry *)0)->id)},
	    {"date", offsetof(struct entry, date), sizeof(((struct entry *)0)->date)},
	    {"memo", offsetof(struct entry, memo), sizeof(((struct entry *)0)->memo)},
	    {"currency", offsetof(struct entry, currency), sizeof(((struct entry *)0)->currency)},
	    {"source", offsetof(struct entry, source), sizeof(((struct entry *)0)->source)},
	    {"reverses", offsetof(struct entry, reverses), sizeof(((struct entry *)0)->reverses)},
	};

	if (!bson_iter_init(&it, mv) || !bson_iter_find_descendant(&it, "meta.entry", &e) ||
	    !BSON_ITER_HOLDS_DOCUMENT(&e))
		return false;
	memset(en, 0, offsetof(struct entry, lines));
	for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++) {
		bson_iter_t f;
		const char *v = "";
		if (bson_iter_recurse(&e, &f) && bson_iter_find(&f, text[i].name) &&
		    BSON_ITER_HOLDS_UTF8(&f))
			v = bson_iter_utf8(&f, NULL);
		snprintf((char *)en + text[i].off, text[i].len, "%s", v);
	}
	if (bson_iter_recurse(&e, &in_entry) && bson_iter_find(&in_entry, "lines") &&
	    bson_iter_recurse(&in_entry, &arr))
		while (bson_iter_next(&arr) && en->nlines < ENTRY_LINES) {
			int l = en->nlines++;
			en->lines[l].account[0] = '\0';
			en->lines[l].debit = en->lines[l].credit = 0;
			if (!bson_iter_recurse(&arr, &line))
				continue;
			while (bson_iter_next(&line)) {
				const char *k = bson_iter_key(&line);
				if (strcmp(k, "account_code") == 0 && BSON_ITER_HOLDS_UTF8(&line))
					snprintf(en->lines[l].account, sizeof(en->lines[l].account),
						 "%s", bson_iter_utf8(&line, NULL));
				else if (strcmp(k, "debit") == 0 && BSON_ITER_HOLDS_NUMBER(&line))
					en->lines[l].debit = bson_iter_as_int64(&line);
				else if (strcmp(k, "credit") == 0 && BSON_ITER_HOLDS_NUMBER(&line))
					en->lines[l].credit = bson_iter_as_int64(&line);
			}
		}
	return true;
}

/* One movement, as verify_one() checks it on its own. False when it
 * carries no entry. */
static bool
check_entry(const bson_t *mv, struct checked *out)
{
	struct entry en;
	int64_t after_w[8], before_w[8], debits = 0, credits = 0;
	uint8_t want[32];

	if (!entry_of(mv, &en))
		return false;
	out->seq = doc_int(mv, "seq");
	out->number = sub_counter(mv, "a", "n");
	for (int k = 0; k < 8; k++) {
		after_w[k] = sub_counter(mv, "a", hword[k]);
		before_w[k] = after_w[k] - sub_counter(mv, "d", hword[k]);
	}
	bytes_of(after_w, out->after);
	bytes_of(before_w, out->before);
	chain_hash(out->before, &en, out->number, want);
	out->holds = sodium_memcmp(want, out->after, 32) == 0 && en.nlines >= 2;
	for (int i = 0; i < en.nlines; i++) {
		char name[40];
		int64_t sum = 0;
		debits += en.lines[i].debit;
		credits += en.lines[i].credit;
		snprintf(name, sizeof(name), "a:%s:%s", en.lines[i].account, en.currency);
		for (int j = 0; j < en.nlines; j++)
			if (strcmp(en.lines[j].account, en.lines[i].account) == 0)
				sum += en.lines[j].debit - en.lines[j].credit;
		if (sub_counter(mv, "d", name) != sum)
			out->holds = false;
	}
	if (debits != credits)
		out->holds = false;
	return true;
}

struct checked_list {
	struct checked *v;
	size_t n, cap;
	long long docs; /* movements read, closes included */
};

static bool
list_add(struct checked_list *l, const bson_t *mv)
{
	l->docs++;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4096;
		struct checked *more = realloc(l->v, cap * sizeof(*more));
		if (!more)
			return false;
		l->v = more;
		l->cap = cap;
	}
	if (check_entry(mv, &l->v[l->n]))
		l->n++;
	return true;
}

static int
by_checked_seq(const void *a, const void *b)
{
	long long x = ((const struct checked *)a)->seq, y = ((const struct checked *)b)->seq;
	return x < y ? -1 : x > y;
}

/* The chain in seq order: numbered 1..n, each entry after the head the one
 * before left, each holding on its own. The lowest number that breaks, or
 * 0 when none. */
static long long
chain_broken_at(struct checked_list *l)
{
	static const uint8_t zero[32];

	qsort(l->v, l->n, sizeof(*l->v), by_checked_seq);
	for (size_t i = 0; i < l->n; i++) {
		const struct checked *c = &l->v[i];
		const uint8_t *prev = i ? l->v[i - 1].after : zero;
		if (!c->holds || c->number != (long long)i + 1 || memcmp(c->before, prev, 32) != 0)
			return (long long)i + 1;
	}
	return 0;
}

struct variant_result {
	double seconds;
	long long docs, entries, finds, broken_at;
};

/* One cursor over the tenant's journal movements. */
static int
verify_cursor(struct session *s, bool sort, bool project, struct variant_result *res)
{
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, child;
	struct checked_list l = {0};
	mongoc_collection_t *c =
	    mongoc_client_get_collection(s->client, s->run->database, LEDGER_COLL);
	const bson_t *doc;
	bson_error_t error;
	uint64_t t0 = now_ns();
	int rc = 0;

	BSON_APPEND_OID(&filter, "tenant_id", &s->run->tenant);
	BSON_APPEND_UTF8(&filter, "key", LEDGER_KEY);
	BSON_APPEND_INT32(&opts, "batchSize", 1000);
	if (sort) {
		BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &child);
		BSON_APPEND_INT32(&child, "seq", 1);
		bson_append_document_end(&opts, &child);
	}
	if (project) {
		BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &child);
		BSON_APPEND_INT32(&child, "_id", 0);
		BSON_APPEND_INT32(&child, "seq", 1);
		BSON_APPEND_INT32(&child, "d", 1);
		BSON_APPEND_INT32(&child, "a", 1);
		BSON_APPEND_INT32(&child, "meta", 1);
		bson_append_document_end(&opts, &child);
	}
	mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &filter, &opts, NULL);
	while (rc == 0 && mongoc_cursor_next(cur, &doc))
		if (!list_add(&l, doc))
			rc = -1;
	if (rc == 0 && mongoc_cursor_error(cur, &error))
		rc = failed(s, "find", C_MOVES, &error);
	mongoc_cursor_destroy(cur);
	if (rc == 0)
		res->broken_at = chain_broken_at(&l);
	res->seconds = (double)(now_ns() - t0) / 1e9;
	res->docs = l.docs;
	res->entries = (long long)l.n;
	res->finds = 1;
	free(l.v);
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
	bson_destroy(&opts);
	return rc;
}

/* The server's pattern: bucket after bucket by rb, from the first to the
 * first one that is not complete. */
static int
verify_buckets(struct session *s, struct variant_result *res)
{
	struct checked_list l = {0};
	mongoc_collection_t *c =
	    mongoc_client_get_collection(s->client, s->run->database, LEDGER_COLL);
	uint64_t t0 = now_ns();
	int rc = 0;

	res->finds = 0;
	for (long long b = 0; rc == 0; b++) {
		bson_t filter = BSON_INITIALIZER;
		const bson_t *doc;
		bson_error_t error;
		char rb[256];
		long long top = 0, count = 0;
		reg_name(s->run, LEDGER_KEY, "b", b, rb, sizeof(rb));
		BSON_APPEND_UTF8(&filter, "rb", rb);
		mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &filter, NULL, NULL);
		while (rc == 0 && mongoc_cursor_next(cur, &doc)) {
			long long seq = doc_int(doc, "seq");
			top = seq > top ? seq : top;
			count++;
			if (!list_add(&l, doc))
				rc = -1;
		}
		if (rc == 0 && mongoc_cursor_error(cur, &error))
			rc = failed(s, "find", C_MOVES, &error);
		mongoc_cursor_destroy(cur);
		bson_destroy(&filter);
		res->finds++;
		if (count == 0 || top < (b + 1) * BUCKET - 1)
			break;
	}
	if (rc == 0)
		res->broken_at = chain_broken_at(&l);
	res->seconds = (double)(now_ns() - t0) / 1e9;
	res->docs = l.docs;
	res->entries = (long long)l.n;
	free(l.v);
	mongoc_collection_destroy(c);
	return rc;
}

/* The reads named in the comma-separated list, in the order given. */
static int
run_verify(struct run *r, long n, char *list)
{
	static const struct {
		const char *name;
		bool sort, project, buckets;
	} variants[] = {
	    {"buckets", false, false, true},
	    {"sorted", true, false, false},
	    {"projected", true, true, false},
	    {"natural", false, true, false},
	};
	struct variant_result main_res = {0};
	struct session s;
	char *save = NULL, fastest[16] = "";
	double fastest_seconds = 0;
	bool ok = true, have_main = false;
	int rc = 0;

	session_open(&s, r, 1);
	for (char *name = strtok_r(list, ",", &save); name && rc == 0;
	     name = strtok_r(NULL, ",", &save)) {
		struct variant_result res = {0};
		size_t i;
		for (i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
			if (strcmp(variants[i].name, name) == 0)
				break;
		if (i == sizeof(variants) / sizeof(variants[0])) {
			snprintf(s.error, sizeof(s.error), "no read named %s", name);
			rc = -1;
			break;
		}
		fprintf(stderr, "baseline_erp: verify, the %s read\n", name);
		struct cpu_probes cpu;
		cpu_probes_start(&cpu);
		rc = variants[i].buckets
			 ? verify_buckets(&s, &res)
			 : verify_cursor(&s, variants[i].sort, variants[i].project, &res);
		if (rc != 0)
			break;
		bool good = res.broken_at == 0 && res.entries == n;
		if (!good)
			fprintf(stderr,
				"baseline_erp: verify (%s): %lld entries of %ld, chain broken at "
				"position %lld\n",
				name, res.entries, n, res.broken_at);
		ok &= good;
		printf("%s_seconds=%.3f\n", name, res.seconds);
		printf("%s_entries_per_sec=%.1f\n", name,
		       res.seconds > 0 ? (double)res.entries / res.seconds : 0.0);
		printf("%s_finds=%lld\n", name, res.finds);
		printf("%s_documents=%lld\n", name, res.docs);
		printf("%s_ok=%s\n", name, good ? "true" : "false");
		char prefix[32];
		snprintf(prefix, sizeof(prefix), "%s_", name);
		cpu_probes_print(&cpu, prefix, "entry", (double)res.entries);
		fflush(stdout);
		/* the figure: the sorted read when there is one, else the first;
		 * beside it the fastest read that found the whole chain */
		if (!have_main || strcmp(name, "sorted") == 0) {
			main_res = res;
			have_main = true;
		}
		if (good && (!fastest[0] || res.seconds < fastest_seconds)) {
			snprintf(fastest, sizeof(fastest), "%s", name);
			fastest_seconds = res.seconds;
		}
	}
	if (rc != 0)
		fprintf(stderr, "baseline_erp: %s\n", s.error);
	session_close(&s);
	if (rc == 0 && have_main) {
		printf("entries=%lld\n", main_res.entries);
		printf("ok=%s\n", ok ? "true" : "false");
		printf("fastest_read=%s\n", fastest[0] ? fastest : "none");
		printf("fastest_seconds=%.3f\n", fastest_seconds);
		printf("seconds=%.3f\n", main_res.seconds);
		printf("entries_per_sec=%.1f\n",
		       main_res.seconds > 0 ? (double)main_res.entries / main_res.seconds : 0.0);
	}
	return rc == 0 && have_main && ok ? 0 : 1;
}

/* ---- append ---- */

struct append_run {
	struct run *run;
	const char *keys[MAX_KEYS];
	int nkeys;
};

struct append_worker {
	pthread_t thread;
	struct append_run *ar;
	long index;
	uint64_t appends;
	bool failed;
	struct tally tally;
	char error[ERROR_SIZE];
};

/* Each append: one movement on each key, one after the other, the shape
 * of a stock move's (on_hand and value in, the value after). */
static void *
append_worker_run(void *arg)
{
	struct append_worker *w = arg;
	struct session s;

	session_open(&s, w->ar->run, (uint64_t)getpid() * 1000003u + (uint64_t)w->index);
	if (gun_wait(w->ar->run) != 1)
		goto out;
	while (now_ns() < w->ar->run->deadline_ns) {
		char op[128];
		bson_oid_t id;
		char hex[25];
		bson_oid_init(&id, NULL);
		bson_oid_to_string(&id, hex);
		for (int k = 0; k < w->ar->nkeys; k++) {
			struct reg_delta d[] = {{"on_hand", 1}, {"available", 1}, {"value", 137}};
			long long seq = 0;
			snprintf(op, sizeof(op), "baseline.append:%s:%d", hex, k);
			struct reg_post p = {.key = w->ar->keys[k], .op = op, .deltas = d, .n = 3};
			if (reg_post(&s, &p, &seq) != 0) {
				snprintf(w->error, sizeof(w->error), "%s", s.error);
				w->failed = true;
				goto out;
			}
		}
		w->appends++;
	}
out:
	w->tally = s.tally;
	session_close(&s);
	return NULL;
}

static int
run_append(struct run *r, long threads, long seconds, char *keys)
{
	struct append_run ar = {.run = r};
	struct append_worker *workers = calloc((size_t)threads, sizeof(*workers));
	struct tally total = {0};
	char err[ERROR_SIZE] = "", *save = NULL;
	uint64_t appends = 0, t0, t1;
	long started = 0;
	int status = 1;

	for (char *k = strtok_r(keys, ",", &save); k && ar.nkeys < MAX_KEYS;
	     k = strtok_r(NULL, ",", &save))
		ar.keys[ar.nkeys++] = k;
	if (!workers || ar.nkeys == 0) {
		fprintf(stderr, "baseline_erp: no keys, or out of memory\n");
		goto out;
	}
	if (setup_collections(r, 1u << C_MOVES, err, sizeof(err)) != 0) {
		fprintf(stderr, "baseline_erp: %s\n", err);
		goto out;
	}
	for (started = 0; started < threads; started++) {
		workers[started].ar = &ar;
		workers[started].index = started;
		if (pthread_create(&workers[started].thread, NULL, append_worker_run,
				   &workers[started]) != 0)
			break;
	}
	struct cpu_probes cpu;
	cpu_probes_start(&cpu);
	t0 = now_ns();
	gun_fire(r, started == threads ? 1 : -1, seconds);
	for (long i = 0; i < started; i++) {
		pthread_join(workers[i].thread, NULL);
		appends += workers[i].appends;
		tally_sum(&total, &workers[i].tally);
		if (workers[i].failed)
			fprintf(stderr, "baseline_erp: thread %ld: %s\n", i, workers[i].error);
	}
	t1 = now_ns();
	if (started < threads) {
		fprintf(stderr, "baseline_erp: cannot start thread\n");
		goto out;
	}
	/* the database's CPU over the run, every process's appends included */
	cpu_probes_print(&cpu, "", "", 0);
	/* The other processes stop at the same deadline: a moment later, the
	 * keys' newest sequences say whether every append is there once. */
	sleep_us(1500000);
	struct session s;
	session_open(&s, r, 7);
	printf("keys=%d\n", ar.nkeys);
	for (int k = 0; k < ar.nkeys; k++) {
		struct reg_slot *slot = reg_slot_of(ar.keys[k]);
		bool moved;
		struct tally before = s.tally;
		if (!slot || reg_catch_up(&s, ar.keys[k], &slot->state, &moved) < 0) {
			fprintf(stderr, "baseline_erp: reading %s: %s\n", ar.keys[k], s.error);
			session_close(&s);
			goto out;
		}
		s.tally = before;
		printf("final_seq_%d=%lld\n", k, slot->state.seq);
	}
	session_close(&s);

	double elapsed = (double)(t1 - t0) / 1e9;
	uint64_t statements = tally_statements(&total);
	printf("threads=%ld\n", threads);
	printf("seconds=%.3f\n", elapsed);
	printf("appends=%" PRIu64 "\n", appends);
	printf("conflicts=%" PRIu64 "\n", total.conflicts);
	printf("replays=%" PRIu64 "\n", total.replays);
	for (int k = 0; k < S_KINDS; k++)
		printf("%ss=%" PRIu64 "\n", stmt_names[k], total.n[k]);
	printf("statements_per_append=%.2f\n",
	       appends ? (double)statements / (double)appends : 0.0);
	printf("register_wait_ms=%.3f\n",
	       appends ? (double)total.wait_ns / (double)appends / 1e6 : 0.0);
	printf("insert_ms=%.3f\n",
	       total.n[S_INSERT] ? (double)total.ns[S_INSERT] / (double)total.n[S_INSERT] / 1e6
				 : 0.0);
	printf("find_ms=%.3f\n",
	       total.n[S_FIND] ? (double)total.ns[S_FIND] / (double)total.n[S_FIND] / 1e6 : 0.0);
	printf("appends_per_sec=%.1f\n", elapsed > 0 ? (double)appends / elapsed : 0.0);
	status = 0;
	for (long i = 0; i < started; i++)
		if (workers[i].failed)
			status = 1;
out:
	free(workers);
	return status;
}

/* ---- orderflow ---- */

enum { ST_CREATE, ST_CONFIRM, ST_INVOICE, ST_PAY, ST_SHIP, ST_COUNT };
static const char *const step_names[ST_COUNT] = {"create", "confirm", "invoice", "pay", "ship"};

struct product {
	bson_oid_t id;
	char key[96]; /* its stock register */
	int64_t price;
};

struct flow_run {
	struct run *run;
	bool today;
	long products_n, lines;
	struct product *products;
	bson_oid_t warehouse, user;
	char ledger_key[64], numbers_key[64];
};

/* Latencies of one kind, grown as they come. */
struct samples {
	double *v;
	size_t n, cap;
};

static void
samples_add(struct samples *s, double ms)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		double *more = realloc(s->v, cap * sizeof(*more));
		if (!more)
			return;
		s->v = more;
		s->cap = cap;
	}
	s->v[s->n++] = ms;
}

struct flow_worker {
	pthread_t thread;
	struct flow_run *fr;
	long index, threads;
	uint64_t orders;
	bool failed;
	const char *failed_step;
	struct samples steps[ST_COUNT], flow;
	struct tally tally;
	struct session s;
};

/* One order under way: what the steps hand on. */
struct order {
	bson_oid_t id, invoice, payment, shipment;
	char hex[25], inv_hex[25];
	int n;
	int idx[MAX_LINES];
	int64_t qty[MAX_LINES];
	int64_t net, tax, total;
	bson_t doc; /* the order as last read or written */
};

static void
append_money(bson_t *doc, const char *name, int64_t amount)
{
	bson_t m;
	BSON_APPEND_DOCUMENT_BEGIN(doc, name, &m);
	BSON_APPEND_INT64(&m, "amount", amount);
	BSON_APPEND_UTF8(&m, "currency", "EUR");
	bson_append_document_end(doc, &m);
}

static void
today_str(char out[11])
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 11, "%Y-%m-%d", &tm);
}

/* The layer's fields of a new record (tr_db_insert). */
static void
stamp_new(const struct run *r, bson_t *doc, const bson_oid_t *id)
{
	char day[11];

	BSON_APPEND_OID(doc, "_id", id);
	BSON_APPEND_OID(doc, "tenant_id", &r->tenant);
	BSON_APPEND_DATE_TIME(doc, "created_at", wall_ms());
	BSON_APPEND_DATE_TIME(doc, "updated_at", wall_ms());
	BSON_APPEND_INT64(doc, "version", 1);
	today_str(day);
	BSON_APPEND_UTF8(doc, "_cd", day);
	BSON_APPEND_INT64(doc, "_seq", 0);
	BSON_APPEND_UTF8(doc, "_b", "1");
}

/* today: the list-bucket marker read before an insert (seq.c). */
static int
today_bucket(struct session *s, const struct flow_run *fr, const char *coll)
{
	char id[128];
	if (!fr->today)
		return 0;
	snprintf(id, sizeof(id), "%s/%s/1", s->run->tenant_hex, coll);
	return find_by_str_id(s, C_BUCKETS, id, NULL) < 0 ? -1 : 0;
}

/* today: the webhook subscribers of a topic, read before each event. */
static int
today_webhooks(struct session *s, const struct flow_run *fr, const char *topic)
{
	bson_t filter = BSON_INITIALIZER;
	int rc = 0;

	if (fr->today) {
		BSON_APPEND_OID(&filter, "tenant_id", &s->run->tenant);
		BSON_APPEND_UTF8(&filter, "topics", topic);
		BSON_APPEND_BOOL(&filter, "active", true);
		rc = find_one(s, C_WEBHOOKS, &filter, NULL) < 0 ? -1 : 0;
	}
	bson_destroy(&filter);
	return rc;
}

/* today: the chart of accounts looked at before a journal entry. */
static int
today_chart(struct session *s, const struct flow_run *fr)
{
	bson_t filter = BSON_INITIALIZER;
	int rc = 0;

	if (fr->today) {
		BSON_APPEND_OID(&filter, "tenant_id", &s->run->tenant);
		BSON_APPEND_UTF8(&filter, "code", "6000");
		rc = find_one(s, C_ACCOUNTS, &filter, NULL) < 0 ? -1 : 0;
	}
	bson_destroy(&filter);
	return rc;
}

/* today: a register operation looked up before it is posted. */
static int
today_find_op(struct session *s, const struct flow_run *fr, const char *op)
{
	bson_t filter = BSON_INITIALIZER;
	int rc = 0;

	if (fr->today) {
		BSON_APPEND_OID(&filter, "tenant_id", &s->run->tenant);
		BSON_APPEND_UTF8(&filter, "op", op);
		rc = find_one(s, C_MOVES, &filter, NULL) < 0 ? -1 : 0;
	}
	bson_destroy(&filter);
	return rc;
}

/* today: n more reads of a record by id. */
static int
today_reads(struct session *s, const struct flow_run *fr, enum coll_id c, const bson_oid_t *id,
	    int n)
{
	for (int i = 0; fr->today && i < n; i++)
		if (find_by_oid(s, c, id, NULL) < 0)
			return -1;
	return 0;
}

/* today: the Idempotency-Key record, claimed before the handler runs (the
 * insert) and given the answer after it (the update). */
static int
today_idem_claim(struct session *s, const struct flow_run *fr, const char *key, bson_oid_t *rec)
{
	bson_t doc = BSON_INITIALIZER;
	int rc = 0;

	if (fr->today) {
		bson_oid_init(rec, NULL);
		BSON_APPEND_OID(&doc, "_id", rec);
		BSON_APPEND_OID(&doc, "tenant_id", &s->run->tenant);
		BSON_APPEND_OID(&doc, "principal", &fr->user);
		BSON_APPEND_UTF8(&doc, "key", key);
		BSON_APPEND_UTF8(
		    &doc, "request_hash",
		    "4f6e2a1c9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f");
		BSON_APPEND_UTF8(&doc, "state", "pending");
		BSON_APPEND_DATE_TIME(&doc, "created_at", wall_ms());
		rc = insert(s, C_IDEMPOTENCY, &doc) == 0 ? 0 : -1;
	}
	bson_destroy(&doc);
	return rc;
}

static int
today_idem_done(struct session *s, const struct flow_run *fr, const bson_oid_t *rec,
		const bson_t *answer)
{
	bson_t filter = BSON_INITIALIZER, change = BSON_INITIALIZER, set;
	int rc = 0;

	if (fr->today) {
		char *body = bson_as_relaxed_extended_json(answer, NULL);
		BSON_APPEND_OID(&filter, "_id", rec);
		BSON_APPEND_OID(&filter, "tenant_id", &s->run->tenant);
		BSON_APPEND_DOCUMENT_BEGIN(&change, "$set", &set);
		BSON_APPEND_UTF8(&set, "state", "done");
		BSON_APPEND_INT32(&set, "status", 201);
		BSON_APPEND_UTF8(&set, "body", body ? body : "{}");
		BSON_APPEND_UTF8(&set, "content_type", "application/json");
		BSON_APPEND_UTF8(&set, "location", "/v1/erp/payments/x");
		bson_append_document_end(&change, &set);
		rc = update(s, C_IDEMPOTENCY, &filter, &change, false);
		bson_free(body);
	}
	bson_destroy(&filter);
	bson_destroy(&change);
	return rc;
}

/* The events of a step (topic, event, data each) go to the outbox before
 * the answer and leave it once published (publishing is Redis's work, not
 * the database's). Today: one record per event, each after a look at its
 * topic's webhook subscribers; the floor: one record for the step. */
static int
outbox(struct session *s, const struct flow_run *fr, const char *const *topics,
       const char *const *events, const bson_t *const *data, int n)
{
	int records = fr->today ? n : 1, made = 0, rc = 0;
	bson_oid_t ids[4];

	for (int r = 0; r < records && r < 4 && rc == 0; r++) {
		int first = fr->today ? r : 0, last = fr->today ? r + 1 : n;
		bson_t rec = BSON_INITIALIZER, frame = BSON_INITIALIZER, list, ev;
		if ((rc = today_webhooks(s, fr, topics[first])) != 0)
			break;
		BSON_APPEND_ARRAY_BEGIN(&frame, "events", &list);
		for (int j = first; j < last; j++) {
			char k[8];
			const char *kk;
			bson_uint32_to_string((uint32_t)(j - first), &kk, k, sizeof(k));
			BSON_APPEND_DOCUMENT_BEGIN(&list, kk, &ev);
			BSON_APPEND_UTF8(&ev, "topic", topics[j]);
			BSON_APPEND_UTF8(&ev, "event", events[j]);
			BSON_APPEND_DOCUMENT(&ev, "data", data[j]);
			bson_append_document_end(&list, &ev);
		}
		bson_append_array_end(&frame, &list);
		char *tail = bson_as_relaxed_extended_json(&frame, NULL);
		bson_oid_init(&ids[made], NULL);
		BSON_APPEND_OID(&rec, "_id", &ids[made]);
		BSON_APPEND_OID(&rec, "tenant_id", &s->run->tenant);
		BSON_APPEND_UTF8(&rec, "topic", topics[first]);
		BSON_APPEND_UTF8(&rec, "owner", "");
		BSON_APPEND_UTF8(&rec, "tail", tail ? tail : "");
		BSON_APPEND_DATE_TIME(&rec, "created_at", wall_ms());
		rc = insert(s, C_OUTBOX, &rec) == 0 ? 0 : -1;
		made += rc == 0;
		bson_free(tail);
		bson_destroy(&frame);
		bson_destroy(&rec);
	}
	for (int i = 0; i < made && rc == 0; i++) {
		bson_t filter = BSON_INITIALIZER;
		BSON_APPEND_OID(&filter, "_id", &ids[i]);
		rc = delete_docs(s, C_OUTBOX, &filter, false);
		bson_destroy(&filter);
	}
	return rc;
}

/* A version-checked change of record id from its version (read by the
 * caller) under a claim of that version (dbwrite.c): insert the claim,
 * findAndModify {_id, tenant_id, version} with set, delete the claim.
 * *out becomes the record as stored. 0, or -1 (a lost claim counts as a
 * failure here: every record has one writer in this run). */
static int
change(struct session *s, const struct flow_run *fr, enum coll_id c, const bson_oid_t *id,
       long long version, const bson_t *set, bson_t *out)
{
	bson_t claim = BSON_INITIALIZER, query = BSON_INITIALIZER, upd = BSON_INITIALIZER,
	       filter = BSON_INITIALIZER, child;
	char hex[25], key[128], cid[144];
	int rc = -1;

	bson_oid_to_string(id, hex);
	snprintf(key, sizeof(key), "%s/%s/%lld", colls[c].name, hex, version);
	snprintf(cid, sizeof(cid), "%s/0", key);
	BSON_APPEND_UTF8(&claim, "_id", cid);
	BSON_APPEND_UTF8(&claim, "rk", key);
	BSON_APPEND_OID(&claim, "tenant_id", &s->run->tenant);
	BSON_APPEND_UTF8(&claim, "coll", colls[c].name);
	BSON_APPEND_OID(&claim, "record", id);
	BSON_APPEND_INT64(&claim, "version", version);
	BSON_APPEND_INT32(&claim, "gen", 0);
	BSON_APPEND_UTF8(&claim, "change", "update");
	BSON_APPEND_DATE_TIME(&claim, "at", wall_ms());
	BSON_APPEND_DATE_TIME(&claim, "exp", wall_ms() + 30000);
	int got = insert(s, C_CLAIMS, &claim);
	if (got != 0) {
		if (got == 1)
			snprintf(s->error, sizeof(s->error), "claim %s taken", cid);
		goto out;
	}
	BSON_APPEND_OID(&query, "_id", id);
	BSON_APPEND_OID(&query, "tenant_id", &s->run->tenant);
	BSON_APPEND_INT64(&query, "version", version);
	BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &child);
	bson_concat(&child, set);
	BSON_APPEND_DATE_TIME(&child, "updated_at", wall_ms());
	BSON_APPEND_INT64(&child, "version", version + 1);
	bson_append_document_end(&upd, &child);
	got = modify(s, c, &query, &upd, out);
	if (got == 0)
		snprintf(s->error, sizeof(s->error), "%s %s moved past version %lld", colls[c].name,
			 hex, version);
	if (fr->today)
		BSON_APPEND_UTF8(&filter, "rk", key); /* every generation */
	else
		BSON_APPEND_UTF8(&filter, "_id", cid);
	if (delete_docs(s, C_CLAIMS, &filter, fr->today) == 0 && got == 1)
		rc = 0;
out:
	bson_destroy(&claim);
	bson_destroy(&query);
	bson_destroy(&upd);
	bson_destroy(&filter);
	return rc;
}

/* The order (or invoice) as stored now into *out, and its version. */
static int
read_record(struct session *s, enum coll_id c, const bson_oid_t *id, bson_t *out,
	    long long *version)
{
	int rc = find_by_oid(s, c, id, out);
	if (rc == 0)
		snprintf(s->error, sizeof(s->error), "%s: record gone", colls[c].name);
	*version = rc == 1 ? doc_int(out, "version") : 0;
	return rc == 1 ? 0 : -1;
}

static int
step_create(struct flow_worker *w, struct order *o)
{
	struct session *s = &w->s;
	const struct flow_run *fr = w->fr;
	bson_t doc = BSON_INITIALIZER, lines, line, product = BSON_INITIALIZER;
	const char *topic = "erp.orders", *event = "erp.order.created";
	int rc = -1;

	/* the warehouse the order names exists; each product's price and
	 * tax rate as they are now */
	if (find_by_oid(s, C_WAREHOUSES, &fr->warehouse, NULL) != 1)
		goto out;
	bson_oid_init(&o->id, NULL);
	bson_oid_to_string(&o->id, o->hex);
	stamp_new(s->run, &doc, &o->id);
	BSON_APPEND_OID(&doc, "warehouse_id", &fr->warehouse);
	BSON_APPEND_UTF8(&doc, "currency", "EUR");
	BSON_APPEND_OID(&doc, "owner_id", &fr->user);
	BSON_APPEND_UTF8(&doc, "status", "draft");
	BSON_APPEND_ARRAY_BEGIN(&doc, "lines", &lines);
	o->net = o->tax = 0;
	for (int i = 0; i < o->n; i++) {
		const struct product *p = &fr->products[o->idx[i]];
		if (find_by_oid(s, C_PRODUCTS, &p->id, &product) != 1) {
			bson_append_array_end(&doc, &lines);
			goto out;
		}
		int64_t price = doc_int(&product, "price.amount"),
			rate = doc_int(&product, "tax_rate_bp"), net = o->qty[i] * price,
			tax = muldiv_half_even(net, rate, 10000);
		char k[8];
		const char *kk;
		bson_uint32_to_string((uint32_t)i, &kk, k, sizeof(k));
		BSON_APPEND_DOCUMENT_BEGIN(&lines, kk, &line);
		BSON_APPEND_OID(&line, "product_id", &p->id);
		BSON_APPEND_INT64(&line, "quantity", o->qty[i]);
		append_money(&line, "unit_price", price);
		BSON_APPEND_INT64(&line, "discount_bp", 0);
		BSON_APPEND_INT64(&line, "tax_rate_bp", rate);
		append_money(&line, "net", net);
		append_money(&line, "tax", tax);
		append_money(&line, "total", net + tax);
		BSON_APPEND_INT64(&line, "shipped", 0);
		bson_append_document_end(&lines, &line);
		o->net += net;
		o->tax += tax;
	}
	bson_append_array_end(&doc, &lines);
	o->total = o->net + o->tax;
	append_money(&doc, "net", o->net);
	append_money(&doc, "tax", o->tax);
	append_money(&doc, "total", o->total);
	if (today_bucket(s, fr, "erp_orders") != 0 || insert(s, C_ORDERS, &doc) != 0)
		goto out;
	const bson_t *data[] = {&doc};
	rc = outbox(s, fr, &topic, &event, data, 1);
out:
	bson_destroy(&doc);
	bson_destroy(&product);
	return rc;
}

static int
step_confirm(struct flow_worker *w, struct order *o)
{
	struct session *s = &w->s;
	const struct flow_run *fr = w->fr;
	bson_t set = BSON_INITIALIZER, arr, item, warehouse = BSON_INITIALIZER,
	       busy = BSON_INITIALIZER;
	const char *topic = "erp.orders", *event = "erp.order.confirmed";
	long long version, seqs[MAX_LINES];
	int rc = -1;

	if (read_record(s, C_ORDERS, &o->id, &o->doc, &version) != 0)
		goto out;
	if (fr->today) {
		/* the transient state first, each write after its own read */
		bson_t b = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&b, "status", "confirming");
		int brc = today_reads(s, fr, C_ORDERS, &o->id, 1) ||
			  change(s, fr, C_ORDERS, &o->id, version, &b, &busy);
		bson_destroy(&b);
		if (brc != 0)
			goto out;
		version++;
	}
	if (find_by_oid(s, C_WAREHOUSES, &fr->warehouse, &warehouse) != 1)
		goto out;
	bool floor = !doc_int(&warehouse, "allow_negative");
	for (int i = 0; i < o->n; i++) {
		char op[128];
		struct reg_delta d[] = {{"reserved", o->qty[i]}, {"available", -o->qty[i]}};
		snprintf(op, sizeof(op), "erp.reserve:%s:%lld:%d", o->hex, version + 1, i);
		struct reg_post p = {.key = fr->products[o->idx[i]].key,
				     .op = op,
				     .deltas = d,
				     .n = 2,
				     .has_floor = floor};
		if (reg_post(s, &p, &seqs[i]) != 0) {
			snprintf(s->error, sizeof(s->error), "reservation refused");
			goto out;
		}
	}
	BSON_APPEND_UTF8(&set, "status", "confirmed");
	BSON_APPEND_ARRAY_BEGIN(&set, "_reservations", &arr);
	for (int i = 0; i < o->n; i++) {
		char k[8];
		const char *kk;
		bson_uint32_to_string((uint32_t)i, &kk, k, sizeof(k));
		BSON_APPEND_DOCUMENT_BEGIN(&arr, kk, &item);
		BSON_APPEND_UTF8(&item, "key", fr->products[o->idx[i]].key);
		BSON_APPEND_INT64(&item, "seq", seqs[i]);
		bson_append_document_end(&arr, &item);
	}
	bson_append_array_end(&set, &arr);
	BSON_APPEND_INT64(&set, "_confirm_attempt", version + 1);
	if (today_reads(s, fr, C_ORDERS, &o->id, 1) != 0 ||
	    change(s, fr, C_ORDERS, &o->id, version, &set, &o->doc) != 0)
		goto out;
	const bson_t *data[] = {&o->doc};
	rc = outbox(s, fr, &topic, &event, data, 1);
out:
	bson_destroy(&set);
	bson_destroy(&warehouse);
	bson_destroy(&busy);
	return rc;
}

static void
entry_init(struct entry *en, const char *id, const char *memo, const char *source)
{
	memset(en, 0, offsetof(struct entry, lines));
	snprintf(en->id, sizeof(en->id), "%s", id);
	today_str(en->date);
	snprintf(en->memo, sizeof(en->memo), "%s", memo);
	snprintf(en->currency, sizeof(en->currency), "EUR");
	snprintf(en->source, sizeof(en->source), "%s", source);
}

static void
entry_line(struct entry *en, const char *account, int64_t debit, int64_t credit)
{
	if (debit == 0 && credit == 0)
		return;
	snprintf(en->lines[en->nlines].account, sizeof(en->lines[0].account), "%s", account);
	en->lines[en->nlines].debit = debit;
	en->lines[en->nlines++].credit = credit;
}

/* A 24-hex id derived from a seed (erp_derived_id). */
static void
derived_id(const char *seed, bson_oid_t *out, char hex[25])
{
	uint8_t digest[32];
	crypto_hash_sha256(digest, (const unsigned char *)seed, strlen(seed));
	sodium_bin2hex(hex, 25, digest, 12);
	bson_oid_init_from_string(out, hex);
}

static int
step_invoice(struct flow_worker *w, struct order *o)
{
	struct session *s = &w->s;
	const struct flow_run *fr = w->fr;
	bson_t doc = BSON_INITIALIZER, set = BSON_INITIALIZER, updated = BSON_INITIALIZER;
	const char *topic = "erp.invoices", *event = "erp.invoice.created";
	char op[96], seed[64], number[40], memo[96];
	long long version, n = 0, seq;
	struct entry en;
	int rc = -1;

	if (read_record(s, C_ORDERS, &o->id, &o->doc, &version) != 0)
		goto out;
	snprintf(seed, sizeof(seed), "invoice:%s", o->hex);
	derived_id(seed, &o->invoice, o->inv_hex);
	/* the next number of the tenant's year, once per order */
	snprintf(op, sizeof(op), "erp.invoice:%s", o->hex);
	struct reg_delta next[] = {{"n", 1}};
	struct reg_post number_post = {.key = fr->numbers_key, .op = op, .deltas = next, .n = 1};
	if (today_find_op(s, fr, op) != 0 || reg_post(s, &number_post, &n) != 0)
		goto out;
	snprintf(number, sizeof(number), "INV-%.4s-%06lld-%s", fr->numbers_key + 20, n,
		 s->run->tag);
	/* the receivable opens: a new register (today reads its state first) */
	char rkey[96];
	snprintf(rkey, sizeof(rkey), "erp.receivable/%s", o->hex);
	if (fr->today) {
		char id[256];
		reg_name(s->run, rkey, "h", 0, id, sizeof(id));
		if (find_by_str_id(s, C_SNAPS, id, NULL) < 0)
			goto out;
		reg_name(s->run, rkey, "", 1, id, sizeof(id));
		if (find_by_str_id(s, C_MOVES, id, NULL) < 0)
			goto out;
	}
	snprintf(op, sizeof(op), "erp.open:%s", o->hex);
	struct reg_delta open[] = {{"open", o->total}};
	struct reg_post open_post = {.key = rkey, .op = op, .deltas = open, .n = 1};
	if (reg_post(s, &open_post, &seq) != 0)
		goto out;
	/* receivables against sales and tax */
	snprintf(memo, sizeof(memo), "invoice %s, order %s", number, o->hex);
	entry_init(&en, o->inv_hex, memo, "invoice");
	entry_line(&en, "1200", o->total, 0);
	entry_line(&en, "4000", 0, o->net);
	entry_line(&en, "2100", 0, o->tax);
	if (today_chart(s, fr) != 0 || ledger_post(s, fr->ledger_key, &en) != 0)
		goto out;
	stamp_new(s->run, &doc, &o->invoice);
	BSON_APPEND_OID(&doc, "order_id", &o->id);
	BSON_APPEND_UTF8(&doc, "number", number);
	append_money(&doc, "total", o->total);
	append_money(&doc, "paid", 0);
	BSON_APPEND_DATE_TIME(&doc, "due_at", wall_ms() + 30LL * 86400000);
	BSON_APPEND_UTF8(&doc, "status", "open");
	if (today_bucket(s, fr, "erp_invoices") != 0 || insert(s, C_INVOICES, &doc) != 0)
		goto out;
	BSON_APPEND_UTF8(&set, "status", "invoiced");
	BSON_APPEND_OID(&set, "invoice_id", &o->invoice);
	if (today_reads(s, fr, C_ORDERS, &o->id, 2) != 0 ||
	    change(s, fr, C_ORDERS, &o->id, version, &set, &updated) != 0)
		goto out;
	const bson_t *data[] = {&doc};
	rc = outbox(s, fr, &topic, &event, data, 1);
out:
	bson_destroy(&doc);
	bson_destroy(&set);
	bson_destroy(&updated);
	return rc;
}

static int
step_pay(struct flow_worker *w, struct order *o)
{
	struct session *s = &w->s;
	const struct flow_run *fr = w->fr;
	bson_t doc = BSON_INITIALIZER, set = BSON_INITIALIZER, invoice = BSON_INITIALIZER,
	       inv_out = BSON_INITIALIZER, paid = BSON_INITIALIZER;
	const char *topics[] = {"erp.orders", "erp.payments"},
		   *events[] = {"erp.order.paid", "erp.payment.created"};
	char op[96], seed[128], pid[25], rkey[96], memo[96], ikey[64];
	long long version, inv_version, seq;
	bson_oid_t idem;
	struct entry en;
	int rc = -1;

	snprintf(ikey, sizeof(ikey), "pay-%s", o->hex);
	if (today_idem_claim(s, fr, ikey, &idem) != 0 ||
	    read_record(s, C_ORDERS, &o->id, &o->doc, &version) != 0)
		goto out;
	/* the payment's id comes from the request's Idempotency-Key */
	snprintf(seed, sizeof(seed), "payment:%s:%s", o->hex, ikey);
	derived_id(seed, &o->payment, pid);
	snprintf(op, sizeof(op), "erp.payment:%s", pid);
	snprintf(rkey, sizeof(rkey), "erp.receivable/%s", o->hex);
	struct reg_delta d[] = {{"open", -o->total}};
	struct reg_post post = {
	    .key = rkey, .op = op, .deltas = d, .n = 1, .has_floor = true, .floor = 0};
	if (today_find_op(s, fr, op) != 0 || reg_post(s, &post, &seq) != 0)
		goto out;
	snprintf(memo, sizeof(memo), "payment of order %s", o->hex);
	entry_init(&en, pid, memo, "payment");
	entry_line(&en, "1100", o->total, 0);
	entry_line(&en, "1200", 0, o->total);
	if (today_chart(s, fr) != 0 || ledger_post(s, fr->ledger_key, &en) != 0)
		goto out;
	stamp_new(s->run, &doc, &o->payment);
	append_money(&doc, "amount", o->total);
	BSON_APPEND_UTF8(&doc, "method", "bank");
	BSON_APPEND_UTF8(&doc, "reference", o->hex);
	BSON_APPEND_OID(&doc, "order_id", &o->id);
	append_money(&doc, "open_after", 0);
	if (today_bucket(s, fr, "erp_payments") != 0 || insert(s, C_PAYMENTS, &doc) != 0)
		goto out;
	/* the invoice follows what is open: paid */
	if (read_record(s, C_INVOICES, &o->invoice, &invoice, &inv_version) != 0 ||
	    today_reads(s, fr, C_INVOICES, &o->invoice, 1) != 0)
		goto out;
	append_money(&set, "paid", o->total);
	BSON_APPEND_UTF8(&set, "status", "paid");
	if (change(s, fr, C_INVOICES, &o->invoice, inv_version, &set, &inv_out) != 0)
		goto out;
	/* the payment that closed it: the order is paid */
	bson_reinit(&set);
	BSON_APPEND_UTF8(&set, "status", "paid");
	if (today_reads(s, fr, C_ORDERS, &o->id, 3) != 0 ||
	    change(s, fr, C_ORDERS, &o->id, version, &set, &paid) != 0)
		goto out;
	if (fr->today) {
		/* once-mark of erp.order.paid */
		bson_t mark = BSON_INITIALIZER;
		char id[96];
		snprintf(id, sizeof(id), "%s/erp.order.paid:%s", s->run->tenant_hex, o->hex);
		BSON_APPEND_UTF8(&mark, "_id", id);
		BSON_APPEND_OID(&mark, "tenant_id", &s->run->tenant);
		BSON_APPEND_DATE_TIME(&mark, "at", wall_ms());
		int mrc = insert(s, C_ONCE, &mark);
		bson_destroy(&mark);
		if (mrc != 0)
			goto out;
	}
	const bson_t *data[] = {&paid, &doc};
	if (outbox(s, fr, topics, events, data, 2) != 0 || today_idem_done(s, fr, &idem, &doc) != 0)
		goto out;
	rc = 0;
out:
	bson_destroy(&doc);
	bson_destroy(&set);
	bson_destroy(&invoice);
	bson_destroy(&inv_out);
	bson_destroy(&paid);
	return rc;
}

struct average {
	int64_t q;
};

/* Stock leaving at the moving average of the state it leaves
 * (erp_at_average): on_hand and reserved down by q, value by its share. */
static bool
at_average(void *arg, const struct reg_state *st, struct reg_delta *d, int n)
{
	const struct average *a = arg;
	int64_t on_hand = reg_get(st, "on_hand"), value = reg_get(st, "value"), cost = 0;

	if (on_hand > 0 && value > 0)
		cost = a->q >= on_hand ? value : muldiv_half_even(a->q, value, on_hand);
	for (int i = 0; i < n; i++)
		d[i].delta = strcmp(d[i].counter, "value") == 0 ? -cost : -a->q;
	return true;
}

static int
step_ship(struct flow_worker *w, struct order *o)
{
	struct session *s = &w->s;
	const struct flow_run *fr = w->fr;
	bson_t set = BSON_INITIALIZER, lines, line, it_doc, doc = BSON_INITIALIZER,
	       done = BSON_INITIALIZER, pend;
	const char *topic = "erp.shipments", *event = "erp.shipment.created";
	char seed[128], sid[25], ikey[64], memo[96];
	long long version;
	int64_t costs[MAX_LINES], total_cost = 0;
	bson_oid_t idem;
	struct entry en;
	bson_iter_t it, arr;
	int rc = -1;

	snprintf(ikey, sizeof(ikey), "ship-%s", o->hex);
	snprintf(seed, sizeof(seed), "shipment:%s:%s", o->hex, ikey);
	derived_id(seed, &o->shipment, sid);
	if (today_idem_claim(s, fr, ikey, &idem) != 0 ||
	    read_record(s, C_ORDERS, &o->id, &o->doc, &version) != 0)
		goto out;
	if (fr->today && find_by_oid(s, C_SHIPMENTS, &o->shipment, NULL) != 0)
		goto out; /* done before? */
	/* the quantities claimed on the order's version, the shipment named:
	 * no two shipments take the same remainder */
	BSON_APPEND_ARRAY_BEGIN(&set, "lines", &lines);
	if (bson_iter_init_find(&it, &o->doc, "lines") && bson_iter_recurse(&it, &arr))
		for (int i = 0; bson_iter_next(&arr); i++) {
			bson_iter_t field;
			char k[8];
			const char *kk;
			bson_uint32_to_string((uint32_t)i, &kk, k, sizeof(k));
			BSON_APPEND_DOCUMENT_BEGIN(&lines, kk, &line);
			if (bson_iter_recurse(&arr, &field))
				while (bson_iter_next(&field)) {
					if (strcmp(bson_iter_key(&field), "shipped") == 0)
						BSON_APPEND_INT64(&line, "shipped",
								  bson_iter_as_int64(&field) +
								      (i < o->n ? o->qty[i] : 0));
					else
						bson_append_iter(&line, NULL, 0, &field);
				}
			bson_append_document_end(&lines, &line);
		}
	bson_append_array_end(&set, &lines);
	BSON_APPEND_ARRAY_BEGIN(&set, fr->today ? "_pending_shipments" : "_shipments", &pend);
	BSON_APPEND_UTF8(&pend, "0", sid);
	bson_append_array_end(&set, &pend);
	if (!fr->today)
		BSON_APPEND_UTF8(&set, "status", "completed");
	if (today_reads(s, fr, C_ORDERS, &o->id, 1) != 0 ||
	    change(s, fr, C_ORDERS, &o->id, version, &set, &o->doc) != 0)
		goto out;
	version++;
	/* each line leaves at its moving average */
	for (int i = 0; i < o->n; i++) {
		char op[96];
		long long seq;
		struct reg_delta d[] = {{"on_hand", 0}, {"reserved", 0}, {"value", 0}};
		struct average avg = {.q = o->qty[i]};
		snprintf(op, sizeof(op), "erp.ship:%s:%d", sid, i);
		struct reg_post p = {.key = fr->products[o->idx[i]].key,
				     .op = op,
				     .deltas = d,
				     .n = 3,
				     .reckon = at_average,
				     .reckon_arg = &avg};
		if (reg_post(s, &p, &seq) != 0)
			goto out;
		costs[i] = -d[2].delta;
		total_cost += costs[i];
	}
	/* cost of goods sold against inventory */
	snprintf(memo, sizeof(memo), "shipment of order %s", o->hex);
	entry_init(&en, sid, memo, "shipment");
	entry_line(&en, "5000", total_cost, 0);
	entry_line(&en, "1300", 0, total_cost);
	if (today_chart(s, fr) != 0 || ledger_post(s, fr->ledger_key, &en) != 0)
		goto out;
	stamp_new(s->run, &doc, &o->shipment);
	BSON_APPEND_OID(&doc, "order_id", &o->id);
	BSON_APPEND_ARRAY_BEGIN(&doc, "lines", &lines);
	for (int i = 0; i < o->n; i++) {
		char k[8];
		const char *kk;
		bson_uint32_to_string((uint32_t)i, &kk, k, sizeof(k));
		BSON_APPEND_DOCUMENT_BEGIN(&lines, kk, &it_doc);
		BSON_APPEND_OID(&it_doc, "product_id", &fr->products[o->idx[i]].id);
		BSON_APPEND_INT64(&it_doc, "quantity", o->qty[i]);
		append_money(&it_doc, "cost", costs[i]);
		bson_append_document_end(&lines, &it_doc);
	}
	bson_append_array_end(&doc, &lines);
	append_money(&doc, "cost", total_cost);
	if (today_bucket(s, fr, "erp_shipments") != 0 || insert(s, C_SHIPMENTS, &doc) != 0)
		goto out;
	if (fr->today) {
		/* the order no longer names it pending, and is completed */
		bson_t unpend = BSON_INITIALIZER, empty;
		BSON_APPEND_ARRAY_BEGIN(&unpend, "_pending_shipments", &empty);
		bson_append_array_end(&unpend, &empty);
		BSON_APPEND_UTF8(&unpend, "status", "completed");
		int urc = today_reads(s, fr, C_ORDERS, &o->id, 2) ||
			  change(s, fr, C_ORDERS, &o->id, version, &unpend, &done);
		bson_destroy(&unpend);
		if (urc != 0)
			goto out;
	}
	const bson_t *data[] = {&doc};
	if (outbox(s, fr, &topic, &event, data, 1) != 0 || today_idem_done(s, fr, &idem, &doc) != 0)
		goto out;
	rc = 0;
out:
	bson_destroy(&set);
	bson_destroy(&doc);
	bson_destroy(&done);
	return rc;
}

static int (*const steps[ST_COUNT])(struct flow_worker *, struct order *) = {
    step_create, step_confirm, step_invoice, step_pay, step_ship};

/* Seeds the products of this thread's share (i = index mod threads): the
 * product record and its opening stock, a receipt on its register. */
static int
seed_products(struct flow_worker *w)
{
	struct session *s = &w->s;
	struct flow_run *fr = w->fr;

	for (long i = w->index; i < fr->products_n; i += w->threads) {
		struct product *p = &fr->products[i];
		bson_t doc = BSON_INITIALIZER, price;
		char sku[64], hex[25], whex[25], op[64];
		long long seq;
		bson_oid_init(&p->id, NULL);
		bson_oid_to_string(&p->id, hex);
		bson_oid_to_string(&fr->warehouse, whex);
		snprintf(p->key, sizeof(p->key), "erp.stock/%s/%s", hex, whex);
		p->price = 500 + (i * 37) % 9500;
		stamp_new(s->run, &doc, &p->id);
		snprintf(sku, sizeof(sku), "B%s-%05ld", s->run->tag, i);
		BSON_APPEND_UTF8(&doc, "sku", sku);
		BSON_APPEND_UTF8(&doc, "name", sku);
		BSON_APPEND_DOCUMENT_BEGIN(&doc, "price", &price);
		BSON_APPEND_INT64(&price, "amount", p->price);
		BSON_APPEND_UTF8(&price, "currency", "EUR");
		bson_append_document_end(&doc, &price);
		BSON_APPEND_INT64(&doc, "tax_rate_bp", 2000);
		BSON_APPEND_INT64(&doc, "uom_scale", 0);
		BSON_APPEND_BOOL(&doc, "active", true);
		int rc = insert(s, C_PRODUCTS, &doc);
		bson_destroy(&doc);
		if (rc != 0)
			return -1;
		struct reg_delta d[] = {{"on_hand", OPENING_STOCK},
					{"available", OPENING_STOCK},
					{"value", OPENING_STOCK * (p->price / 2)}};
		snprintf(op, sizeof(op), "erp.move:opening:%s", hex);
		struct reg_post post = {.key = p->key, .op = op, .deltas = d, .n = 3};
		if (reg_post(s, &post, &seq) != 0)
			return -1;
	}
	return 0;
}

static void *
flow_worker_run(void *arg)
{
	struct flow_worker *w = arg;
	struct session *s = &w->s;
	struct order o;

	bson_init(&o.doc);
	if (gun_wait(w->fr->run) != 1)
		goto out;
	while (now_ns() < w->fr->run->deadline_ns) {
		uint64_t t0 = now_ns();
		o.n = (int)w->fr->lines;
		for (int i = 0; i < o.n; i++) {
			int pick;
			bool again;
			do { /* lines of different products */
				pick = (int)(rng_next(&s->rng) % (uint64_t)w->fr->products_n);
				again = false;
				for (int j = 0; j < i; j++)
					again |= o.idx[j] == pick;
			} while (again);
			o.idx[i] = pick;
			o.qty[i] = 1 + (int64_t)(rng_next(&s->rng) % 5);
		}
		for (int st = 0; st < ST_COUNT; st++) {
			uint64_t ts = now_ns();
			if (steps[st](w, &o) != 0) {
				w->failed = true;
				w->failed_step = step_names[st];
				goto out;
			}
			samples_add(&w->steps[st], (double)(now_ns() - ts) / 1e6);
		}
		samples_add(&w->flow, (double)(now_ns() - t0) / 1e6);
		w->orders++;
	}
out:
	bson_destroy(&o.doc);
	w->tally = s->tally;
	return NULL;
}

static void *
flow_seed_run(void *arg)
{
	struct flow_worker *w = arg;
	if (seed_products(w) != 0)
		w->failed = true;
	return NULL;
}

/* The records the steps read besides the products: the warehouse, and for
 * today the chart of accounts and the list-bucket markers. */
static int
seed_fixtures(struct session *s, struct flow_run *fr)
{
	bson_t doc = BSON_INITIALIZER;
	char code[32];
	int rc;

	bson_oid_init(&fr->warehouse, NULL);
	bson_oid_init(&fr->user, NULL);
	stamp_new(s->run, &doc, &fr->warehouse);
	snprintf(code, sizeof(code), "BW%s", s->run->tag);
	BSON_APPEND_UTF8(&doc, "code", code);
	BSON_APPEND_UTF8(&doc, "name", "Baseline warehouse");
	BSON_APPEND_BOOL(&doc, "allow_negative", false);
	BSON_APPEND_BOOL(&doc, "active", true);
	rc = insert(s, C_WAREHOUSES, &doc);
	bson_destroy(&doc);
	if (rc != 0 || !fr->today)
		return rc == 0 ? 0 : -1;
	static const char *const accounts[] = {"1000", "1100", "1200", "1300", "2000",
					       "2100", "3000", "4000", "5000", "6000"};
	for (size_t i = 0; i < sizeof(accounts) / sizeof(accounts[0]); i++) {
		bson_t acct = BSON_INITIALIZER;
		bson_oid_t id;
		bson_oid_init(&id, NULL);
		stamp_new(s->run, &acct, &id);
		BSON_APPEND_UTF8(&acct, "code", accounts[i]);
		BSON_APPEND_UTF8(&acct, "name", accounts[i]);
		BSON_APPEND_UTF8(&acct, "type", "asset");
		rc = insert(s, C_ACCOUNTS, &acct);
		bson_destroy(&acct);
		if (rc < 0)
			return -1;
	}
	static const char *const listed[] = {"erp_orders", "erp_invoices", "erp_payments",
					     "erp_shipments"};
	for (size_t i = 0; i < sizeof(listed) / sizeof(listed[0]); i++) {
		bson_t mark = BSON_INITIALIZER;
		char id[128];
		snprintf(id, sizeof(id), "%s/%s/1", s->run->tenant_hex, listed[i]);
		BSON_APPEND_UTF8(&mark, "_id", id);
		BSON_APPEND_OID(&mark, "tenant_id", &s->run->tenant);
		BSON_APPEND_UTF8(&mark, "coll", listed[i]);
		rc = insert(s, C_BUCKETS, &mark);
		bson_destroy(&mark);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static void
print_samples(const char *name, struct samples *v)
{
	qsort(v->v, v->n, sizeof(double), by_double);
	printf("%s_p50_ms=%.1f\n", name, quantile(v->v, v->n, 0.50));
	printf("%s_p99_ms=%.1f\n", name, quantile(v->v, v->n, 0.99));
}

static void
merge_samples(struct samples *into, const struct samples *from)
{
	for (size_t i = 0; i < from->n; i++)
		samples_add(into, from->v[i]);
}

static int
run_orderflow(struct run *r, long threads, long seconds, bool today, long products, long lines)
{
	struct flow_run fr = {.run = r, .today = today, .products_n = products, .lines = lines};
	struct flow_worker *workers = calloc((size_t)threads, sizeof(*workers));
	struct samples steps_all[ST_COUNT] = {{0}}, flow_all = {0};
	struct tally total = {0};
	char err[ERROR_SIZE] = "", year[11];
	uint64_t orders = 0, t0, t1;
	long started = 0;
	int status = 1;
	unsigned need = 0;

	fr.products = calloc((size_t)products, sizeof(*fr.products));
	if (!workers || !fr.products) {
		fprintf(stderr, "baseline_erp: out of memory\n");
		goto out;
	}
	for (int c = 0; c <= (today ? C_SNAPS : C_WAREHOUSES); c++)
		need |= 1u << c;
	if (setup_collections(r, need, err, sizeof(err)) != 0) {
		fprintf(stderr, "baseline_erp: %s\n", err);
		goto out;
	}
	today_str(year);
	snprintf(fr.ledger_key, sizeof(fr.ledger_key), "erp.ledger/%s", r->tag);
	snprintf(fr.numbers_key, sizeof(fr.numbers_key), "erp.invoice-numbers/%.4s-%s", year,
		 r->tag);

	/* seeding, untimed, on the threads' own sessions */
	uint64_t s0 = now_ns();
	for (long i = 0; i < threads; i++) {
		workers[i].fr = &fr;
		workers[i].index = i;
		workers[i].threads = threads;
		session_open(&workers[i].s, r, (uint64_t)getpid() * 7919u + (uint64_t)i);
	}
	if (seed_fixtures(&workers[0].s, &fr) != 0) {
		fprintf(stderr, "baseline_erp: seeding: %s\n", workers[0].s.error);
		goto close;
	}
	for (started = 0; started < threads; started++)
		if (pthread_create(&workers[started].thread, NULL, flow_seed_run,
				   &workers[started]) != 0)
			break;
	bool seeded = started == threads;
	for (long i = 0; i < started; i++) {
		pthread_join(workers[i].thread, NULL);
		if (workers[i].failed) {
			fprintf(stderr, "baseline_erp: seeding: %s\n", workers[i].s.error);
			seeded = false;
		}
		memset(&workers[i].s.tally, 0, sizeof(workers[i].s.tally));
	}
	double seed_seconds = (double)(now_ns() - s0) / 1e9;
	if (!seeded)
		goto close;
	fprintf(stderr, "baseline_erp: orderflow (%s): %ld products seeded in %.1f s\n",
		today ? "today" : "minimal", products, seed_seconds);

	for (started = 0; started < threads; started++)
		if (pthread_create(&workers[started].thread, NULL, flow_worker_run,
				   &workers[started]) != 0)
			break;
	struct cpu_probes cpu;
	cpu_probes_start(&cpu);
	t0 = now_ns();
	gun_fire(r, started == threads ? 1 : -1, seconds);
	for (long i = 0; i < started; i++) {
		pthread_join(workers[i].thread, NULL);
		orders += workers[i].orders;
		tally_sum(&total, &workers[i].tally);
		for (int st = 0; st < ST_COUNT; st++)
			merge_samples(&steps_all[st], &workers[i].steps[st]);
		merge_samples(&flow_all, &workers[i].flow);
		if (workers[i].failed)
			fprintf(stderr, "baseline_erp: thread %ld, %s: %s\n", i,
				workers[i].failed_step, workers[i].s.error);
	}
	t1 = now_ns();
	if (started < threads) {
		fprintf(stderr, "baseline_erp: cannot start thread\n");
		goto close;
	}
	double elapsed = (double)(t1 - t0) / 1e9;
	uint64_t statements = tally_statements(&total);
	printf("variant=%s\n", today ? "today" : "minimal");
	printf("threads=%ld\n", threads);
	printf("products=%ld\n", products);
	printf("lines=%ld\n", lines);
	printf("seed_seconds=%.1f\n", seed_seconds);
	printf("seconds=%.3f\n", elapsed);
	printf("orders=%" PRIu64 "\n", orders);
	printf("statements_per_order=%.2f\n", orders ? (double)statements / (double)orders : 0.0);
	for (int k = 0; k < S_KINDS; k++) {
		printf("%ss_per_order=%.2f\n", stmt_names[k],
		       orders ? (double)total.n[k] / (double)orders : 0.0);
		printf("%s_ms=%.3f\n", stmt_names[k],
		       total.n[k] ? (double)total.ns[k] / (double)total.n[k] / 1e6 : 0.0);
	}
	printf("conflicts=%" PRIu64 "\n", total.conflicts);
	/* the time an order's appends waited for a register another thread
	 * was appending to: the tenant's ledger and invoice numbers, mostly */
	printf("register_wait_ms_per_order=%.1f\n",
	       orders ? (double)total.wait_ns / (double)orders / 1e6 : 0.0);
	for (int st = 0; st < ST_COUNT; st++)
		print_samples(step_names[st], &steps_all[st]);
	print_samples("flow", &flow_all);
	cpu_probes_print(&cpu, "", "order", (double)orders);
	printf("orders_per_sec=%.1f\n", elapsed > 0 ? (double)orders / elapsed : 0.0);
	status = 0;
	for (long i = 0; i < started; i++)
		if (workers[i].failed)
			status = 1;
close:
	for (long i = 0; i < threads; i++) {
		session_close(&workers[i].s);
		for (int st = 0; st < ST_COUNT; st++)
			free(workers[i].steps[st].v);
		free(workers[i].flow.v);
	}
	for (int st = 0; st < ST_COUNT; st++)
		free(steps_all[st].v);
	free(flow_all.v);
out:
	free(workers);
	free(fr.products);
	return status;
}

/* ---- main ---- */

static void
usage(void)
{
	fprintf(stderr,
		"usage: baseline_erp verify URI TENANT_HEX N [READS]\n"
		"       baseline_erp append URI TENANT_HEX THREADS SECONDS [KEYS]\n"
		"       baseline_erp orderflow URI TENANT_HEX THREADS SECONDS [minimal|today "
		"[PRODUCTS [LINES]]]\n"
		"(see the comment at the top of tests/load/baseline_erp.c)\n");
}

int
main(int argc, char **argv)
{
	struct run r = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};
	mongoc_uri_t *uri = NULL;
	bson_error_t error;
	long threads = 1, seconds = 1, n = 0, products = 1000, lines = 3;
	bool today = false;
	char default_keys[] = "baseline.hot", default_reads[] = "sorted,natural";
	char *keys = default_keys, *reads = default_reads;
	int status = 2;

	if (argc < 4) {
		usage();
		return 2;
	}
	const char *mode = argv[1];
	if (strlen(argv[3]) != 24 || !bson_oid_is_valid(argv[3], 24)) {
		fprintf(stderr, "baseline_erp: TENANT_HEX must be 24 hex digits\n");
		return 2;
	}
	if (strcmp(mode, "verify") == 0) {
		if (argc < 5 || argc > 6 || parse_count(argv[4], 100000000, &n) != 0) {
			usage();
			return 2;
		}
		if (argc == 6)
			reads = argv[5];
	} else if (strcmp(mode, "append") == 0 || strcmp(mode, "orderflow") == 0) {
		bool flow = mode[0] == 'o';
		if (argc < 6 || argc > (flow ? 9 : 7) ||
		    parse_count(argv[4], MAX_THREADS, &threads) != 0 ||
		    parse_count(argv[5], MAX_SECONDS, &seconds) != 0) {
			usage();
			return 2;
		}
		if (!flow && argc == 7)
			keys = argv[6];
		if (flow && argc >= 7) {
			if (strcmp(argv[6], "today") != 0 && strcmp(argv[6], "minimal") != 0) {
				usage();
				return 2;
			}
			today = strcmp(argv[6], "today") == 0;
		}
		if (flow && ((argc >= 8 && parse_count(argv[7], MAX_PRODUCTS, &products) != 0) ||
			     (argc == 9 && parse_count(argv[8], MAX_LINES, &lines) != 0) ||
			     lines > products)) {
			usage();
			return 2;
		}
	} else {
		usage();
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "baseline_erp: libsodium did not start\n");
		return 1;
	}
	bson_oid_init_from_string(&r.tenant, argv[3]);
	bson_oid_to_string(&r.tenant, r.tenant_hex);
	{
		bson_oid_t tag;
		char hex[25];
		bson_oid_init(&tag, NULL);
		bson_oid_to_string(&tag, hex);
		snprintf(r.tag, sizeof(r.tag), "%s", hex + 12); /* counter and random */
	}
	mongoc_init();
	status = 1;
	uri = mongoc_uri_new_with_error(argv[2], &error);
	if (!uri) {
		fprintf(stderr, "baseline_erp: bad URI: %s\n", error.message);
		goto out;
	}
	r.database = mongoc_uri_get_database(uri);
	if (!r.database || !*r.database) {
		fprintf(stderr, "baseline_erp: the URI names no database\n");
		goto out;
	}
	/* one client per thread, and one for setting up */
	mongoc_uri_set_option_as_int32(uri, MONGOC_URI_MAXPOOLSIZE, (int32_t)threads + 1);
	r.pool = mongoc_client_pool_new(uri);
	if (!r.pool) {
		fprintf(stderr, "baseline_erp: cannot create the pool\n");
		goto out;
	}
	mongoc_client_pool_set_error_api(r.pool, MONGOC_ERROR_API_VERSION_2);
	mongoc_client_pool_set_appname(r.pool, "trellis-baseline-erp");
	printf("mode=%s\n", mode);
	if (mode[0] == 'v')
		status = run_verify(&r, n, reads);
	else if (mode[0] == 'a')
		status = run_append(&r, threads, seconds, keys);
	else
		status = run_orderflow(&r, threads, seconds, today, products, lines);
out:
	if (r.pool)
		mongoc_client_pool_destroy(r.pool);
	mongoc_uri_destroy(uri);
	mongoc_cleanup();
	return status;
}
