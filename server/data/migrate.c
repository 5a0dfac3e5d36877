#include "migrate.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dbpool.h"
#include "log.h"
#include "module.h"
#include "pg.h"
#include "util.h"

#define COLL "_migrations"
#define STALE_MS (60LL * 1000)
#define WAIT_MS 200
#define MAX_FILES 1000
#define MAX_FILE_BYTES (4 * 1024 * 1024)
#define PG_SUFFIX "@postgresql"

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
migration_name(const char *n)
{
	size_t len = strlen(n);

	if (len < 11 || strcmp(n + len - 5, ".json") != 0 || n[4] != '_')
		return false;
	for (int i = 0; i < 4; i++)
		if (n[i] < '0' || n[i] > '9')
			return false;
	for (size_t i = 5; i < len - 5; i++)
		if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= '0' && n[i] <= '9') || n[i] == '_'))
			return false;
	return true;
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;

	if (!f)
		return NULL;
	buf = malloc(MAX_FILE_BYTES + 1);
	if (buf) {
		*len = fread(buf, 1, MAX_FILE_BYTES + 1, f);
		if (*len > MAX_FILE_BYTES || ferror(f)) {
			free(buf);
			buf = NULL;
		} else {
			buf[*len] = '\0';
		}
	}
	fclose(f);
	return buf;
}

/* A step for the PostgreSQL behind FerretDB (pg.h), not a database command. */
static bool
pg_step(const bson_t *cmd)
{
	bson_iter_t it;

	return bson_iter_init(&it, cmd) && bson_iter_next(&it) &&
	       strcmp(bson_iter_key(&it), "postgresqlIndexes") == 0;
}

/* FerretDB creates a collection's table on first use; a PostgreSQL step
 * may come before any. */
static int
create_collection(void *arg, const char *coll)
{
	bson_t cmd = BSON_INITIALIZER;
	bson_error_t error;
	bool ok;

	BSON_APPEND_UTF8(&cmd, "create", coll);
	ok = mongoc_database_command_simple(arg, &cmd, NULL, NULL, &error);
	bson_destroy(&cmd);
	return ok || error.code == 48 /* NamespaceExists */ ? 0 : -1;
}

/* Does the migration have steps for PostgreSQL? */
static bool
has_pg_steps(const bson_t *file)
{
	bson_iter_t it, cmds;

	if (!bson_iter_init_find(&it, file, "commands") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &cmds))
		return false;
	while (bson_iter_next(&cmds)) {
		const uint8_t *data;
		uint32_t len;
		bson_t cmd;
		if (!BSON_ITER_HOLDS_DOCUMENT(&cmds))
			continue;
		bson_iter_document(&cmds, &len, &data);
		if (bson_init_static(&cmd, data, len) && pg_step(&cmd))
			return true;
	}
	return false;
}

/* Runs one database command; 0, or -1 with err filled. */
static int
run_command(mongoc_database_t *db, const bson_t *cmd, const char *name, int i, char *err,
	    size_t errlen)
{
	bson_t reply;
	bson_error_t error;
	bson_iter_t w;

	bool ok = mongoc_database_command_simple(db, cmd, NULL, &reply, &error);
	/* Write commands answer ok: 1 and list their failures. */
	bool write_failed = ok && (bson_iter_init_find(&w, &reply, "writeErrors") ||
				   bson_iter_init_find(&w, &reply, "writeConcernError"));
	bson_destroy(&reply);
	if (!ok) {
		snprintf(err, errlen, "migration %s: command %d failed: %s", name, i,
			 error.message);
		return -1;
	}
	if (write_failed) {
		snprintf(err, errlen, "migration %s: command %d reported write errors", name, i);
		return -1;
	}
	return 0;
}

/* Runs one database step of a migration. A createIndexes naming several
 * indexes is sent one index at a time: FerretDB v1.24 drops the connection
 * (its handler panics) on a createIndexes naming two or more indexes that
 * exist already, which is what running a step again does - a claim taken
 * over from a process that died, or a moved step whose old migration a
 * database had applied. One index that exists is a no-op on FerretDB and
 * MongoDB alike, so steps stay safe to run twice. */
