/* The BPM module's own header: its collections, the definition checks, the
 * engine that moves an instance's tokens, and the routes' handlers.
 *
 * An instance is one record holding its tokens - one per step it waits in
 * (a user task, a service step, a timer, an event) - its variables and the
 * arrivals at parallel joins. Every move is a version-checked write of
 * that record (db.h tr_db_update: of writers that read the same version
 * exactly one succeeds, across processes), and a move names the token it
 * consumes: a move whose token is gone was made already, so asking again -
 * a retried job, a second process, a settle job after a crash - changes
 * nothing. What a new token needs outside the record (its task, its job,
 * its wait) is made after the write, idempotently, and made again by the
 * instance's settle job if the process died in between. */
#ifndef BPM_H
#define BPM_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "events.h"
#include "jobs.h"
#include "module.h"

#define BPM_DEFS "bpm_definitions"
#define BPM_INSTANCES "bpm_instances"
#define BPM_TASKS "bpm_tasks"
#define BPM_HISTORY "bpm_history"
#define BPM_INCIDENTS "bpm_incidents"
#define BPM_WAITS "bpm_waits"
#define BPM_SEEN "bpm_seen"

#define BPM_QUEUE "bpm"		      /* the engine's jobs: steps, timers, escalations, settles */
#define BPM_EVENTS_QUEUE "bpm.events" /* events of other modules (the listener) */

#define BPM_MAX_NODES 200
#define BPM_MAX_FLOWS 400
#define BPM_MAX_TOKENS 64
#define BPM_MAX_FORM 50
#define BPM_MAX_ID 64

/* ---- definitions (definitions.c) ---- */

/* Checks a definition in the JSON form (CONTRACT.md "BPM"), adding a
 * problem field for every fault found (c's 422). True when it has none. */
bool bpm_def_check(struct tr_ctx *c, const bson_t *def);
/* Version n of the definition `key` (n <= 0: the newest) into *out
 * (initialised by the call): TR_OK or TR_ENOTFOUND. */
int bpm_def_load(struct tr_db *db, const char *key, long long n, bson_t *out);
/* The same by the id of the stored version. */
int bpm_def_get(struct tr_db *db, const char *id, bson_t *out);
/* Node `id` of a stored definition into *node (borrowed: valid while def
 * is), false when there is none. */
bool bpm_def_node(const bson_t *def, const char *id, bson_t *node);
/* A node's type ("user_task", ...), or "" */
const char *bpm_node_type(const bson_t *node);
bool bpm_event_known(const char *event);

/* ---- the engine (engine.c) ---- */

/* A move of an instance: the token it consumes (NULL: none - a start),
 * variables merged first, who made it. */
struct bpm_move {
	const char *token;
	const bson_t *vars;   /* merged into the variables first, or NULL */
	const bson_t *step;   /* a service step done: recorded for compensation */
	const char *by;	      /* user (24 hex) or NULL: the system */
	const char *boundary; /* a boundary event of token's node fires */
	const char *incident; /* fail the instance at token's node with this reason */
	bool keep_token;      /* a boundary that does not interrupt */
};

/* Starts an instance of the stored definition def: subject {type, id} or
 * NULL, variables or NULL, by (24 hex) or NULL; id: the instance's id (24
 * hex) when it must be made once (a start by an event), or NULL. The
 * instance as stored into *out (initialised). TR_EDUPLICATE when id was
 * started already. */
int bpm_start(struct tr_db *db, const bson_t *def, const bson_t *subject, const bson_t *vars,
	      const char *by, const char *id, bson_t *out);
/* Moves instance id on (see struct bpm_move). TR_OK when moved or when
 * the token was consumed already; TR_ENOTFOUND; TR_EBUSY after too many
 * conflicts. *out (when not NULL) gets the instance after the move. */
int bpm_advance(struct tr_db *db, const char *id, const struct bpm_move *mv, bson_t *out);
/* Makes what each token of the instance needs outside its record (tasks,
 * jobs, waits) if it is missing, and moves on tasks completed whose move
 * was not made: the settle job's work, idempotent. */
int bpm_settle(struct tr_db *db, const char *id);
/* Cancels a running instance: its open tasks are cancelled and its done
 * service steps compensated, newest first; *report gets one
 * {"node_id", "action", "compensation", "result"} per step (an array,
 * initialised by the call). TR_EVERSION when it is not running. */
