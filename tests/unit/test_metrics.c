/* Prometheus exposition (server/metrics.c): after observations, the text
 * carries one counter line per route, method and status, and cumulative
 * latency buckets whose +Inf bucket equals the count. Routes are named by
 * their pattern, so the router is initialised first. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "router.h"

#define DURATION "trellis_http_request_duration_seconds"

static int
router_setup(void **state)
{
	(void)state;
	return tr_router_init();
}

static int
router_teardown(void **state)
{
	(void)state;
	tr_router_free();
	return 0;
}

static int
metrics_setup(void **state)
{
	(void)state;
	return tr_metrics_init(tr_router_count());
}

static int
metrics_teardown(void **state)
{
	(void)state;
	tr_metrics_free();
	return 0;
}

/* Index of the route method + pattern in the router's table. */
static int
route_index(enum tr_method method, const char *pattern)
{
	for (int i = 0; i < tr_router_count(); i++)
		if (tr_router_route(i)->method == method &&
		    strcmp(tr_router_route(i)->path, pattern) == 0)
			return i;
	fail_msg("no route %s %s", tr_method_name(method), pattern);
	return -1;
}

static char *
render(void)
{
	size_t len = 0;
	char *text = tr_metrics_render(&len);

	assert_non_null(text);
	assert_int_equal(len, strlen(text));
	return text;
}

static void
assert_has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = strstr(text, line); p; p = strstr(p + 1, line))
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
	fail_msg("no line \"%s\" in:\n%s", line, text);
}

static void
assert_no_text(const char *text, const char *needle)
{
	if (strstr(text, needle))
		fail_msg("unexpected \"%s\" in:\n%s", needle, text);
}

static void
test_counter_line_has_route_method_and_status_labels(void **state)
{
	int tag = route_index(TR_GET, "/v1/tags/{id}");
	char *text;

	(void)state;
	tr_metrics_http_observe(tag, TR_GET, 200, 0.002);
	tr_metrics_http_observe(tag, TR_GET, 200, 0.003);
	text = render();
	assert_has_line(
	    text,
	    "trellis_http_requests_total{route=\"/v1/tags/{id}\",method=\"GET\",status=\"200\"} 2");
	free(text);
}

static void
test_each_method_and_status_gets_its_own_counter_line(void **state)
{
	int tag = route_index(TR_GET, "/v1/tags/{id}");
	char *text;

	(void)state;
	tr_metrics_http_observe(tag, TR_GET, 200, 0.001);
	tr_metrics_http_observe(tag, TR_GET, 404, 0.001);
	tr_metrics_http_observe(tag, TR_GET, 404, 0.001);
	tr_metrics_http_observe(route_index(TR_POST, "/v1/tags"), TR_POST, 201, 0.001);
	text = render();
	assert_has_line(
	    text,
	    "trellis_http_requests_total{route=\"/v1/tags/{id}\",method=\"GET\",status=\"200\"} 1");
	assert_has_line(
	    text,
	    "trellis_http_requests_total{route=\"/v1/tags/{id}\",method=\"GET\",status=\"404\"} 2");
	assert_has_line(
	    text,
	    "trellis_http_requests_total{route=\"/v1/tags\",method=\"POST\",status=\"201\"} 1");
	free(text);
}

static void
test_unmatched_requests_are_counted_under_unmatched(void **state)
{
	char *text;

	(void)state;
	tr_metrics_http_observe(-1, TR_GET, 404, 0.0001);
	text = render();
	assert_has_line(
	    text,
	    "trellis_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1");
	free(text);
}

static void
test_routes_without_requests_have_no_lines(void **state)
{
	char *text;

	(void)state;
	text = render();
	assert_no_text(text, "trellis_http_requests_total{");
	assert_no_text(text, DURATION "_bucket{");
	free(text);
}

static void
test_histogram_buckets_are_cumulative(void **state)
{
	int health = route_index(TR_GET, "/healthz");
	char *text;

	(void)state;
	tr_metrics_http_observe(health, TR_GET, 200, 0.0003); /* <= 0.0005 */
	tr_metrics_http_observe(health, TR_GET, 200, 0.002);  /* <= 0.0025 */
	tr_metrics_http_observe(health, TR_GET, 200, 0.3);    /* <= 0.5 */
	text = render();
	assert_has_line(text, DURATION "_bucket{route=\"/healthz\",le=\"0.0005\"} 1");
	assert_has_line(text, DURATION "_bucket{route=\"/healthz\",le=\"0.001\"} 1");
	assert_has_line(text, DURATION "_bucket{route=\"/healthz\",le=\"0.0025\"} 2");
	assert_has_line(text, DURATION "_bucket{route=\"/healthz\",le=\"0.25\"} 2");
	assert_has_line(text, DURATION "_bucket{route=\"/healthz\",le=\"0.5\"} 3");
	assert_has_line(text, DURATION "_bucket{route=\"/healthz\",le=\"5\"} 3");
	free(text);
}

static void
test_value_equal_to_a_bound_falls_in_that_bucket(void **state)
{
	int health = route_index(TR_GET, "/healthz");
	char *text;

	(void)state;
	tr_metrics_http_observe(health, TR_GET, 200, 0.005);
	text = render();
	assert_has_line(text, DURATION "_bucket{route=\"/healthz\",le=\"0.0025\"} 0");
	assert_has_line(text, DURATION "_bucket{route=\"/healthz\",le=\"0.005\"} 1");
	free(text);
}