static int
run_step(mongoc_database_t *db, const bson_t *cmd, const char *name, int i, char *err,
	 size_t errlen)
{
	bson_iter_t it, indexes;
	uint32_t n = 0;
	int rc = 0;

	if (!bson_iter_init(&it, cmd) || !bson_iter_next(&it) ||
	    strcmp(bson_iter_key(&it), "createIndexes") != 0 ||
	    !bson_iter_init_find(&it, cmd, "indexes") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &indexes))
		return run_command(db, cmd, name, i, err, errlen);
	while (bson_iter_next(&indexes))
		n++;
	if (n < 2)
		return run_command(db, cmd, name, i, err, errlen);
	bson_iter_recurse(&it, &indexes);
	while (rc == 0 && bson_iter_next(&indexes)) {
		bson_t one = BSON_INITIALIZER, list;
		bson_copy_to_excluding_noinit(cmd, &one, "indexes", NULL);
		BSON_APPEND_ARRAY_BEGIN(&one, "indexes", &list);
		BSON_APPEND_VALUE(&list, "0", bson_iter_value(&indexes));
		bson_append_array_end(&one, &list);
		rc = run_command(db, &one, name, i, err, errlen);
		bson_destroy(&one);
	}
	return rc;
}

/* Runs the commands of one migration, in order: the database commands, or
 * (pg_only) the PostgreSQL steps. */
static int
apply(const struct tr_config *cfg, mongoc_database_t *db, const char *name, const bson_t *file,
      bool pg_only, char *err, size_t errlen)
{
	bson_iter_t it, cmds;
	int i = 0;

	if (!bson_iter_init_find(&it, file, "commands") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &cmds)) {
		snprintf(err, errlen, "migration %s: \"commands\" must be an array", name);
		return -1;
	}
	while (bson_iter_next(&cmds)) {
		const uint8_t *data;
		uint32_t len;
		bson_t cmd;

		if (!BSON_ITER_HOLDS_DOCUMENT(&cmds)) {
			snprintf(err, errlen, "migration %s: command %d is not an object", name, i);
			return -1;
		}
		bson_iter_document(&cmds, &len, &data);
		bson_init_static(&cmd, data, len);
		if (pg_step(&cmd) != pg_only) {
			i++;
			continue;
		}
		if (pg_only) {
			char why[512];
			if (tr_pg_equality_indexes(cfg, cfg->mongo_db, &cmd, create_collection, db,
						   why, sizeof(why)) != 0) {
				snprintf(err, errlen, "migration %s: command %d failed: %s", name,
					 i, why);
				return -1;
			}
		} else if (run_step(db, &cmd, name, i, err, errlen) != 0) {
			return -1;
		}
		i++;
	}
	return 0;
}

/* Is this the name of a migration's PostgreSQL steps ("<name>@postgresql")? */
static bool
pg_record(const char *name)
{
	size_t len = strlen(name), suffix = strlen(PG_SUFFIX);

	return len > suffix && strcmp(name + len - suffix, PG_SUFFIX) == 0;
}

/* A migration that carries steps moved out of migrations some databases
 * have applied already (a module's own, split out of the platform's shared
 * files) names those in "replaces", as recorded:
 *
 *     "replaces": ["0005_crm", "0006_exact_and_indexed",
 *                  "0006_exact_and_indexed@postgresql"]
 *
 * A database that recorded all of them as done has its steps: its database
 * commands when every plain name is done, its PostgreSQL steps (pg_only)
 * when every "@postgresql" name is (none listed: they run). Such a
 * migration is recorded without running, so an upgrade rebuilds nothing;
 * its steps are safe to run twice all the same, which is what happens on a
 * database that applied only some of the replaced ones. Sets *done and
 * appends the names it checked to `names`; -1 with err filled (and *fatal)
 * when "replaces" is not a list of names, or _migrations cannot be read. */
static int
replaced_done(mongoc_collection_t *coll, const char *name, const bson_t *file, bool pg_only,
	      bson_t *names, bool *done, char *err, size_t errlen, int *fatal)
{
	bson_t filter = BSON_INITIALIZER, in;
	bson_iter_t it, list;
	bson_error_t error;
	uint32_t want = 0;
	int rc = -1;

	*done = false;
	if (!bson_iter_init_find(&it, file, "replaces")) {
		rc = 0;
		goto out;
	}
	if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &list)) {
		snprintf(err, errlen, "migration %s: \"replaces\" must be an array of names", name);
		*fatal = 1;
		goto out;
	}
	while (bson_iter_next(&list)) {
		char key[16];
		const char *replaced;
		if (!BSON_ITER_HOLDS_UTF8(&list)) {
			snprintf(err, errlen,
				 "migration %s: \"replaces\" must be an array of names", name);
			*fatal = 1;
			goto out;
		}
		replaced = bson_iter_utf8(&list, NULL);
		if (pg_record(replaced) != pg_only)
			continue;
		bson_snprintf(key, sizeof(key), "%u", want++);
		bson_append_utf8(names, key, -1, replaced, -1);
	}
	if (want == 0) {
		rc = 0;
		goto out;
	}
	BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &in);
	BSON_APPEND_ARRAY(&in, "$in", names);
	bson_append_document_end(&filter, &in);
	BSON_APPEND_UTF8(&filter, "state", "done");
	int64_t have = mongoc_collection_count_documents(coll, &filter, NULL, NULL, NULL, &error);
	if (have < 0) {
		snprintf(err, errlen, "reading %s: %s", COLL, error.message);
		goto out;
	}
	*done = have == (int64_t)want;
	rc = 0;
