/* The directory (directory.h): each question goes to the module that
 * declared the hook answering it, the first in registry order. */
#include "directory.h"

#include "module.h"
#include "util.h"

int
tr_directory_head_of(struct tr_db *db, const char *user_hex, char out[25])
{
	out[0] = '\0';
	for (size_t m = 0; m < tr_nmodules; m++)
		if (tr_modules[m]->head_of) {
			int rc = tr_modules[m]->head_of(db, user_hex, out);
			if (rc != TR_OK)
				out[0] = '\0';
			return rc;
		}
	return TR_ENOTFOUND;
}

int
tr_directory_users_with_role(struct tr_db *db, const char *role, char (*out)[25], int max)
{
	for (size_t m = 0; m < tr_nmodules; m++)
		if (tr_modules[m]->users_with_role)
			return tr_modules[m]->users_with_role(db, role, out, max);
	return 0;
}
