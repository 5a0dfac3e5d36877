/* Custom field definitions of the CRM (/v1/crm/fields): leads, clients and
 * deals opt in; the platform checks definitions and values (resource.h). */
#include "crm.h"

static const char *const entities[] = {"lead", "client", "deal", NULL};
static const char *const types[] = {"string", "number", "date", "bool", "enum", NULL};
static const char *const sorts[] = {"created_at", "-created_at", "key", NULL};

static const struct tr_field fields[] = {
    {"entity", TR_K_ENUM, TR_F_REQUIRED | TR_F_FIXED | TR_F_FILTER, 0, 0, entities, NULL},
    {"key", TR_K_LINE, TR_F_REQUIRED | TR_F_FIXED, 1, 40, NULL, NULL},
    {"label", TR_K_LINE, TR_F_REQUIRED, 1, 100, NULL, NULL},
    {"type", TR_K_ENUM, TR_F_REQUIRED | TR_F_FIXED, 0, 0, types, NULL},
    {"options", TR_K_STRINGS, TR_F_NULLABLE, 0, 100, NULL, NULL},
    {"required", TR_K_BOOL, 0, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

const struct tr_resource crm_fields = {
    .name = "custom_field",
    .coll = CRM_FIELDS,
    .path = "/v1/crm/fields",
    .read = "crm.leads.read",
    .write = "crm.settings.write",
    .about = "Custom field definitions; values in a lead's, client's or deal's \"custom\" "
	     "are checked against them.",
    .fields = fields,
    .sorts = sorts,
    .hook = tr_custom_def_hook,
    .deletable = true,
};
