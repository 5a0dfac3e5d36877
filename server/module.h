/* What a module sees of Trellis: its route table, the request, the response
 * and the tenant-scoped data API (db.h). Modules never touch libwebsockets,
 * libuv, hiredis or mongoc types.
 *
 * A module is one `const struct tr_module` declaring what it owns: routes,
 * resources, permissions with their built-in role grants, topics, jobs,
 * register effects, operator commands, configuration keys, migrations and
 * the hooks the platform calls. The server calls a module only through
 * what it declared. The router checks everything a route row declares -
 * method, authentication, body shape and size, content type, rate limits -
 * before the handler runs, so handlers assume it. Adding an endpoint is
 * adding a row. */
#ifndef TR_MODULE_H
#define TR_MODULE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "config.h"

enum tr_method {
	TR_GET = 1 << 0,
	TR_POST = 1 << 1,
	TR_PUT = 1 << 2,
	TR_PATCH = 1 << 3,
	TR_DELETE = 1 << 4,
	TR_HEAD = 1 << 5,
	TR_OPTIONS = 1 << 6,
};

const char *tr_method_name(enum tr_method m);

/* Route flags, checked centrally before a handler runs:
 *   TR_PUBLIC      no authentication and no rate limit (operations, signup,
 *                  login); its database handle has no tenant.
 *   TR_INLINE      the handler runs on the loop thread: it must not block
 *                  and gets no database handle.
 *   TR_JSON_BODY   the request must carry a JSON object body (415/400 otherwise).
 *   TR_IDEMPOTENT  a POST that creates: honours Idempotency-Key (see db.h).
 *   TR_PAGED       answers a list page: takes limit, cursor and sort.
 *   TR_XML_BODY    with TR_JSON_BODY: an application/xml body is taken too,
 *                  left as received in raw_body with body_xml set (a BPMN
 *                  file); the handler reads it.
 *   TR_SIGNED      the body may come signed with the Standard Webhooks
 *                  headers: the router keeps webhook-id, webhook-timestamp
 *                  and webhook-signature in the request (req->webhook_*)
 *                  and the raw body in raw_body; the handler verifies them.
 *   TR_SECRET_PATH the path holds a credential (an inbound source's token):
 *                  the access log shows the route's pattern, not the path.
 *   TR_STATIC      serves files to browsers (the console), not the API: left
 *                  out of the OpenAPI document; the router keeps
 *                  If-None-Match and Accept-Encoding for the handler, whose
 *                  headers (tr_reply_header, cache_control) replace
 *                  Cache-Control: no-store.
 * Other routes are authenticated (401), rate limited (429), authorized
 * against the row's permission (403), and run on a worker thread with a
 * tenant-scoped database handle. */
enum tr_route_flags {
	TR_PUBLIC = 1 << 0,
	TR_JSON_BODY = 1 << 1,
	TR_IDEMPOTENT = 1 << 2,
	TR_INLINE = 1 << 3,
	TR_PAGED = 1 << 4,
	TR_XML_BODY = 1 << 5,
	TR_SIGNED = 1 << 6,
	TR_SECRET_PATH = 1 << 7,
	TR_STATIC = 1 << 8,
};

#define TR_MAX_PARAMS 4
#define TR_MAX_QUERY 32

struct tr_ctx;
struct tr_resource; /* resource.h */
typedef void (*tr_handler_fn)(struct tr_ctx *c);

struct tr_route {
	enum tr_method method;
	const char *path; /* "/v1/tags/{id}": {name} segments are parameters */
	tr_handler_fn handler;
	const char *permission; /* NULL: any authenticated principal */
	unsigned flags;
	const char *summary; /* one line, for the OpenAPI document */
	/* The resource the handler acts on (an action's, or one the router
	 * made from a declaration), or NULL. */
	const struct tr_resource *resource;
	/* The query parameters the handler reads, space-separated ("from to"),
	 * a trailing "!" on those it requires ("state!"), the values one takes
	 * after "=" ("status=open|done": the OpenAPI document's enum;
	 * "limit=1..500": an integer range; the handler still checks), or
	 * NULL for none;
	 * others answer 400. TR_PAGED adds limit, cursor and
	 * sort; a resource's list adds its filters. */
	const char *query;
	/* The values ?sort= takes on a TR_PAGED route without a resource
	 * (handlers pass them to tr_list_reply), NULL-terminated; a resource's
	 * list uses the resource's. */
	const char *const *sorts;
};

/* An operator command: `trellis <area> <verb> [args]`. run returns the
 * process exit code. It runs before the server loop exists, on the main
 * thread, and may block. */
struct tr_command {
	const char *area, *verb;
	int (*run)(int argc, char **argv);
	const char *usage;
};

