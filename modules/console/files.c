/* The console's files, served from memory.
 *
 * A file is read on its first request and read again when its size or
 * modification time changes (a rebuild while the server runs); a gzip
 * copy beside it (name.gz, written by the build) is sent to clients that
 * accept gzip. Every answer carries an ETag and Cache-Control: no-cache,
 * so a browser revalidates with one cheap 304. The handlers run inline on
 * the loop thread, one at a time: the cache is the loop's alone and needs
 * no lock, and a reload cannot free a file an answer still points at
 * (the answer is copied out before the next request runs). */
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "console.h"
#include "log.h"

#define MAX_FILES 64
#define MAX_FILE_SIZE (16 * 1024 * 1024)
#define MAX_NAME 100

/* What the console may load, said once for every file (the build makes no
 * inline script or style, so none is allowed). */
static const char csp[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'";

struct body {
	char *data;
	size_t len;
	struct timespec mtime;
	off_t size;
	char etag[48];
};

struct file {
	char path[PATH_MAX];
	struct body plain, gz;
};

static struct file cache[MAX_FILES];
static int nfiles;

static const struct {
	const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".map", "application/json"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".webmanifest", "application/manifest+json"},
};

static const char *
type_of(const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		size_t e = strlen(types[i].ext);
		if (n > e && strcmp(name + n - e, types[i].ext) == 0)
			return types[i].type;
	}
	return NULL;
}

/* A file's name as a path segment may spell it: no dot first (no "..",
 * no hidden files), no separators, nothing to escape. */
static bool
plain_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > MAX_NAME || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_'))
			return false;
	}
	return true;
}

static bool
same_stat(const struct body *b, const struct stat *st)
{
	return b->data && b->size == st->st_size && b->mtime.tv_sec == st->st_mtim.tv_sec &&
	       b->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static void
forget(struct body *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* Brings b up to date with the file at path: true when it holds the
 * file's bytes, false when there is no such regular file (b emptied). */
static bool
refresh(struct body *b, const char *path, const char *etag_suffix)
{
	struct stat st;
	FILE *f;

	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE_SIZE) {
		forget(b);
		return false;
	}
	if (same_stat(b, &st))
		return true;
	forget(b);
	f = fopen(path, "rb");
	if (!f)
		return false;
	b->data = malloc((size_t)st.st_size + 1);
	if (b->data && fread(b->data, 1, (size_t)st.st_size, f) == (size_t)st.st_size) {
		unsigned char h[16];
		b->len = (size_t)st.st_size;
		b->size = st.st_size;
		b->mtime = st.st_mtim;
		crypto_generichash(h, sizeof(h), (const unsigned char *)b->data, b->len, NULL, 0);
		b->etag[0] = '"';
		sodium_bin2hex(b->etag + 1, sizeof(b->etag) - 1, h, sizeof(h));
		strncat(b->etag, etag_suffix, sizeof(b->etag) - strlen(b->etag) - 2);
		strcat(b->etag, "\"");
	} else {
		forget(b);
	}
	fclose(f);
	return b->data != NULL;
}

static struct file *
find(const char *path)
{
	for (int i = 0; i < nfiles; i++)
		if (strcmp(cache[i].path, path) == 0)
			return &cache[i];
	if (nfiles == MAX_FILES) {
		tr_warn("console: more than %d files requested; serving %s uncached is refused",
			MAX_FILES, path);
		return NULL;
	}
	snprintf(cache[nfiles].path, sizeof(cache[nfiles].path), "%s", path);
	return &cache[nfiles++];
}

/* Does the client accept gzip? "gzip;q=0" says no. */
static bool
takes_gzip(const char *accept)
{
	const char *g = accept ? strstr(accept, "gzip") : NULL;

	if (!g)
		return false;
	g += 4;
	while (*g == ' ')
		g++;
	if (*g != ';')
		return true;
	g++;
	while (*g == ' ')
		g++;
	return strncmp(g, "q=", 2) != 0 || strtod(g + 2, NULL) > 0;
}

/* Does If-None-Match name etag (or "*")? */
static bool
matches(const char *if_none_match, const char *etag)
{
	if (!if_none_match)
		return false;
	if (strcmp(if_none_match, "*") == 0)
		return true;
	/* a list of entity tags, weak ones (W/"...") compared weakly */
	return strstr(if_none_match, etag) != NULL;
}

/* Answers the file name in the folder sub of console_dir. */
static void
serve(struct tr_ctx *c, const char *sub, const char *name, bool cross_origin)
{
	const char *dir = tr_config_str("console_dir"), *type = type_of(name);
	char path[PATH_MAX], gzpath[PATH_MAX];
	struct file *f;
	struct body *b;

	if (!plain_name(name) || !type || !dir || !dir[0]) {
		tr_problem(c, 404, "not-found", "no such file");
		return;
	}
	if (snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name) >= (int)sizeof(path) ||
	    snprintf(gzpath, sizeof(gzpath), "%s.gz", path) >= (int)sizeof(gzpath)) {
		tr_problem(c, 404, "not-found", "no such file");
		return;
	}
	/* only a file that exists takes a place in the cache: names of
	 * missing files must not fill it */
	struct stat st;
	f = stat(path, &st) == 0 && S_ISREG(st.st_mode) ? find(path) : NULL;
	if (!f || !refresh(&f->plain, path, "")) {
		tr_problem(c, 404, "not-found", "no such file (is the console built? make build)");
		return;
	}
	/* the .gz copy counts only while it is newer than the file itself */
	bool gz =
	    refresh(&f->gz, gzpath, "-gzip") && (f->gz.mtime.tv_sec > f->plain.mtime.tv_sec ||
						 (f->gz.mtime.tv_sec == f->plain.mtime.tv_sec &&
						  f->gz.mtime.tv_nsec >= f->plain.mtime.tv_nsec));
	b = gz && takes_gzip(c->req->accept_encoding) ? &f->gz : &f->plain;

	c->resp->cache_control = "no-cache";
	c->resp->etag = b->etag;
	tr_reply_header(c, "content-security-policy", csp);
	tr_reply_header(c, "x-content-type-options", "nosniff");
	tr_reply_header(c, "referrer-policy", "no-referrer");
	tr_reply_header(c, "cross-origin-opener-policy", "same-origin");
	tr_reply_header(c, "x-frame-options", "DENY");
	if (gz)
		tr_reply_header(c, "vary", "Accept-Encoding");
	if (b == &f->gz)
		tr_reply_header(c, "content-encoding", "gzip");
	if (cross_origin) /* the SDK may be loaded by apps on other origins */
		tr_reply_header(c, "access-control-allow-origin", "*");
	if (matches(c->req->if_none_match, b->etag)) {
		tr_reply_empty(c, 304);
		return;
	}
	tr_reply_text(c, 200, type, b->data, b->len);
}

void
console_app_root(struct tr_ctx *c)
{
	c->resp->location = "/app/";
	tr_reply_empty(c, 308);
}

void
console_app_index(struct tr_ctx *c)
{
	serve(c, "app", "index.html", false);
}

void
console_app_file(struct tr_ctx *c)
{
	serve(c, "app", tr_param(c, 0), false);
}

void
console_sdk_file(struct tr_ctx *c)
{
	serve(c, "sdk", tr_param(c, 0), true);
}
