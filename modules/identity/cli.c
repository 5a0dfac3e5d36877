/* Operator commands:
 *   trellis tenant create --slug S --name N
 *   trellis tenant list
 *   trellis user create --tenant S --email E --name N [--role R]...
 *   trellis user reset-password --tenant S --email E
 * Passwords are read from standard input (one line), never from argv, so
 * they do not show in `ps` or shell history. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "identity.h"
#include "perm.h"
#include "session.h"

#define MAX_ROLES 8

struct opts {
	const char *slug, *name, *email, *tenant;
	const char *roles[MAX_ROLES];
	int nroles;
};

static int
parse(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	for (int i = 0; i < argc; i += 2) { /* each option, then its value */
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v) {
			fprintf(stderr, "trellis: %s needs a value\n", argv[i]);
			return -1;
		}
		if (strcmp(argv[i], "--slug") == 0)
			o->slug = v;
		else if (strcmp(argv[i], "--name") == 0)
			o->name = v;
		else if (strcmp(argv[i], "--email") == 0)
			o->email = v;
		else if (strcmp(argv[i], "--tenant") == 0)
			o->tenant = v;
		else if (strcmp(argv[i], "--role") == 0 && o->nroles < MAX_ROLES)
			o->roles[o->nroles++] = v;
		else {
			fprintf(stderr, "trellis: unknown option %s\n", argv[i]);
			return -1;
		}
	}
	return 0;
}

/* Valid UTF-8 of min..max characters without control characters, as the
 * API requires of the same fields. */
static bool
text_ok(const char *s, size_t min, size_t max)
{
	size_t n = strlen(s), chars = 0;

	if (!bson_utf8_validate(s, n, false))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f)
			return false;
		chars += (ch & 0xC0) != 0x80;
	}
	return chars >= min && chars <= max;
}

/* One line from stdin, without its newline; 10..256 characters. */
static int
read_password(char *buf, size_t len)
{
	if (!fgets(buf, (int)len, stdin)) {
		fprintf(stderr, "trellis: the password is read from standard input\n");
		return -1;
	}
	buf[strcspn(buf, "\r\n")] = '\0';
	if (!text_ok(buf, 10, 256)) {
		sodium_memzero(buf, len);
		fprintf(stderr, "trellis: the password must be 10 to 256 characters\n");
		return -1;
	}
	return 0;
}

static int
fail(const char *what, int rc)
{
	fprintf(stderr, "trellis: %s: %s\n", what,
		rc == TR_EDUPLICATE ? "already exists" : tr_strerror(rc));
	return rc == TR_EUNAVAILABLE ? 1 : 2;
}

/* Points db at the tenant with this slug. */
static int
use_tenant(struct tr_db *db, const char *slug)
{
	bson_t filter = BSON_INITIALIZER, tenant;
	bson_iter_t it;
	int rc;

	BSON_APPEND_UTF8(&filter, "slug", slug);
	rc = tr_db_find_global(db, TENANTS, &filter, &tenant);
	if (rc == TR_OK && bson_iter_init_find(&it, &tenant, "_id") && BSON_ITER_HOLDS_OID(&it))
		tr_db_set_tenant(db, bson_iter_oid(&it));
	bson_destroy(&filter);
	bson_destroy(&tenant);
	return rc;
}

