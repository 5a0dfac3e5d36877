/* Backup and restore of one tenant (backup.h). */
#include "backup.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dbpool.h"
#include "kv.h"
#include "session.h"
#include "util.h"

#define FORMAT "trellis-tenant-backup"
#define FORMAT_VERSION 1
#define TENANTS "tenants"
#define USERS "users"
#define MIGRATIONS "_migrations"
#define IMPORTS "_tenant_imports"
#define IMPORT_LEASE_MS (15LL * 60 * 1000)
#define PG_SUFFIX "@postgresql"
#define INSERT_BATCH 500
#define MAX_LINE ((size_t)64 * 1024 * 1024)
#define MAX_COLLECTIONS 256
#define NAME_MAX_LEN 100

/* One pass over a backup file: what it holds, counted as read. */
struct tally {
	bson_oid_t tenant_id;
	char slug[64];
	bson_t migrations; /* array of names, as in the header */
	long long documents;
	int ncolls;
	char *colls[MAX_COLLECTIONS];
	long long counts[MAX_COLLECTIONS];
	int tenant_records;
	crypto_generichash_state hash;
	char hex[2 * crypto_generichash_BYTES + 1];
};

static void
tally_init(struct tally *t)
{
	memset(t, 0, sizeof(*t));
	bson_init(&t->migrations);
	crypto_generichash_init(&t->hash, NULL, 0, crypto_generichash_BYTES);
}

static void
tally_free(struct tally *t)
{
	for (int i = 0; i < t->ncolls; i++)
		free(t->colls[i]);
	bson_destroy(&t->migrations);
}

static void
tally_digest(struct tally *t)
{
	unsigned char sum[crypto_generichash_BYTES];

	crypto_generichash_final(&t->hash, sum, sizeof(sum));
	sodium_bin2hex(t->hex, sizeof(t->hex), sum, sizeof(sum));
}

/* Counts one document of coll; -1 past MAX_COLLECTIONS. */
static int
tally_add(struct tally *t, const char *coll)
{
	int i = 0;

	while (i < t->ncolls && strcmp(t->colls[i], coll) != 0)
		i++;
	if (i == t->ncolls) {
		if (t->ncolls == MAX_COLLECTIONS)
			return -1;
		t->colls[i] = strdup(coll);
		if (!t->colls[i])
			return -1;
		t->ncolls++;
	}
	t->counts[i]++;
	t->documents++;
	return 0;
}

/* A collection a backup may name: what the migrations create, never the
 * migrations' own record or a system collection. */
static bool
collection_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > NAME_MAX_LEN || strcmp(name, MIGRATIONS) == 0 ||
	    strcmp(name, IMPORTS) == 0)
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every collection of the database a tenant may have documents in, sorted;
 * free with bson_strfreev. NULL when MongoDB did not answer. */
static char **
tenant_collections(mongoc_database_t *d, char *err, size_t errlen)
{
	bson_error_t error;
	char **names = mongoc_database_get_collection_names_with_opts(d, NULL, &error);
	size_t n = 0, kept = 0;

	if (!names) {
		snprintf(err, errlen, "listing collections: %s", error.message);
		return NULL;
	}
	while (names[n])
		n++;
	for (size_t i = 0; i < n; i++) {
		if (collection_ok(names[i]))
			names[kept++] = names[i];
		else
			bson_free(names[i]);
	}
	names[kept] = NULL;
	qsort(names, kept, sizeof(*names), by_name);
	return names;
}

/* The names of the migrations this database applied, in order, into the
 * array *out (initialised by the call). Steps only FerretDB's PostgreSQL
 * runs (indexes) are left out: a backup moves between backends. */
static int
applied_migrations(mongoc_database_t *d, bson_t *out, char *err, size_t errlen)
{
	mongoc_collection_t *c = mongoc_database_get_collection(d, MIGRATIONS);
	bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort;
	const bson_t *doc;
	bson_error_t error;
	mongoc_cursor_t *cur;
	bson_iter_t it;
	char key[16];
	uint32_t i = 0;
	int rc = TR_OK;

	bson_init(out);
	BSON_APPEND_UTF8(&filter, "state", "done");
	BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
	BSON_APPEND_INT32(&sort, "_id", 1);
	bson_append_document_end(&opts, &sort);
	cur = mongoc_collection_find_with_opts(c, &filter, &opts, NULL);
	while (mongoc_cursor_next(cur, &doc)) {
		const char *name, *tail;
		if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_UTF8(&it))
			continue;
		name = bson_iter_utf8(&it, NULL);
		tail = strstr(name, PG_SUFFIX);
		if (tail && tail[strlen(PG_SUFFIX)] == '\0')
			continue;
		const char *k;
		bson_uint32_to_string(i++, &k, key, sizeof(key));
		bson_append_utf8(out, k, -1, name, -1);
	}
	if (mongoc_cursor_error(cur, &error)) {
		snprintf(err, errlen, "reading the applied migrations: %s", error.message);
		rc = tr_db_err_from_mongoc(&error);
	}
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(c);
	bson_destroy(&opts);
	bson_destroy(&filter);
	return rc;
}

