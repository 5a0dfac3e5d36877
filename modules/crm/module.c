#include "crm.h"
#include "timeline.h"

#define J TR_JSON_BODY

/* The resources: each yields its list, create, get, change and delete
 * routes (resource.h). */
static const struct tr_resource *const resources[] = {
    &crm_leads,	    &crm_clients, &crm_counterparties,	&crm_contacts, &crm_groups,
    &crm_pipelines, &crm_deals,	  &crm_interactions,	&crm_tasks,    &crm_campaigns,
    &crm_claims,    &crm_fields,  &crm_inbound_sources, &crm_mailings, &crm_unsubscribes,
};

/* What is the CRM's own: actions on its records, and the reports. */
static const struct tr_route routes[] = {
    {TR_POST, "/v1/crm/leads/{id}/convert", crm_leads_convert, "crm.leads.write", J,
     "Convert: a client, a contact and optionally a deal; once only (409 after).", &crm_leads, NULL,
     NULL},
    {TR_GET, "/v1/crm/clients/{id}/timeline", tr_timeline_route, "crm.clients.read", 0,
     "What every module records about a client, newest first: the item types the caller "
     "may read, paged by next_cursor.",
     &crm_clients, "limit cursor", NULL},
    {TR_GET, "/v1/crm/groups/{id}/clients", crm_groups_members, "crm.clients.read", TR_PAGED,
     "The clients in a group (filters and paging as for clients).", &crm_clients, NULL, NULL},
    {TR_POST, "/v1/crm/deals/{id}/stage", crm_deals_stage, "crm.deals.write", J,
     "Move a deal to another stage (kept in stage_history).", &crm_deals, NULL, NULL},
    {TR_POST, "/v1/crm/deals/{id}/won", crm_deals_won, "crm.deals.write", 0, "Close a deal as won.",
     &crm_deals, NULL, NULL},
    {TR_POST, "/v1/crm/deals/{id}/lost", crm_deals_lost, "crm.deals.write", J,
     "Close a deal as lost, with a reason.", &crm_deals, NULL, NULL},
    {TR_POST, "/v1/inbound/{token}", crm_inbound_receive, NULL,
     TR_PUBLIC | J | TR_SIGNED | TR_SECRET_PATH,
     "A partner's post to an inbound source's url, made a lead (202); signed with Standard "
     "Webhooks headers when the source has a secret; a webhook-id received before: 200, "
     "nothing made.",
     NULL, NULL, NULL},
    {TR_POST, "/v1/crm/mailings/{id}/pause", crm_mailings_pause, "crm.mailings.write", 0,
     "Hold a scheduled mailing: its runs and waiting sends stop until it is resumed.",
     &crm_mailings, NULL, NULL},
    {TR_POST, "/v1/crm/mailings/{id}/resume", crm_mailings_resume, "crm.mailings.write", 0,
     "Resume a paused mailing: its waiting recipients are sent and its next run scheduled.",
     &crm_mailings, NULL, NULL},
    {TR_POST, "/v1/crm/mailings/{id}/cancel", crm_mailings_cancel, "crm.mailings.write", 0,
     "Cancel a mailing for good (scheduled, paused, or done with sends still waiting): no "
     "further run; recipients not yet sent become cancelled.",
     &crm_mailings, NULL, NULL},
    {TR_GET, "/v1/crm/mailings/{id}/recipients", crm_mailings_recipients, "crm.mailings.read",
     TR_PAGED,
     "Each run's recipients and what became of each: queued, sending, sent, failed (with the "
     "SMTP server's reply), skipped_unsubscribed, cancelled or interrupted.",
     NULL,
     "status=queued|sending|sent|failed|skipped_unsubscribed|cancelled|interrupted "
     "run=1..1000000000",
     crm_recipient_sorts},
    {TR_GET, "/v1/unsubscribe/{token}", crm_unsubscribe_page, NULL,
     TR_PUBLIC | TR_SECRET_PATH | TR_STATIC,
     "A mailing's unsubscribe link: a page with the one button that confirms.", NULL, NULL, NULL},
    {TR_POST, "/v1/unsubscribe/{token}", crm_unsubscribe_confirm, NULL,
     TR_PUBLIC | TR_SECRET_PATH | TR_STATIC,
     "One-click unsubscribe (RFC 8058): the address joins the tenant's unsubscribe list.", NULL,
     NULL, NULL},
    {TR_GET, "/v1/crm/reports/funnel", crm_reports_funnel, "crm.reports.read", 0,
     "Per stage of a pipeline: deals entered, still there, moved on, conversion; won/lost.", NULL,
     "pipeline_id from to", NULL},
    {TR_GET, "/v1/crm/reports/abc-xyz", crm_reports_abc_xyz, "crm.reports.read", 0,
     "Per client: revenue in the period, ABC class by revenue share, XYZ by monthly variation.",
     NULL, "from! to! currency!", NULL},
    {TR_GET, "/v1/crm/reports/managers", crm_reports_managers, "crm.reports.read", 0,
     "Per owner: leads, deals won and lost, revenue, conversion.", NULL, "from to", NULL},
    {TR_GET, "/v1/crm/reports/sources", crm_reports_sources, "crm.reports.read", 0,
     "Per channel and campaign: leads, deals, revenue, cost per lead.", NULL, "from to", NULL},
};