int
cli_tenant_create(int argc, char **argv)
{
	struct opts o;
	bson_t fields = BSON_INITIALIZER, stored;
	bson_oid_t tid;
	char hex[25];
	int rc;

	if (parse(argc, argv, &o) != 0 || !o.slug || !o.name) {
		fprintf(stderr, "usage: trellis tenant create --slug S --name N\n");
		bson_destroy(&fields);
		return 2;
	}
	if (!text_ok(o.name, 1, 100)) {
		fprintf(stderr, "trellis: --name must be 1 to 100 characters of valid UTF-8, "
				"without control characters\n");
		bson_destroy(&fields);
		return 2;
	}
	struct tr_db *db = tr_db_open(NULL);
	bson_oid_init(&tid, NULL);
	bson_oid_to_string(&tid, hex);
	tr_db_set_tenant(db, &tid);
	BSON_APPEND_OID(&fields, "_id", &tid);
	BSON_APPEND_UTF8(&fields, "name", o.name);
	BSON_APPEND_UTF8(&fields, "slug", o.slug);
	rc = strlen(o.slug) >= 3 && strlen(o.slug) <= 40 &&
		     strspn(o.slug, "abcdefghijklmnopqrstuvwxyz0123456789-") == strlen(o.slug)
		 ? tr_db_insert(db, TENANTS, &fields, &stored)
		 : (bson_init(&stored), TR_EINVALID);
	bson_destroy(&stored);
	bson_destroy(&fields);
	tr_db_close(db);
	if (rc != TR_OK)
		return fail(rc == TR_EINVALID ? "slug must be 3 to 40 of a-z, 0-9 and -"
					      : "tenant create",
			    rc);
	printf("%s\n", hex);
	return 0;
}

/* One line of `trellis tenant list`: id, slug and name. */
static int
print_tenant(void *arg, const bson_t *tenant)
{
	bson_iter_t it;
	char hex[25] = "";
	const char *slug = "", *name = "";
	(void)arg;

	if (bson_iter_init_find(&it, tenant, "_id") && BSON_ITER_HOLDS_OID(&it))
		bson_oid_to_string(bson_iter_oid(&it), hex);
	if (bson_iter_init_find(&it, tenant, "slug") && BSON_ITER_HOLDS_UTF8(&it))
		slug = bson_iter_utf8(&it, NULL);
	if (bson_iter_init_find(&it, tenant, "name") && BSON_ITER_HOLDS_UTF8(&it))
		name = bson_iter_utf8(&it, NULL);
	printf("%s\t%s\t%s\n", hex, slug, name);
	return TR_OK;
}

int
cli_tenant_list(int argc, char **argv)
{
	struct tr_db *db = NULL;
	bson_t filter = BSON_INITIALIZER;
	int rc = 0;
	(void)argv;

	if (argc != 0) {
		fprintf(stderr, "usage: trellis tenant list\n");
		rc = 2;
		goto out;
	}
	db = tr_db_open(NULL);
	rc = db ? tr_db_each_global(db, TENANTS, &filter, "slug", print_tenant, NULL) : TR_ENOMEM;
	if (rc != TR_OK) {
		fprintf(stderr, "trellis: tenant list: %s\n", tr_strerror(rc));
		rc = 1;
	}
out:
	bson_destroy(&filter);
	tr_db_close(db);
	return rc;
}

