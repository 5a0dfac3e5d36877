/* Backup and restore of one tenant (`trellis tenant export|import`).
 *
 * A backup file holds every stored document of one tenant - records,
 * registers and their snapshots, list buckets, claims, once-marks,
 * outbox, idempotency keys, the tenant record itself: whatever carries the
 * tenant's tenant_id in any collection - as JSON lines:
 *
 *   {"format": "trellis-tenant-backup", "version": 1, "tenant_id": ...,
 *    "slug": ..., "written_at": ..., "migrations": [names applied]}
 *   {"c": <collection>, "d": <the document, canonical extended JSON>}
 *   ...
 *   {"end": {"documents": N, "collections": {name: n, ...},
 *            "blake2b": <hex of every byte before this line>}}
 *
 * Canonical extended JSON keeps every BSON type (int64, dates, ids), so a
 * restored document is the stored one, field order included. The file
 * holds password and key hashes and webhook secrets: it is created 0600.
 *
 * What lives in Redis (sessions, rate limits, the event stream, queued and
 * delayed jobs) is not in the file. A restore ends the sessions of the
 * tenant's users, so everybody logs in again, and drops the tenant's event
 * stream, so clients resuming from an old event id are told to resync.
 *
 * Main thread of an operator command (command.h); both calls block. They
 * return 0 or a negative TR_E* code with a sentence in err:
 * TR_ENOTFOUND (no such tenant), TR_EINVALID (a bad file or path: nothing
 * was written), TR_EDUPLICATE (the tenant or its slug exists),
 * TR_EUNAVAILABLE (MongoDB or Redis failed). */
#ifndef TR_BACKUP_H
#define TR_BACKUP_H

#include <stdbool.h>
#include <stddef.h>

/* Writes the tenant with this slug to a new file at path (an existing
 * file is refused). A file is complete only with its last line; one left
 * by a failed export is removed. *documents: how many were written. The
 * export reads without a snapshot (neither FerretDB nor a sharded MongoDB
 * gives one to plain reads): take it while nothing writes to the tenant. */
int tr_backup_export(const char *slug, const char *path, long long *documents, char *err,
		     size_t errlen);

/* Restores the backup at path. The whole file is checked first (shape,
 * every document's tenant, counts, checksum, and that this database has
 * applied exactly the file's migrations); then, when the tenant's id or
 * slug is in use: refused, unless replace and the id is the file's own, in
 * which case every document of that tenant is deleted first. The tenant
 * record is written last, so a tenant half restored cannot be logged in
 * to; a failure while writing deletes what was written. */
int tr_backup_import(const char *path, bool replace, long long *documents, char *err,
		     size_t errlen);

#endif