/* Hashes a line as the export wrote it: its text and a newline. */
static void
hash_line(crypto_generichash_state *hash, const char *text, size_t len)
{
	crypto_generichash_update(hash, (const unsigned char *)text, len);
	crypto_generichash_update(hash, (const unsigned char *)"\n", 1);
}

/* Writes doc as one line of canonical extended JSON and hashes it (hash
 * may be NULL). */
static int
write_line(FILE *f, crypto_generichash_state *hash, const bson_t *doc)
{
	size_t len = 0;
	char *text = bson_as_canonical_extended_json(doc, &len);
	int rc = TR_OK;

	if (!text)
		return TR_EINTERNAL;
	if (fwrite(text, 1, len, f) != len || fputc('\n', f) == EOF)
		rc = TR_EINVALID;
	if (hash)
		hash_line(hash, text, len);
	bson_free(text);
	return rc;
}

/* ---- export ---- */

/* Writes the tenant's documents of one collection. */
static int
export_collection(mongoc_database_t *d, const char *coll, const bson_oid_t *tid, FILE *f,
		  struct tally *t, char *err, size_t errlen)
{
	mongoc_collection_t *c = mongoc_database_get_collection(d, coll);
	bson_t filter = BSON_INITIALIZER;
	const bson_t *doc;
	bson_error_t error;
	mongoc_cursor_t *cur;
	int rc = TR_OK;

	BSON_APPEND_OID(&filter, "tenant_id", tid);
	cur = mongoc_collection_find_with_opts(c, &filter, NULL, NULL);
	while (rc == TR_OK && mongoc_cursor_next(cur, &doc)) {
		bson_t line = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&line, "c", coll);
		BSON_APPEND_DOCUMENT(&line, "d", doc);
		rc = write_line(f, &t->hash, &line);
		bson_destroy(&line);
		if (rc != TR_OK)
			snprintf(err, errlen, "writing the file: %s", strerror(errno));
		else if (tally_add(t, coll) != 0)
			rc = TR_EINTERNAL;
		if (rc == TR_OK && strcmp(coll, TENANTS) == 0)
			t->tenant_records++;
	}
	if (rc == TR_OK && mongoc_cursor_error(cur, &error)) {
		snprintf(err, errlen, "reading %s: %s", coll, error.message);
		rc = tr_db_err_from_mongoc(&error);
	}
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
	return rc;
}

/* The tenant with this slug: its id into *tid. */
static int
find_tenant(mongoc_database_t *d, const char *slug, bson_oid_t *tid, char *err, size_t errlen)
{
	mongoc_collection_t *c = mongoc_database_get_collection(d, TENANTS);
	bson_t filter = BSON_INITIALIZER;
	const bson_t *doc;
	bson_error_t error;
	mongoc_cursor_t *cur;
	bson_iter_t it;
	int rc = TR_ENOTFOUND;

	BSON_APPEND_UTF8(&filter, "slug", slug);
	cur = mongoc_collection_find_with_opts(c, &filter, NULL, NULL);
	if (mongoc_cursor_next(cur, &doc) && bson_iter_init_find(&it, doc, "_id") &&
	    BSON_ITER_HOLDS_OID(&it)) {
		bson_oid_copy(bson_iter_oid(&it), tid);
		rc = TR_OK;
	}
	if (mongoc_cursor_error(cur, &error)) {
		snprintf(err, errlen, "finding the tenant: %s", error.message);
		rc = tr_db_err_from_mongoc(&error);
	} else if (rc == TR_ENOTFOUND) {
		snprintf(err, errlen, "no tenant with the slug %s", slug);
	}
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
	return rc;
}

static int
write_trailer(FILE *f, struct tally *t)
{
	bson_t line = BSON_INITIALIZER, end, counts;
	int rc;

	tally_digest(t);
	BSON_APPEND_DOCUMENT_BEGIN(&line, "end", &end);
	BSON_APPEND_INT64(&end, "documents", t->documents);
	BSON_APPEND_DOCUMENT_BEGIN(&end, "collections", &counts);
	for (int i = 0; i < t->ncolls; i++)
		BSON_APPEND_INT64(&counts, t->colls[i], t->counts[i]);
	bson_append_document_end(&end, &counts);
	BSON_APPEND_UTF8(&end, "blake2b", t->hex);
	bson_append_document_end(&line, &end);
	rc = write_line(f, NULL, &line); /* the checksum ends before this line */
	bson_destroy(&line);
	return rc;
}

