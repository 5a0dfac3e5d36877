/* Permissions and roles. A permission is "module.resource.action",
 * optionally with ":own" to limit it to records the user owns. Modules
 * declare the permissions they own, the built-in roles holding each, and
 * their event topics (module.h); this file names no module. Roles are
 * named sets of permissions: seven built in (documented in README), plus
 * a tenant's own. Any thread. */
#ifndef TR_PERM_H
#define TR_PERM_H

#include <stdbool.h>
#include <stddef.h>

/* Every permission Trellis knows, NULL-terminated. */
const char *const *tr_permission_list(void);

struct tr_builtin_role {
	const char *name;
	const char *const *permissions; /* NULL-terminated; NULL: all permissions */
};
size_t tr_builtin_role_count(void);
/* The i-th built-in role (0 <= i < tr_builtin_role_count()). */
const struct tr_builtin_role *tr_builtin_role_at(size_t i);

const struct tr_builtin_role *tr_builtin_role(const char *name);

/* True for a known permission, with or without ":own". */
bool tr_permission_valid(const char *p);

/* Checks `required` against a space-separated grant list. Returns true when
 * granted; *own_only is set when only the ":own" form is held. */
bool tr_permission_check(const char *granted, const char *required, bool *own_only);

/* True for a role name of [a-z0-9_-]{2,40}. */
bool tr_role_name_valid(const char *name);

/* Event topics (at most 32): the index of a topic name, or -1. */
int tr_topic_find(const char *name, size_t len);

/* The name of topic (tr_topic_find's index); "" for none. */
const char *tr_topic_name(int topic);
/* May these permissions read the topic? *own_only when only as ":own". */
bool tr_topic_may_read(const char *perms, int topic, bool *own_only);

#endif
