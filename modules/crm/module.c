#include "crm.h"
#include "timeline.h"

#define J TR_JSON_BODY

/* The resources: each yields its list, create, get, change and delete
 * routes (resource.h). */
static const struct tr_resource *const resources[] = {
    &crm_leads,		  &crm_clients,	       &crm_counterparties, &crm_contacts,
    &crm_groups,	  &crm_pipelines,      &crm_deals,	    &crm_interactions,
    &crm_tasks,		  &crm_campaigns,      &crm_claims,	    &crm_fields,
    &crm_inbound_sources, &crm_questionnaires, &crm_mailings,	    &crm_unsubscribes,
};

static const char *const by_created[] = {"-created_at", "created_at", NULL};

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
    {TR_POST, "/v1/crm/questionnaires/{id}/invitations", crm_questionnaire_invite,
     "crm.questionnaires.write", J,
     "Send an open questionnaire to contacts: one invitation each, its token and link shown "
     "only in this answer.",
     &crm_questionnaires, NULL, NULL},
    {TR_GET, "/v1/crm/questionnaires/{id}/invitations", crm_questionnaire_invitations,
     "crm.questionnaires.read", TR_PAGED,
     "A questionnaire's invitations, newest first: status pending, answered or expired; never "
     "their tokens.",
     NULL, NULL, by_created},
    {TR_GET, "/v1/crm/questionnaires/{id}/results", crm_questionnaire_results,
     "crm.questionnaires.read", 0,
     "Per question: counts per option, a scale's distribution and exact mean, the latest text "
     "answers; invited and answered counts.",
     &crm_questionnaires, NULL, NULL},
    {TR_GET, "/v1/questionnaire-links/{token}", crm_questionnaire_link_show, NULL,
     TR_PUBLIC | TR_SECRET_PATH,
     "A contact's questionnaire link, no login: the title, intro and questions (409 once "
     "answered, expired or not open; rate limited).",
     NULL, NULL, NULL},
    {TR_POST, "/v1/questionnaire-links/{token}", crm_questionnaire_link_answer, NULL,
     TR_PUBLIC | J | TR_SECRET_PATH,
     "Answer a questionnaire link, no login: answers checked against the questions (422), "
     "each link taken once (409 after; rate limited).",
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
    {TR_GET, "/v1/crm/reports/bcg", crm_reports_bcg, "crm.reports.read", 0,
     "Per product or client group: revenue now and in the period before, growth, relative "
     "share, and the BCG quadrant (star, cash_cow, question_mark, dog).",
     NULL, "from! to! currency! group_by=product|client_group", NULL},
};

/* The bcg report's answer (report_bcg.c), for the OpenAPI document. */
#define MONEY_SCHEMA                                                                               \
	"{\"type\":\"object\",\"required\":[\"amount\",\"currency\"],\"properties\":{"             \
	"\"amount\":{\"type\":\"integer\"},\"currency\":{\"type\":\"string\"}}}"
#define TWO_REVENUES_SCHEMA "\"revenue\":" MONEY_SCHEMA ",\"previous_revenue\":" MONEY_SCHEMA
static const char bcg_schema[] =
    "{\"type\":\"object\",\"required\":[\"group_by\",\"currency\",\"from\",\"to\","
    "\"previous_from\",\"previous_to\",\"thresholds\",\"total\",\"previous_total\",\"items\"],"
    "\"properties\":{\"group_by\":{\"type\":\"string\",\"enum\":[\"product\",\"client_group\"]},"
    "\"currency\":{\"type\":\"string\"},\"from\":{\"type\":\"string\"},"
    "\"to\":{\"type\":\"string\"},\"previous_from\":{\"type\":\"string\"},"
    "\"previous_to\":{\"type\":\"string\"},"
    "\"thresholds\":{\"type\":\"object\",\"required\":[\"growth\",\"relative_share\"],"
    "\"properties\":{\"growth\":{\"type\":\"string\"},\"relative_share\":{\"type\":\"string\"}}},"
    "\"total\":" MONEY_SCHEMA ",\"previous_total\":" MONEY_SCHEMA ","
    "\"ungrouped\":{\"type\":\"object\",\"required\":[\"revenue\",\"previous_revenue\"],"
    "\"properties\":{" TWO_REVENUES_SCHEMA "}},"
    "\"items\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"name\","
    "\"revenue\",\"previous_revenue\",\"growth\",\"relative_share\",\"bcg\"],\"properties\":{"
    "\"product_id\":{\"type\":\"string\"},\"group_id\":{\"type\":\"string\"},"
    "\"name\":{\"type\":[\"string\",\"null\"]}," TWO_REVENUES_SCHEMA ","
    "\"growth\":{\"type\":[\"string\",\"null\"]},"
    "\"relative_share\":{\"type\":[\"string\",\"null\"]},"
    "\"bcg\":{\"type\":\"string\",\"enum\":[\"star\",\"cash_cow\",\"question_mark\",\"dog\"]}"
    "}}}}}";