int
tr_backup_export(const char *slug, const char *path, long long *documents, char *err, size_t errlen)
{
	mongoc_client_t *client = tr_dbpool_pop();
	mongoc_database_t *d = tr_dbpool_database(client);
	bson_t header = BSON_INITIALIZER;
	char **colls = NULL;
	struct tally t;
	FILE *f = NULL;
	int fd, rc;

	tally_init(&t);
	*documents = 0;
	rc = find_tenant(d, slug, &t.tenant_id, err, errlen);
	if (rc == TR_OK)
		rc = applied_migrations(d, &t.migrations, err, errlen);
	if (rc == TR_OK) {
		colls = tenant_collections(d, err, errlen);
		rc = colls ? TR_OK : TR_EUNAVAILABLE;
	}
	if (rc != TR_OK)
		goto out;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0)
		f = fdopen(fd, "w");
	if (!f) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		rc = TR_EINVALID;
		goto out;
	}
	BSON_APPEND_UTF8(&header, "format", FORMAT);
	BSON_APPEND_INT32(&header, "version", FORMAT_VERSION);
	BSON_APPEND_OID(&header, "tenant_id", &t.tenant_id);
	BSON_APPEND_UTF8(&header, "slug", slug);
	BSON_APPEND_DATE_TIME(&header, "written_at", tr_now_ms());
	BSON_APPEND_ARRAY(&header, "migrations", &t.migrations);
	rc = write_line(f, &t.hash, &header);
	if (rc != TR_OK)
		snprintf(err, errlen, "writing %s: %s", path, strerror(errno));
	/* The tenant record first: a reader sees whose file it is at once. */
	if (rc == TR_OK)
		rc = export_collection(d, TENANTS, &t.tenant_id, f, &t, err, errlen);
	for (size_t i = 0; rc == TR_OK && colls[i]; i++)
		if (strcmp(colls[i], TENANTS) != 0)
			rc = export_collection(d, colls[i], &t.tenant_id, f, &t, err, errlen);
	if (rc == TR_OK && t.tenant_records != 1) {
		snprintf(err, errlen, "the tenant %s vanished during the export", slug);
		rc = TR_ENOTFOUND;
	}
	if (rc == TR_OK && write_trailer(f, &t) != TR_OK) {
		snprintf(err, errlen, "writing %s: %s", path, strerror(errno));
		rc = TR_EINVALID;
	}
	if (rc == TR_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0)) {
		snprintf(err, errlen, "writing %s: %s", path, strerror(errno));
		rc = TR_EINVALID;
	}
	if (fclose(f) != 0 && rc == TR_OK) {
		snprintf(err, errlen, "writing %s: %s", path, strerror(errno));
		rc = TR_EINVALID;
	}
	if (rc != TR_OK)
		unlink(path); /* never leave half a backup that looks like one */
	else
		*documents = t.documents;
out:
	bson_strfreev(colls);
	bson_destroy(&header);
	tally_free(&t);
	mongoc_database_destroy(d);
	tr_dbpool_push(client);
	return rc;
}

/* ---- import ---- */

/* One line of the file, without its newline, into *line (grown as
 * needed). 1: a line, 0: the end of the file, -1: a read error or a line
 * past MAX_LINE. */
static int
read_line(FILE *f, char **line, size_t *cap, size_t *len)
{
	ssize_t n = getline(line, cap, f);

	if (n < 0)
		return ferror(f) ? -1 : 0;
	if ((size_t)n > MAX_LINE)
		return -1;
	if (n > 0 && (*line)[n - 1] == '\n')
		n--;
	*len = (size_t)n;
	return 1;
}

/* The header: the format, the tenant and the migrations into t. */
static int
check_header(const bson_t *h, struct tally *t, char *err, size_t errlen)
{
	bson_iter_t it, m;
	const uint8_t *data;
	uint32_t len;
	bson_t view;

	if (!bson_iter_init_find(&it, h, "format") || !BSON_ITER_HOLDS_UTF8(&it) ||
	    strcmp(bson_iter_utf8(&it, NULL), FORMAT) != 0) {
		snprintf(err, errlen, "line 1: not a Trellis tenant backup (no \"format\": \"%s\")",
			 FORMAT);
		return TR_EINVALID;
	}
	if (!bson_iter_init_find(&it, h, "version") || !BSON_ITER_HOLDS_INT32(&it) ||
	    bson_iter_int32(&it) != FORMAT_VERSION) {
		snprintf(err, errlen,
			 "line 1: this backup format version is not %d, which is the "
			 "only one this release reads",
			 FORMAT_VERSION);
		return TR_EINVALID;
	}
	if (!bson_iter_init_find(&it, h, "tenant_id") || !BSON_ITER_HOLDS_OID(&it)) {
		snprintf(err, errlen, "line 1: \"tenant_id\" must be an ObjectId");
		return TR_EINVALID;
	}
	bson_oid_copy(bson_iter_oid(&it), &t->tenant_id);
	if (!bson_iter_init_find(&it, h, "slug") || !BSON_ITER_HOLDS_UTF8(&it) ||
	    bson_iter_utf8(&it, &len) == NULL || len == 0 || len >= sizeof(t->slug)) {
		snprintf(err, errlen, "line 1: \"slug\" must be the tenant's slug");
		return TR_EINVALID;
	}
	memcpy(t->slug, bson_iter_utf8(&it, NULL), len + 1);
	if (!bson_iter_init_find(&it, h, "migrations") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &m)) {
		snprintf(err, errlen, "line 1: \"migrations\" must be a list of names");
		return TR_EINVALID;
	}
	while (bson_iter_next(&m))
		if (!BSON_ITER_HOLDS_UTF8(&m)) {
			snprintf(err, errlen, "line 1: \"migrations\" must be a list of names");
			return TR_EINVALID;
		}
	bson_iter_array(&it, &len, &data);
	if (!bson_init_static(&view, data, len)) {
		snprintf(err, errlen, "line 1: \"migrations\" must be a list of names");
		return TR_EINVALID;
	}
	bson_destroy(&t->migrations);
	bson_copy_to(&view, &t->migrations);
	return TR_OK;
}