static void
test_inf_bucket_equals_the_count_including_slow_requests(void **state)
{
	int health = route_index(TR_GET, "/healthz");
	char *text;

	(void)state;
	tr_metrics_http_observe(health, TR_GET, 200, 0.01);
	tr_metrics_http_observe(health, TR_GET, 200, 7.5); /* above the last bound */
	tr_metrics_http_observe(health, TR_GET, 500, 30.0);
	text = render();
	assert_has_line(text, DURATION "_bucket{route=\"/healthz\",le=\"5\"} 1");
	assert_has_line(text, DURATION "_bucket{route=\"/healthz\",le=\"+Inf\"} 3");
	assert_has_line(text, DURATION "_count{route=\"/healthz\"} 3");
	free(text);
}

static void
test_inf_is_the_last_bucket_of_a_route(void **state)
{
	int health = route_index(TR_GET, "/healthz");
	char *text, *inf, *sum;

	(void)state;
	tr_metrics_http_observe(health, TR_GET, 200, 0.01);
	text = render();
	inf = strstr(text, DURATION "_bucket{route=\"/healthz\",le=\"+Inf\"}");
	sum = strstr(text, DURATION "_sum{route=\"/healthz\"}");
	assert_non_null(inf);
	assert_non_null(sum);
	assert_true(inf < sum);
	/* No finite bucket of the route comes after +Inf. */
	assert_null(strstr(inf + 1, DURATION "_bucket{route=\"/healthz\""));
	free(text);
}

static void
test_sum_adds_the_observed_seconds(void **state)
{
	int health = route_index(TR_GET, "/healthz");
	char *text;

	(void)state;
	tr_metrics_http_observe(health, TR_GET, 200, 0.25);
	tr_metrics_http_observe(health, TR_GET, 200, 0.5);
	text = render();
	assert_has_line(text, DURATION "_sum{route=\"/healthz\"} 0.750000");
	free(text);
}

static void
test_db_observations_count_errors_separately(void **state)
{
	char *text;

	(void)state;
	tr_metrics_db_observe(0.001, true);
	tr_metrics_db_observe(0.002, false);
	text = render();
	assert_has_line(text, "trellis_db_operation_duration_seconds_bucket{le=\"+Inf\"} 2");
	assert_has_line(text, "trellis_db_operation_duration_seconds_count{} 2");
	assert_has_line(text, "trellis_db_errors_total 1");
	free(text);
}

static void
test_redis_observations_count_errors_separately(void **state)
{
	char *text;

	(void)state;
	tr_metrics_redis_observe(0.001, false);
	text = render();
	assert_has_line(text, "trellis_redis_command_duration_seconds_bucket{le=\"0.001\"} 1");
	assert_has_line(text, "trellis_redis_errors_total 1");
	free(text);
}

static void
test_connections_gauge_follows_deltas(void **state)
{
	char *text;

	(void)state;
	tr_metrics_connections(3);
	tr_metrics_connections(-1);
	text = render();
	assert_has_line(text, "trellis_connections 2");
	free(text);
}

static void
test_metric_families_are_typed(void **state)
{
	char *text;

	(void)state;
	text = render();
	assert_has_line(text, "# TYPE trellis_http_requests_total counter");
	assert_has_line(text, "# TYPE " DURATION " histogram");
	assert_has_line(text, "# TYPE trellis_connections gauge");
	free(text);
}

static void
test_many_status_codes_on_one_route_are_all_kept(void **state)
{
	int tag = route_index(TR_GET, "/v1/tags");
	char *text, line[160];

	(void)state;
	for (int status = 200; status < 220; status++)
		tr_metrics_http_observe(tag, TR_GET, status, 0.001);
	text = render();
	for (int status = 200; status < 220; status++) {
		snprintf(line, sizeof(line),
			 "trellis_http_requests_total{route=\"/v1/"
			 "tags\",method=\"GET\",status=\"%d\"} 1",
			 status);
		assert_has_line(text, line);
	}
	assert_has_line(text, DURATION "_count{route=\"/v1/tags\"} 20");
	free(text);
}

#define T(f) cmocka_unit_test_setup_teardown(f, metrics_setup, metrics_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_counter_line_has_route_method_and_status_labels),
	    T(test_each_method_and_status_gets_its_own_counter_line),
	    T(test_unmatched_requests_are_counted_under_unmatched),
	    T(test_routes_without_requests_have_no_lines),
	    T(test_histogram_buckets_are_cumulative),
	    T(test_value_equal_to_a_bound_falls_in_that_bucket),
	    T(test_inf_bucket_equals_the_count_including_slow_requests),
	    T(test_inf_is_the_last_bucket_of_a_route),
	    T(test_sum_adds_the_observed_seconds),
	    T(test_db_observations_count_errors_separately),
	    T(test_redis_observations_count_errors_separately),
	    T(test_connections_gauge_follows_deltas),
	    T(test_metric_families_are_typed),
	    T(test_many_status_codes_on_one_route_are_all_kept),
	};

	return cmocka_run_group_tests_name("metrics", tests, router_setup, router_teardown);
}