/* The answers of the questionnaire routes (OpenAPI). */
#define QUESTION_TYPES "\"enum\":[\"single\",\"multiple\",\"scale\",\"text\"]"
#define COUNTED(field, type)                                                                       \
	"{\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"" field                \
	"\",\"count\"],\"properties\":{\"" field "\":{\"type\":\"" type                            \
	"\"},\"count\":{\"type\":\"integer\"}}}}"

static const char results_schema[] =
    "{\"type\":\"object\",\"required\":[\"questionnaire_id\",\"status\",\"invited\","
    "\"answered\",\"questions\"],\"properties\":{\"questionnaire_id\":{\"type\":\"string\"},"
    "\"status\":{\"enum\":[\"draft\",\"open\",\"closed\"]},\"invited\":{\"type\":\"integer\"},"
    "\"answered\":{\"type\":\"integer\"},\"questions\":{\"type\":\"array\",\"items\":{"
    "\"type\":\"object\",\"required\":[\"key\",\"type\",\"text\",\"answered\"],"
    "\"properties\":{\"key\":{\"type\":\"string\"},\"type\":{" QUESTION_TYPES "},"
    "\"text\":{\"type\":\"string\"},\"answered\":{\"type\":\"integer\"},"
    "\"options\":" COUNTED(
	"option", "string") ",\"min\":{\"type\":\"integer\"},"
			    "\"max\":{\"type\":\"integer\"},\"distribution\":" COUNTED(
				"value",
				"integer") ","
					   "\"mean\":{\"type\":[\"string\",\"null\"],"
					   "\"description\":\"exact, 4 decimals, "
					   "rounded half "
					   "up\"},\"latest\":{\"type\":\"array\",\"items\":{"
					   "\"type\":\"object\","
					   "\"required\":[\"answer_id\",\"at\",\"text\"],"
					   "\"properties\":{\"answer_id\":{"
					   "\"type\":\"string\"},\"at\":{\"type\":\"string\"},"
					   "\"text\":{\"type\":\"string\"}}}}}}}}}";

static const char link_schema[] =
    "{\"type\":\"object\",\"required\":[\"title\",\"intro\",\"questions\",\"expires_at\"],"
    "\"properties\":{\"title\":{\"type\":\"string\"},\"intro\":{\"type\":[\"string\","
    "\"null\"]},\"expires_at\":{\"type\":[\"string\",\"null\"]},\"questions\":{\"type\":"
    "\"array\",\"items\":{\"type\":\"object\",\"required\":[\"key\",\"text\",\"type\","
    "\"required\"],\"properties\":{\"key\":{\"type\":\"string\"},\"text\":{\"type\":"
    "\"string\"},\"type\":{" QUESTION_TYPES "},\"required\":{\"type\":\"boolean\"},"
    "\"options\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},\"min\":{\"type\":"
    "\"integer\"},\"max\":{\"type\":\"integer\"}}}}}}";

static const char receipt_schema[] =
    "{\"type\":\"object\",\"required\":[\"id\",\"status\",\"answered_at\"],\"properties\":{"
    "\"id\":{\"type\":\"string\"},\"status\":{\"const\":\"answered\"},\"answered_at\":{"
    "\"type\":\"string\"}}}";

static const char invitations_schema[] =
    "{\"type\":\"object\",\"required\":[\"items\"],\"properties\":{\"items\":{\"type\":"
    "\"array\",\"items\":{\"type\":\"object\",\"required\":[\"id\",\"questionnaire_id\","
    "\"client_id\",\"contact_id\",\"status\",\"token\",\"link\"],\"properties\":{\"id\":{"
    "\"type\":\"string\"},\"questionnaire_id\":{\"type\":\"string\"},\"client_id\":{\"type\":"
    "\"string\"},\"contact_id\":{\"type\":\"string\"},\"status\":{\"const\":\"pending\"},"
    "\"expires_at\":{\"type\":[\"string\",\"null\"]},\"answered_at\":{\"type\":\"null\"},"
    "\"token\":{\"type\":\"string\",\"description\":\"shown only here\"},\"link\":{"
    "\"type\":\"string\"}}}}}}";

