/* The task queue: one Redis Stream per queue (q:<name>) read by the
 * consumer group "workers"; delayed jobs in a sorted set (q:<name>:delayed)
 * moved to the stream when due; failed runs retried with exponential
 * backoff and jitter; jobs out of attempts go to the dead-letter stream
 * (q:<name>:dead) and to their tenant's list of dead jobs; a job whose
 * worker stopped answering is reclaimed after job_visibility_ms.
 *
 * Delivery is at least once: a handler may see a job again (a worker died
 * after the work, before the acknowledgement), so handlers are idempotent.
 * Handlers run on job threads, never on the loop thread; they may block and
 * use MongoDB through a tenant's handle (db.h, tr_db_for_tenant). */
#ifndef TR_JOBS_H
#define TR_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* libuv's loop (uv_loop_t), named here without <uv.h> so that modules
 * including this header do not see libuv: only main.c passes one. */
struct uv_loop_s;

/* A job retried by hand (tr_jobs_retry) carries in its payload how many
 * times it was: an int under this key. */
#define TR_JOB_RETRIED "_retried"

struct tr_job {
	const char *queue;
	const char *id;	     /* 32 hex, stable across retries */
	const char *tenant;  /* 24 hex */
	const char *payload; /* JSON object */
	size_t payload_len;
	int attempt;	  /* 1 on the first run */
	const char *lane; /* its lane (tr_job_enqueue_lane), or NULL */
};

/* A module's handler for one queue: 0 when the job is done; otherwise it
 * failed, with a short reason in err (kept with a dead job). */
struct tr_job_handler {
	const char *queue;
	int (*run)(const struct tr_job *job, char *err, size_t errlen);
	/* Optional: the module's config keys giving this queue's runs before
	 * the dead letters and its longest wait between two, in place of
	 * job_max_attempts and job_backoff_max_ms (webhooks retry for days). */
	const char *max_attempts_key, *backoff_max_key;
};

/* A queue partition's Redis key: q:{<database>:<queue>:<partition>}<suffix>.
 * Deployments that share a Redis keep their queues apart by their
 * database's name; the hash tag puts a partition's keys in one cluster
 * slot, so its scripts may use them together. */
void tr_job_key(char *buf, size_t len, const char *queue, int partition, const char *suffix);
/* The partitions of every queue (job_partitions, 1..16). */
int tr_job_partitions(void);
/* The partition a lane's jobs go to (by the lane's name), or a job without
 * a lane (by its id). */
int tr_job_partition_of(const char *lane_or_id);

/* Enqueues a job (any thread but the loop thread: it waits for Redis).
 * payload is a JSON object; run_at_ms <= now runs it as soon as a worker
 * is free. The job id goes to id_out (33 bytes) when not NULL. TR_OK or
 * TR_EUNAVAILABLE. */
int tr_job_enqueue(const char *queue, const char *tenant_hex, const char *payload,
		   int64_t run_at_ms, char *id_out);

/* The same for a job of a lane: the jobs of one lane (a name of
 * [a-z0-9._-], at most 40, unique within the queue) run one at a time in
 * the order they were enqueued, in every process: a job waits while one
 * enqueued before it is waiting, running or retrying, and goes on once
 * that one is done or dead. lane NULL or "" is no lane. */
int tr_job_enqueue_lane(const char *queue, const char *lane, const char *tenant_hex,
			const char *payload, int64_t run_at_ms, char *id_out);

/* How many jobs a lane holds (its head and those waiting behind it):
 * >= 0, or TR_EUNAVAILABLE. Worker threads. */
long long tr_job_lane_length(const char *queue, const char *lane);

/* For a handler about to fail its job: when the job runs again (unix ms),
 * or 0 when this run is its last attempt (it then goes to the dead
 * letters). The same wait the queue applies, give or take the moments
 * between the call and the handler's return. */
int64_t tr_job_next_attempt_ms(const struct tr_job *job);

/* Registers the stats script; before tr_redis_init. */
void tr_jobs_register(void);
/* Start-up (main thread): the handlers of every module; job threads start
 * when the process has the worker role. */
int tr_jobs_start(struct uv_loop_s *loop, const struct tr_config *cfg);
/* The process is stopping: job threads take no new jobs; each finishes
 * the ones it has read, then ends. Returns at once (loop thread). */
void tr_jobs_quiesce(void);
/* Stops the job threads (waits for running handlers) and the stats timer. */
void tr_jobs_stop(void);

/* For the jobs API (worker threads). The tenant's dead jobs as a JSON
 * array (malloc'd), or NULL when Redis is unavailable. */
char *tr_jobs_dead_json(const char *tenant_hex, size_t *len);
/* Puts a dead job back on its queue: TR_OK, TR_ENOTFOUND (not a dead job
 * of this tenant), TR_EUNAVAILABLE. */
int tr_jobs_retry(const char *tenant_hex, const char *job_id, char *queue_out, size_t qlen);

/* One queue's jobs of one tenant (tr_jobs_tenant_counts). */
struct tr_job_counts {
	const char *queue; /* the handler's name (static) */
	long long ready;   /* in the stream: waiting for a worker or running */
	long long delayed; /* waiting for their run_at (retries in backoff too) */
	bool exact;	   /* false: the scan stopped at max entries */
};

/* For tenant admins (GET /v1/observability; worker threads, waits for
 * Redis). A queue's stream and delayed set are shared by every tenant, so
 * this reads them and counts the tenant's jobs: at most max_scan entries
 * per queue (in one script, so Redis is held for that long; past it the
 * count says exact = false). Fills out[] (at most max, in the order the
 * modules declare their queues) and *nout; *dead gets the tenant's dead
 * jobs. TR_OK or TR_EUNAVAILABLE. */
int tr_jobs_tenant_counts(const char *tenant_hex, long long max_scan, struct tr_job_counts *out,
			  int max, int *nout, long long *dead);

#endif
