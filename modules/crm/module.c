#include "crm.h"

void clients_list(struct tr_ctx *c);
void clients_create(struct tr_ctx *c);
void clients_get(struct tr_ctx *c);
void clients_update(struct tr_ctx *c);
void clients_delete(struct tr_ctx *c);
void counterparties_list(struct tr_ctx *c);
void counterparties_create(struct tr_ctx *c);
void counterparties_get(struct tr_ctx *c);
void counterparties_update(struct tr_ctx *c);
void counterparties_delete(struct tr_ctx *c);
void contacts_list(struct tr_ctx *c);
void contacts_create(struct tr_ctx *c);
void contacts_get(struct tr_ctx *c);
void contacts_update(struct tr_ctx *c);
void contacts_delete(struct tr_ctx *c);
void groups_list(struct tr_ctx *c);
void groups_create(struct tr_ctx *c);
void groups_get(struct tr_ctx *c);
void groups_update(struct tr_ctx *c);
void groups_delete(struct tr_ctx *c);
void groups_members(struct tr_ctx *c);
void interactions_list(struct tr_ctx *c);
void interactions_create(struct tr_ctx *c);
void interactions_get(struct tr_ctx *c);
void interactions_update(struct tr_ctx *c);
void interactions_delete(struct tr_ctx *c);
void tasks_list(struct tr_ctx *c);
void tasks_create(struct tr_ctx *c);
void tasks_get(struct tr_ctx *c);
void tasks_update(struct tr_ctx *c);
void tasks_delete(struct tr_ctx *c);
void campaigns_list(struct tr_ctx *c);
void campaigns_create(struct tr_ctx *c);
void campaigns_get(struct tr_ctx *c);
void campaigns_update(struct tr_ctx *c);
void campaigns_delete(struct tr_ctx *c);
void claims_list(struct tr_ctx *c);
void claims_create(struct tr_ctx *c);
void claims_get(struct tr_ctx *c);
void claims_update(struct tr_ctx *c);
void claims_delete(struct tr_ctx *c);

#define J TR_JSON_BODY
#define JI (TR_JSON_BODY | TR_IDEMPOTENT)

/* One block per resource: list, create, get, change, delete, then its
 * actions. */