int
cli_user_create(int argc, char **argv)
{
	struct opts o;
	char password[1100], hash[crypto_pwhash_STRBYTES], hex[25];
	bson_t fields = BSON_INITIALIZER, stored = BSON_INITIALIZER, roles;
	struct tr_db *db = NULL;
	int rc = 2;

	if (parse(argc, argv, &o) != 0 || !o.tenant || !o.email || !o.name) {
		fprintf(stderr, "usage: trellis user create --tenant SLUG --email E --name N "
				"[--role R]... < password\n");
		goto out;
	}
	char email[256];
	if (!identity_email_normalize(o.email, email, sizeof(email))) {
		fprintf(stderr, "trellis: --email is not an email address\n");
		goto out;
	}
	if (!text_ok(o.name, 1, 100)) {
		fprintf(stderr, "trellis: --name must be 1 to 100 characters of valid UTF-8, "
				"without control characters\n");
		goto out;
	}
	for (int i = 0; i < o.nroles; i++)
		if (!tr_builtin_role(o.roles[i])) {
			fprintf(stderr, "trellis: %s is not a built-in role\n", o.roles[i]);
			goto out;
		}
	if (read_password(password, sizeof(password)) != 0)
		goto out;
	bool hashed = identity_hash_password(password, hash);
	sodium_memzero(password, sizeof(password));
	if (!hashed)
		goto out;
	db = tr_db_open(NULL);
	rc = use_tenant(db, o.tenant);
	if (rc != TR_OK) {
		rc = fail("no tenant with that slug", rc);
		goto out;
	}
	BSON_APPEND_UTF8(&fields, "email", email);
	BSON_APPEND_UTF8(&fields, "name", o.name);
	BSON_APPEND_ARRAY_BEGIN(&fields, "roles", &roles);
	if (o.nroles == 0)
		BSON_APPEND_UTF8(&roles, "0", "employee");
	for (int i = 0; i < o.nroles; i++) {
		char key[8];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_UTF8(&roles, k, o.roles[i]);
	}
	bson_append_array_end(&fields, &roles);
	BSON_APPEND_BOOL(&fields, "active", true);
	BSON_APPEND_UTF8(&fields, "_password", hash);
	bson_destroy(&stored);
	rc = tr_db_insert(db, USERS, &fields, &stored);
	if (rc != TR_OK) {
		rc = fail("user create", rc);
		goto out;
	}
	bson_iter_t it;
	bson_iter_init_find(&it, &stored, "_id");
	bson_oid_to_string(bson_iter_oid(&it), hex);
	printf("%s\n", hex);
	rc = 0;
out:
	sodium_memzero(hash, sizeof(hash));
	bson_destroy(&fields);
	bson_destroy(&stored);
	if (db)
		tr_db_close(db);
	return rc;
}

int
cli_user_reset_password(int argc, char **argv)
{
	struct opts o;
	char password[1100], hash[crypto_pwhash_STRBYTES], hex[25];
	bson_t filter = BSON_INITIALIZER, user = BSON_INITIALIZER, set = BSON_INITIALIZER, out;
	struct tr_db *db = NULL;
	bson_iter_t it;
	int rc = 2;

	if (parse(argc, argv, &o) != 0 || !o.tenant || !o.email) {
		fprintf(stderr,
			"usage: trellis user reset-password --tenant SLUG --email E < password\n");
		goto done;
	}
	char email[256];
	if (!identity_email_normalize(o.email, email, sizeof(email))) {
		fprintf(stderr, "trellis: --email is not an email address\n");
		goto done;
	}
	if (read_password(password, sizeof(password)) != 0)
		goto done;
	bool hashed = identity_hash_password(password, hash);
	sodium_memzero(password, sizeof(password));
	if (!hashed)
		goto done;
	db = tr_db_open(NULL);
	rc = use_tenant(db, o.tenant);
	if (rc != TR_OK) {
		rc = fail("no tenant with that slug", rc);
		goto done;
	}
	BSON_APPEND_UTF8(&filter, "email", email);
	bson_destroy(&user);
	rc = tr_db_find_one(db, USERS, &filter, &user);
	if (rc != TR_OK) {
		rc = fail("no user with that email", rc);
		goto done;
	}
	bson_iter_init_find(&it, &user, "_id");
	bson_oid_to_string(bson_iter_oid(&it), hex);
	BSON_APPEND_UTF8(&set, "_password", hash);
	rc = tr_db_update(db, USERS, hex, -1, &set, NULL, &out);
	bson_destroy(&out);
	if (rc != TR_OK) {
		rc = fail("reset-password", rc);
		goto done;
	}
	/* A new password ends the sessions opened with the old one. */
	bson_iter_init_find(&it, &user, "tenant_id");
	char tid[25];
	bson_oid_to_string(bson_iter_oid(&it), tid);
	if (tr_sessions_revoke_user(tid, hex) != TR_OK)
		fprintf(stderr, "trellis: password changed, but sessions could not be ended (Redis "
				"unavailable)\n");
	printf("password changed for %s\n", hex);
	rc = 0;
done:
	sodium_memzero(hash, sizeof(hash));
	bson_destroy(&filter);
	bson_destroy(&user);
	bson_destroy(&set);
	if (db)
		tr_db_close(db);
	return rc;
}
