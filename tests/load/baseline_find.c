/*
 * baseline_find - the ceiling for Trellis' GET /v1/tags/{id}.
 *
 * Issues the same query the server issues for a tenant-scoped find by id,
 * find_one({_id: ObjectId}) with limit 1 on the collection `tags`, then
 * checks the document's tenant_id in C as the server's data layer does, straight to
 * MongoDB/FerretDB with no HTTP, JWT or Redis in front of it. It uses a mongoc_client_pool_t whose
 * size equals the number of threads, as the server sizes its pool to TRELLIS_WORKERS, and each
 * thread runs finds back to back for a fixed time.
 *
 * usage: baseline_find URI TENANT_HEX TAG_HEX THREADS SECONDS
 *
 * The database is the one named in the URI path. Before timing, the
 * document is looked up once and must be found, so a wrong id or an empty
 * collection fails loudly instead of measuring empty lookups.
 *
 * Output (stdout), one key=value per line, ops_per_sec last:
 *   threads=4
 *   seconds=10.001
 *   ops=123456
 *   ops_per_sec=12344.3
 * Exit status: 0 on success, 1 on any error (bad arguments, document not
 * found, a failed or empty find during the run).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BASELINE_COLLECTION "tags"
#define BASELINE_MAX_THREADS 256
#define BASELINE_MAX_SECONDS 3600
/* Room for a driver message plus our prefix. */
#define BASELINE_ERROR_SIZE (BSON_ERROR_BUFFER_SIZE + 64)

/* The query shared by every thread; filled once before the threads start,
 * then only read. */
struct baseline_query {
	const char *database;
	bson_oid_t tenant_id;
	bson_oid_t tag_id;
};

/* The starting gun. main sets `state` (under `lock`) to RUN once every
 * thread exists, or to ABORT if one could not be created; workers wait
 * for it to leave WAIT. `deadline` is written before RUN and only read
 * after. */
enum baseline_state { BASELINE_WAIT, BASELINE_RUN, BASELINE_ABORT };

struct baseline_start {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	enum baseline_state state;
	struct timespec deadline;
};

/* One per thread. The thread owns ops/failed/error until it is joined. */
struct baseline_worker {
	pthread_t thread;
	mongoc_client_pool_t *pool;
	const struct baseline_query *query;
	struct baseline_start *start;
	uint64_t ops;
	uint64_t failed;
	char error[BASELINE_ERROR_SIZE];
};

static double
timespec_seconds(const struct timespec *ts)
{
	return (double)ts->tv_sec + (double)ts->tv_nsec / 1e9;
}

static int
timespec_reached(const struct timespec *now, const struct timespec *deadline)
{
	if (now->tv_sec != deadline->tv_sec) {
		return now->tv_sec > deadline->tv_sec;
	}
	return now->tv_nsec >= deadline->tv_nsec;
}

/*
 * Runs the find once on `client`. Returns 1 when the document was found,
 * 0 when the query succeeded but matched nothing, -1 on a driver error
 * (message copied into `error`).
 */
static int
baseline_find_one(mongoc_client_t *client, const struct baseline_query *query, char *error,
		  size_t error_size)
{
	bson_t filter = BSON_INITIALIZER;
	bson_t opts = BSON_INITIALIZER;
	bson_error_t driver_error;
	mongoc_collection_t *collection = NULL;
	mongoc_cursor_t *cursor = NULL;
	const bson_t *doc = NULL;
	int result = 0;

	BSON_APPEND_OID(&filter, "_id", &query->tag_id);
	BSON_APPEND_INT64(&opts, "limit", 1);

	collection = mongoc_client_get_collection(client, query->database, BASELINE_COLLECTION);
	cursor = mongoc_collection_find_with_opts(collection, &filter, &opts, NULL);
	if (mongoc_cursor_next(cursor, &doc)) {
		bson_iter_t it;
		result = bson_iter_init_find(&it, doc, "tenant_id") && BSON_ITER_HOLDS_OID(&it) &&
				 bson_oid_equal(bson_iter_oid(&it), &query->tenant_id)
			     ? 1
			     : 0;
	}
	if (mongoc_cursor_error(cursor, &driver_error)) {
		snprintf(error, error_size, "find failed: %s", driver_error.message);
		result = -1;
	}

	mongoc_cursor_destroy(cursor);
	mongoc_collection_destroy(collection);
	bson_destroy(&opts);
	bson_destroy(&filter);
	return result;
}

/* Blocks until main fires the starting gun; returns the state it set. */
static enum baseline_state
baseline_start_wait(struct baseline_start *start)
{
	enum baseline_state state;

	pthread_mutex_lock(&start->lock);
	while (start->state == BASELINE_WAIT) {
		pthread_cond_wait(&start->changed, &start->lock);
	}
	state = start->state;
	pthread_mutex_unlock(&start->lock);
	return state;
}

static void
baseline_start_fire(struct baseline_start *start, enum baseline_state state, long seconds)
{
	pthread_mutex_lock(&start->lock);
	clock_gettime(CLOCK_MONOTONIC, &start->deadline);
	start->deadline.tv_sec += seconds;
	start->state = state;
	pthread_cond_broadcast(&start->changed);
	pthread_mutex_unlock(&start->lock);
}

/*
 * Thread body: takes one client from the pool for the whole run (the pool
 * holds exactly one per thread), waits for the starting gun, then finds
 * until the shared deadline. A failure stops this thread; main reports it.
 */
