/* Operator commands for one tenant's backup (server/data/backup.h):
 *   trellis tenant export --tenant SLUG --out FILE
 *   trellis tenant import --file FILE [--replace]
 * Exit codes: 0 done, 1 MongoDB or Redis failed (try again), 2 a usage
 * error, a bad file, no such tenant or a tenant in the way. */
#include <stdio.h>
#include <string.h>

#include "backup.h"
#include "identity.h"
#include "util.h"

static int
exit_code(int rc)
{
	return rc == TR_EUNAVAILABLE ? 1 : 2;
}

int
cli_tenant_export(int argc, char **argv)
{
	const char *slug = NULL, *out = NULL;
	char err[512] = "";
	long long documents = 0;
	int rc;

	bool bad = argc != 4;

	for (int i = 0; !bad && i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--tenant") == 0 && !slug)
			slug = argv[i + 1];
		else if (strcmp(argv[i], "--out") == 0 && !out)
			out = argv[i + 1];
		else
			bad = true;
	}
	if (bad || !slug || !out || !*out) {
		fprintf(stderr, "usage: trellis tenant export --tenant SLUG --out FILE\n");
		return 2;
	}
	rc = tr_backup_export(slug, out, &documents, err, sizeof(err));
	if (rc != TR_OK) {
		fprintf(stderr, "trellis: tenant export: %s\n", err);
		return exit_code(rc);
	}
	printf("tenant %s: %lld documents written to %s\n", slug, documents, out);
	return 0;
}

int
cli_tenant_import(int argc, char **argv)
{
	const char *file = NULL;
	bool replace = false, bad = false;
	char err[512] = "";
	long long documents = 0;
	int rc;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--replace") == 0 && !replace)
			replace = true;
		else if (strcmp(argv[i], "--file") == 0 && i + 1 < argc && !file)
			file = argv[++i];
		else
			bad = true;
	}
	if (bad || !file || !*file) {
		fprintf(stderr, "usage: trellis tenant import --file FILE [--replace]\n");
		return 2;
	}
	rc = tr_backup_import(file, replace, &documents, err, sizeof(err));
	if (rc != TR_OK) {
		fprintf(stderr, "trellis: tenant import: %s\n", err);
		return exit_code(rc);
	}
	printf("%lld documents restored from %s; the tenant's users log in again\n", documents,
	       file);
	return 0;
}
