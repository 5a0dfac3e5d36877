/* The registry: every module Trellis serves, in one table. A new module is
 * one line here. */
#include "module.h"

extern const struct tr_module tr_system_module;
extern const struct tr_module tr_identity_module;
extern const struct tr_module tr_webhooks_module;
extern const struct tr_module tr_crm_module;
extern const struct tr_module tr_erp_module;
extern const struct tr_module tr_bpm_module;
extern const struct tr_module tr_console_module;

const struct tr_module *const tr_modules[] = {
    &tr_system_module, &tr_identity_module, &tr_webhooks_module, &tr_crm_module,
    &tr_erp_module,    &tr_bpm_module,	    &tr_console_module,
};

const size_t tr_nmodules = sizeof(tr_modules) / sizeof(tr_modules[0]);