static void *
baseline_worker_run(void *arg)
{
	struct baseline_worker *worker = arg;
	mongoc_client_t *client = mongoc_client_pool_pop(worker->pool);
	struct timespec now;

	if (baseline_start_wait(worker->start) != BASELINE_RUN) {
		goto out;
	}
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (timespec_reached(&now, &worker->start->deadline)) {
			break;
		}
		int found =
		    baseline_find_one(client, worker->query, worker->error, sizeof worker->error);
		if (found != 1) {
			if (found == 0) {
				snprintf(worker->error, sizeof worker->error,
					 "document not found during the run");
			}
			worker->failed++;
			break;
		}
		worker->ops++;
	}
out:
	mongoc_client_pool_push(worker->pool, client);
	return NULL;
}

/* Parses a positive integer in [1, max]; returns 0 on success. */
static int
parse_count(const char *text, long max, long *out)
{
	char *end = NULL;
	long value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < 1 || value > max) {
		return -1;
	}
	*out = value;
	return 0;
}

static int
parse_oid(const char *text, bson_oid_t *out)
{
	if (strlen(text) != 24 || !bson_oid_is_valid(text, 24)) {
		return -1;
	}
	bson_oid_init_from_string(out, text);
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: baseline_find URI TENANT_HEX TAG_HEX THREADS "
			"SECONDS\n");
}

int
main(int argc, char **argv)
{
	struct baseline_query query;
	struct baseline_worker *workers = NULL;
	struct baseline_start start = {
	    .lock = PTHREAD_MUTEX_INITIALIZER,
	    .changed = PTHREAD_COND_INITIALIZER,
	    .state = BASELINE_WAIT,
	};
	mongoc_uri_t *uri = NULL;
	mongoc_client_pool_t *pool = NULL;
	mongoc_client_t *client = NULL;
	bson_error_t uri_error;
	struct timespec began, ended;
	char error[BASELINE_ERROR_SIZE] = "";
	long threads = 0, seconds = 0, started = 0;
	uint64_t ops = 0, failed = 0;
	int status = 1;

	if (argc != 6) {
		usage();
		return 1;
	}
	if (parse_oid(argv[2], &query.tenant_id) != 0 || parse_oid(argv[3], &query.tag_id) != 0) {
		fprintf(stderr, "baseline_find: ids must be 24 hex digits\n");
		return 1;
	}
	if (parse_count(argv[4], BASELINE_MAX_THREADS, &threads) != 0 ||
	    parse_count(argv[5], BASELINE_MAX_SECONDS, &seconds) != 0) {
		fprintf(stderr, "baseline_find: THREADS must be 1..%d, SECONDS 1..%d\n",
			BASELINE_MAX_THREADS, BASELINE_MAX_SECONDS);
		return 1;
	}

	mongoc_init();

	uri = mongoc_uri_new_with_error(argv[1], &uri_error);
	if (uri == NULL) {
		fprintf(stderr, "baseline_find: bad URI: %s\n", uri_error.message);
		goto out;
	}
	query.database = mongoc_uri_get_database(uri);
	if (query.database == NULL || query.database[0] == '\0') {
		fprintf(stderr, "baseline_find: the URI names no database\n");
		goto out;
	}
	/* Same pool size as the server: one client per worker thread. */
	mongoc_uri_set_option_as_int32(uri, MONGOC_URI_MAXPOOLSIZE, (int32_t)threads);
	pool = mongoc_client_pool_new(uri);
	if (pool == NULL) {
		fprintf(stderr, "baseline_find: cannot create the pool\n");
		goto out;
	}
	mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
	mongoc_client_pool_set_appname(pool, "trellis-baseline-find");

	/* Check once, untimed, that the document is there. */
	client = mongoc_client_pool_pop(pool);
	int found = baseline_find_one(client, &query, error, sizeof error);
	mongoc_client_pool_push(pool, client);
	client = NULL;
	if (found != 1) {
		fprintf(stderr, "baseline_find: %s\n",
			found == 0 ? "document not found in tags" : error);
		goto out;
	}

	workers = calloc((size_t)threads, sizeof *workers);
	if (workers == NULL) {
		fprintf(stderr, "baseline_find: out of memory\n");
		goto out;
	}
	/* The clock starts after every thread has been created, so slow
	 * thread creation does not eat into the measured time. */
	for (started = 0; started < threads; started++) {
		workers[started].pool = pool;
		workers[started].query = &query;
		workers[started].start = &start;
		if (pthread_create(&workers[started].thread, NULL, baseline_worker_run,
				   &workers[started]) != 0) {
			fprintf(stderr, "baseline_find: cannot start thread\n");
			break;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &began);
	baseline_start_fire(&start, started == threads ? BASELINE_RUN : BASELINE_ABORT, seconds);
	for (long i = 0; i < started; i++) {
		pthread_join(workers[i].thread, NULL);
		ops += workers[i].ops;
		failed += workers[i].failed;
		if (workers[i].failed > 0) {
			fprintf(stderr, "baseline_find: thread %ld: %s\n", i, workers[i].error);
		}
	}
	if (started < threads) {
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &ended);

	double elapsed = timespec_seconds(&ended) - timespec_seconds(&began);
	printf("threads=%ld\n", threads);
	printf("seconds=%.3f\n", elapsed);
	printf("ops=%llu\n", (unsigned long long)ops);
	printf("ops_per_sec=%.1f\n", elapsed > 0 ? (double)ops / elapsed : 0.0);
	status = failed == 0 ? 0 : 1;

out:
	free(workers);
	if (pool != NULL) {
		mongoc_client_pool_destroy(pool);
	}
	mongoc_uri_destroy(uri);
	mongoc_cleanup();
	return status;
}
