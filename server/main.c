/* Trellis: entry point.
 *
 *   trellis [serve] [--config FILE]   run the server
 *   trellis migrate [--config FILE]   apply migrations and exit
 *   trellis config-example            print the documented configuration
 *   trellis openapi                   print the OpenAPI document the server serves
 *
 * Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration or an
 * edited migration. */
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "auth.h"
#include "command.h"
#include "config.h"
#include "dbpool.h"
#include "events.h"
#include "health.h"
#include "http.h"
#include "jobs.h"
#include "json.h"
#include "kvconn.h"
#include "pwhash.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "openapi.h"
#include "redis.h"
#include "router.h"
#include "session.h"
#include "ws.h"

#define SHUTDOWN_POLL_MS 50

static struct {
	uv_loop_t *loop;
	struct tr_config cfg;
	uv_signal_t sigterm, sigint;
	uv_timer_t drain_timer;
	uint64_t drain_deadline;
	bool stopping;
} M;

static void
usage(void)
{
	fprintf(
	    stderr,
	    "usage: trellis [serve|migrate|config-example|openapi] [--config FILE]\n"
	    "       trellis <area> <verb> ... (configuration from TRELLIS_CONFIG and TRELLIS_*)\n");
}

static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
close_walk_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Last step of a stop: everything is closed; the loop ends when the
 * handles finish closing. */
static void
finish_stop(void)
{
	uv_timer_stop(&M.drain_timer);
	uv_close((uv_handle_t *)&M.drain_timer, NULL);
	uv_close((uv_handle_t *)&M.sigterm, NULL);
	uv_close((uv_handle_t *)&M.sigint, NULL);
	tr_health_close();
	tr_events_stop();
	tr_jobs_stop(); /* waits for running job handlers */
	tr_redis_close();
	tr_http_destroy();
}

static void
drain_cb(uv_timer_t *t)
{
	(void)t;
	/* WebSockets were sent 1001; they close once it is written. */
	if ((tr_http_inflight() > 0 || tr_ws_count() > 0) && uv_now(M.loop) < M.drain_deadline)
		return;
	if (tr_http_inflight() > 0)
		tr_warn("shutdown: %d requests still in flight after %d s; closing",
			tr_http_inflight(), M.cfg.shutdown_grace);
	finish_stop();
}

/* The second phase of a stop: no new connections (a client or proxy
 * connecting now is refused, which is safe to retry elsewhere); the
 * requests already received get shutdown_grace to finish. */
static void
stop_accepting_cb(uv_timer_t *t)
{
	(void)t;
	tr_info("shutdown: no longer accepting; draining %d requests", tr_http_inflight());
	tr_http_stop_accepting();
	M.drain_deadline = uv_now(M.loop) + (uint64_t)M.cfg.shutdown_grace * 1000;
	uv_timer_start(&M.drain_timer, drain_cb, 0, SHUTDOWN_POLL_MS);
}

/* SIGTERM/SIGINT. At once: /readyz answers 503 "stopping", WebSocket
 * clients get 1001 (they reconnect, through a proxy to another process,
 * and resume from their last event id) and job threads take no new jobs.
 * Requests keep being served for shutdown_delay_ms, while a load
 * balancer's health check takes the process out of rotation; then it
 * stops accepting and drains (stop_accepting_cb). */
static void
signal_cb(uv_signal_t *s, int signum)
{
	(void)s;
	if (M.stopping)
		return;
	M.stopping = true;
	tr_info("shutdown: signal %d; not ready, accepting for %d ms more", signum,
		M.cfg.shutdown_delay_ms);
	tr_health_set_stopping();
	tr_ws_shutdown(); /* 1001 to every WebSocket */
	tr_jobs_quiesce();
	uv_timer_start(&M.drain_timer, stop_accepting_cb, (uint64_t)M.cfg.shutdown_delay_ms, 0);
}

static int
serve(void)
{
	char err[512];
	int fatal = 0, rc = 0;
	bool migrated;
	char workers[16];

	/* libuv's threadpool is the worker pool: one thread per pooled client. */
	snprintf(workers, sizeof(workers), "%d", M.cfg.workers);
	setenv("UV_THREADPOOL_SIZE", workers, 1);
	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);

	/* Before any thread exists (mongoc, libuv and lws start theirs later). */
	if (tr_pwhash_start() != 0) {
		fprintf(stderr, "trellis: cannot start the password hashing processes\n");
		return 1;
	}
	if (tr_router_init() != 0 || tr_metrics_init(tr_router_count()) != 0) {
		fprintf(stderr, "trellis: cannot build the route table\n");
		return 1;
	}
	for (size_t m = 0; m < tr_nmodules; m++)
		if (tr_modules[m]->metrics)
			tr_metrics_add_source(tr_modules[m]->metrics);
	if (tr_dbpool_init(&M.cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "trellis: %s\n", err);
		return 2;
	}
	/* Apply migrations before serving. An unreachable database is not
	 * fatal (the health check retries and /readyz says so); an edited
	 * migration is. */
	migrated = tr_migrate_run_checked(&M.cfg, err, sizeof(err), &fatal) == 0;
	if (!migrated && fatal) {
		fprintf(stderr, "trellis: %s\n", err);
		tr_dbpool_free();
		return 2;
	}
	if (!migrated)
		tr_warn("migrations: not applied yet (%s); retrying in the background", err);

	M.loop = uv_default_loop();
	tr_auth_init(M.loop, &M.cfg);
	tr_kv_init(&M.cfg);
	if (tr_migrate_redis_keys(&M.cfg, false, err, sizeof(err)) != 0)
		tr_warn("%s", err);
	tr_session_init(&M.cfg);
	if (tr_http_init(M.loop, &M.cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "trellis: %s\n", err);
		tr_dbpool_free();
		return 2;
	}
	tr_events_register(&M.cfg);
	tr_ws_register();
	tr_jobs_register();
	tr_redis_init(M.loop, &M.cfg);
	tr_ws_init(M.loop, &M.cfg);
	tr_events_start(M.loop);
	tr_jobs_start(M.loop, &M.cfg);
	tr_health_init(M.loop, &M.cfg, migrated);
	uv_signal_init(M.loop, &M.sigterm);
	uv_signal_init(M.loop, &M.sigint);
	uv_signal_start(&M.sigterm, signal_cb, SIGTERM);
	uv_signal_start(&M.sigint, signal_cb, SIGINT);
	uv_timer_init(M.loop, &M.drain_timer);

	tr_info("trellis: listening on http://%s:%d (env %s, %d workers)", M.cfg.host, M.cfg.port,
		M.cfg.env, M.cfg.workers);
	uv_run(M.loop, UV_RUN_DEFAULT);
	tr_auth_stop();

	/* Anything still open (none expected) is closed, then the loop ends. */
	uv_walk(M.loop, close_walk_cb, NULL);
	uv_run(M.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(M.loop) != 0) {
		tr_warn("shutdown: loop still had handles");
		rc = 1;
	}
	tr_kv_close_all();
	tr_pwhash_shutdown();
	tr_auth_close();
	tr_dbpool_free();
	tr_metrics_free();
	tr_router_free();
	tr_info("trellis: stopped");
	return rc;
}