static const struct tr_job_handler jobs[] = {
    {.queue = "crm.reminders", .run = crm_task_reminder},
    {.queue = "crm.convert", .run = crm_convert_settle},
    {.queue = "crm.mailings.run", .run = crm_mailing_run},
    {.queue = "crm.mailings.send",
     .run = crm_mailing_send,
     .max_attempts_key = "mailing_max_attempts",
     .backoff_max_key = "mailing_backoff_max_ms"},
};

/* The permissions this module owns and the built-in roles holding each
 * (owner and admin hold all; "sales:own" holds the ":own" form). */
static const struct tr_permission permissions[] = {
    {"crm.leads.read", "manager sales:own"},
    {"crm.leads.write", "manager sales:own"},
    {"crm.clients.read", "manager sales accountant employee"},
    {"crm.clients.write", "manager sales:own"},
    {"crm.deals.read", "manager sales:own"},
    {"crm.deals.write", "manager sales:own"},
    {"crm.deals.import", ""},
    {"crm.interactions.read", "manager sales:own"},
    {"crm.interactions.write", "manager sales:own"},
    {"crm.tasks.read", "manager sales:own"},
    {"crm.tasks.write", "manager sales:own"},
    {"crm.campaigns.read", "manager sales"},
    {"crm.campaigns.write", "manager"},
    {"crm.claims.read", "manager sales:own"},
    {"crm.claims.write", "manager sales:own"},
    {"crm.reports.read", "manager accountant"},
    {"crm.settings.write", ""},
    {"crm.mailings.read", "manager sales"},
    {"crm.mailings.write", "manager"},
};

/* Its event topics and what reading each needs. */
static const struct tr_topic topics[] = {
    {"crm.leads", "crm.leads.read"},	 {"crm.deals", "crm.deals.read"},
    {"crm.clients", "crm.clients.read"}, {"crm.tasks", "crm.tasks.read"},
    {"crm.claims", "crm.claims.read"},
};

/* Its configuration keys (config.h). */
static const struct tr_config_key config[] = {
    {"crm_settle_after_ms", TR_CONFIG_INT, "60000", 500, 86400000,
     "A lead's conversion whose writer stopped after claiming the lead is completed (its "
     "client, contact and deal written) by a job this long after it began."},
    {"crm_report_max_months", TR_CONFIG_INT, "120", 1, 1200,
     "The longest period, in calendar months, the abc-xyz report takes (its XYZ reads one "
     "total per client and month; longer periods answer 422)."},
    {"inbound_rate_rps", TR_CONFIG_INT, "5", 1, 100000,
     "Posts a second one inbound source takes (token bucket per source)."},
    {"inbound_rate_burst", TR_CONFIG_INT, "20", 1, 1000000,
     "Bucket size of the per-source rate limit of inbound posts."},
    {"inbound_tolerance_s", TR_CONFIG_INT, "300", 10, 86400,
     "Seconds a signed inbound post's webhook-timestamp may be from now."},
    {"mailing_repeat_min_s", TR_CONFIG_INT, "3600", 1, 31536000,
     "The shortest period a repeating mailing may have, in seconds."},
    {"mailing_max_attempts", TR_CONFIG_INT, "8", 1, 100,
     "Sends of one mailing recipient before a temporary failure (4xx, no connection) counts "
     "as failed."},
    {"mailing_backoff_max_ms", TR_CONFIG_INT, "600000", 1, 86400000,
     "Longest wait between two sends of one mailing recipient (the wait doubles from "
     "job_backoff_ms)."},
};

const struct tr_module tr_crm_module = {
    .name = "crm",
    .permissions = permissions,
    .npermissions = sizeof(permissions) / sizeof(permissions[0]),
    .topics = topics,
    .ntopics = sizeof(topics) / sizeof(topics[0]),
    .routes = routes,
    .nroutes = sizeof(routes) / sizeof(routes[0]),
    .resources = resources,
    .nresources = sizeof(resources) / sizeof(resources[0]),
    .jobs = jobs,
    .njobs = sizeof(jobs) / sizeof(jobs[0]),
    .effects = crm_effects,
    .neffects = CRM_NEFFECTS,
    .config = config,
    .nconfig = sizeof(config) / sizeof(config[0]),
    .migrations = "modules/crm/migrations",
    .timeline = &crm_timeline,
};
