/* Hierarchies without loops (people.h): a department under another
 * (parent_id), an employee reporting to another (manager_id).
 *
 * Walking up from the new parent and refusing when the walk meets the
 * record itself is right for one writer. Two writers are not: one moving
 * Sales under EMEA while another moves EMEA under Sales each walk a tree
 * without the other's move, both pass, and the stored tree has a loop.
 * So each tree has a guard record per tenant ("erp_hr_trees", key
 * `tree`) listing its recent moves, and a move goes:
 *
 *   1. the record is loaded at version v (the engine, before the hook);
 *   2. the guard is read at its version g;
 *   3. the walk goes up from the new parent over the stored parents and,
 *      for each record x, the parents of the guard's moves {x, p, v'} that
 *      may still land: those whose record is still at version v' (once x
 *      moved past v', that write landed or never will, and the stored
 *      record says what holds). Meeting the record itself: refused, and
 *      nothing was written;
 *   4. the move {node, parent, v} is appended to the guard by a write on
 *      version g. Of writers appending on the same version one wins; the
 *      others go back to 2. So the guard orders every move of the tree, in
 *      any process, and each walk saw every move ordered before its own;
 *   5. the record is written on version v (the engine).
 *
 * Of the moves that would close a loop together, the last to append saw
 * all the others, stored or still pending, and was refused. A move whose
 * write failed after its append (a name taken: 409) lingers as a possible
 * parent until its record changes or the window passes: at worst a
 * refusal that a moment later would pass, never a loop. The window is far
 * longer than a write may take after its hook (a writer's claim waits
 * claim_wait_ms for another, and the writer gives up half a lease after
 * claiming). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "people.h"
#include "util.h"

#define MOVE_WINDOW_MIN_MS (60LL * 1000)
#define MAX_MOVES 1000	  /* recent moves of one tree the guard keeps */
#define MAX_WALK 256	  /* records a walk visits before it refuses */
#define GUARD_ATTEMPTS 50 /* appends lost to other writers before 409 record-busy */

const struct erp_tree erp_department_tree = {"departments", ERP_DEPARTMENTS, "parent_id"};
const struct erp_tree erp_manager_tree = {"managers", ERP_EMPLOYEES, "manager_id"};

struct move {
	bson_oid_t node, parent;
	int64_t version, at;
};

struct walk {
	struct tr_ctx *c;
	const struct erp_tree *t;
	bson_oid_t node;
	const struct move *moves;
	int nmoves;
	bson_oid_t seen[MAX_WALK];
	int nseen;
	/* the path from the new parent to the record met, as indexes of seen */
	int path[MAX_WALK];
	int depth;
	bool too_far;
};

/* ---- the guard ---- */

static int
read_moves(const bson_t *guard, struct move *moves, int max)
{
	bson_iter_t it, arr;
	int n = 0;

	if (!bson_iter_init_find(&it, guard, "moves") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &arr))
		return 0;
	while (n < max && bson_iter_next(&arr)) {
		bson_t doc;
		const uint8_t *data;
		uint32_t len;
		if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
			continue;
		bson_iter_document(&arr, &len, &data);
		if (!bson_init_static(&doc, data, len))
			continue;
		struct move *mv = &moves[n];
		if (!tr_doc_oid(&doc, "node", &mv->node) ||
		    !tr_doc_oid(&doc, "parent", &mv->parent))
			continue;
		mv->version = tr_doc_int(&doc, "v", 0);
		mv->at = tr_doc_int(&doc, "at", 0);
		n++;
	}
	return n;
}

static void
write_moves(bson_t *set, const struct move *moves, int n)
{
	bson_t arr, m;
	char key[16];
	const char *k;

	BSON_APPEND_ARRAY_BEGIN(set, "moves", &arr);
	for (int i = 0; i < n; i++) {
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &m);
		BSON_APPEND_OID(&m, "node", &moves[i].node);
		BSON_APPEND_OID(&m, "parent", &moves[i].parent);
		BSON_APPEND_INT64(&m, "v", moves[i].version);
		BSON_APPEND_INT64(&m, "at", moves[i].at);
		bson_append_document_end(&arr, &m);
	}
	bson_append_array_end(set, &arr);
}

