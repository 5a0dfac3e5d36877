/* Configuration loading (server/config.c): documented defaults, a config
 * file, TRELLIS_* environment overrides, and every refusal the server exits
 * on with a one-line message naming what is wrong.
 *
 * Every test starts and ends with no TRELLIS_* variable in the environment
 * (the fixture unsets them all), so a test that fails half-way cannot leak
 * its settings into the next one. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

extern char **environ;

/* A strong secret that passes the production check. */
#define STRONG_SECRET "0123456789abcdef0123456789abcdef-strong"

/* One test's state: the loaded config, the error line and a temp file. */
struct fixture {
	struct tr_config cfg;
	char err[512];
	char path[64]; /* config file written by write_config, or "" */
};

static void
clear_trellis_env(void)
{
	char names[64][128];
	int n = 0;

	/* Collect first: unsetenv while walking environ would skip entries. */
	for (char **e = environ; *e && n < 64; e++) {
		const char *eq = strchr(*e, '=');
		size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
		if (strncmp(*e, "TRELLIS_", 8) == 0 && len < sizeof(names[0])) {
			memcpy(names[n], *e, len);
			names[n++][len] = '\0';
		}
	}
	for (int i = 0; i < n; i++)
		unsetenv(names[i]);
}

static int
config_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	clear_trellis_env();
	*state = f;
	return 0;
}

static int
config_teardown(void **state)
{
	struct fixture *f = *state;

	if (f->path[0])
		unlink(f->path);
	if (tr_cfg == &f->cfg)
		tr_cfg = NULL;
	free(f);
	clear_trellis_env();
	return 0;
}

/* Writes text to a fresh temp file whose path the fixture removes. */
static const char *
write_config(struct fixture *f, const char *text)
{
	int fd;

	snprintf(f->path, sizeof(f->path), "/tmp/trellis-test-config-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return f->path;
}

static int
load(struct fixture *f, const char *path)
{
	f->err[0] = '\0';
	return tr_config_load(&f->cfg, path, f->err, sizeof(f->err));
}

static void
assert_err_contains(const struct fixture *f, const char *needle)
{
	if (!strstr(f->err, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", f->err, needle);
}

/* ---- defaults ---- */

static void
test_defaults_load_without_file_or_environment(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, NULL), 0);
	assert_string_equal(f->cfg.host, "127.0.0.1");
	assert_int_equal(f->cfg.port, 8080);
	assert_string_equal(f->cfg.env, "development");
	assert_string_equal(f->cfg.jwt_secret, TR_EXAMPLE_JWT_SECRET);
	assert_string_equal(f->cfg.jwt_issuer, "trellis");
	assert_string_equal(f->cfg.jwt_audience, "trellis-api");
	assert_int_equal(f->cfg.body_limit, 1048576);
	assert_int_equal(f->cfg.workers, 4);
	assert_int_equal(f->cfg.dep_timeout_ms, 1000);
	assert_int_equal(f->cfg.rate_limit_rps, 200);
	assert_int_equal(f->cfg.rate_limit_burst, 400);
	assert_int_equal(f->cfg.max_connections, 20000);
	assert_int_equal(f->cfg.max_requests, 4096);
	assert_string_equal(f->cfg.log_level, "info");
	assert_string_equal(f->cfg.migrations_dir, "migrations");
}

static void
test_default_mongo_uri_names_the_trellis_database(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, NULL), 0);
	assert_string_equal(f->cfg.mongo_uri, "mongodb://127.0.0.1:27017/trellis");
	assert_string_equal(f->cfg.mongo_db, "trellis");
}

static void
test_default_redis_url_is_split_into_its_parts(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, NULL), 0);
	assert_string_equal(f->cfg.redis_host, "127.0.0.1");
	assert_int_equal(f->cfg.redis_port, 6379);
	assert_int_equal(f->cfg.redis_db, 0);
	assert_string_equal(f->cfg.redis_password, "");
}

/* ---- environment ---- */

static void
test_env_overrides_integer_and_string_keys(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_PORT", "9090", 1);
	setenv("TRELLIS_HOST", "0.0.0.0", 1);
	setenv("TRELLIS_WORKERS", "16", 1);
	setenv("TRELLIS_BODY_LIMIT", "2048", 1);
	setenv("TRELLIS_LOG_LEVEL", "debug", 1);
	assert_int_equal(load(f, NULL), 0);
	assert_int_equal(f->cfg.port, 9090);
	assert_string_equal(f->cfg.host, "0.0.0.0");
	assert_int_equal(f->cfg.workers, 16);
	assert_int_equal(f->cfg.body_limit, 2048);
	assert_string_equal(f->cfg.log_level, "debug");
}

