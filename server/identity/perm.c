#include "perm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "module.h"

/* The catalogue, the built-in roles' permissions and the topics, built
 * once from what the modules declare (module.h: tr_permission, tr_topic).
 * Built on first use by whichever thread asks first; read-only after. */

#define MAX_PERMISSIONS 256
#define MAX_TOPICS 32
#define MAX_TOPIC_NEEDS 3

static const char *catalogue[MAX_PERMISSIONS + 1];
static size_t ncatalogue;

/* owner and admin hold everything (NULL); the others what modules grant */
static const char *role_grants[5][MAX_PERMISSIONS + 1];
static size_t ngranted[5];
static char *own_forms[MAX_PERMISSIONS]; /* "x:own" strings, owned here */
static size_t nown_forms;

static struct tr_builtin_role roles[] = {
    {"owner", NULL},
    {"admin", NULL},
    {"manager", role_grants[0]},
    {"sales", role_grants[1]},
    {"warehouse", role_grants[2]},
    {"accountant", role_grants[3]},
    {"employee", role_grants[4]},
};

static struct topic {
	const char *name;
	char needs[MAX_TOPIC_NEEDS][64];
	int nneeds;
} topics[MAX_TOPICS];
static int ntopics;

static pthread_once_t built = PTHREAD_ONCE_INIT;

static void
grant(const char *permission, const char *word, size_t len)
{
	bool own = len > 4 && memcmp(word + len - 4, ":own", 4) == 0;
	size_t rlen = own ? len - 4 : len;

	for (size_t r = 2; r < sizeof(roles) / sizeof(roles[0]); r++) {
		size_t i = r - 2;
		if (strlen(roles[r].name) != rlen || memcmp(roles[r].name, word, rlen) != 0)
			continue;
		if (ngranted[i] == MAX_PERMISSIONS)
			return;
		if (own) {
			char *p = malloc(strlen(permission) + 5);
			if (!p || nown_forms == MAX_PERMISSIONS) {
				free(p);
				return;
			}
			strcpy(p, permission);
			strcat(p, ":own");
			own_forms[nown_forms++] = p;
			role_grants[i][ngranted[i]++] = p;
		} else {
			role_grants[i][ngranted[i]++] = permission;
		}
		return;
	}
	tr_error("permission %s grants an unknown role %.*s", permission, (int)len, word);
}

static void
build(void)
{
	for (size_t m = 0; m < tr_nmodules; m++) {
		const struct tr_module *mod = tr_modules[m];
		for (size_t i = 0; i < mod->npermissions && ncatalogue < MAX_PERMISSIONS; i++) {
			const struct tr_permission *p = &mod->permissions[i];
			catalogue[ncatalogue++] = p->name;
			for (const char *w = p->roles; w && *w;) {
				size_t len = strcspn(w, " ");
				if (len)
					grant(p->name, w, len);
				w += len;
				w += *w == ' ';
			}
		}
		for (size_t i = 0; i < mod->ntopics && ntopics < MAX_TOPICS; i++) {
			struct topic *t = &topics[ntopics++];
			t->name = mod->topics[i].name;
			for (const char *w = mod->topics[i].needs; w && *w;) {
				size_t len = strcspn(w, " ");
				if (len && t->nneeds < MAX_TOPIC_NEEDS && len < sizeof(t->needs[0]))
					memcpy(t->needs[t->nneeds++], w, len);
				w += len;
				w += *w == ' ';
			}
		}
	}
}

static void
ensure_built(void)
{
	pthread_once(&built, build);
}

const char *const *
tr_permission_list(void)
{
	ensure_built();
	return catalogue;
}

size_t
tr_builtin_role_count(void)
{
	return sizeof(roles) / sizeof(roles[0]);
}

const struct tr_builtin_role *
tr_builtin_role_at(size_t i)
{
	ensure_built();
	return i < tr_builtin_role_count() ? &roles[i] : NULL;
}

const struct tr_builtin_role *
tr_builtin_role(const char *name)
{
	ensure_built();
	for (size_t i = 0; i < tr_builtin_role_count(); i++)
		if (strcmp(roles[i].name, name) == 0)
			return &roles[i];
	return NULL;
}

bool
tr_permission_valid(const char *p)
{
	size_t n = strlen(p);

	ensure_built();
	if (n > 4 && strcmp(p + n - 4, ":own") == 0)
		n -= 4;
	for (const char *const *k = catalogue; *k; k++)
		if (strlen(*k) == n && strncmp(*k, p, n) == 0)
			return true;
	return false;
}

bool
tr_permission_check(const char *granted, const char *required, bool *own_only)
{
	size_t rlen = strlen(required);
	bool own = false;

	*own_only = false;
	for (const char *p = granted; p && *p;) {
		const char *end = strchr(p, ' ');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == rlen && strncmp(p, required, rlen) == 0)
			return true; /* the full permission wins over :own */
		if (len == rlen + 4 && strncmp(p, required, rlen) == 0 &&
		    strncmp(p + rlen, ":own", 4) == 0)
			own = true;
		p = end ? end + 1 : NULL;
	}
	*own_only = own;
	return own;
}

bool
tr_role_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n < 2 || n > 40)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '_' || name[i] == '-'))
			return false;
	return true;
}

int
tr_topic_find(const char *name, size_t len)
{
	ensure_built();
	for (int i = 0; i < ntopics; i++)
		if (strlen(topics[i].name) == len && memcmp(topics[i].name, name, len) == 0)
			return i;
	return -1;
}

const char *
tr_topic_name(int topic)
{
	ensure_built();
	return topic >= 0 && topic < ntopics ? topics[topic].name : "";
}

bool
tr_topic_may_read(const char *perms, int topic, bool *own_only)
{
	ensure_built();
	*own_only = false;
	if (topic < 0 || topic >= ntopics)
		return false;
	for (int i = 0; i < topics[topic].nneeds; i++) {
		bool own;
		if (!tr_permission_check(perms, topics[topic].needs[i], &own))
			return false;
		*own_only |= own;
	}
	return true;
}