/* The tenant's guard record of t, made when missing. */
static int
load_guard(struct tr_db *db, const struct erp_tree *t, bson_t *guard)
{
	bson_t filter = BSON_INITIALIZER, fields = BSON_INITIALIZER;
	int rc;

	BSON_APPEND_UTF8(&filter, "tree", t->name);
	rc = tr_db_find_one(db, ERP_HR_TREES, &filter, guard);
	if (rc == TR_ENOTFOUND) {
		bson_t empty;
		bson_destroy(guard);
		BSON_APPEND_UTF8(&fields, "tree", t->name);
		BSON_APPEND_ARRAY_BEGIN(&fields, "moves", &empty);
		bson_append_array_end(&fields, &empty);
		rc = tr_db_insert(db, ERP_HR_TREES, &fields, guard);
		if (rc == TR_EDUPLICATE) { /* another writer made it first */
			bson_destroy(guard);
			rc = tr_db_find_one(db, ERP_HR_TREES, &filter, guard);
		}
	}
	bson_destroy(&filter);
	bson_destroy(&fields);
	return rc;
}

/* How long a move stays listed: a minute, or longer when claims last. */
static int64_t
move_window_ms(void)
{
	int64_t claims = tr_cfg ? 3LL * (tr_cfg->claim_lease_ms + tr_cfg->claim_wait_ms) : 0;

	return claims > MOVE_WINDOW_MIN_MS ? claims : MOVE_WINDOW_MIN_MS;
}

/* The guard's moves still in the window, into moves; their number. */
static int
recent_moves(const bson_t *guard, int64_t now, struct move *moves)
{
	int all = read_moves(guard, moves, MAX_MOVES), kept = 0;

	for (int i = 0; i < all; i++)
		if (moves[i].at >= now - move_window_ms())
			moves[kept++] = moves[i];
	return kept;
}

/* Appends mine to the moves listed (n of them) on the guard's version. */
static int
append_move(struct tr_db *db, const bson_t *guard, struct move *moves, int n,
	    const struct move *mine)
{
	bson_t set = BSON_INITIALIZER, stored;
	bson_oid_t id;
	char hex[25];
	int rc;

	if (!tr_doc_oid(guard, "_id", &id)) {
		bson_destroy(&set);
		return TR_EINTERNAL;
	}
	/* the oldest goes: with a thousand moves after it, its write
	 * (milliseconds after its append) has landed or never will */
	if (n == MAX_MOVES)
		memmove(moves, moves + 1, (size_t)--n * sizeof(*moves));
	moves[n++] = *mine;
	write_moves(&set, moves, n);
	bson_oid_to_string(&id, hex);
	rc = tr_db_update(db, ERP_HR_TREES, hex, tr_doc_int(guard, "version", 0), &set, NULL,
			  &stored);
	bson_destroy(&set);
	bson_destroy(&stored);
	return rc;
}

/* ---- the walk ---- */

static int
seen_index(const struct walk *w, const bson_oid_t *id)
{
	for (int i = 0; i < w->nseen; i++)
		if (bson_oid_equal(&w->seen[i], id))
			return i;
	return -1;
}

/* Does a walk up from x meet the node? Depth first over x's stored parent
 * and the parents of moves of x that may still land; on the way back
 * w->path holds the records from the new parent to the last before the
 * node. */
static int
reaches(struct walk *w, const bson_oid_t *x, int depth, bool *found)
{
	bson_oid_t stored_parent;
	bool has_parent;
	int64_t version;
	int here, rc;
	char hex[25];
	bson_t record;

	if (bson_oid_equal(x, &w->node)) {
		*found = true;
		w->depth = depth;
		return TR_OK;
	}
	if (seen_index(w, x) >= 0)
		return TR_OK;
	if (w->nseen == MAX_WALK) {
		w->too_far = true;
		return TR_OK;
	}
	here = w->nseen++;
	bson_oid_copy(x, &w->seen[here]);
	w->path[depth] = here;
	bson_oid_to_string(x, hex);
	rc = tr_db_get(w->c->db, w->t->coll, hex, &record);
	has_parent = rc == TR_OK && tr_doc_oid(&record, w->t->field, &stored_parent);
	version = tr_doc_int(&record, "version", 0);
	bson_destroy(&record);
	if (rc == TR_ENOTFOUND) /* gone: nothing above it */
		return TR_OK;
	if (rc != TR_OK)
		return rc;
	if (has_parent && (rc = reaches(w, &stored_parent, depth + 1, found)) != TR_OK)
		return rc;
	for (int i = 0; i < w->nmoves && !*found && !w->too_far; i++)
		if (bson_oid_equal(&w->moves[i].node, x) && w->moves[i].version >= version &&
		    (rc = reaches(w, &w->moves[i].parent, depth + 1, found)) != TR_OK)
			return rc;
	return TR_OK;
}