static int
migrate_cmd(void)
{
	char err[512];
	int fatal = 0, rc;

	if (tr_dbpool_init(&M.cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "trellis: %s\n", err);
		return 2;
	}
	rc = tr_migrate_run_checked(&M.cfg, err, sizeof(err), &fatal);
	if (rc == 0) {
		tr_kv_init(&M.cfg);
		rc = tr_migrate_redis_keys(&M.cfg, true, err, sizeof(err));
		tr_kv_close_all();
	}
	tr_dbpool_free();
	if (rc != 0) {
		fprintf(stderr, "trellis: %s\n", err);
		return fatal ? 2 : 1;
	}
	printf("migrations applied\n");
	return 0;
}

/* `trellis <area> <verb> ...`: the command of a module's table with that
 * area and verb, or NULL. */
static const struct tr_command *
find_command(const char *area, const char *verb)
{
	for (size_t m = 0; m < tr_nmodules; m++)
		for (size_t i = 0; i < tr_modules[m]->ncommands; i++) {
			const struct tr_command *cmd = &tr_modules[m]->commands[i];
			if (strcmp(area, cmd->area) == 0 && strcmp(verb, cmd->verb) == 0)
				return cmd;
		}
	return NULL;
}

static void
commands_usage(void)
{
	for (size_t m = 0; m < tr_nmodules; m++)
		for (size_t i = 0; i < tr_modules[m]->ncommands; i++)
			fprintf(stderr, "       trellis %s %s %s\n",
				tr_modules[m]->commands[i].area, tr_modules[m]->commands[i].verb,
				tr_modules[m]->commands[i].usage);
}

/* The document GET /v1/openapi.json serves, without a server: the
 * console's SDK generates its types from it at build time. */
static int
print_openapi(void)
{
	bson_t doc = BSON_INITIALIZER;
	size_t len = 0;
	char *text;

	if (tr_router_init() != 0) {
		fprintf(stderr, "trellis: the routes did not compile\n");
		return 1;
	}
	tr_openapi_build(&doc);
	text = tr_json_render(&doc, &len);
	bson_destroy(&doc);
	tr_router_free();
	if (!text) {
		fprintf(stderr, "trellis: the OpenAPI document did not render\n");
		return 1;
	}
	fwrite(text, 1, len, stdout);
	fputc('\n', stdout);
	free(text);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *cmd = "serve", *config_path = NULL;
	char err[512];

	/* Module commands take their own arguments; configuration comes from
	 * TRELLIS_CONFIG and the environment (command.h). */
	if (argc >= 3 && strcmp(argv[1], "serve") != 0 && strcmp(argv[1], "migrate") != 0 &&
	    argv[1][0] != '-') {
		const struct tr_command *command = find_command(argv[1], argv[2]);
		if (command)
			return tr_command_run(command->run, argc - 3, argv + 3);
		fprintf(stderr, "trellis: unknown command: %s%s%s\n", argv[1],
			argv[2][0] == '-' ? "" : " ", argv[2][0] == '-' ? "" : argv[2]);
		usage();
		commands_usage();
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config_path = argv[++i];
		} else if (argv[i][0] != '-' && i == 1) {
			cmd = argv[i];
		} else {
			usage();
			return 2;
		}
	}
	if (strcmp(cmd, "config-example") == 0) {
		tr_config_print_example();
		return 0;
	}
	if (strcmp(cmd, "openapi") == 0)
		return print_openapi();
	if (strcmp(cmd, "serve") != 0 && strcmp(cmd, "migrate") != 0) {
		fprintf(stderr, "trellis: unknown command: %s\n", cmd);
		usage();
		commands_usage();
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "trellis: libsodium failed to initialise\n");
		return 1;
	}
	if (tr_config_load(&M.cfg, config_path, err, sizeof(err)) != 0) {
		fprintf(stderr, "trellis: invalid configuration: %s\n", err);
		return 2;
	}
	tr_log_set_level((enum tr_log_level)tr_log_level_parse(M.cfg.log_level));
	tr_cfg = &M.cfg;
	if (strcmp(cmd, "serve") == 0)
		return serve();
	return migrate_cmd();
}
