#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "module.h"

const struct tr_config *tr_cfg;

/* One row per platform key: its declaration and the field of struct
 * tr_config that holds its value. Modules declare theirs in tr_module. */
struct key {
	struct tr_config_key decl;
	size_t offset;
	size_t size; /* buffer size for strings */
};

#define STR(f, d, doc)                                                                             \
	{                                                                                          \
		{#f, TR_CONFIG_STR, d, 0, 0, doc}, offsetof(struct tr_config, f),                  \
		    sizeof(((struct tr_config *)0)->f)                                             \
	}
#define INT(f, d, lo, hi, doc)                                                                     \
	{                                                                                          \
		{#f, TR_CONFIG_INT, d, lo, hi, doc}, offsetof(struct tr_config, f), 0              \
	}

static const struct key keys[] = {
    STR(host, "127.0.0.1", "Address the HTTP/WebSocket server listens on."),
    INT(port, "8080", 1, 65535, "TCP port of the HTTP/WebSocket server."),
    STR(env, "development",
	"development or production. Production refuses the example JWT secret."),
    STR(mongo_uri, "mongodb://127.0.0.1:27017/trellis",
	"MongoDB (or FerretDB) URI; the path names the database."),
    STR(postgresql_uri, "",
	"libpq connection string of the PostgreSQL behind FerretDB (embedded database only). "
	"Set: migrations create the GIN indexes FerretDB's filters need and /readyz checks it. "
	"Empty: MongoDB, nothing to do."),
    STR(redis_url, "redis://127.0.0.1:6379/0", "Redis URL: redis://[:password@]host:port/db"),
    STR(redis_mode, "single",
	"single: redis_url is the one Redis. cluster: redis_url is any master of a Redis "
	"Cluster (7.0 or later, db 0); the slot map is read from it and kept current."),
    STR(jwt_secret, TR_EXAMPLE_JWT_SECRET, "HS256 secret for access tokens, at least 32 bytes."),
    STR(jwt_kid, "k1", "kid header of issued access tokens (names jwt_secret)."),
    STR(jwt_previous_secret, "",
	"The secret before the last rotation: tokens whose kid is jwt_previous_kid stay valid."),
    STR(jwt_previous_kid, "", "kid of jwt_previous_secret."),
    STR(jwt_issuer, "trellis", "iss claim written into and required of access tokens."),
    STR(jwt_audience, "trellis-api", "aud claim written into and required of access tokens."),
    INT(access_ttl, "900", 30, 86400, "Lifetime of access tokens in seconds."),
    INT(refresh_ttl, "2592000", 300, 31536000,
	"Lifetime of a session (its refresh token) in seconds."),
    INT(session_cache_ms, "1000", 0, 10000,
	"How long a process may reuse what Redis said about a session (0: ask every time)."),
    INT(body_limit, "1048576", 1024, 64L * 1024 * 1024,
	"Largest request body in bytes (larger: 413)."),
    INT(workers, "4", 1, 64, "Worker threads for MongoDB work; also the MongoDB pool size."),
    INT(header_timeout, "10", 1, 300, "Seconds a client may take to send a request head."),
    INT(idle_timeout, "60", 1, 3600, "Seconds an idle keep-alive connection is kept open."),
    INT(body_timeout, "30", 1, 3600, "Seconds a client may take to send a request body."),
    INT(dep_timeout_ms, "1000", 50, 60000,
	"How long a request waits on MongoDB or Redis before 503."),
    INT(shutdown_grace, "10", 0, 600,
	"Seconds in-flight requests get to finish on SIGTERM/SIGINT, counted from "
	"when the process stops accepting."),
    INT(shutdown_delay_ms, "0", 0, 600000,
	"Milliseconds a stopping process keeps accepting and serving after /readyz turns 503, "
	"so that a load balancer's health check takes it out of rotation before new "
	"connections are refused (0: refuse at once). Behind haproxy: more than its "
	"check interval times fall."),
    INT(rate_limit_rps, "200", 1, 1000000,
	"Requests per second a tenant may make (token bucket refill)."),
    INT(rate_limit_burst, "400", 1, 10000000, "Bucket size of the per-tenant rate limit."),
    INT(rate_limit_user_rps, "50", 1, 1000000, "Requests per second one user may make."),
    INT(rate_limit_user_burst, "100", 1, 10000000, "Bucket size of the per-user rate limit."),
    INT(ws_auth_timeout, "10", 1, 300,
	"Seconds a WebSocket client has to send its auth frame (4008)."),
    INT(ws_max_frame, "65536", 256, 16777216,
	"Largest WebSocket message a client may send (1009)."),
    INT(ws_send_queue, "1024", 16, 1000000,
	"Frames queued for a slow WebSocket client before it is closed with 4009."),
    INT(ws_rate, "20", 1, 100000, "Frames per second a WebSocket client may send (refill)."),
    INT(ws_rate_burst, "40", 1, 1000000, "Frames a WebSocket client may send in a burst."),
    INT(ws_report_ms, "2000", 100, 60000,
	"How often a process writes its WebSocket numbers per tenant to Redis (connections, "
	"queued frames, delivery lag) for GET /v1/observability; a report older than three "
	"times this is ignored (its process stopped)."),
    INT(events_max_len, "100000", 100, 100000000,
	"Events kept per tenant for resume (older ones are trimmed)."),
    INT(events_max_age, "86400", 60, 31536000, "Seconds an event is kept for resume."),
    INT(changes_scan, "5000", 100, 1000000,
	"Stream entries one GET /v1/changes examines at most (events the caller may not read "
	"count too); a page that stops there says has_more."),
    INT(outbox_grace_ms, "5000", 100, 3600000,
	"Age at which the relay publishes an event its writer did not (crash)."),
    INT(outbox_dedupe_s, "600", 10, 86400,
	"Seconds a published event's outbox id is remembered, so a retry does not publish twice."),
    STR(roles, "all", "What this process does: all, or a comma list of api, ws, worker."),
    INT(job_workers, "2", 0, 64, "Threads running background jobs (worker role)."),
    INT(job_partitions, "0", 0, 16,
	"Redis keys each job queue is spread over (each its own cluster slot), so one queue is "
	"not one hot key. 0: 1 on a single Redis, 4 in a cluster. Only ever raise it: jobs "
	"in a partition past the new count are not read."),
    INT(job_visibility_ms, "30000", 100, 86400000,
	"A job taken by a worker that stops answering is retried after this long."),
    INT(job_max_attempts, "5", 1, 100, "Runs of a failing job before it is dead-lettered."),
    INT(job_backoff_ms, "1000", 1, 3600000, "Delay before a job's first retry; doubles each time."),
    INT(job_backoff_max_ms, "300000", 1, 86400000, "Longest delay between retries."),
    INT(max_connections, "20000", 64, 1000000, "Most simultaneous client connections."),
    INT(max_requests, "4096", 16, 1000000,
	"HTTP requests held at once, each with its headers (up to 8 KiB); a connection past it "
	"waits for one to finish, at most header_timeout, then is closed."),
    INT(list_scan_buckets, "32", 1, 100000,
	"Buckets of 64 list positions one list page may read (a rare filter answers a short "
	"page with a cursor rather than reading on)."),
    INT(claim_lease_ms, "10000", 1000, 30000,
	"A record's writer holds its claim this long: a writer that died mid-write blocks "
	"the record at most this long."),
    INT(claim_wait_ms, "2000", 0, 30000,
	"How long a write waits for another writer of the same record before 409 record-busy."),
    INT(debug_claim_delay_ms, "0", 0, 60000,
	"Fault testing only: pause between claiming a record and writing it (refused in "
	"production)."),
    INT(debug_effects_delay_ms, "0", 0, 60000,
	"Fault testing only: pause between a write and its effects on registers (refused in "
	"production)."),
    INT(debug_step_delay_ms, "0", 0, 60000,
	"Fault testing only: pause after each register write of a multi-step operation (an "
	"order's confirmation or shipment), so a test can kill the process between two "
	"(refused in production)."),
    STR(migrations_dir, "migrations",
	"Folder of the platform's NNNN_name.json migrations. Modules' are in "
	"modules/<module>/migrations, relative to the working directory."),
    STR(log_level, "info", "debug, info, warn or error."),
    STR(smtp_url, "",
	"The SMTP server mail goes out through: smtp://host:port (STARTTLS as smtp_starttls "
	"says) or smtps://host:port (TLS from the start). Empty: no mail is sent (a mailing's "
	"recipients fail saying so)."),
    STR(smtp_starttls, "required",
	"For smtp:// urls: required (refuse a server without STARTTLS), optional (use it when "
	"offered) or off (plain text; a relay on the same host only)."),
    STR(smtp_user, "", "SMTP AUTH user name; empty: no AUTH."),
    STR(smtp_password, "",
	"SMTP AUTH password (a secret: never logged; set it with TRELLIS_SMTP_PASSWORD)."),
    STR(smtp_from, "", "The From address of outgoing mail (name@example.com)."),
    STR(smtp_ca_file, "",
	"PEM file of the CA that signs the SMTP server's certificate; empty: the system's."),
    INT(smtp_rate, "10", 1, 100000,
	"Messages a second all processes together send through the SMTP server (spaced "
	"evenly through a slot in Redis)."),
    INT(smtp_timeout_ms, "30000", 1000, 600000,
	"How long one send may take, connecting included, before it counts as a temporary "
	"failure."),
    STR(public_url, "http://127.0.0.1:8080",
	"The address users reach this API at (https://crm.example.com): the start of links "
	"put in mail, such as unsubscribe links."),
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* Checks value against k's type and bounds (size: a string's buffer);
 * *num gets an integer's value. -1 with err naming origin and key. */
static int
check_value(const struct tr_config_key *k, size_t size, const char *value, long *num, char *err,
	    int errlen, const char *origin)
{
	if (k->type == TR_CONFIG_STR) {
		if (strlen(value) >= size) {
			snprintf(err, errlen, "%s: %s is too long (at most %zu bytes)", origin,
				 k->name, size - 1);
			return -1;
		}
		return 0;
	}
	char *end = NULL;
	errno = 0;
	long v = strtol(value, &end, 10);
	if (errno || end == value || *end || v < k->min || v > k->max) {
		snprintf(err, errlen, "%s: %s must be an integer from %ld to %ld, got \"%s\"",
			 origin, k->name, k->min, k->max, value);
		return -1;
	}
	*num = v;
	return 0;
}

static int
set_key(struct tr_config *cfg, const struct key *k, const char *value, char *err, int errlen,
	const char *origin)
{
	char *field = (char *)cfg + k->offset;
	long v = 0;

	if (check_value(&k->decl, k->size, value, &v, err, errlen, origin) != 0)
		return -1;
	if (k->decl.type == TR_CONFIG_STR)
		strcpy(field, value);
	else if (k->offset == offsetof(struct tr_config, body_limit))
		*(long *)field = v;
	else
		*(int *)field = (int)v;
	return 0;
}

static int
set_module_key(struct tr_config_value *mv, const char *value, char *err, int errlen,
	       const char *origin)
{
	long v = 0;

	if (check_value(mv->key, sizeof(mv->str), value, &v, err, errlen, origin) != 0)
		return -1;
	if (mv->key->type == TR_CONFIG_STR)
		strcpy(mv->str, value);
	else
		mv->num = v;
	return 0;
}

static const struct key *
find_key(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].decl.name, name) == 0)
			return &keys[i];
	return NULL;
}

