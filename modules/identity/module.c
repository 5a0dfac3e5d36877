/* The identity module's surface, one row per endpoint (CONTRACT.md "Auth"). */
#include "identity.h"
#include "resource.h"

/* The orders of the lists below (their handlers sort by the route's). */
static const char *const by_created[] = {"-created_at", "created_at", NULL};
static const char *const by_created_or_name[] = {"-created_at", "created_at", "name", NULL};

static const struct tr_route routes[] = {
    {TR_POST, "/v1/signup", identity_signup, NULL, TR_PUBLIC | TR_JSON_BODY,
     "Create a tenant and its owner; returns tokens.", NULL, NULL, NULL},
    {TR_POST, "/v1/auth/login", identity_login, NULL, TR_PUBLIC | TR_JSON_BODY,
     "Sign in with tenant slug, email and password.", NULL, NULL, NULL},
    {TR_POST, "/v1/auth/refresh", identity_refresh, NULL, TR_PUBLIC | TR_JSON_BODY,
     "Exchange a refresh token for a new pair (the old one stops working).", NULL, NULL, NULL},
    {TR_POST, "/v1/auth/logout", identity_logout, NULL, 0, "End this session.", NULL, NULL, NULL},
    {TR_GET, "/v1/me", identity_me, NULL, TR_INLINE, "The caller, their tenant and permissions.",
     NULL, NULL, NULL},
    {TR_POST, "/v1/api-keys", apikeys_create, "system.api_keys.write", TR_JSON_BODY,
     "Create an API key; the key is in this response only.", NULL, NULL, NULL},
    {TR_GET, "/v1/api-keys", apikeys_list, "system.api_keys.read", TR_PAGED,
     "List API keys (no secrets).", NULL, NULL, by_created_or_name},
    {TR_DELETE, "/v1/api-keys/{id}", apikeys_delete, "system.api_keys.write", 0,
     "Revoke an API key.", NULL, NULL, NULL},
    {TR_GET, "/v1/audit", audit_list, "system.audit.read", TR_PAGED,
     "Who changed users, roles and API keys, newest first (?action).", NULL, "action", by_created},
    {TR_GET, "/v1/roles", roles_list, "system.roles.read", 0, "Built-in and custom roles.", NULL,
     NULL, NULL},
    {TR_POST, "/v1/roles", roles_create, "system.roles.write", TR_JSON_BODY,
     "Create a custom role.", NULL, NULL, NULL},
    {TR_PATCH, "/v1/roles/{name}", roles_update, "system.roles.write", TR_JSON_BODY,
     "Change a custom role's permissions.", NULL, NULL, NULL},
    {TR_DELETE, "/v1/roles/{name}", roles_delete, "system.roles.write", 0,
     "Delete a custom role no user holds.", NULL, NULL, NULL},
};

/* Passwords are read from standard input, never from argv. */
static const struct tr_command commands[] = {
    {"tenant", "create", cli_tenant_create, "--slug S --name N"},
    {"tenant", "list", cli_tenant_list, ""},
    {"tenant", "export", cli_tenant_export, "--tenant SLUG --out FILE"},
    {"tenant", "import", cli_tenant_import, "--file FILE [--replace]"},
    {"user", "create", cli_user_create,
     "--tenant SLUG --email E --name N [--role R]... < password"},
    {"user", "reset-password", cli_user_reset_password, "--tenant SLUG --email E < password"},
};

/* The permissions this module owns and the built-in roles holding each
 * (owner and admin hold all; "sales:own" holds the ":own" form). */
static const struct tr_permission permissions[] = {
    {"system.users.read", "manager"}, {"system.users.write", ""},   {"system.roles.read", ""},
    {"system.roles.write", ""},	      {"system.api_keys.read", ""}, {"system.api_keys.write", ""},
    {"system.audit.read", ""},
};

/* Its event topics and what reading each needs. */
static const struct tr_topic topics[] = {
    {"admin.users", "system.users.read system.roles.read system.api_keys.read"},
};

static const struct tr_resource *const resources[] = {&identity_users};

/* Its configuration keys (config.h): signup, login throttling and the
 * per-API-key rate limit (the tenant's and users' are the platform's). */
static const struct tr_config_key config[] = {
    {"signup_enabled", TR_CONFIG_INT, "1", 0, 1,
     "1: POST /v1/signup creates tenants; 0: it answers 403."},
    {"rate_limit_key_rps", TR_CONFIG_INT, "100", 1, 1000000,
     "Requests per second one API key may make."},
    {"rate_limit_key_burst", TR_CONFIG_INT, "200", 1, 10000000,
     "Bucket size of the per-API-key rate limit."},
    {"login_max_account_failures", TR_CONFIG_INT, "10", 1, 1000,
     "Failed logins for one account within the window before 429."},
    {"login_max_address_failures", TR_CONFIG_INT, "50", 1, 100000,
     "Failed logins from one address within the window before 429."},
    {"login_failure_window", TR_CONFIG_INT, "900", 10, 86400,
     "Seconds failed logins are counted for."},
};

const struct tr_module tr_identity_module = {
    .name = "identity",
    .authenticate_key = identity_authenticate_key,
    .users_with_role = identity_users_with_role,
    .permissions = permissions,
    .npermissions = sizeof(permissions) / sizeof(permissions[0]),
    .topics = topics,
    .ntopics = sizeof(topics) / sizeof(topics[0]),
    .routes = routes,
    .nroutes = sizeof(routes) / sizeof(routes[0]),
    .resources = resources,
    .nresources = sizeof(resources) / sizeof(resources[0]),
    .commands = commands,
    .ncommands = sizeof(commands) / sizeof(commands[0]),
    .config = config,
    .nconfig = sizeof(config) / sizeof(config[0]),
    .migrations = "modules/identity/migrations",
};