/* A document line: {"c": collection, "d": document of t's tenant}. Points
 * *coll and *doc into line. */
static int
check_record(const bson_t *line, long long lineno, struct tally *t, const char **coll, bson_t *doc,
	     char *err, size_t errlen)
{
	bson_iter_t it;
	const uint8_t *data;
	uint32_t len;

	if (bson_count_keys(line) != 2 || !bson_iter_init_find(&it, line, "c") ||
	    !BSON_ITER_HOLDS_UTF8(&it) || !collection_ok(bson_iter_utf8(&it, NULL))) {
		snprintf(err, errlen,
			 "line %lld: \"c\" must name a collection (letters, digits, _; not %s)",
			 lineno, MIGRATIONS);
		return TR_EINVALID;
	}
	*coll = bson_iter_utf8(&it, NULL);
	if (!bson_iter_init_find(&it, line, "d") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
		snprintf(err, errlen, "line %lld: \"d\" must be the document", lineno);
		return TR_EINVALID;
	}
	bson_iter_document(&it, &len, &data);
	if (!bson_init_static(doc, data, len) || !bson_iter_init_find(&it, doc, "_id")) {
		snprintf(err, errlen, "line %lld: the document has no _id", lineno);
		return TR_EINVALID;
	}
	if (strcmp(*coll, TENANTS) == 0 &&
	    (!BSON_ITER_HOLDS_OID(&it) || !bson_oid_equal(bson_iter_oid(&it), &t->tenant_id))) {
		snprintf(err, errlen, "line %lld: a tenant record of another tenant", lineno);
		return TR_EINVALID;
	}
	if (!bson_iter_init_find(&it, doc, "tenant_id") || !BSON_ITER_HOLDS_OID(&it) ||
	    !bson_oid_equal(bson_iter_oid(&it), &t->tenant_id)) {
		snprintf(err, errlen,
			 "line %lld: a document of %s whose tenant_id is not the file's tenant",
			 lineno, *coll);
		return TR_EINVALID;
	}
	if (strcmp(*coll, TENANTS) == 0) {
		if (!bson_iter_init_find(&it, doc, "slug") || !BSON_ITER_HOLDS_UTF8(&it) ||
		    strcmp(bson_iter_utf8(&it, NULL), t->slug) != 0) {
			snprintf(err, errlen,
				 "line %lld: the tenant record's slug is not the file's", lineno);
			return TR_EINVALID;
		}
		t->tenant_records++;
	}
	if (tally_add(t, *coll) != 0) {
		snprintf(err, errlen, "line %lld: more than %d collections", lineno,
			 MAX_COLLECTIONS);
		return TR_EINVALID;
	}
	return TR_OK;
}

/* The last line against what was read before it. */
static int
check_trailer(const bson_t *line, long long lineno, struct tally *t, char *err, size_t errlen)
{
	bson_iter_t it, end, counts;
	int seen = 0;

	tally_digest(t);
	if (!bson_iter_init_find(&it, line, "end") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
	    !bson_iter_recurse(&it, &end) || bson_count_keys(line) != 1) {
		snprintf(err, errlen, "line %lld: not the end line", lineno);
		return TR_EINVALID;
	}
	if (!bson_iter_find(&end, "documents") || !BSON_ITER_HOLDS_INT64(&end) ||
	    bson_iter_int64(&end) != t->documents) {
		snprintf(err, errlen, "the file holds %lld documents, not what its end line says",
			 t->documents);
		return TR_EINVALID;
	}
	if (!bson_iter_find(&end, "collections") || !BSON_ITER_HOLDS_DOCUMENT(&end) ||
	    !bson_iter_recurse(&end, &counts)) {
		snprintf(err, errlen, "line %lld: the end line has no collection counts", lineno);
		return TR_EINVALID;
	}
	while (bson_iter_next(&counts)) {
		int i = 0;
		while (i < t->ncolls && strcmp(t->colls[i], bson_iter_key(&counts)) != 0)
			i++;
		if (i == t->ncolls || !BSON_ITER_HOLDS_INT64(&counts) ||
		    bson_iter_int64(&counts) != t->counts[i]) {
			snprintf(err, errlen,
				 "the documents of %s are not what the end line counts",
				 bson_iter_key(&counts));
			return TR_EINVALID;
		}
		seen++;
	}
	if (seen != t->ncolls) {
		snprintf(err, errlen, "the end line does not count every collection of the file");
		return TR_EINVALID;
	}
	if (!bson_iter_find(&end, "blake2b") || !BSON_ITER_HOLDS_UTF8(&end) ||
	    strcmp(bson_iter_utf8(&end, NULL), t->hex) != 0) {
		snprintf(err, errlen,
			 "the checksum does not match: the file was changed or damaged");
		return TR_EINVALID;
	}
	return TR_OK;
}