struct tr_job_handler;

/* What a change of a record in `coll` does to registers (register.h): the
 * module's totals that follow its records. For a record going from before
 * to after (NULL: created, deleted; both as stored), `postings` appends
 * {"k": register key, "c": counter, "d": int64 delta} documents to the
 * array it is given: usually its contributions to totals of `after` minus
 * those of `before`. Pure: no database calls, the same answer every time.
 * The data layer posts them with the write, exactly once, even when the
 * writer dies right after it (the claim carries them; see dbwrite.c). */
struct tr_effects {
	const char *coll;
	int (*postings)(const bson_t *before, const bson_t *after, bson_t *postings);
};

/* A permission a module owns ("crm.leads.read") and the built-in roles
 * that hold it. owner and admin hold every permission; `roles` names the
 * others, space-separated, a role written "sales:own" holding only the
 * ":own" form. perm.c builds the catalogue and the roles from these. */
struct tr_permission {
	const char *name;
	const char *roles;
};

/* An event topic a module publishes and the permissions reading it needs,
 * space-separated, all of them (their ":own" form is enough: delivery then
 * filters records by owner). At most 32 topics in all. */
struct tr_topic {
	const char *name;
	const char *needs;
};

struct tr_db;

/* A module's subscribers to events, served as jobs (the webhooks module's
 * endpoints). For an event on topic in db's tenant, subscribers writes the
 * ids of those that must receive it into ids (at most max) and returns how
 * many, or a negative TR_E* code (then none get it). Each becomes one job
 * on `queue`, payload {"<id_field>": id, "event": {...}}, enqueued by the
 * same Redis call that publishes the event, so a published event is never
 * without its deliveries. ordered[i] true puts ids[i]'s jobs in a lane
 * named by the id (jobs.h, tr_job_enqueue_lane): they run one at a time,
 * in event order, across processes. */
struct tr_event_sink {
	const char *queue;
	const char *id_field;
	int (*subscribers)(struct tr_db *db, const char *topic, char (*ids)[25], bool *ordered,
			   int max);
};

/* A module that acts on other modules' events (BPM: a process started by
 * crm.deal.won, a step waiting for erp.order.paid): every published event
 * named in `events` (NULL-terminated) is also enqueued as a job on `queue`,
 * payload {"event": {...}}, by the same Redis call that publishes it, so
 * the listener never misses one (delivery is at least once). */
struct tr_event_listener {
	const char *queue;
	const char *const *events;
};

struct tr_principal;
struct tr_timeline_window; /* timeline.h */
struct tr_timeline_items;
struct tr_sales_query; /* sales.h */

/* A kind of item a module adds to a client's timeline. name is the item's
 * "type" and the member that holds it; record: the item shows that
 * resource's record as GET does (OpenAPI refers to its schema), or NULL: a
 * summary of the module's choosing, an object with "id". */
struct tr_timeline_kind {
	const char *name;
	const struct tr_resource *record;
	const char *about; /* one line, for the OpenAPI document */
};

/* A module's part of a client's timeline (GET /v1/crm/clients/{id}/timeline,
 * timeline.h: what every module records about a client, newest first, in
 * one list with one cursor). For the client client_id of db's tenant,
 * items adds the module's items past the window's position, at least the
 * first w->limit of each of its kinds (tr_timeline_query and
 * tr_timeline_add do the work), and only what the caller may read, as the
 * module's own lists would show it: caller->perms decides, ":own" forms
 * included (caller->own_only is the route's, not the module's). Returns 0
 * or a negative TR_E* code, which fails the request. Worker thread. */
struct tr_timeline {
	const struct tr_timeline_kind *kinds;
	size_t nkinds;
	int (*items)(struct tr_db *db, const struct tr_principal *caller,
		     const bson_oid_t *client_id, const struct tr_timeline_window *w,
		     struct tr_timeline_items *out);
};

/* The schema of a hand-written route's success answer, for the OpenAPI
 * document: components/schemas/<name>, written as JSON Schema text (the
 * 2020-12 dialect OpenAPI 3.1 takes). Routes without one are documented as
 * answering an object. */
struct tr_answer_schema {
	enum tr_method method;
	const char *path;
	const char *name;
	const char *schema;
};

