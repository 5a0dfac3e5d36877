/* The CRM module (CONTRACT.md "CRM"). Every resource is a table
 * (`struct tr_resource`, resource.h) served by the platform's engine; the
 * files here hold the tables and what is the CRM's own: the lead status
 * flow's rules, conversion, deal stages and closing, the reports and their
 * totals. */
#ifndef TR_CRM_H
#define TR_CRM_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "jobs.h"
#include "module.h"
#include "resource.h"

/* The collection of custom field definitions (fields.c). */
#define CRM_FIELDS "crm_fields"
/* Questionnaires, the invitations sent for them and the answers taken,
 * one per invitation under its id (questionnaires.c,
 * questionnaire_links.c). */
#define CRM_QUESTIONNAIRES "questionnaires"
#define CRM_Q_INVITATIONS "questionnaire_invitations"
#define CRM_Q_ANSWERS "questionnaire_answers"

/* Actions and reports (routes of their own in module.c). */
void crm_leads_convert(struct tr_ctx *c);
void crm_deals_stage(struct tr_ctx *c);
void crm_deals_won(struct tr_ctx *c);
void crm_deals_lost(struct tr_ctx *c);
void crm_groups_members(struct tr_ctx *c);
/* POST /v1/inbound/{token} (inbound.c): a partner's post, made a lead. */
void crm_inbound_receive(struct tr_ctx *c);
/* Questionnaires: results; sending and listing invitations; the public
 * link's questions and answers. */
void crm_questionnaire_results(struct tr_ctx *c);
void crm_questionnaire_invite(struct tr_ctx *c);
void crm_questionnaire_invitations(struct tr_ctx *c);
void crm_questionnaire_link_show(struct tr_ctx *c);
void crm_questionnaire_link_answer(struct tr_ctx *c);
/* Checks answers (the body's object) against questionnaire's questions,
 * adding a field error ("answers.<key>") for each bad one, and appends
 * them as stored to out. */
bool crm_answers_check(struct tr_ctx *c, const bson_t *questionnaire, const bson_t *answers,
		       bson_t *out);
void crm_reports_funnel(struct tr_ctx *c);
void crm_reports_abc_xyz(struct tr_ctx *c);
void crm_reports_managers(struct tr_ctx *c);
void crm_reports_sources(struct tr_ctx *c);
void crm_reports_bcg(struct tr_ctx *c);
bool crm_pipeline_has_stage(const bson_t *pipeline, const char *stage);
int crm_task_reminder(const struct tr_job *job, char *err, size_t errlen);
/* Completes a lead's conversion whose writer stopped after the claim (leads.c). */
int crm_convert_settle(const struct tr_job *job, char *err, size_t errlen);

/* Mailings (mailings.c): actions, the recipients' list, the public
 * unsubscribe page and its one-click POST, and the run and send jobs. */
void crm_mailings_pause(struct tr_ctx *c);
void crm_mailings_resume(struct tr_ctx *c);
void crm_mailings_cancel(struct tr_ctx *c);
void crm_mailings_recipients(struct tr_ctx *c);
void crm_unsubscribe_page(struct tr_ctx *c);
void crm_unsubscribe_confirm(struct tr_ctx *c);
int crm_mailing_run(const struct tr_job *job, char *err, size_t errlen);
int crm_mailing_send(const struct tr_job *job, char *err, size_t errlen);
/* The sorts of a mailing's recipients list. */
extern const char *const crm_recipient_sorts[];

/* The CRM's part of a client's timeline (clients.c): its interactions,
 * deals and claims. */
extern const struct tr_timeline crm_timeline;

/* Resources (one file per part of the CRM). */
extern const struct tr_resource crm_leads, crm_clients, crm_contacts, crm_counterparties,
    crm_groups, crm_pipelines, crm_deals, crm_interactions, crm_tasks, crm_campaigns, crm_claims,
    crm_fields, crm_inbound_sources, crm_questionnaires, crm_mailings, crm_unsubscribes;

/* Report totals (totals.c): the effects of deals, leads and clients on
 * registers; CRM_NAMES counts each client's name changes. */
#define CRM_NAMES "crm.names"
#define CRM_NEFFECTS 3
extern const struct tr_effects crm_effects[CRM_NEFFECTS];
extern const size_t crm_neffects;
/* Appends to set what a deal made from lead keeps of it (_lcd, _lch, _lk:
 * its created day, channel and campaign; nulls without a lead). */
void crm_lead_snapshot(const bson_t *lead, bson_t *set);
/* Appends _xd, the day of set's closed_at, when set has one. */
void crm_deal_closed_day(bson_t *set);

/* The default pipeline of the tenant (created on first use). */
int crm_default_pipeline(struct tr_ctx *c, bson_t *out);
/* Starts a new deal's stage history (deals.c). */
void crm_deal_history_start(const bson_oid_t *by, bson_t *deal, const char *stage);

#endif
