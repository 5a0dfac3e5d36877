/* The BPM (CONTRACT.md "BPM") module: process definitions in JSON or BPMN
 * (definitions.c, bpmn.c), instances moved by the engine (engine.c,
 * jobs.c), the task inbox (tasks.c), service steps acting on the CRM and
 * the ERP as sagas (actions.c), incidents (instances.c). */
#include "bpm.h"
#include "config.h"

#define J TR_JSON_BODY

const char *const bpm_newest_first[] = {"-created_at", NULL};
const char *const bpm_task_sorts[] = {"-created_at", "due_at", NULL};

static const struct tr_route routes[] = {
    {TR_POST, "/v1/bpm/definitions", bpm_definition_create, "bpm.processes.write",
     TR_JSON_BODY | TR_XML_BODY,
     "Store a process definition - JSON, or BPMN 2.0 XML (application/xml) - as the next "
     "version of its key; every fault is listed in one 422.",
     NULL, NULL, NULL},
    {TR_GET, "/v1/bpm/definitions", bpm_definition_list, "bpm.processes.read", TR_PAGED,
     "Process definitions, every version, newest first (?key= for one key's).", NULL, "key",
     bpm_newest_first},
    {TR_GET, "/v1/bpm/definitions/{key}", bpm_definition_get, "bpm.processes.read", 0,
     "The newest version of a definition.", NULL, NULL, NULL},
    {TR_GET, "/v1/bpm/definitions/{key}/versions/{n}", bpm_definition_version, "bpm.processes.read",
     0, "One version of a definition.", NULL, NULL, NULL},
    {TR_GET, "/v1/bpm/definitions/{key}/bpmn", bpm_definition_bpmn, "bpm.processes.read", 0,
     "The newest version as BPMN 2.0 XML with diagram information.", NULL, NULL, NULL},
    {TR_POST, "/v1/bpm/instances", bpm_instance_create, "bpm.instances.write", J,
     "Start an instance of a definition (its newest version, or \"version\") with a subject "
     "and variables.",
     NULL, NULL, NULL},
    {TR_GET, "/v1/bpm/instances", bpm_instance_list, "bpm.instances.read", TR_PAGED,
     "Instances, newest first.", NULL, "status=running|completed|cancelled|failed definition_key",
     bpm_newest_first},
    {TR_GET, "/v1/bpm/instances/{id}", bpm_instance_get, "bpm.instances.read", 0,
     "One instance: status, variables, the nodes it waits in.", NULL, NULL, NULL},
    {TR_GET, "/v1/bpm/instances/{id}/history", bpm_instance_history, "bpm.instances.read", 0,
     "Every node the instance entered and left, by whom, when.", NULL, NULL, NULL},
    {TR_POST, "/v1/bpm/instances/{id}/cancel", bpm_instance_cancel, "bpm.instances.write", 0,
     "Cancel a running instance: its open tasks end and its done service steps are "
     "compensated, newest first (the answer lists each).",
     NULL, NULL, NULL},
    {TR_GET, "/v1/bpm/tasks", bpm_task_list, "bpm.tasks.read", TR_PAGED,
     "User tasks: ?assignee=me|<id>, ?candidate=me (offered to your roles), ?status.", NULL,
     "assignee=me|<id> candidate=me status=open|done|cancelled", bpm_task_sorts},
    {TR_GET, "/v1/bpm/tasks/{id}", bpm_task_get, "bpm.tasks.read", 0,
     "One task with its form and instructions.", NULL, NULL, NULL},
    {TR_POST, "/v1/bpm/tasks/{id}/claim", bpm_task_claim, "bpm.tasks.write", 0,
     "Take a task offered to your roles.", NULL, NULL, NULL},
    {TR_POST, "/v1/bpm/tasks/{id}/unclaim", bpm_task_unclaim, "bpm.tasks.write", 0,
     "Give a claimed task back to its candidates.", NULL, NULL, NULL},
    {TR_POST, "/v1/bpm/tasks/{id}/complete", bpm_task_complete, "bpm.tasks.write", J,
     "Complete a task with its form's data (422 naming each bad field; done already: 409).", NULL,
     NULL, NULL},
    {TR_GET, "/v1/bpm/incidents", bpm_incident_list, "bpm.instances.read", TR_PAGED,
     "Incidents: steps out of retries, conditions that could not be evaluated.", NULL,
     "status=open|resolved instance_id", bpm_newest_first},
    {TR_POST, "/v1/bpm/incidents/{id}/retry", bpm_incident_retry, "bpm.instances.write", 0,
     "Run the failed step again (or evaluate the gateway again).", NULL, NULL, NULL},
};

static const struct tr_job_handler jobs[] = {
    {.queue = BPM_QUEUE, .run = bpm_job_run},
    {.queue = BPM_EVENTS_QUEUE, .run = bpm_events_run},
};

/* The events of other modules the engine acts on: starts (start_on) and
 * waits (wait_event). */
static const char *const listened[] = {
    "crm.deal.won",
    "crm.deal.lost",
    "crm.lead.created",
    "crm.lead.converted",
    "erp.order.confirmed",
    "erp.order.paid",
    "erp.order.shipped",
    "erp.order.completed",
    "erp.order.cancelled",
    "erp.invoice.created",
    NULL,
};

static const struct tr_event_listener listener = {BPM_EVENTS_QUEUE, listened};

static const struct tr_config_key config[] = {
    {"bpm_settle_after_ms", TR_CONFIG_INT, "30000", 200, 86400000,
     "An instance whose move was cut off halfway (a process died between its record and its "
     "tasks or jobs) is finished by a job this long after the move began."},
    {"bpm_step_attempts", TR_CONFIG_INT, "3", 1, 20,
     "Runs of a service step before it fails its instance with an incident (retries back off; "
     "at most job_max_attempts)."},
};

long
bpm_settle_after_ms(void)
{
	return tr_config_int("bpm_settle_after_ms");
}

int
bpm_step_attempts(void)
{
	int n = (int)tr_config_int("bpm_step_attempts");
	int max = tr_cfg ? tr_cfg->job_max_attempts : n;
	return n < max ? n : max;
}

/* The permissions this module owns and the built-in roles holding each
 * (owner and admin hold all; "sales:own" holds the ":own" form). */
static const struct tr_permission permissions[] = {
    {"bpm.processes.read", "manager"},
    {"bpm.processes.write", "manager"},
    {"bpm.instances.read", "manager"},
    {"bpm.instances.write", "manager"},
    {"bpm.tasks.read", "manager sales:own warehouse:own accountant:own employee:own"},
    {"bpm.tasks.write", "manager sales:own warehouse:own accountant:own employee:own"},
};

/* Its event topics and what reading each needs. */
static const struct tr_topic topics[] = {
    {"bpm.tasks", "bpm.tasks.read"},
    {"bpm.instances", "bpm.instances.read"},
};

const struct tr_module tr_bpm_module = {
    .name = "bpm",
    .permissions = permissions,
    .npermissions = sizeof(permissions) / sizeof(permissions[0]),
    .topics = topics,
    .ntopics = sizeof(topics) / sizeof(topics[0]),
    .event_listener = &listener,
    .routes = routes,
    .nroutes = sizeof(routes) / sizeof(routes[0]),
    .jobs = jobs,
    .njobs = sizeof(jobs) / sizeof(jobs[0]),
    .config = config,
    .nconfig = sizeof(config) / sizeof(config[0]),
    .migrations = "modules/bpm/migrations",
};