/* "Sales -> EMEA -> Sales": the node, the path, the node again. */
static const char *
loop_message(struct walk *w, const char *name)
{
	size_t cap = 1024, n = 0;
	char *m = tr_arena_alloc(w->c->req->arena, cap);

	if (!m)
		return "would close a loop";
	n += (size_t)snprintf(m, cap, "would close a loop: %s", name);
	for (int i = 0; i < w->depth && n < cap; i++) {
		char hex[25];
		bson_t record;
		bson_oid_to_string(&w->seen[w->path[i]], hex);
		const char *other = "?";
		if (tr_db_get(w->c->db, w->t->coll, hex, &record) == TR_OK &&
		    tr_doc_str(&record, "name"))
			other = tr_doc_str(&record, "name");
		n += (size_t)snprintf(m + n, cap - n, " -> %s", other);
		bson_destroy(&record);
	}
	if (n < cap)
		snprintf(m + n, cap - n, " -> %s", name);
	if (n >= cap - 4)
		memcpy(m + cap - 4, "...", 4);
	return m;
}

/* Resets w for another walk over moves. */
static void
walk_init(struct walk *w, struct tr_ctx *c, const struct erp_tree *t, const bson_oid_t *node,
	  const struct move *moves, int n)
{
	memset(w, 0, sizeof(*w));
	w->c = c;
	w->t = t;
	bson_oid_copy(node, &w->node);
	w->moves = moves;
	w->nmoves = n;
}

bool
erp_tree_may_move(struct tr_ctx *c, const struct erp_tree *t, const bson_t *old, const char *name,
		  const bson_oid_t *parent)
{
	struct walk *w = tr_arena_alloc(c->req->arena, sizeof(*w));
	struct move *moves = malloc((MAX_MOVES + 1) * sizeof(*moves));
	struct move mine;
	bool found = false, ok = false;
	int rc = TR_EBUSY;

	if (!w || !moves) {
		tr_problem_from_err(c, TR_ENOMEM);
		goto out;
	}
	if (!tr_doc_oid(old, "_id", &mine.node)) {
		tr_problem_from_err(c, TR_EINTERNAL);
		goto out;
	}
	walk_init(w, c, t, &mine.node, NULL, 0);
	if (bson_oid_equal(parent, &mine.node)) { /* under itself */
		tr_problem_field(c, t->field, loop_message(w, name));
		goto out;
	}
	bson_oid_copy(parent, &mine.parent);
	mine.version = tr_doc_int(old, "version", 0);
	for (int attempt = 0; attempt < GUARD_ATTEMPTS; attempt++) {
		bson_t guard;
		mine.at = tr_now_ms();
		rc = load_guard(c->db, t, &guard);
		int n = rc == TR_OK ? recent_moves(&guard, mine.at, moves) : 0;
		walk_init(w, c, t, &mine.node, moves, n);
		if (rc == TR_OK)
			rc = reaches(w, parent, 0, &found);
		if (rc == TR_OK && !found && !w->too_far)
			rc = append_move(c->db, &guard, moves, n, &mine);
		bson_destroy(&guard);
		if (rc != TR_EVERSION && rc != TR_EBUSY)
			break; /* done, refused, or failed */
	}
	if (rc == TR_EVERSION)
		rc = TR_EBUSY;
	if (rc != TR_OK)
		tr_problem_from_err(c, rc);
	else if (found)
		tr_problem_field(c, t->field, loop_message(w, name));
	else if (w->too_far) {
		char *m = tr_arena_alloc(c->req->arena, 96);
		if (m)
			snprintf(m, 96, "has more than %d records above it", MAX_WALK);
		tr_problem_field(c, t->field, m ? m : "has too many records above it");
	} else
		ok = true;
out:
	free(moves);
	return ok;
}