struct tr_module {
	const char *name;
	const struct tr_permission *permissions;
	size_t npermissions;
	const struct tr_topic *topics;
	size_t ntopics;
	/* Hooks the platform calls (NULL: the module offers none; at most one
	 * module offers each). */
	/* Resolves an X-API-Key into c->req->principal (tenant, perms) on a
	 * worker; sets the problem (401/503) and returns non-zero when not.
	 * On success the platform then points db at that principal. */
	int (*authenticate_key)(struct tr_db *db, struct tr_ctx *c, const char *key);
	const struct tr_event_sink *event_sink;
	const struct tr_event_listener *event_listener;
	/* The organisation's directory, for modules that route work to people
	 * (a BPM approval by "the requester's head of department"): the user
	 * who heads the department of user_hex, in db's tenant, into
	 * out_user_hex (24 hex, lower case). The one who heads their own
	 * department gets the head of the department above; a department
	 * without a head that can act (a user, active) passes the question up.
	 * TR_OK, TR_ENOTFOUND when no one is found, or another TR_E* code.
	 * Worker threads; others reach it through tr_directory_head_of
	 * (directory.h). */
	int (*head_of)(struct tr_db *db, const char *user_hex, char out_user_hex[25]);
	/* The directory's other question (the BPM, telling the holders of a
	 * role a step is offered to them): the active users of db's tenant
	 * who hold role, at most max of them, into out (24 hex, lower case):
	 * how many, or a negative TR_E* code. Worker threads; others reach it
	 * through tr_directory_users_with_role (directory.h). */
	int (*users_with_role)(struct tr_db *db, const char *role, char (*out)[25], int max);
	/* What was sold, by product (the CRM's BCG matrix asks the ERP): for
	 * every line sold that q selects in db's tenant, calls line with the
	 * product, the time of sale and the line's net; stops at line's first
	 * non-zero return
	 * and returns it, else TR_OK or the data layer's error. Worker
	 * threads; others reach it through tr_sales_by_product (sales.h). */
	int (*sales_by_product)(struct tr_db *db, const struct tr_sales_query *q,
				int (*line)(void *arg, const bson_oid_t *product, int64_t at,
					    int64_t net),
				void *arg);
	const struct tr_route *routes;
	size_t nroutes;
	/* Each yields its list, create, get, change and delete routes
	 * (resource.h), served after the module's own routes. */
	const struct tr_resource *const *resources;
	size_t nresources;
	const struct tr_command *commands;
	size_t ncommands;
	const struct tr_job_handler *jobs; /* jobs.h */
	size_t njobs;
	const struct tr_effects *effects;
	size_t neffects;
	/* The configuration keys the module owns, read with tr_config_int and
	 * tr_config_str (config.h): set like the platform's, from the file and
	 * TRELLIS_<KEY>, and listed under the module in config-example. */
	const struct tr_config_key *config;
	size_t nconfig;
	/* The folder of the module's migrations ("modules/crm/migrations"),
	 * relative to the working directory as migrations_dir is (the
	 * repository, or the install root), or NULL for none. Its
	 * NNNN_name.json files are applied after the platform's, module by
	 * module in registry order, and recorded as "<module>/<NNNN_name>"
	 * (migrate.h). */
	const char *migrations;
	/* The module's own Prometheus metrics for GET /metrics: malloc'd
	 * exposition text (its # HELP and # TYPE lines included), or NULL.
	 * Called on the loop thread for every scrape: it reads what the
	 * module's work recorded (under its own lock) and never waits. */
	char *(*metrics)(void);
	/* The module's items on a client's timeline, or NULL. Unlike the
	 * hooks above, any number of modules offer one; each kind is one
	 * module's. */
	const struct tr_timeline *timeline;
	/* The module's part of GET /v1/observability (what a tenant admin asks
	 * before opening a support ticket), or NULL: for db's tenant, appends
	 * its members to out, named for what they describe ("webhooks"),
	 * measuring what happens over time since since_ms (unix ms). 0 or a
	 * negative TR_E* code, which fails the request. Worker thread. Any
	 * number of modules offer one. */
	int (*observe)(struct tr_db *db, int64_t since_ms, bson_t *out);
	/* Schemas of the answers of the module's own routes (OpenAPI). */
	const struct tr_answer_schema *answers;
	size_t nanswers;
};

/* The authenticated caller. Tenant and user come from a verified token,
 * never from the path, query or body. */
struct tr_principal {
	bson_oid_t tenant_id;
	bson_oid_t user_id;
	char tenant_hex[25];
	char user_hex[25];
	char session_id[65];
	const char *perms; /* space-separated permissions of the session */
	bool own_only;	   /* the route's permission is held only as ":own" */
	long token_exp;	   /* exp of the access token */
};

struct tr_query_param {
	const char *name, *value;
	size_t raw_len; /* bytes of "name=value" as received (decoded) */
};