static const struct tr_route routes[] = {
    {TR_GET, "/v1/crm/leads", leads_list, "crm.leads.read", 0, "Leads (?status, owner_id, email)."},
    {TR_POST, "/v1/crm/leads", leads_create, "crm.leads.write", JI,
     "Create a lead (users and partner API keys); duplicates get duplicate_of."},
    {TR_GET, "/v1/crm/leads/{id}", leads_get, "crm.leads.read", 0, "One lead."},
    {TR_PATCH, "/v1/crm/leads/{id}", leads_update, "crm.leads.write", J,
     "Change a lead; status moves new -> contacted -> qualified, or to lost with a reason."},
    {TR_DELETE, "/v1/crm/leads/{id}", leads_delete, "crm.leads.write", 0, "Delete a lead."},
    {TR_POST, "/v1/crm/leads/{id}/convert", leads_convert, "crm.leads.write", J,
     "Convert: a client, a contact and optionally a deal; once only (409 after)."},

    {TR_GET, "/v1/crm/clients", clients_list, "crm.clients.read", 0, "Clients (?kind, owner_id)."},
    {TR_POST, "/v1/crm/clients", clients_create, "crm.clients.write", JI, "Create a client."},
    {TR_GET, "/v1/crm/clients/{id}", clients_get, "crm.clients.read", 0, "One client."},
    {TR_PATCH, "/v1/crm/clients/{id}", clients_update, "crm.clients.write", J, "Change a client."},
    {TR_DELETE, "/v1/crm/clients/{id}", clients_delete, "crm.clients.write", 0, "Delete a client."},
    {TR_GET, "/v1/crm/clients/{id}/timeline", clients_timeline, "crm.clients.read", 0,
     "Interactions, deals and claims of a client, newest first."},
    {TR_GET, "/v1/crm/clients/{id}/counterparties", counterparties_list, "crm.clients.read", 0,
     "A client's legal entities."},
    {TR_POST, "/v1/crm/clients/{id}/counterparties", counterparties_create, "crm.clients.write", JI,
     "Add a legal entity (with its validity period)."},
    {TR_GET, "/v1/crm/clients/{id}/counterparties/{cid}", counterparties_get, "crm.clients.read", 0,
     "One legal entity."},
    {TR_PATCH, "/v1/crm/clients/{id}/counterparties/{cid}", counterparties_update,
     "crm.clients.write", J, "Change a legal entity."},
    {TR_DELETE, "/v1/crm/clients/{id}/counterparties/{cid}", counterparties_delete,
     "crm.clients.write", 0, "Remove a legal entity."},
    {TR_GET, "/v1/crm/clients/{id}/contacts", contacts_list, "crm.clients.read", 0,
     "A client's contacts."},
    {TR_POST, "/v1/crm/clients/{id}/contacts", contacts_create, "crm.clients.write", JI,
     "Add a contact."},
    {TR_GET, "/v1/crm/clients/{id}/contacts/{cid}", contacts_get, "crm.clients.read", 0,
     "One contact."},
    {TR_PATCH, "/v1/crm/clients/{id}/contacts/{cid}", contacts_update, "crm.clients.write", J,
     "Change a contact."},
    {TR_DELETE, "/v1/crm/clients/{id}/contacts/{cid}", contacts_delete, "crm.clients.write", 0,
     "Remove a contact."},

    {TR_GET, "/v1/crm/groups", groups_list, "crm.clients.read", 0, "Client groups."},
    {TR_POST, "/v1/crm/groups", groups_create, "crm.clients.write", JI,
     "Create a group: static membership or a saved filter."},
    {TR_GET, "/v1/crm/groups/{id}", groups_get, "crm.clients.read", 0, "One group."},
    {TR_PATCH, "/v1/crm/groups/{id}", groups_update, "crm.clients.write", J, "Change a group."},
    {TR_DELETE, "/v1/crm/groups/{id}", groups_delete, "crm.clients.write", 0, "Delete a group."},
    {TR_GET, "/v1/crm/groups/{id}/clients", groups_members, "crm.clients.read", 0,
     "The clients in a group."},

    {TR_GET, "/v1/crm/pipelines", pipelines_list, "crm.deals.read", 0,
     "Pipelines (the default one always exists)."},
    {TR_POST, "/v1/crm/pipelines", pipelines_create, "crm.settings.write", JI,
     "Create a pipeline."},
    {TR_GET, "/v1/crm/pipelines/{id}", pipelines_get, "crm.deals.read", 0, "One pipeline."},
    {TR_PATCH, "/v1/crm/pipelines/{id}", pipelines_update, "crm.settings.write", J,
     "Change a pipeline's name or stages."},
    {TR_DELETE, "/v1/crm/pipelines/{id}", pipelines_delete, "crm.settings.write", 0,
     "Delete a pipeline without deals (not the default)."},

    {TR_GET, "/v1/crm/deals", deals_list, "crm.deals.read", 0,
     "Deals (?client_id, pipeline_id, stage, status, owner_id)."},
    {TR_POST, "/v1/crm/deals", deals_create, "crm.deals.write", JI,
     "Create a deal (closed ones with crm.deals.import)."},
    {TR_GET, "/v1/crm/deals/{id}", deals_get, "crm.deals.read", 0, "One deal."},
    {TR_PATCH, "/v1/crm/deals/{id}", deals_update, "crm.deals.write", J, "Change a deal."},
    {TR_DELETE, "/v1/crm/deals/{id}", deals_delete, "crm.deals.write", 0, "Delete a deal."},
    {TR_POST, "/v1/crm/deals/{id}/stage", deals_stage, "crm.deals.write", J,
     "Move a deal to another stage (kept in stage_history)."},
    {TR_POST, "/v1/crm/deals/{id}/won", deals_won, "crm.deals.write", 0, "Close a deal as won."},
    {TR_POST, "/v1/crm/deals/{id}/lost", deals_lost, "crm.deals.write", J,
     "Close a deal as lost, with a reason."},

    {TR_GET, "/v1/crm/interactions", interactions_list, "crm.interactions.read", 0,
     "Meetings, calls, messages (?client_id, deal_id, lead_id, kind)."},
    {TR_POST, "/v1/crm/interactions", interactions_create, "crm.interactions.write", JI,
     "Record an interaction."},
    {TR_GET, "/v1/crm/interactions/{id}", interactions_get, "crm.interactions.read", 0,
     "One interaction."},
    {TR_PATCH, "/v1/crm/interactions/{id}", interactions_update, "crm.interactions.write", J,
     "Change an interaction."},
    {TR_DELETE, "/v1/crm/interactions/{id}", interactions_delete, "crm.interactions.write", 0,
     "Delete an interaction."},

    {TR_GET, "/v1/crm/tasks", tasks_list, "crm.tasks.read", 0, "Tasks (?assignee_id, done)."},
    {TR_POST, "/v1/crm/tasks", tasks_create, "crm.tasks.write", JI,
     "Create a task; at due_at the assignee gets crm.task.due."},
    {TR_GET, "/v1/crm/tasks/{id}", tasks_get, "crm.tasks.read", 0, "One task."},
    {TR_PATCH, "/v1/crm/tasks/{id}", tasks_update, "crm.tasks.write", J,
     "Change a task (done, due_at...)."},
    {TR_DELETE, "/v1/crm/tasks/{id}", tasks_delete, "crm.tasks.write", 0, "Delete a task."},

    {TR_GET, "/v1/crm/campaigns", campaigns_list, "crm.campaigns.read", 0, "Campaigns."},
    {TR_POST, "/v1/crm/campaigns", campaigns_create, "crm.campaigns.write", JI,
     "Create a campaign."},
    {TR_GET, "/v1/crm/campaigns/{id}", campaigns_get, "crm.campaigns.read", 0, "One campaign."},
    {TR_PATCH, "/v1/crm/campaigns/{id}", campaigns_update, "crm.campaigns.write", J,
     "Change a campaign."},
    {TR_DELETE, "/v1/crm/campaigns/{id}", campaigns_delete, "crm.campaigns.write", 0,
     "Delete a campaign."},

    {TR_GET, "/v1/crm/claims", claims_list, "crm.claims.read", 0,
     "Claims (?client_id, status, assignee_id)."},
    {TR_POST, "/v1/crm/claims", claims_create, "crm.claims.write", JI, "Open a claim."},
    {TR_GET, "/v1/crm/claims/{id}", claims_get, "crm.claims.read", 0, "One claim."},
    {TR_PATCH, "/v1/crm/claims/{id}", claims_update, "crm.claims.write", J,
     "Change a claim; status open -> in_progress -> resolved | rejected."},
    {TR_DELETE, "/v1/crm/claims/{id}", claims_delete, "crm.claims.write", 0, "Delete a claim."},

    {TR_GET, "/v1/crm/fields", fields_list, "crm.leads.read", 0,
     "Custom field definitions (?entity=lead|client|deal)."},
    {TR_POST, "/v1/crm/fields", fields_create, "crm.settings.write", JI,
     "Define a custom field; values in \"custom\" are checked against it."},
    {TR_GET, "/v1/crm/fields/{id}", fields_get, "crm.leads.read", 0, "One custom field."},
    {TR_PATCH, "/v1/crm/fields/{id}", fields_update, "crm.settings.write", J,
     "Change a custom field's label, options or required."},
    {TR_DELETE, "/v1/crm/fields/{id}", fields_delete, "crm.settings.write", 0,
     "Remove a custom field."},

    {TR_GET, "/v1/crm/reports/funnel", reports_funnel, "crm.reports.read", 0,
     "Per stage of a pipeline: deals entered, still there, moved on, conversion; won/lost."},
    {TR_GET, "/v1/crm/reports/abc-xyz", reports_abc_xyz, "crm.reports.read", 0,
     "Per client: revenue in the period, ABC class by revenue share, XYZ by monthly variation."},
    {TR_GET, "/v1/crm/reports/managers", reports_managers, "crm.reports.read", 0,
     "Per owner: leads, deals won and lost, revenue, conversion."},
    {TR_GET, "/v1/crm/reports/sources", reports_sources, "crm.reports.read", 0,
     "Per channel and campaign: leads, deals, revenue, cost per lead."},
};

static const struct tr_command commands[] = {
    {"demo", "seed", crm_demo_seed, "--tenant SLUG   (a realistic CRM tenant to explore)"},
};

static const struct tr_job_handler jobs[] = {
    {"crm.reminders", crm_task_reminder},
};

const struct tr_module tr_crm_module = {
    .name = "crm",
    .routes = routes,
    .nroutes = sizeof(routes) / sizeof(routes[0]),
    .commands = commands,
    .ncommands = sizeof(commands) / sizeof(commands[0]),
    .jobs = jobs,
    .njobs = sizeof(jobs) / sizeof(jobs[0]),
    .effects = crm_effects,
    .neffects = CRM_NEFFECTS,
};
