/* The BPM (CONTRACT.md "BPM") module. So far it declares what it owns - its permissions, with
 * the built-in roles that hold them, and its event topics - so that roles
 * and API keys can be defined before its resources are served. */
#include "module.h"

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
};

const struct tr_module tr_bpm_module = {
    .name = "bpm",
    .permissions = permissions,
    .npermissions = sizeof(permissions) / sizeof(permissions[0]),
    .topics = topics,
    .ntopics = sizeof(topics) / sizeof(topics[0]),
};