/* Pass one: reads the whole file and checks it; nothing is written. */
static int
check_file(FILE *f, struct tally *t, char *err, size_t errlen)
{
	char *text = NULL;
	size_t cap = 0, len = 0;
	long long lineno = 0;
	bool ended = false;
	int rc = TR_OK, r = 0;

	while (rc == TR_OK && (r = read_line(f, &text, &cap, &len)) > 0) {
		bson_t line, doc;
		bson_error_t error;
		const char *coll;
		lineno++;
		if (ended) {
			snprintf(err, errlen, "line %lld: nothing may follow the end line", lineno);
			rc = TR_EINVALID;
			break;
		}
		if (!bson_init_from_json(&line, text, (ssize_t)len, &error)) {
			snprintf(err, errlen, "line %lld: not JSON: %s", lineno, error.message);
			rc = TR_EINVALID;
			break;
		}
		ended = lineno > 1 && bson_has_field(&line, "end");
		if (!ended)
			hash_line(&t->hash, text, len);
		if (lineno == 1)
			rc = check_header(&line, t, err, errlen);
		else if (ended)
			rc = check_trailer(&line, lineno, t, err, errlen);
		else
			rc = check_record(&line, lineno, t, &coll, &doc, err, errlen);
		bson_destroy(&line);
	}
	if (rc == TR_OK && r < 0) {
		snprintf(err, errlen, "line %lld: unreadable or longer than %zu bytes", lineno + 1,
			 MAX_LINE);
		rc = TR_EINVALID;
	}
	if (rc == TR_OK && lineno == 0) {
		snprintf(err, errlen, "the file is empty");
		rc = TR_EINVALID;
	}
	if (rc == TR_OK && !ended) {
		snprintf(err, errlen, "the file ends before its end line: it is incomplete");
		rc = TR_EINVALID;
	}
	if (rc == TR_OK && t->tenant_records != 1) {
		snprintf(err, errlen, "the file must hold its tenant's record exactly once");
		rc = TR_EINVALID;
	}
	free(text);
	return rc;
}

/* Whether this database applied exactly the migrations the file names: a
 * document written before a data migration would skip it, one written
 * after a migration this database lacks would meet code that predates it. */
static int
check_migrations(mongoc_database_t *d, const struct tally *t, char *err, size_t errlen)
{
	bson_t have;
	bson_iter_t a, b;
	int rc = applied_migrations(d, &have, err, errlen);

	if (rc != TR_OK)
		goto out;
	bson_iter_init(&a, &t->migrations);
	bson_iter_init(&b, &have);
	for (;;) {
		bool more_a = bson_iter_next(&a), more_b = bson_iter_next(&b);
		if (!more_a && !more_b)
			break;
		if (more_a && more_b &&
		    strcmp(bson_iter_utf8(&a, NULL), bson_iter_utf8(&b, NULL)) == 0)
			continue;
		snprintf(err, errlen,
			 "the file was written at other migrations than this database has applied "
			 "(first difference: %s in the file, %s here): restore it with the release "
			 "that wrote it, then upgrade",
			 more_a ? bson_iter_utf8(&a, NULL) : "none",
			 more_b ? bson_iter_utf8(&b, NULL) : "none");
		rc = TR_EINVALID;
		break;
	}
out:
	bson_destroy(&have);
	return rc;
}

/* Whether coll holds any document matching filter. */
static int
any_match(mongoc_database_t *d, const char *coll, const bson_t *filter, bool *found)
{
	mongoc_collection_t *c = mongoc_database_get_collection(d, coll);
	bson_t opts = BSON_INITIALIZER;
	const bson_t *doc;
	bson_error_t error;
	mongoc_cursor_t *cur;
	int rc = TR_OK;

	BSON_APPEND_INT64(&opts, "limit", 1);
	cur = mongoc_collection_find_with_opts(c, filter, &opts, NULL);
	*found = mongoc_cursor_next(cur, &doc);
	if (mongoc_cursor_error(cur, &error))
		rc = tr_db_err_from_mongoc(&error);
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(c);
	bson_destroy(&opts);
	return rc;
}

/* Refuses a slug held by another tenant, and a tenant with any document
 * left unless replace. */