/* The index of a module's key in cfg->module_values, or -1. */
static int
module_key_index(const struct tr_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nmodule_values; i++)
		if (strcmp(cfg->module_values[i].key->name, name) == 0)
			return (int)i;
	return -1;
}

/* Sets the key named name, the platform's or a module's; -1 with err
 * filled for an unknown key or a bad value. */
static int
set_named(struct tr_config *cfg, const char *name, const char *value, char *err, int errlen,
	  const char *origin)
{
	const struct key *k = find_key(name);
	int m = module_key_index(cfg, name);

	if (k)
		return set_key(cfg, k, value, err, errlen, origin);
	if (m >= 0)
		return set_module_key(&cfg->module_values[m], value, err, errlen, origin);
	snprintf(err, errlen, "%s: unknown key \"%s\"", origin, name);
	return -1;
}

/* Makes a slot for every key the modules declare, holding its default.
 * Two declarations of one name are a bug, reported like a bad value. */
static int
module_defaults(struct tr_config *cfg, char *err, int errlen)
{
	for (size_t m = 0; m < tr_nmodules; m++) {
		for (size_t i = 0; i < tr_modules[m]->nconfig; i++) {
			const struct tr_config_key *k = &tr_modules[m]->config[i];
			struct tr_config_value *mv;
			if (find_key(k->name) || module_key_index(cfg, k->name) >= 0) {
				snprintf(err, errlen, "module %s: key %s is declared twice",
					 tr_modules[m]->name, k->name);
				return -1;
			}
			if (cfg->nmodule_values == TR_CONFIG_MODULE_KEYS) {
				snprintf(err, errlen,
					 "module %s: more than %d module configuration keys",
					 tr_modules[m]->name, TR_CONFIG_MODULE_KEYS);
				return -1;
			}
			mv = &cfg->module_values[cfg->nmodule_values++];
			mv->key = k;
			if (set_module_key(mv, k->def, err, errlen, "default") != 0)
				return -1;
		}
	}
	return 0;
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int
load_file(struct tr_config *cfg, const char *path, char *err, int errlen)
{
	char line[2048], origin[600];
	int lineno = 0, rc = 0;
	FILE *f = fopen(path, "r");

	if (!f) {
		snprintf(err, errlen, "config file %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *s = trim(line), *eq;
		lineno++;
		if (*s == '\0' || *s == '#')
			continue;
		snprintf(origin, sizeof(origin), "%s:%d", path, lineno);
		eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, errlen, "%s: expected key = value", origin);
			rc = -1;
			break;
		}
		*eq = '\0';
		if (set_named(cfg, trim(s), trim(eq + 1), err, errlen, origin) != 0) {
			rc = -1;
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		snprintf(err, errlen, "config file %s: cannot be read", path);
		rc = -1;
	}
	fclose(f);
	return rc;
}

/* mongodb://[user:pass@]host[:port][,host...]/db[?opts]: only the database
 * name is taken here; mongoc validates the rest. */
static int
parse_mongo_uri(struct tr_config *cfg, char *err, int errlen)
{
	const char *u = cfg->mongo_uri, *rest, *slash, *q;

	if (strncmp(u, "mongodb://", 10) == 0)
		rest = u + 10;
	else if (strncmp(u, "mongodb+srv://", 14) == 0)
		rest = u + 14;
	else
		goto bad;
	slash = strchr(rest, '/');
	if (!slash || slash == rest)
		goto bad;
	q = strchr(slash, '?');
	size_t n = q ? (size_t)(q - slash - 1) : strlen(slash + 1);
	if (n == 0 || n >= sizeof(cfg->mongo_db))
		goto bad;
	memcpy(cfg->mongo_db, slash + 1, n);
	cfg->mongo_db[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (strchr("/\\. \"$", cfg->mongo_db[i]))
			goto bad;
	return 0;
bad:
	/* The URI may hold a password: name the key, not the value. */
	snprintf(err, errlen,
		 "mongo_uri must look like mongodb://[user:password@]host:port/database");
	return -1;
}

static int
parse_redis_url(struct tr_config *cfg, char *err, int errlen)
{
	char buf[1024];
	char *p, *at, *colon, *slash, *end;

	if (strncmp(cfg->redis_url, "redis://", 8) != 0)
		goto bad;
	snprintf(buf, sizeof(buf), "%s", cfg->redis_url + 8);
	p = buf;
	cfg->redis_password[0] = '\0';
	at = strrchr(p, '@');
	if (at) {
		*at = '\0';
		char *colon_pw = strchr(p, ':');
		char *pw = colon_pw ? colon_pw + 1 : p;
		if (strlen(pw) >= sizeof(cfg->redis_password))
			goto bad;
		strcpy(cfg->redis_password, pw);
		cfg->redis_user[0] = '\0';
		if (colon_pw && colon_pw > p) { /* redis://user:password@ (Redis 6 ACL) */
			if ((size_t)(colon_pw - p) >= sizeof(cfg->redis_user))
				goto bad;
			memcpy(cfg->redis_user, p, (size_t)(colon_pw - p));
			cfg->redis_user[colon_pw - p] = '\0';
		}
		p = at + 1;
	}
	cfg->redis_db = 0;
	slash = strchr(p, '/');
	if (slash) {
		*slash = '\0';
		if (slash[1]) {
			errno = 0;
			long db = strtol(slash + 1, &end, 10);
			if (errno || *end || db < 0 || db > 15)
				goto bad;
			cfg->redis_db = (int)db;
		}
	}
	cfg->redis_port = 6379;
	colon = strrchr(p, ':');
	if (colon) {
		*colon = '\0';
		errno = 0;
		long port = strtol(colon + 1, &end, 10);
		if (errno || *end || port < 1 || port > 65535)
			goto bad;
		cfg->redis_port = (int)port;
	}
	if (!*p || strlen(p) >= sizeof(cfg->redis_host))
		goto bad;
	strcpy(cfg->redis_host, p);
	return 0;
bad:
	/* The URL may hold a password: name the key, not the value. */
	snprintf(err, errlen, "redis_url must look like redis://[:password@]host:port/db (0-15)");
	return -1;
}

/* roles: "all" or a comma list of api, ws, worker (at least one). */
static int
parse_roles(struct tr_config *cfg, char *err, int errlen)
{
	char buf[sizeof(cfg->roles)], *save = NULL;

	cfg->role_api = cfg->role_ws = cfg->role_worker = false;
	snprintf(buf, sizeof(buf), "%s", cfg->roles);
	for (char *r = strtok_r(buf, ", ", &save); r; r = strtok_r(NULL, ", ", &save)) {
		if (strcmp(r, "all") == 0)
			cfg->role_api = cfg->role_ws = cfg->role_worker = true;
		else if (strcmp(r, "api") == 0)
			cfg->role_api = true;
		else if (strcmp(r, "ws") == 0)
			cfg->role_ws = true;
		else if (strcmp(r, "worker") == 0)
			cfg->role_worker = true;
		else {
			snprintf(err, errlen, "roles: unknown role \"%s\" (all, api, ws, worker)",
				 r);
			return -1;
		}
	}
	if (!cfg->role_api && !cfg->role_ws && !cfg->role_worker) {
		snprintf(err, errlen, "roles must name at least one of all, api, ws, worker");
		return -1;
	}
	return 0;
}

/* The value of TRELLIS_<NAME> (name upper-cased), or NULL; envname gets
 * the variable's name. */
static const char *
env_value(const char *name, char *envname, size_t size)
{
	snprintf(envname, size, "TRELLIS_%s", name);
	for (size_t j = 8; envname[j]; j++)
		if (envname[j] >= 'a' && envname[j] <= 'z')
			envname[j] = (char)(envname[j] - 'a' + 'A');
	return getenv(envname);
}

int
tr_config_load(struct tr_config *cfg, const char *path, char *err, int errlen)
{
	char envname[128];
	const char *v;
	size_t i;

	memset(cfg, 0, sizeof(*cfg));
	for (i = 0; i < NKEYS; i++)
		if (set_key(cfg, &keys[i], keys[i].decl.def, err, errlen, "default") != 0)
			return -1;
	if (module_defaults(cfg, err, errlen) != 0)
		return -1;
	if (!path)
		path = getenv("TRELLIS_CONFIG");
	if (path && *path && load_file(cfg, path, err, errlen) != 0)
		return -1;
	for (i = 0; i < NKEYS; i++) {
		v = env_value(keys[i].decl.name, envname, sizeof(envname));
		if (v && set_key(cfg, &keys[i], v, err, errlen, envname) != 0)
			return -1;
	}
	for (i = 0; i < cfg->nmodule_values; i++) {
		v = env_value(cfg->module_values[i].key->name, envname, sizeof(envname));
		if (v && set_module_key(&cfg->module_values[i], v, err, errlen, envname) != 0)
			return -1;
	}
	if (strcmp(cfg->env, "development") != 0 && strcmp(cfg->env, "production") != 0) {
		snprintf(err, errlen, "env must be development or production, got \"%s\"",
			 cfg->env);
		return -1;
	}
	if (cfg->jwt_previous_secret[0] &&
	    (strlen(cfg->jwt_previous_secret) < 32 || !cfg->jwt_previous_kid[0] ||
	     strcmp(cfg->jwt_previous_kid, cfg->jwt_kid) == 0)) {
		snprintf(err, errlen,
			 "jwt_previous_secret needs 32+ bytes and its own jwt_previous_kid");
		return -1;
	}
	if (strlen(cfg->jwt_secret) < 32) {
		snprintf(err, errlen, "jwt_secret must be at least 32 bytes long");
		return -1;
	}
	if (strcmp(cfg->env, "production") == 0 &&
	    strcmp(cfg->jwt_secret, TR_EXAMPLE_JWT_SECRET) == 0) {
		snprintf(err, errlen,
			 "refusing to start in production with the example jwt_secret: set "
			 "TRELLIS_JWT_SECRET");
		return -1;
	}
	if (strcmp(cfg->env, "production") == 0) {
		const char *fault = cfg->debug_claim_delay_ms > 0     ? "debug_claim_delay_ms"
				    : cfg->debug_effects_delay_ms > 0 ? "debug_effects_delay_ms"
				    : cfg->debug_step_delay_ms > 0    ? "debug_step_delay_ms"
								      : NULL;
		if (fault) {
			snprintf(err, errlen, "%s is for fault tests; it must be 0 in production",
				 fault);
			return -1;
		}
	}
	if (strcmp(cfg->redis_mode, "single") != 0 && strcmp(cfg->redis_mode, "cluster") != 0) {
		snprintf(err, errlen, "redis_mode must be single or cluster, got \"%s\"",
			 cfg->redis_mode);
		return -1;
	}
	if (strcmp(cfg->smtp_starttls, "required") != 0 &&
	    strcmp(cfg->smtp_starttls, "optional") != 0 && strcmp(cfg->smtp_starttls, "off") != 0) {
		snprintf(err, errlen, "smtp_starttls must be required, optional or off, got \"%s\"",
			 cfg->smtp_starttls);
		return -1;
	}
	if (cfg->smtp_url[0] && strncmp(cfg->smtp_url, "smtp://", 7) != 0 &&
	    strncmp(cfg->smtp_url, "smtps://", 8) != 0) {
		/* the url may hold a password: name the key, not the value */
		snprintf(err, errlen, "smtp_url must start with smtp:// or smtps://");
		return -1;
	}
	if (strncmp(cfg->public_url, "http://", 7) != 0 &&
	    strncmp(cfg->public_url, "https://", 8) != 0) {
		snprintf(err, errlen, "public_url must start with http:// or https://");
		return -1;
	}
	if (cfg->host[0] == '\0') {
		snprintf(err, errlen, "host must not be empty");
		return -1;
	}
	if (tr_log_level_check(cfg->log_level) != 0) {
		snprintf(err, errlen, "log_level must be debug, info, warn or error, got \"%s\"",
			 cfg->log_level);
		return -1;
	}
	if (parse_mongo_uri(cfg, err, errlen) != 0 || parse_redis_url(cfg, err, errlen) != 0)
		return -1;
	cfg->redis_cluster = strcmp(cfg->redis_mode, "cluster") == 0;
	if (cfg->redis_cluster && cfg->redis_db != 0) {
		snprintf(err, errlen,
			 "redis_mode cluster needs db 0 in redis_url (a cluster has no "
			 "other database)");
		return -1;
	}
	if (cfg->job_partitions == 0)
		cfg->job_partitions = cfg->redis_cluster ? 4 : 1;
	return parse_roles(cfg, err, errlen);
}

int
tr_log_level_check(const char *s)
{
	return (strcmp(s, "debug") == 0 || strcmp(s, "info") == 0 || strcmp(s, "warn") == 0 ||
		strcmp(s, "error") == 0)
		   ? 0
		   : -1;
}

void
tr_config_print_example(void)
{
	printf("# Trellis configuration. Every key is optional; the value shown is the default.\n"
	       "# Environment variables TRELLIS_<KEY> (upper case) override this file.\n"
	       "# Point the server at it with --config FILE or TRELLIS_CONFIG=FILE.\n");
	for (size_t i = 0; i < NKEYS; i++)
		printf("\n# %s\n%s = %s\n", keys[i].decl.doc, keys[i].decl.name, keys[i].decl.def);
	for (size_t m = 0; m < tr_nmodules; m++) {
		if (tr_modules[m]->nconfig == 0)
			continue;
		printf("\n\n# ---- the %s module ----\n", tr_modules[m]->name);
		for (size_t i = 0; i < tr_modules[m]->nconfig; i++) {
			const struct tr_config_key *k = &tr_modules[m]->config[i];
			printf("\n# %s\n%s = %s\n", k->doc, k->name, k->def);
		}
	}
}

/* The running configuration's value of a module's key, of type t. */
static const struct tr_config_value *
module_value(const char *name, enum tr_config_type t)
{
	int i = tr_cfg ? module_key_index(tr_cfg, name) : -1;

	if (i < 0 || tr_cfg->module_values[i].key->type != t) {
		fprintf(stderr, "trellis: no module declares the %s configuration key \"%s\"\n",
			t == TR_CONFIG_INT ? "integer" : "string", name);
		abort();
	}
	return &tr_cfg->module_values[i];
}

long
tr_config_int(const char *name)
{
	return module_value(name, TR_CONFIG_INT)->num;
}

const char *
tr_config_str(const char *name)
{
	return module_value(name, TR_CONFIG_STR)->str;
}