int bpm_cancel(struct tr_db *db, const char *id, const char *by, bson_t *report, bson_t *out);
/* Renders an instance for the API. */
void bpm_instance_render(const bson_t *stored, bson_t *out);
/* The engine's job handler (queue BPM_QUEUE) and the event listener's. */
int bpm_job_run(const struct tr_job *job, char *err, size_t errlen);
int bpm_events_run(const struct tr_job *job, char *err, size_t errlen);
/* Enqueues an engine job {kind, instance, token, ...} at run_at_ms. */
int bpm_job_schedule(const char *tenant, const char *kind, const char *instance, const char *token,
		     const char *extra, int64_t run_at_ms);
/* Runs a service action for the token of an instance (actions.c): 0 done
 * (result variables into *vars_out, the step record into *step_out, both
 * initialised), 1 failed for now (retry), -1 failed for good; why says why. */
int bpm_action_run(struct tr_db *db, const bson_t *inst, const bson_t *node, const char *token,
		   bson_t *vars_out, bson_t *step_out, char *why, size_t whylen);
/* The compensation of a done step (as recorded): a line for the report
 * into *line (initialised): {"node_id", "action", "compensation",
 * "result"}. */
void bpm_action_compensate(struct tr_db *db, const bson_t *inst, const bson_t *step, bson_t *line);
bool bpm_action_known(const char *action);

/* Timer starts (start_every): schedules the definition's next slot after
 * after_ms (nothing without start_every); the job's run. */
int bpm_every_schedule(const char *tenant, const bson_t *def, int64_t after_ms);
int bpm_every_run(struct tr_db *db, const char *tenant, const char *def_id, const char *slot_text);

/* ---- configuration ---- */
long bpm_settle_after_ms(void);
int bpm_step_attempts(void);

/* Who hears of a task under ":own" (events.h, owners): its assignee, or
 * when it has none the active holders of its candidate roles (at most
 * TR_AUDIENCE_MAX; more holders than that hear only with the full read
 * permission). How many, into out. Worker threads (it reads users). */
int bpm_task_audience(struct tr_db *db, const bson_t *task, char out[TR_OWNERS_LEN]);

/* ---- routes (definitions.c, instances.c, tasks.c) ---- */
void bpm_definition_create(struct tr_ctx *c);
void bpm_definition_list(struct tr_ctx *c);
void bpm_definition_get(struct tr_ctx *c);
void bpm_definition_version(struct tr_ctx *c);
void bpm_definition_bpmn(struct tr_ctx *c);
void bpm_instance_create(struct tr_ctx *c);
void bpm_instance_list(struct tr_ctx *c);
void bpm_instance_get(struct tr_ctx *c);
void bpm_instance_history(struct tr_ctx *c);
void bpm_instance_cancel(struct tr_ctx *c);
void bpm_task_list(struct tr_ctx *c);
void bpm_task_get(struct tr_ctx *c);
void bpm_task_claim(struct tr_ctx *c);
void bpm_task_unclaim(struct tr_ctx *c);
void bpm_task_complete(struct tr_ctx *c);
void bpm_incident_list(struct tr_ctx *c);
void bpm_incident_retry(struct tr_ctx *c);

/* The sorts of the lists (module.c). */
extern const char *const bpm_newest_first[];
extern const char *const bpm_task_sorts[];

/* A list endpoint whose items are rendered by render (from the resource
 * the data layer renders into *out, initialised). */
void bpm_list_reply(struct tr_ctx *c, const char *coll, const bson_t *filter,
		    const char *const *sorts, bool narrow,
		    void (*render)(const bson_t *res, bson_t *out));

/* The variable an event's record lands in when a wait for it ends
 * ("erp.order.paid" -> "erp_order_paid": field names hold no dots). */
void bpm_event_var(const char *event, char *out, size_t len);
/* The id of the record of an event seen (event, correlated id). */
void bpm_seen_id(const char *event, const char *value, char out[25]);

/* A derived id (24 hex) from a seed: the same seed, the same id. */
void bpm_derived_id(const char *seed, char out[25]);

#endif