/* The request. Filled by the loop thread; read-only once the handler runs. */
struct tr_req {
	enum tr_method method;
	const char *path;
	const struct tr_route *route;
	int route_index;
	const char *params[TR_MAX_PARAMS]; /* values of the route's {name} segments */
	int nparams;
	struct tr_query_param query[TR_MAX_QUERY];
	int nquery;
	const char *raw_body;
	size_t raw_body_len;
	bson_t body; /* parsed JSON object when the route has TR_JSON_BODY */
	bool has_body;
	bool body_xml; /* TR_XML_BODY: the body is XML, in raw_body (body is not parsed) */
	bool authenticated;
	struct tr_principal principal;
	char request_id[65];
	const char *session_me; /* the session's /v1/me document */
	size_t session_me_len;
	char peer[64];		     /* client address */
	const char *api_key;	     /* X-API-Key, resolved on the worker */
	const char *if_match;	     /* raw header or NULL */
	const char *idempotency_key; /* raw header or NULL */
	/* TR_SIGNED routes: the Standard Webhooks headers as received, or NULL */
	const char *webhook_id, *webhook_timestamp, *webhook_signature;
	/* TR_STATIC routes: the caching and encoding headers, or NULL */
	const char *if_none_match, *accept_encoding;
	struct tr_arena *arena;
};

struct tr_problem_field {
	const char *field, *message;
	struct tr_problem_field *next;
};

/* The response a handler fills. */
#define TR_RESP_HEADERS 8

struct tr_resp {
	int status;
	bson_t body; /* JSON object (when has_body) */
	bool has_body;
	const char *text; /* non-JSON body (arena or static), with content_type */
	size_t text_len;
	const char *content_type;
	/* problem+json */
	const char *problem_slug, *problem_title, *problem_detail;
	struct tr_problem_field *problem_fields, *problem_fields_tail;
	long long problem_version;  /* > 0: "current_version" of a refused write */
	const char *problem_member; /* a further integer member of the problem, or NULL */
	long long problem_member_value;
	/* headers */
	long long etag_version; /* > 0: ETag: "<version>" */
	const char *location;
	int retry_after; /* seconds, > 0 to send */
	const char *allow;
	/* TR_STATIC answers: Cache-Control (NULL: no-store), a quoted ETag,
	 * and further headers (tr_reply_header) */
	const char *cache_control, *etag;
	struct {
		const char *name, *value;
	} headers[TR_RESP_HEADERS];
	int nheaders;
	bool replayed; /* answered from the Idempotency-Key store */
	/* sessions changed by this request (see tr_sessions_changed) */
	bool evict;
	const char *evict_tid, *evict_uid, *evict_sid;
	/* events recorded by tr_emit, published once the response is out */
	struct tr_event_out *events, *events_tail;
};

struct tr_db;
struct tr_event_out;

struct tr_ctx {
	struct tr_req *req;
	struct tr_resp *resp;
	struct tr_db *db; /* tenant-scoped; NULL for TR_PUBLIC routes */
};

/* Path parameter by position (0-based) in the route pattern. */
const char *tr_param(const struct tr_ctx *c, int i);
/* Query parameter value by name, or NULL. */
const char *tr_query(const struct tr_ctx *c, const char *name);

/* Sets a JSON response; takes ownership of doc's contents (doc is
 * reinitialised empty). */
void tr_reply_json(struct tr_ctx *c, int status, bson_t *doc);
void tr_reply_text(struct tr_ctx *c, int status, const char *content_type, const char *text,
		   size_t len);
void tr_reply_empty(struct tr_ctx *c, int status);
/* Adds a response header ("content-security-policy", value); both strings
 * outlive the response (static or the request arena). TR_RESP_HEADERS at
 * most; further ones are dropped. */
void tr_reply_header(struct tr_ctx *c, const char *name, const char *value);

/* Starts a problem+json response; slug names the type
 * (https://trellis.dev/errors/<slug>). */
void tr_problem(struct tr_ctx *c, int status, const char *slug, const char *detail);
/* Adds an integer member to the problem set before (the balance a refused
 * movement found, say). One per response. */
void tr_problem_member(struct tr_ctx *c, const char *name, long long value);
/* Adds a per-field validation error; starts a 422 if no problem was set. */
void tr_problem_field(struct tr_ctx *c, const char *field, const char *message);
/* Tells the loop that sessions changed (ended, or their permissions did):
 * one session (sid), a user's (uid), or the whole tenant's (both NULL).
 * Processes cache sessions briefly; this one forgets them before the
 * response goes out. */
void tr_sessions_changed(struct tr_ctx *c, const char *tid, const char *uid, const char *sid);

/* Maps a TR_E* error from the data layer to its response (404, 412, 409,
 * 503, 500). */
void tr_problem_from_err(struct tr_ctx *c, int err);

/* The registry: every module, in one table (registry.c). */
extern const struct tr_module *const tr_modules[];
extern const size_t tr_nmodules;

#endif