out:
	bson_destroy(&filter);
	return rc;
}

/* Claims, applies and records one migration (pg_only: its PostgreSQL
 * steps, recorded as "<name>@postgresql", so that pointing Trellis at the
 * PostgreSQL behind FerretDB later still builds them once). A migration
 * whose "replaces" are all done is recorded as done without running. */
static int
migrate_one(const struct tr_config *cfg, mongoc_database_t *db, mongoc_collection_t *coll,
	    const char *name, const char *sum, const bson_t *file, bool pg_only, char *err,
	    size_t errlen, int *fatal)
{
	bson_t filter = BSON_INITIALIZER;
	bson_error_t error;
	int rc = -1;

	BSON_APPEND_UTF8(&filter, "_id", name);
	for (;;) {
		const bson_t *rec;
		bson_iter_t it;
		mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
		bool have = mongoc_cursor_next(cur, &rec);
		char state[16] = "", recsum[65] = "";
		int64_t started = 0;

		if (have) {
			if (bson_iter_init_find(&it, rec, "state") && BSON_ITER_HOLDS_UTF8(&it))
				snprintf(state, sizeof(state), "%s", bson_iter_utf8(&it, NULL));
			if (bson_iter_init_find(&it, rec, "checksum") && BSON_ITER_HOLDS_UTF8(&it))
				snprintf(recsum, sizeof(recsum), "%s", bson_iter_utf8(&it, NULL));
			if (bson_iter_init_find(&it, rec, "started_at") &&
			    BSON_ITER_HOLDS_DATE_TIME(&it))
				started = bson_iter_date_time(&it);
		} else if (mongoc_cursor_error(cur, &error)) {
			mongoc_cursor_destroy(cur);
			snprintf(err, errlen, "reading %s: %s", COLL, error.message);
			goto out;
		}
		mongoc_cursor_destroy(cur);

		if (have && strcmp(state, "done") == 0) {
			if (strcmp(recsum, sum) != 0) {
				snprintf(err, errlen,
					 "migration %s was changed after it was applied (checksum "
					 "%.12s, file %.12s): "
					 "restore it and add a new migration instead",
					 name, recsum, sum);
				*fatal = 1;
				goto out;
			}
			rc = 0;
			goto out;
		}
		if (!have) {
			bson_t doc = BSON_INITIALIZER, replaced = BSON_INITIALIZER;
			bool covered;
			if (replaced_done(coll, name, file, pg_only, &replaced, &covered, err,
					  errlen, fatal) != 0) {
				bson_destroy(&replaced);
				goto out;
			}
			BSON_APPEND_UTF8(&doc, "_id", name);
			BSON_APPEND_UTF8(&doc, "checksum", sum);
			BSON_APPEND_UTF8(&doc, "state", covered ? "done" : "applying");
			BSON_APPEND_DATE_TIME(&doc, "started_at", tr_now_ms());
			if (covered) {
				BSON_APPEND_DATE_TIME(&doc, "finished_at", tr_now_ms());
				BSON_APPEND_ARRAY(&doc, "covered_by", &replaced);
			}
			bool ok = mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error);
			bson_destroy(&doc);
			bson_destroy(&replaced);
			if (!ok) {
				if (tr_db_err_from_mongoc(&error) == TR_EDUPLICATE)
					continue; /* another process claimed it first */
				snprintf(err, errlen, "claiming %s: %s", name, error.message);
				goto out;
			}
			if (covered) {
				tr_info("migrations: %s was applied before, as the migrations it "
					"replaces",
					name);
				rc = 0;
				goto out;
			}
		} else if (started < tr_now_ms() - STALE_MS) {
			/* the claimant died: take the claim over */
			bson_t take = BSON_INITIALIZER, upd = BSON_INITIALIZER, set, reply;
			BSON_APPEND_UTF8(&take, "_id", name);
			BSON_APPEND_UTF8(&take, "state", "applying");
			BSON_APPEND_DATE_TIME(&take, "started_at", started);
			BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
			BSON_APPEND_DATE_TIME(&set, "started_at", tr_now_ms());
			BSON_APPEND_UTF8(&set, "checksum", sum);
			bson_append_document_end(&upd, &set);
			bool ok =
			    mongoc_collection_update_one(coll, &take, &upd, NULL, &reply, &error);
			bool took = ok && bson_iter_init_find(&it, &reply, "modifiedCount") &&
				    bson_iter_as_int64(&it) == 1;
			bson_destroy(&reply);
			bson_destroy(&take);
			bson_destroy(&upd);
			if (!took)
				continue;
		} else {
			usleep(WAIT_MS * 1000); /* another process is applying it */
			continue;
		}

		/* Ours to apply. */
		tr_info("migrations: applying %s", name);
		if (apply(cfg, db, name, file, pg_only, err, errlen) != 0) {
			mongoc_collection_delete_one(coll, &filter, NULL, NULL, NULL);
			goto out;
		}
		bson_t upd = BSON_INITIALIZER, set;
		BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
		BSON_APPEND_UTF8(&set, "state", "done");
		BSON_APPEND_DATE_TIME(&set, "finished_at", tr_now_ms());
		bson_append_document_end(&upd, &set);
		bool ok = mongoc_collection_update_one(coll, &filter, &upd, NULL, NULL, &error);
		bson_destroy(&upd);
		if (!ok) {
			snprintf(err, errlen, "recording %s: %s", name, error.message);
			goto out;
		}
		rc = 0;
		goto out;
	}