static void
test_env_overrides_the_config_file(void **state)
{
	struct fixture *f = *state;
	const char *path = write_config(f, "port = 9000\nworkers = 8\n");

	setenv("TRELLIS_PORT", "9100", 1);
	assert_int_equal(load(f, path), 0);
	assert_int_equal(f->cfg.port, 9100);
	assert_int_equal(f->cfg.workers, 8);
}

static void
test_trellis_config_env_names_the_file_when_no_path_is_given(void **state)
{
	struct fixture *f = *state;
	const char *path = write_config(f, "port = 9001\n");

	setenv("TRELLIS_CONFIG", path, 1);
	assert_int_equal(load(f, NULL), 0);
	assert_int_equal(f->cfg.port, 9001);
}

static void
test_port_zero_is_refused_naming_the_key(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_PORT", "0", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "TRELLIS_PORT");
	assert_err_contains(f, "port");
	assert_err_contains(f, "\"0\"");
}

static void
test_port_above_65535_is_refused_naming_the_key(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_PORT", "70000", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "TRELLIS_PORT");
	assert_err_contains(f, "70000");
}

static void
test_non_numeric_port_is_refused_naming_the_key(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_PORT", "abc", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "TRELLIS_PORT");
	assert_err_contains(f, "abc");
}

static void
test_port_with_trailing_garbage_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_PORT", "8080x", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "TRELLIS_PORT");
}

static void
test_empty_port_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_PORT", "", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "TRELLIS_PORT");
}

static void
test_integer_below_its_minimum_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_WORKERS", "0", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "workers");
}

static void
test_string_longer_than_its_field_is_refused(void **state)
{
	struct fixture *f = *state;
	char longlevel[64];

	memset(longlevel, 'd', sizeof(longlevel) - 1);
	longlevel[sizeof(longlevel) - 1] = '\0';
	setenv("TRELLIS_LOG_LEVEL", longlevel, 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "log_level");
	assert_err_contains(f, "too long");
}

static void
test_unknown_env_value_for_env_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_ENV", "staging", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "env");
	assert_err_contains(f, "staging");
}

static void
test_unknown_log_level_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_LOG_LEVEL", "verbose", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "log_level");
}

static void
test_empty_host_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_HOST", "", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "host");
}

/* ---- config file ---- */

static void
test_file_sets_keys_ignoring_comments_blank_lines_and_spaces(void **state)
{
	struct fixture *f = *state;
	const char *path = write_config(f, "# a comment\n"
					   "\n"
					   "   port   =   9200  \r\n"
					   "\thost = 10.0.0.1\n"
					   "jwt_issuer = issuer-x\n");

	assert_int_equal(load(f, path), 0);
	assert_int_equal(f->cfg.port, 9200);
	assert_string_equal(f->cfg.host, "10.0.0.1");
	assert_string_equal(f->cfg.jwt_issuer, "issuer-x");
}

static void
test_missing_config_file_is_refused_naming_the_file(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, "/nonexistent-dir/trellis.conf"), -1);
	assert_err_contains(f, "/nonexistent-dir/trellis.conf");
}

static void
test_config_path_that_is_a_directory_is_refused(void **state)
{
	struct fixture *f = *state;

	/* fopen() succeeds on a directory; reading it fails with EISDIR. */
	assert_int_equal(load(f, "/tmp"), -1);
	assert_err_contains(f, "/tmp");
}

static void
test_unknown_key_in_file_is_refused_naming_file_line_and_key(void **state)
{
	struct fixture *f = *state;
	const char *path = write_config(f, "port = 9000\nprot = 9001\n");
	char where[96];

	assert_int_equal(load(f, path), -1);
	snprintf(where, sizeof(where), "%s:2", path);
	assert_err_contains(f, where);
	assert_err_contains(f, "prot");
}

static void
test_file_line_without_equals_is_refused(void **state)
{
	struct fixture *f = *state;
	const char *path = write_config(f, "port 9000\n");

	assert_int_equal(load(f, path), -1);
	assert_err_contains(f, path);
}

static void
test_invalid_port_in_file_is_refused_naming_the_key(void **state)
{
	struct fixture *f = *state;
	const char *path = write_config(f, "port = 70000\n");

	assert_int_equal(load(f, path), -1);
	assert_err_contains(f, path);
	assert_err_contains(f, "port");
}

/* ---- mongo_uri ---- */

static void
test_mongo_database_is_taken_from_the_uri_path(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_MONGO_URI", "mongodb://user:pw@db1:27017,db2:27017/crm?replicaSet=rs0", 1);
	assert_int_equal(load(f, NULL), 0);
	assert_string_equal(f->cfg.mongo_db, "crm");
}