static int
check_slot(mongoc_database_t *d, char **colls, const struct tally *t, bool replace, char *err,
	   size_t errlen)
{
	bson_t by_slug = BSON_INITIALIZER, other, by_tenant = BSON_INITIALIZER;
	char hex[25];
	bool found = false;
	int rc;

	bson_oid_to_string(&t->tenant_id, hex);
	BSON_APPEND_UTF8(&by_slug, "slug", t->slug);
	BSON_APPEND_DOCUMENT_BEGIN(&by_slug, "_id", &other);
	BSON_APPEND_OID(&other, "$ne", &t->tenant_id);
	bson_append_document_end(&by_slug, &other);
	rc = any_match(d, TENANTS, &by_slug, &found);
	if (rc == TR_OK && found) {
		snprintf(err, errlen, "another tenant holds the slug %s in this database", t->slug);
		rc = TR_EDUPLICATE;
	}
	BSON_APPEND_OID(&by_tenant, "tenant_id", &t->tenant_id);
	for (size_t i = 0; rc == TR_OK && !found && colls[i]; i++)
		rc = any_match(d, colls[i], &by_tenant, &found);
	if (rc == TR_OK && found && !replace) {
		snprintf(err, errlen,
			 "the tenant %s (%s) has documents in this database: "
			 "--replace deletes them and restores the file",
			 t->slug, hex);
		rc = TR_EDUPLICATE;
	}
	if (rc == TR_EUNAVAILABLE || rc == TR_EINTERNAL)
		snprintf(err, errlen, "MongoDB did not answer while checking the tenant");
	bson_destroy(&by_slug);
	bson_destroy(&by_tenant);
	return rc;
}

/* Ends the sessions of every user of the tenant in the database. */
static int
end_sessions(mongoc_database_t *d, const bson_oid_t *tid, char *err, size_t errlen)
{
	mongoc_collection_t *c = mongoc_database_get_collection(d, USERS);
	bson_t filter = BSON_INITIALIZER;
	const bson_t *doc;
	bson_error_t error;
	mongoc_cursor_t *cur;
	bson_iter_t it;
	char tenant_hex[25], user_hex[25];
	int rc = TR_OK;

	bson_oid_to_string(tid, tenant_hex);
	BSON_APPEND_OID(&filter, "tenant_id", tid);
	cur = mongoc_collection_find_with_opts(c, &filter, NULL, NULL);
	while (rc == TR_OK && mongoc_cursor_next(cur, &doc)) {
		if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it))
			continue;
		bson_oid_to_string(bson_iter_oid(&it), user_hex);
		rc = tr_sessions_revoke_user(tenant_hex, user_hex);
		if (rc != TR_OK) {
			snprintf(err, errlen, "Redis did not end the sessions of user %s",
				 user_hex);
			rc = TR_EUNAVAILABLE;
		}
	}
	if (rc == TR_OK && mongoc_cursor_error(cur, &error)) {
		snprintf(err, errlen, "reading the users: %s", error.message);
		rc = tr_db_err_from_mongoc(&error);
	}
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
	return rc;
}

/* Drops the tenant's event stream: it tells of changes the restore undid
 * or never saw. A client resuming from one of its ids is then told to
 * resync (an id later than any event), and reloads. */
static int
drop_event_stream(const bson_oid_t *tid, char *err, size_t errlen)
{
	char hex[25];
	long long n = 0;

	bson_oid_to_string(tid, hex);
	if (tr_kv_integerf(&n, "DEL t:{%s}:events", hex) != TR_OK) {
		snprintf(err, errlen, "Redis did not drop the tenant's event stream");
		return TR_EUNAVAILABLE;
	}
	return TR_OK;
}

/* Deletes every document of the tenant: its record first, so that
 * nobody logs in to what is left while the rest goes. */
static int
purge_tenant(mongoc_database_t *d, char **colls, const bson_oid_t *tid)
{
	bson_t by_id = BSON_INITIALIZER, by_tenant = BSON_INITIALIZER;
	bson_error_t error;
	int rc = TR_OK;

	BSON_APPEND_OID(&by_id, "_id", tid);
	BSON_APPEND_OID(&by_tenant, "tenant_id", tid);
	mongoc_collection_t *c = mongoc_database_get_collection(d, TENANTS);
	if (!mongoc_collection_delete_one(c, &by_id, NULL, NULL, &error))
		rc = tr_db_err_from_mongoc(&error);
	mongoc_collection_destroy(c);
	for (size_t i = 0; rc == TR_OK && colls[i]; i++) {
		c = mongoc_database_get_collection(d, colls[i]);
		if (!mongoc_collection_delete_many(c, &by_tenant, NULL, NULL, &error))
			rc = tr_db_err_from_mongoc(&error);
		mongoc_collection_destroy(c);
	}
	bson_destroy(&by_id);
	bson_destroy(&by_tenant);
	return rc;
}

/* At most one import of a tenant at a time, in any process: a document
 * per tenant id in _tenant_imports, inserted before the tenant's slot is
 * even looked at (the unique _id is the atomic part), renewed as batches
 * are written, deleted at the end. A claim whose lease ran out - its
 * import died - is taken over; two takers still meet on the _id. It has
 * no tenant_id, so no export or purge sees it. */