static const struct tr_answer_schema answers[] = {
    {TR_GET, "/v1/crm/reports/bcg", "BcgReport", bcg_schema},
    {TR_GET, "/v1/crm/questionnaires/{id}/results", "QuestionnaireResults", results_schema},
    {TR_POST, "/v1/crm/questionnaires/{id}/invitations", "QuestionnaireInvitationsSent",
     invitations_schema},
    {TR_GET, "/v1/questionnaire-links/{token}", "QuestionnaireLink", link_schema},
    {TR_POST, "/v1/questionnaire-links/{token}", "QuestionnaireAnswered", receipt_schema},
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
    {"crm.questionnaires.read", "manager sales"},
    {"crm.questionnaires.write", "manager"},
    {"crm.settings.write", ""},
    {"crm.mailings.read", "manager sales"},
    {"crm.mailings.write", "manager"},
};

/* Its event topics and what reading each needs. */
static const struct tr_topic topics[] = {
    {"crm.leads", "crm.leads.read"},	 {"crm.deals", "crm.deals.read"},
    {"crm.clients", "crm.clients.read"}, {"crm.tasks", "crm.tasks.read"},
    {"crm.claims", "crm.claims.read"},	 {"crm.questionnaires", "crm.questionnaires.read"},
};

/* Its configuration keys (config.h). */
static const struct tr_config_key config[] = {
    {"crm_settle_after_ms", TR_CONFIG_INT, "60000", 500, 86400000,
     "A lead's conversion whose writer stopped after claiming the lead is completed (its "
     "client, contact and deal written) by a job this long after it began."},
    {"crm_report_max_months", TR_CONFIG_INT, "120", 1, 1200,
     "The longest period, in calendar months, the abc-xyz and bcg reports take (the XYZ "
     "reads one total per client and month; longer periods answer 422)."},
    {"crm_bcg_growth_high_bp", TR_CONFIG_INT, "1000", -10000, 1000000,
     "The bcg report's high growth, in basis points: an item whose revenue grew by at least "
     "this much over the period before (1000 = 10%) has high growth."},
    {"crm_bcg_share_high_bp", TR_CONFIG_INT, "10000", 1, 1000000,
     "The bcg report's high relative share, in basis points: an item whose revenue is at "
     "least this part of the largest other item's (10000 = 1.0, as large) has a high share."},
    {"inbound_rate_rps", TR_CONFIG_INT, "5", 1, 100000,
     "Posts a second one inbound source takes (token bucket per source)."},
    {"inbound_rate_burst", TR_CONFIG_INT, "20", 1, 1000000,
     "Bucket size of the per-source rate limit of inbound posts."},
    {"crm_questionnaire_max_questions", TR_CONFIG_INT, "50", 1, 100,
     "Questions a questionnaire holds at most (more: 422)."},
    {"crm_questionnaire_max_options", TR_CONFIG_INT, "20", 2, 50,
     "Options a choice question offers at most (more: 422)."},
    {"crm_questionnaire_text_max", TR_CONFIG_INT, "2000", 1, 100000,
     "Characters a text answer holds at most (more: 422)."},
    {"crm_questionnaire_max_invitations", TR_CONFIG_INT, "100", 1, 1000,
     "Contacts one POST .../invitations sends a questionnaire to at most."},
    {"crm_questionnaire_link_base", TR_CONFIG_STR, "", 0, 0,
     "What goes before /v1/questionnaire-links/<token> in an invitation's link (the public "
     "https://host the contacts reach); empty: the link is that path alone."},
    {"crm_questionnaire_link_rate_rps", TR_CONFIG_INT, "5", 1, 100000,
     "Requests a second one client address makes to questionnaire links (token bucket in "
     "Redis, across processes)."},
    {"crm_questionnaire_link_rate_burst", TR_CONFIG_INT, "60", 1, 1000000,
     "Bucket size of the per-address rate limit of questionnaire links."},
    {"crm_questionnaire_token_rate_rps", TR_CONFIG_INT, "1", 1, 100000,
     "Requests a second one questionnaire link takes (token bucket per link)."},
    {"crm_questionnaire_token_rate_burst", TR_CONFIG_INT, "10", 1, 1000000,
     "Bucket size of the per-link rate limit."},
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
    .answers = answers,
    .nanswers = sizeof(answers) / sizeof(answers[0]),
};