static void
test_mongo_srv_scheme_is_accepted(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_MONGO_URI", "mongodb+srv://cluster.example.net/appdb", 1);
	assert_int_equal(load(f, NULL), 0);
	assert_string_equal(f->cfg.mongo_db, "appdb");
}

static void
test_mongo_uri_without_database_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_MONGO_URI", "mongodb://127.0.0.1:27017", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "mongo_uri");
}

static void
test_mongo_uri_with_empty_database_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_MONGO_URI", "mongodb://127.0.0.1:27017/?appname=x", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "mongo_uri");
}

static void
test_mongo_uri_with_wrong_scheme_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_MONGO_URI", "postgres://127.0.0.1:5432/trellis", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "mongo_uri");
}

static void
test_mongo_uri_without_host_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_MONGO_URI", "mongodb:///trellis", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "mongo_uri");
}

static void
test_mongo_database_with_a_dot_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_MONGO_URI", "mongodb://127.0.0.1/tr.ellis", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "mongo_uri");
}

/* ---- redis_url ---- */

static void
test_redis_url_gives_host_port_db_and_password(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_REDIS_URL", "redis://:s3cret@cache.internal:6380/3", 1);
	assert_int_equal(load(f, NULL), 0);
	assert_string_equal(f->cfg.redis_host, "cache.internal");
	assert_int_equal(f->cfg.redis_port, 6380);
	assert_int_equal(f->cfg.redis_db, 3);
	assert_string_equal(f->cfg.redis_password, "s3cret");
}

static void
test_redis_mode_cluster_reads_one_node_of_db_0(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, NULL), 0);
	assert_false(f->cfg.redis_cluster);
	setenv("TRELLIS_REDIS_MODE", "cluster", 1);
	setenv("TRELLIS_REDIS_URL", "redis://node1.internal:7001", 1);
	assert_int_equal(load(f, NULL), 0);
	assert_true(f->cfg.redis_cluster);
	assert_string_equal(f->cfg.redis_host, "node1.internal");
	assert_int_equal(f->cfg.redis_port, 7001);
}

static void
test_redis_mode_cluster_refuses_another_db(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_REDIS_MODE", "cluster", 1);
	setenv("TRELLIS_REDIS_URL", "redis://node1.internal:7001/2", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "db 0");
}

static void
test_redis_mode_must_be_single_or_cluster(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_REDIS_MODE", "sentinel", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "redis_mode");
	assert_err_contains(f, "sentinel");
}

static void
test_redis_url_without_port_or_db_uses_6379_and_0(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_REDIS_URL", "redis://cache.internal", 1);
	assert_int_equal(load(f, NULL), 0);
	assert_string_equal(f->cfg.redis_host, "cache.internal");
	assert_int_equal(f->cfg.redis_port, 6379);
	assert_int_equal(f->cfg.redis_db, 0);
	assert_string_equal(f->cfg.redis_password, "");
}

static void
test_redis_password_may_contain_an_at_sign(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_REDIS_URL", "redis://:p@ss@cache:6379/1", 1);
	assert_int_equal(load(f, NULL), 0);
	assert_string_equal(f->cfg.redis_password, "p@ss");
	assert_string_equal(f->cfg.redis_host, "cache");
	assert_int_equal(f->cfg.redis_db, 1);
}

static void
test_redis_url_with_wrong_scheme_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_REDIS_URL", "http://cache:6379/0", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "redis_url");
}

static void
test_redis_url_with_bad_port_is_refused(void **state)
{
	static const char *const bad[] = {"redis://cache:0/0", "redis://cache:70000/0",
					  "redis://cache:abc/0", "redis://cache:/0"};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("TRELLIS_REDIS_URL", bad[i], 1);
		if (load(f, NULL) != -1)
			fail_msg("redis_url \"%s\" was accepted", bad[i]);
		assert_err_contains(f, "redis_url");
	}
}

static void
test_redis_url_with_db_outside_0_to_15_is_refused(void **state)
{
	static const char *const bad[] = {"redis://cache:6379/16", "redis://cache:6379/-1",
					  "redis://cache:6379/x"};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("TRELLIS_REDIS_URL", bad[i], 1);
		if (load(f, NULL) != -1)
			fail_msg("redis_url \"%s\" was accepted", bad[i]);
	}
}

static void
test_redis_url_without_host_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_REDIS_URL", "redis://:pw@:6379/0", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "redis_url");
}