static int
claim_import(mongoc_database_t *d, const bson_oid_t *tid, char *err, size_t errlen)
{
	mongoc_collection_t *c = mongoc_database_get_collection(d, IMPORTS);
	bson_t doc = BSON_INITIALIZER, stale = BSON_INITIALIZER, lt;
	bson_error_t error;
	char hex[25];
	int64_t now = tr_now_ms();
	int rc = TR_OK;

	bson_oid_to_string(tid, hex);
	BSON_APPEND_UTF8(&doc, "_id", hex);
	BSON_APPEND_DATE_TIME(&doc, "at", now);
	BSON_APPEND_DATE_TIME(&doc, "exp", now + IMPORT_LEASE_MS);
	BSON_APPEND_UTF8(&stale, "_id", hex);
	BSON_APPEND_DOCUMENT_BEGIN(&stale, "exp", &lt);
	BSON_APPEND_DATE_TIME(&lt, "$lt", now);
	bson_append_document_end(&stale, &lt);
	for (int attempt = 0; attempt < 2; attempt++) {
		if (mongoc_collection_insert_one(c, &doc, NULL, NULL, &error)) {
			rc = TR_OK;
			break;
		}
		rc = tr_db_err_from_mongoc(&error);
		if (rc != TR_EDUPLICATE ||
		    !mongoc_collection_delete_one(c, &stale, NULL, NULL, &error))
			break;
	}
	if (rc == TR_EDUPLICATE)
		snprintf(err, errlen, "another import of the tenant %s is running", hex);
	else if (rc != TR_OK)
		snprintf(err, errlen, "claiming the import: %s", error.message);
	mongoc_collection_destroy(c);
	bson_destroy(&doc);
	bson_destroy(&stale);
	return rc;
}

/* Moves the claim's lease on (renew) or ends it. */
static void
lease_import(mongoc_database_t *d, const bson_oid_t *tid, bool renew)
{
	mongoc_collection_t *c = mongoc_database_get_collection(d, IMPORTS);
	bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, set;
	char hex[25];

	bson_oid_to_string(tid, hex);
	BSON_APPEND_UTF8(&filter, "_id", hex);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
	BSON_APPEND_DATE_TIME(&set, "exp", tr_now_ms() + IMPORT_LEASE_MS);
	bson_append_document_end(&update, &set);
	if (renew)
		mongoc_collection_update_one(c, &filter, &update, NULL, NULL, NULL);
	else
		mongoc_collection_delete_one(c, &filter, NULL, NULL, NULL);
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
	bson_destroy(&update);
}

/* Documents of one collection waiting to be inserted together. */
struct batch {
	char coll[NAME_MAX_LEN + 1];
	bson_t *docs[INSERT_BATCH];
	size_t n;
};

static int
flush(mongoc_database_t *d, const bson_oid_t *tid, struct batch *b, char *err, size_t errlen)
{
	mongoc_collection_t *c;
	bson_error_t error;
	int rc = TR_OK;

	if (b->n == 0)
		return TR_OK;
	c = mongoc_database_get_collection(d, b->coll);
	if (!mongoc_collection_insert_many(c, (const bson_t **)b->docs, b->n, NULL, NULL, &error)) {
		snprintf(err, errlen, "writing %s: %s", b->coll, error.message);
		rc = tr_db_err_from_mongoc(&error);
	}
	mongoc_collection_destroy(c);
	for (size_t i = 0; i < b->n; i++)
		bson_destroy(b->docs[i]);
	b->n = 0;
	lease_import(d, tid, true);
	return rc;
}

/* Pass two: inserts every document but the tenant record (into *tenant),
 * hashing the file again to be sure it is the one checked. */
