#include "pg.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define MAX_IDENT 63 /* PostgreSQL's NAMEDATALEN - 1 */

bool
tr_pg_configured(const struct tr_config *cfg)
{
	return cfg->postgresql_uri[0] != '\0';
}

int
tr_pg_ping(const struct tr_config *cfg)
{
	return PQping(cfg->postgresql_uri) == PQPING_OK ? TR_OK : TR_EUNAVAILABLE;
}

/* The error of a failed result or connection, on one line. */
static void
pg_error(char *err, size_t errlen, const char *what, const char *message)
{
	size_t n;

	snprintf(err, errlen, "postgresql: %s: %s", what, message ? message : "unknown error");
	n = strlen(err);
	while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
		err[--n] = '\0';
	for (char *p = err; *p; p++)
		if (*p == '\n')
			*p = ' ';
}

/* Runs sql with text parameters; true when it succeeded. The result goes
 * to *out when out is given (the caller clears it). */
static bool
run(PGconn *conn, const char *sql, int nparams, const char *const *params, PGresult **out,
    char *err, size_t errlen)
{
	PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

	if (!ok)
		pg_error(err, errlen, sql, PQresultErrorMessage(res));
	if (ok && out)
		*out = res;
	else
		PQclear(res);
	return ok;
}

/* FerretDB's table for a collection, into table; false when there is none
 * yet (no metadata table or no row for coll). */
static bool
table_of(PGconn *conn, const char *schema, const char *coll, char *table, size_t len)
{
	char *qschema = PQescapeIdentifier(conn, schema, strlen(schema));
	char sql[512];
	const char *params[1] = {coll};
	PGresult *res = NULL;
	bool found = false;
	char ignored[256];

	if (!qschema)
		return false;
	snprintf(sql, sizeof(sql),
		 "SELECT _jsonb->>'table' FROM %s._ferretdb_database_metadata "
		 "WHERE _jsonb->'_id' = to_jsonb($1::text)",
		 qschema);
	PQfreemem(qschema);
	if (run(conn, sql, 1, params, &res, ignored, sizeof(ignored)) && PQntuples(res) == 1 &&
	    !PQgetisnull(res, 0, 0) && strlen(PQgetvalue(res, 0, 0)) < len) {
		snprintf(table, len, "%s", PQgetvalue(res, 0, 0));
		found = true;
	}
	PQclear(res);
	return found;
}

static bool
field_name_ok(const char *f)
{
	if (!*f || strlen(f) > 40)
		return false;
	for (; *f; f++)
		if (!((*f >= 'a' && *f <= 'z') || (*f >= 'A' && *f <= 'Z') ||
		      (*f >= '0' && *f <= '9') || *f == '_'))
			return false;
	return true;
}

/* Builds the GIN index of one field unless a valid one exists. */
static int
equality_index(PGconn *conn, const char *schema, const char *table, const char *field, char *err,
	       size_t errlen)
{
	char name[MAX_IDENT + 1], sql[1024];
	const char *params[2] = {schema, name};
	PGresult *res = NULL;
	char *qschema = NULL, *qname = NULL, *qtable = NULL, *qfield = NULL;
	int rc = -1;

	if ((size_t)snprintf(name, sizeof(name), "%s_eq_%s", table, field) >= sizeof(name)) {
		snprintf(err, errlen, "postgresql: index name for %s.%s is too long", table, field);
		return -1;
	}
	if (!run(conn,
		 "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
		 "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND "
		 "c.relname = $2",
		 2, params, &res, err, errlen))
		return -1;
	bool exists = PQntuples(res) == 1, valid = exists && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (valid)
		return 0;
	qschema = PQescapeIdentifier(conn, schema, strlen(schema));
	qname = PQescapeIdentifier(conn, name, strlen(name));
	qtable = PQescapeIdentifier(conn, table, strlen(table));
	qfield = PQescapeLiteral(conn, field, strlen(field));
	if (!qschema || !qname || !qtable || !qfield) {
		pg_error(err, errlen, "escaping names", PQerrorMessage(conn));
		goto out;
	}
	if (exists) { /* a concurrent build that failed left it invalid */
		snprintf(sql, sizeof(sql), "DROP INDEX CONCURRENTLY IF EXISTS %s.%s", qschema,
			 qname);
		if (!run(conn, sql, 0, NULL, NULL, err, errlen))
			goto out;
	}
	snprintf(sql, sizeof(sql),
		 "CREATE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s.%s USING gin "
		 "((_jsonb->%s) jsonb_path_ops)",
		 qname, qschema, qtable, qfield);
	if (!run(conn, sql, 0, NULL, NULL, err, errlen))
		goto out;
	tr_info("postgresql: built index %s", name);
	rc = 0;
out:
	PQfreemem(qschema);
	PQfreemem(qname);
	PQfreemem(qtable);
	PQfreemem(qfield);
	return rc;
}

int
tr_pg_equality_indexes(const struct tr_config *cfg, const char *schema, const bson_t *step,
		       int (*ensure_coll)(void *arg, const char *coll), void *arg, char *err,
		       size_t errlen)
{
	bson_iter_t it, fields;
	const char *coll;
	char table[256];
	PGconn *conn = NULL;
	int rc = -1;

	if (!bson_iter_init_find(&it, step, "postgresqlIndexes") || !BSON_ITER_HOLDS_UTF8(&it)) {
		snprintf(err, errlen, "postgresqlIndexes must name a collection");
		return -1;
	}
	coll = bson_iter_utf8(&it, NULL);
	if (!bson_iter_init_find(&it, step, "equality") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &fields)) {
		snprintf(err, errlen, "postgresqlIndexes %s: \"equality\" must list field names",
			 coll);
		return -1;
	}
	while (bson_iter_next(&fields))
		if (!BSON_ITER_HOLDS_UTF8(&fields) ||
		    !field_name_ok(bson_iter_utf8(&fields, NULL))) {
			snprintf(err, errlen,
				 "postgresqlIndexes %s: fields are top-level names of letters, "
				 "digits and _",
				 coll);
			return -1;
		}
	conn = PQconnectdb(cfg->postgresql_uri);
	if (PQstatus(conn) != CONNECTION_OK) {
		pg_error(err, errlen, "connecting", PQerrorMessage(conn));
		goto out;
	}
	if (!table_of(conn, schema, coll, table, sizeof(table))) {
		if (ensure_coll(arg, coll) != 0 ||
		    !table_of(conn, schema, coll, table, sizeof(table))) {
			snprintf(err, errlen, "postgresql: FerretDB has no table for %s.%s", schema,
				 coll);
			goto out;
		}
	}
	bson_iter_recurse(&it, &fields);
	while (bson_iter_next(&fields))
		if (equality_index(conn, schema, table, bson_iter_utf8(&fields, NULL), err,
				   errlen) != 0)
			goto out;
	rc = 0;
out:
	PQfinish(conn);
	return rc;
}