out:
	bson_destroy(&filter);
	return rc;
}

/* Applies the migrations in dir, in file-name order, each recorded as
 * prefix + its name ("0001_platform" for the platform's, "crm/0001_crm"
 * for a module's); `what` names the folder in errors. */
static int
migrate_dir(const struct tr_config *cfg, mongoc_database_t *db, mongoc_collection_t *coll,
	    const char *what, const char *dir_path, const char *prefix, char *err, size_t errlen,
	    int *fatal)
{
	DIR *dir;
	struct dirent *de;
	char *names[MAX_FILES];
	int n = 0, rc = 0;

	dir = opendir(dir_path);
	if (!dir) {
		snprintf(err, errlen, "%s %s: %s", what, dir_path, strerror(errno));
		*fatal = 1;
		return -1;
	}
	while ((de = readdir(dir)) && n < MAX_FILES)
		if (migration_name(de->d_name))
			names[n++] = strdup(de->d_name);
	closedir(dir);
	qsort(names, (size_t)n, sizeof(names[0]), by_name);

	for (int i = 0; i < n && rc == 0; i++) {
		char path[1024], sum[65];
		size_t len = 0;
		bson_t file;
		bson_error_t error;

		snprintf(path, sizeof(path), "%s/%s", dir_path, names[i]);
		char *text = read_file(path, &len);
		if (!text) {
			snprintf(err, errlen, "cannot read %s", path);
			*fatal = 1;
			rc = -1;
			break;
		}
		tr_sha256_hex(text, len, sum);
		if (!bson_init_from_json(&file, text, (ssize_t)len, &error)) {
			snprintf(err, errlen, "%s is not valid JSON: %s", path, error.message);
			*fatal = 1;
			rc = -1;
		} else {
			char name[256];
			snprintf(name, sizeof(name), "%s%.*s", prefix, (int)(strlen(names[i]) - 5),
				 names[i]);
			rc =
			    migrate_one(cfg, db, coll, name, sum, &file, false, err, errlen, fatal);
			if (rc == 0 && tr_pg_configured(cfg) && has_pg_steps(&file)) {
				char pg_name[sizeof(name) + sizeof(PG_SUFFIX)];
				snprintf(pg_name, sizeof(pg_name), "%s" PG_SUFFIX, name);
				rc = migrate_one(cfg, db, coll, pg_name, sum, &file, true, err,
						 errlen, fatal);
			}
			bson_destroy(&file);
		}
		free(text);
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	return rc;
}

int
tr_migrate_run_checked(const struct tr_config *cfg, char *err, size_t errlen, int *fatal)
{
	mongoc_client_t *client = tr_dbpool_pop();
	mongoc_database_t *db = tr_dbpool_database(client);
	mongoc_collection_t *coll = mongoc_database_get_collection(db, COLL);
	int rc;

	*fatal = 0;
	rc = migrate_dir(cfg, db, coll, "migrations_dir", cfg->migrations_dir, "", err, errlen,
			 fatal);
	for (size_t m = 0; m < tr_nmodules && rc == 0; m++) {
		const struct tr_module *mod = tr_modules[m];
		char what[128], prefix[64];
		if (!mod->migrations)
			continue;
		snprintf(what, sizeof(what), "module %s: migrations", mod->name);
		snprintf(prefix, sizeof(prefix), "%s/", mod->name);
		rc = migrate_dir(cfg, db, coll, what, mod->migrations, prefix, err, errlen, fatal);
	}
	mongoc_collection_destroy(coll);
	mongoc_database_destroy(db);
	tr_dbpool_push(client);
	return rc;
}

int
tr_migrate_run(const struct tr_config *cfg, char *err, size_t errlen)
{
	int fatal;

	return tr_migrate_run_checked(cfg, err, errlen, &fatal);
}