static int
write_documents(mongoc_database_t *d, FILE *f, const struct tally *t, bson_t *tenant, char *err,
		size_t errlen)
{
	crypto_generichash_state hash;
	unsigned char sum[crypto_generichash_BYTES];
	char hex[2 * crypto_generichash_BYTES + 1], *text = NULL;
	size_t cap = 0, len = 0;
	long long lineno = 0;
	struct batch *b = calloc(1, sizeof(*b));
	int rc = b ? TR_OK : TR_ENOMEM;

	*err = '\0';
	crypto_generichash_init(&hash, NULL, 0, sizeof(sum));
	rewind(f);
	while (rc == TR_OK && read_line(f, &text, &cap, &len) > 0) {
		bson_t line, doc;
		bson_error_t error;
		bson_iter_t it;
		const uint8_t *data;
		uint32_t n;
		if (!bson_init_from_json(&line, text, (ssize_t)len, &error)) {
			rc = TR_EINVALID;
			break;
		}
		if (++lineno > 1 && bson_has_field(&line, "end")) {
			bson_destroy(&line);
			break;
		}
		hash_line(&hash, text, len);
		if (lineno > 1) {
			const char *coll = "";
			if (bson_iter_init_find(&it, &line, "c") && BSON_ITER_HOLDS_UTF8(&it))
				coll = bson_iter_utf8(&it, NULL);
			if (!collection_ok(coll) || !bson_iter_init_find(&it, &line, "d") ||
			    !BSON_ITER_HOLDS_DOCUMENT(&it)) {
				bson_destroy(&line);
				rc = TR_EINVALID;
				break;
			}
			bson_iter_document(&it, &n, &data);
			bson_init_static(&doc, data, n);
			if (strcmp(coll, TENANTS) == 0) {
				bson_destroy(tenant);
				bson_copy_to(&doc, tenant);
			} else {
				if (b->n == INSERT_BATCH || strcmp(coll, b->coll) != 0)
					rc = flush(d, &t->tenant_id, b, err, errlen);
				snprintf(b->coll, sizeof(b->coll), "%s", coll);
				b->docs[b->n++] = bson_copy(&doc);
			}
		}
		bson_destroy(&line);
	}
	if (rc == TR_OK)
		rc = flush(d, &t->tenant_id, b, err, errlen);
	crypto_generichash_final(&hash, sum, sizeof(sum));
	sodium_bin2hex(hex, sizeof(hex), sum, sizeof(sum));
	if (rc == TR_OK && strcmp(hex, t->hex) != 0)
		rc = TR_EINVALID;
	if (rc == TR_EINVALID && !*err)
		snprintf(err, errlen, "the file changed while it was being restored");
	if (b)
		for (size_t i = 0; i < b->n; i++)
			bson_destroy(b->docs[i]);
	free(b);
	free(text);
	return rc;
}

static int
insert_tenant(mongoc_database_t *d, const bson_t *tenant, char *err, size_t errlen)
{
	mongoc_collection_t *c = mongoc_database_get_collection(d, TENANTS);
	bson_error_t error;
	int rc = TR_OK;

	if (!mongoc_collection_insert_one(c, tenant, NULL, NULL, &error)) {
		snprintf(err, errlen, "writing the tenant record: %s", error.message);
		rc = tr_db_err_from_mongoc(&error);
	}
	mongoc_collection_destroy(c);
	return rc;
}

int
tr_backup_import(const char *path, bool replace, long long *documents, char *err, size_t errlen)
{
	mongoc_client_t *client = NULL;
	mongoc_database_t *d = NULL;
	bson_t tenant = BSON_INITIALIZER;
	char **colls = NULL;
	bool claimed = false, wrote = false;
	struct tally t;
	FILE *f;
	int rc;

	*documents = 0;
	tally_init(&t);
	f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		rc = TR_EINVALID;
		goto out;
	}
	rc = check_file(f, &t, err, errlen);
	if (rc != TR_OK)
		goto out;
	client = tr_dbpool_pop();
	d = tr_dbpool_database(client);
	rc = check_migrations(d, &t, err, errlen);
	if (rc == TR_OK) {
		rc = claim_import(d, &t.tenant_id, err, errlen);
		claimed = rc == TR_OK;
	}
	if (rc == TR_OK) {
		colls = tenant_collections(d, err, errlen);
		rc = colls ? TR_OK : TR_EUNAVAILABLE;
	}
	if (rc == TR_OK)
		rc = check_slot(d, colls, &t, replace, err, errlen);
	/* Every session of the tenant's present users ends before their
	 * documents go; with Redis away nothing is deleted. */
	if (rc == TR_OK)
		rc = end_sessions(d, &t.tenant_id, err, errlen);
	if (rc == TR_OK && replace) {
		rc = purge_tenant(d, colls, &t.tenant_id);
		if (rc != TR_OK)
			snprintf(err, errlen, "deleting the tenant's documents: %s",
				 tr_strerror(rc));
	}
	if (rc != TR_OK)
		goto out;
	wrote = true;
	rc = write_documents(d, f, &t, &tenant, err, errlen);
	/* The restored users' sessions too: a session that outlived the
	 * tenant in Redis must not come back with it. */
	if (rc == TR_OK)
		rc = end_sessions(d, &t.tenant_id, err, errlen);
	if (rc == TR_OK)
		rc = drop_event_stream(&t.tenant_id, err, errlen);
	if (rc == TR_OK)
		rc = insert_tenant(d, &tenant, err, errlen);
	if (rc == TR_OK)
		*documents = t.documents;
out:
	if (rc != TR_OK && wrote) {
		/* A new collection a document created is not in colls yet. */
		char scratch[256];
		bson_strfreev(colls);
		colls = tenant_collections(d, scratch, sizeof(scratch));
		if (!colls || purge_tenant(d, colls, &t.tenant_id) != TR_OK) {
			size_t used = strlen(err);
			snprintf(err + used, errlen - used,
				 "; deleting what was written failed too: run the import again "
				 "with --replace");
		}
	}
	if (claimed)
		lease_import(d, &t.tenant_id, false);
	bson_strfreev(colls);
	if (d)
		mongoc_database_destroy(d);
	if (client)
		tr_dbpool_push(client);
	if (f)
		fclose(f);
	bson_destroy(&tenant);
	tally_free(&t);
	return rc;
}