static void
test_bad_redis_url_error_does_not_reveal_the_password(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_REDIS_URL", "redis://:topsecretpw@cache:notaport/0", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_null(strstr(f->err, "topsecretpw"));
}

/* ---- keys a module declares (tr_module.config) ---- */

/* Loads, then makes f's configuration the running one, which
 * tr_config_int reads. */
static int
load_running(struct fixture *f, const char *path)
{
	int rc = load(f, path);

	tr_cfg = &f->cfg;
	return rc;
}

static void
test_module_keys_have_their_defaults(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load_running(f, NULL), 0);
	assert_int_equal(tr_config_int("signup_enabled"), 1);
	assert_int_equal(tr_config_int("login_failure_window"), 900);
	assert_int_equal(tr_config_int("rate_limit_key_rps"), 100);
	assert_int_equal(tr_config_int("webhook_timeout_ms"), 5000);
	assert_int_equal(tr_config_int("webhook_allow_private"), 0);
}

static void
test_module_key_is_read_from_the_file(void **state)
{
	struct fixture *f = *state;
	const char *path = write_config(f, "port = 9000\n"
					   "webhook_timeout_ms = 7000\n"
					   "  signup_enabled =   0 \n");

	assert_int_equal(load_running(f, path), 0);
	assert_int_equal(f->cfg.port, 9000);
	assert_int_equal(tr_config_int("webhook_timeout_ms"), 7000);
	assert_int_equal(tr_config_int("signup_enabled"), 0);
}

static void
test_module_key_env_overrides_the_file(void **state)
{
	struct fixture *f = *state;
	const char *path = write_config(f, "webhook_timeout_ms = 7000\n");

	setenv("TRELLIS_WEBHOOK_TIMEOUT_MS", "8000", 1);
	setenv("TRELLIS_LOGIN_MAX_ACCOUNT_FAILURES", "3", 1);
	assert_int_equal(load_running(f, path), 0);
	assert_int_equal(tr_config_int("webhook_timeout_ms"), 8000);
	assert_int_equal(tr_config_int("login_max_account_failures"), 3);
}

static void
test_module_key_out_of_bounds_in_env_is_refused_as_a_platform_key_is(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_WEBHOOK_TIMEOUT_MS", "99", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_string_equal(f->err, "TRELLIS_WEBHOOK_TIMEOUT_MS: webhook_timeout_ms must be an "
				    "integer from 100 to 60000, got \"99\"");
}

/* Fewer than 16 requests at once would stall a server behind a proxy's pool. */
static void
test_max_requests_below_16_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_MAX_REQUESTS", "15", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_string_equal(f->err, "TRELLIS_MAX_REQUESTS: max_requests must be an "
				    "integer from 16 to 1000000, got \"15\"");
}

static void
test_module_key_that_is_not_a_number_in_file_is_refused_naming_file_and_line(void **state)
{
	struct fixture *f = *state;
	const char *path = write_config(f, "# throttling\nlogin_failure_window = soon\n");
	char want[256];

	assert_int_equal(load(f, path), -1);
	snprintf(want, sizeof(want),
		 "%s:2: login_failure_window must be an integer from 10 to 86400, got \"soon\"",
		 path);
	assert_string_equal(f->err, want);
}

static void
test_unknown_key_is_still_refused_beside_module_keys(void **state)
{
	struct fixture *f = *state;
	const char *path = write_config(f, "signup_enabled = 1\nwebhook_timeout = 7000\n");
	char want[256];

	assert_int_equal(load(f, path), -1);
	snprintf(want, sizeof(want), "%s:2: unknown key \"webhook_timeout\"", path);
	assert_string_equal(f->err, want);
}

/* ---- jwt_secret ---- */

static void
test_production_refuses_the_example_secret(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_ENV", "production", 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "jwt_secret");
}

static void
test_production_refuses_the_example_secret_set_explicitly(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_ENV", "production", 1);
	setenv("TRELLIS_JWT_SECRET", TR_EXAMPLE_JWT_SECRET, 1);
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "jwt_secret");
}

static void
test_production_accepts_a_strong_secret(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_ENV", "production", 1);
	setenv("TRELLIS_JWT_SECRET", STRONG_SECRET, 1);
	assert_int_equal(load(f, NULL), 0);
	assert_string_equal(f->cfg.env, "production");
	assert_string_equal(f->cfg.jwt_secret, STRONG_SECRET);
}

static void
test_development_accepts_the_example_secret(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_ENV", "development", 1);
	assert_int_equal(load(f, NULL), 0);
}

static void
test_secret_shorter_than_32_bytes_is_refused(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_JWT_SECRET", "0123456789abcdef0123456789abcde", 1); /* 31 */
	assert_int_equal(load(f, NULL), -1);
	assert_err_contains(f, "jwt_secret");
}

