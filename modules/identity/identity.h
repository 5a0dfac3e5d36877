/* Identity: signup, login, sessions, users and roles (CONTRACT.md "Auth").
 * Platform code: it creates tenants and finds them by slug, so besides the
 * tenant-scoped calls it uses db.h's platform section (tr_db_open,
 * tr_db_set_tenant, tr_db_find_global, ...) and the session store. */
#ifndef TR_IDENTITY_H
#define TR_IDENTITY_H

#include <stdbool.h>

#include "module.h"

#define USERS "users"
#define TENANTS "tenants"
#define ROLES "roles"

void identity_signup(struct tr_ctx *c);
void identity_login(struct tr_ctx *c);
void identity_refresh(struct tr_ctx *c);
void identity_logout(struct tr_ctx *c);
void identity_me(struct tr_ctx *c);

struct tr_resource;
extern const struct tr_resource identity_users; /* users.c */

/* The platform's API-key hook (tr_module.authenticate_key): resolves
 * X-API-Key into the principal, or sets 401/503 and returns non-zero. */
int identity_authenticate_key(struct tr_db *db, struct tr_ctx *c, const char *key);
void apikeys_create(struct tr_ctx *c);
void apikeys_list(struct tr_ctx *c);
void apikeys_delete(struct tr_ctx *c);
void audit_list(struct tr_ctx *c);

/* Records a change in the audit log (worker thread). */
void identity_audit(struct tr_ctx *c, const char *action, const char *target_type,
		    const char *target_id);

void roles_list(struct tr_ctx *c);
void roles_create(struct tr_ctx *c);
void roles_update(struct tr_ctx *c);
void roles_delete(struct tr_ctx *c);

/* Operator commands (cli.c); each returns the exit code. */
int cli_tenant_create(int argc, char **argv);
int cli_tenant_list(int argc, char **argv);
int cli_user_create(int argc, char **argv);
int cli_user_reset_password(int argc, char **argv);
int cli_tenant_export(int argc, char **argv);
int cli_tenant_import(int argc, char **argv);

/* Shared helpers (common.c). */

/* Trims and lower-cases an email into e (cap bytes); false if it is not
 * an email address. */
bool identity_email_normalize(const char *raw, char *e, size_t cap);
/* The same, into the request arena; NULL if it is not one. */
char *identity_email(struct tr_ctx *c, const char *raw);
/* Validates a password field (10..256 characters); adds the field error. */
bool identity_password(struct tr_ctx *c, const char *field, bool required, const char **out);
/* Argon2id hash (libsodium crypto_pwhash_str); false when out of memory. */
bool identity_hash_password(const char *password, char *hash);
/* The space-separated permissions of a user's roles, sorted (malloc'd). */
int identity_permissions(struct tr_db *db, const bson_t *user, char **perms);
/* The /v1/me document of a user as JSON (malloc'd). */
char *identity_me_json(const bson_t *user, const bson_t *tenant, const char *perms);
/* Recomputes and stores the permissions and /v1/me of a user's sessions,
 * or ends them when the user is inactive. */
int identity_refresh_sessions(struct tr_db *db, const bson_t *user);
/* Does every name in set's "roles" (strings, when there) name a role that
 * exists, built in or the tenant's own? Adds field errors. */
bool identity_roles_known(struct tr_ctx *c, const bson_t *set);
/* True when the user document holds the role. */
bool identity_has_role(const bson_t *user, const char *role);
/* The active users holding role (tr_module.users_with_role). */
int identity_users_with_role(struct tr_db *db, const char *role, char (*out)[25], int max);

#endif
