/* Configuration: documented defaults, then the file named by --config or
 * TRELLIS_CONFIG, then TRELLIS_* environment variables. Read once at start
 * by the main thread; read-only afterwards (any thread may read it).
 *
 * The platform's keys are fields of struct tr_config (config.c has their
 * table). A module declares its own keys in its tr_module (module.h) and
 * reads them with tr_config_int / tr_config_str; they are set, checked and
 * documented exactly as the platform's: same file syntax, TRELLIS_<KEY>
 * variable, bounds and messages. */
#ifndef TR_CONFIG_H
#define TR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum tr_config_type { TR_CONFIG_STR, TR_CONFIG_INT };

/* One configuration key: its name (also TRELLIS_<NAME> upper-cased), type,
 * default (as written in the file), bounds (integers) and the line that
 * documents it in `trellis config-example`. */
struct tr_config_key {
	const char *name;
	enum tr_config_type type;
	const char *def;
	long min, max;
	const char *doc;
};

/* Room for the keys modules declare, and for each string value. */
#define TR_CONFIG_MODULE_KEYS 64
#define TR_CONFIG_MODULE_STR 256

/* The value of a key a module declares. */
struct tr_config_value {
	const struct tr_config_key *key;
	long num;			/* TR_CONFIG_INT */
	char str[TR_CONFIG_MODULE_STR]; /* TR_CONFIG_STR */
};

struct tr_config {
	char host[256];
	int port;
	char env[16]; /* "development" or "production" */
	char mongo_uri[1024];
	char mongo_db[128];	   /* taken from the URI path */
	char postgresql_uri[1024]; /* PostgreSQL behind FerretDB, or empty */
	char redis_url[1024];
	char redis_mode[16];
	bool redis_cluster; /* redis_mode is cluster */
	char redis_host[256];
	int redis_port;
	int redis_db;
	char redis_user[128];
	char redis_password[256];
	char jwt_secret[512];
	char jwt_kid[64];
	char jwt_previous_secret[512]; /* still accepted, for key rotation */
	char jwt_previous_kid[64];
	char jwt_issuer[128];
	char jwt_audience[128];
	int access_ttl;	 /* seconds */
	int refresh_ttl; /* seconds */
	int session_cache_ms;
	int rate_limit_user_rps;
	int rate_limit_user_burst;
	long body_limit;
	int workers;
	int header_timeout; /* seconds */
	int idle_timeout;   /* seconds */
	int body_timeout;   /* seconds */
	int dep_timeout_ms;
	int shutdown_grace;    /* seconds */
	int shutdown_delay_ms; /* still accepting after /readyz says stopping */
	int rate_limit_rps;
	int rate_limit_burst;
	int max_connections;
	int max_requests;
	int ws_auth_timeout; /* seconds */
	int ws_max_frame;    /* bytes */
	int ws_send_queue;   /* frames */
	int ws_rate;	     /* frames per second a client may send */
	int ws_rate_burst;
	int ws_report_ms;    /* per-tenant WebSocket numbers written to Redis */
	int events_max_len;  /* entries kept per tenant stream */
	int events_max_age;  /* seconds an event is kept */
	int changes_scan;    /* stream entries one changes-feed page examines at most */
	int outbox_grace_ms; /* age before the relay publishes an outbox record */
	int outbox_dedupe_s; /* how long a published outbox id is remembered */
	char roles[64];	     /* "all" or a list of api, ws, worker */
	bool role_api, role_ws, role_worker;
	int job_workers;
	int job_partitions; /* 0 in the file: 1 single, 4 cluster */
	int job_visibility_ms;
	int job_max_attempts;
	int job_backoff_ms;
	int job_backoff_max_ms;
	int list_scan_buckets;	    /* position buckets one list page may read */
	int claim_lease_ms;	    /* lease of a record writer's claim */
	int claim_wait_ms;	    /* wait for another writer before TR_EBUSY */
	int debug_claim_delay_ms;   /* fault tests: pause between claim and write */
	int debug_effects_delay_ms; /* fault tests: pause between write and effects */
	int debug_step_delay_ms;    /* fault tests: pause between register writes */
	char migrations_dir[512];
	char log_level[16];
	/* outgoing mail (smtp.h) */
	char smtp_url[512];
	char smtp_starttls[16]; /* required, optional or off */
	char smtp_user[256];
	char smtp_password[256]; /* a secret: never logged or shown */
	char smtp_from[256];
	char smtp_ca_file[512];
	int smtp_rate;	      /* messages a second across processes */
	int smtp_timeout_ms;  /* one send, connection included */
	char public_url[512]; /* where users reach the API (unsubscribe links) */
	/* the modules' keys, module by module in registry order */
	struct tr_config_value module_values[TR_CONFIG_MODULE_KEYS];
	size_t nmodule_values;
};

/* The running configuration: set once by main before serving, read-only
 * afterwards (any thread). */
extern const struct tr_config *tr_cfg;

/* The secret shipped in config/trellis.conf.example; production refuses it. */
#define TR_EXAMPLE_JWT_SECRET "change-me-to-a-random-secret-of-at-least-32-bytes"

/* Loads the configuration. On error writes one line into err and returns -1
 * (the caller exits with status 2). path may be NULL. */
int tr_config_load(struct tr_config *cfg, const char *path, char *err, int errlen);

/* 0 when s names a log level. */
int tr_log_level_check(const char *s);

/* Prints every key with its default and documentation (the example file):
 * the platform's, then each module's under its name. */
void tr_config_print_example(void);

/* The value of a key a module declares (tr_module.config), from the
 * running configuration (tr_cfg). A name no module declares, or of the
 * other type, is a bug: it aborts saying so. Any thread. */
long tr_config_int(const char *name);
const char *tr_config_str(const char *name);

#endif