static void
test_secret_of_exactly_32_bytes_is_accepted(void **state)
{
	struct fixture *f = *state;

	setenv("TRELLIS_JWT_SECRET", "0123456789abcdef0123456789abcdef", 1);
	assert_int_equal(load(f, NULL), 0);
}

static void
test_short_secret_is_refused_in_the_config_file_too(void **state)
{
	struct fixture *f = *state;
	const char *path = write_config(f, "jwt_secret = short\n");

	assert_int_equal(load(f, path), -1);
	assert_err_contains(f, "jwt_secret");
}

/* ---- the fixture itself ---- */

static void
test_fixture_leaves_no_trellis_variable_behind(void **state)
{
	(void)state;
	/* Runs after tests that set TRELLIS_PORT, _ENV, _REDIS_URL...: the
	 * teardown must have removed them all. */
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "TRELLIS_", 8) == 0)
			fail_msg("left in the environment: %s", *e);
}

#define T(f) cmocka_unit_test_setup_teardown(f, config_setup, config_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_defaults_load_without_file_or_environment),
	    T(test_default_mongo_uri_names_the_trellis_database),
	    T(test_default_redis_url_is_split_into_its_parts),
	    T(test_env_overrides_integer_and_string_keys),
	    T(test_env_overrides_the_config_file),
	    T(test_trellis_config_env_names_the_file_when_no_path_is_given),
	    T(test_port_zero_is_refused_naming_the_key),
	    T(test_port_above_65535_is_refused_naming_the_key),
	    T(test_non_numeric_port_is_refused_naming_the_key),
	    T(test_port_with_trailing_garbage_is_refused),
	    T(test_empty_port_is_refused),
	    T(test_integer_below_its_minimum_is_refused),
	    T(test_string_longer_than_its_field_is_refused),
	    T(test_unknown_env_value_for_env_is_refused),
	    T(test_unknown_log_level_is_refused),
	    T(test_empty_host_is_refused),
	    T(test_file_sets_keys_ignoring_comments_blank_lines_and_spaces),
	    T(test_missing_config_file_is_refused_naming_the_file),
	    T(test_config_path_that_is_a_directory_is_refused),
	    T(test_unknown_key_in_file_is_refused_naming_file_line_and_key),
	    T(test_file_line_without_equals_is_refused),
	    T(test_invalid_port_in_file_is_refused_naming_the_key),
	    T(test_mongo_database_is_taken_from_the_uri_path),
	    T(test_mongo_srv_scheme_is_accepted),
	    T(test_mongo_uri_without_database_is_refused),
	    T(test_mongo_uri_with_empty_database_is_refused),
	    T(test_mongo_uri_with_wrong_scheme_is_refused),
	    T(test_mongo_uri_without_host_is_refused),
	    T(test_mongo_database_with_a_dot_is_refused),
	    T(test_redis_url_gives_host_port_db_and_password),
	    T(test_redis_mode_cluster_reads_one_node_of_db_0),
	    T(test_redis_mode_cluster_refuses_another_db),
	    T(test_redis_mode_must_be_single_or_cluster),
	    T(test_redis_url_without_port_or_db_uses_6379_and_0),
	    T(test_redis_password_may_contain_an_at_sign),
	    T(test_redis_url_with_wrong_scheme_is_refused),
	    T(test_redis_url_with_bad_port_is_refused),
	    T(test_redis_url_with_db_outside_0_to_15_is_refused),
	    T(test_redis_url_without_host_is_refused),
	    T(test_bad_redis_url_error_does_not_reveal_the_password),
	    T(test_module_keys_have_their_defaults),
	    T(test_module_key_is_read_from_the_file),
	    T(test_module_key_env_overrides_the_file),
	    T(test_module_key_out_of_bounds_in_env_is_refused_as_a_platform_key_is),
	    T(test_max_requests_below_16_is_refused),
	    T(test_module_key_that_is_not_a_number_in_file_is_refused_naming_file_and_line),
	    T(test_unknown_key_is_still_refused_beside_module_keys),
	    T(test_production_refuses_the_example_secret),
	    T(test_production_refuses_the_example_secret_set_explicitly),
	    T(test_production_accepts_a_strong_secret),
	    T(test_development_accepts_the_example_secret),
	    T(test_secret_shorter_than_32_bytes_is_refused),
	    T(test_secret_of_exactly_32_bytes_is_accepted),
	    T(test_short_secret_is_refused_in_the_config_file_too),
	    cmocka_unit_test(test_fixture_leaves_no_trellis_variable_behind),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
