/* Tags: tenant-wide labels (name unique in the tenant, optional colour),
 * a resource served by the engine alone but for the colour's syntax. */
#include <string.h>

#include "system.h"

static const char *const sorts[] = {"-created_at", "created_at", "name", NULL};

static const struct tr_field fields[] = {
    {"name", TR_K_LINE, TR_F_REQUIRED | TR_F_FILTER | TR_F_NARROW, 1, 64, NULL, NULL},
    {"color", TR_K_LINE, TR_F_NULLABLE, 7, 7, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* A colour is #rrggbb; a new tag without one has none (null). */
static bool
tag_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	const char *color = tr_doc_str(set, "color");
	(void)e;

	if (color) {
		bool ok = color[0] == '#';
		for (int i = 1; i < 7 && ok; i++)
			ok = color[i] && strchr("0123456789abcdefABCDEF", color[i]);
		if (!ok) {
			tr_problem_field(c, "color", "must be a colour like #1a2b3c");
			return false;
		}
	}
	if (!old && !bson_has_field(set, "color"))
		BSON_APPEND_NULL(set, "color");
	return true;
}

const struct tr_resource system_tags = {
    .name = "tag",
    .coll = "tags",
    .path = "/v1/tags",
    .read = "system.tags.read",
    .write = "system.tags.write",
    .about = "A tenant-wide label; its name is unique in the tenant (409 otherwise).",
    .fields = fields,
    .sorts = sorts,
    .hook = tag_hook,
    .deletable = true,
};
