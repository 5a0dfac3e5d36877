/* The organisation's directory as the platform offers it to every module:
 * questions about people that one module answers (the ERP, from its
 * departments and employees) and others ask (the BPM, assigning a step to
 * "the requester's head of department"), without either including the
 * other's headers. The answering module declares the hook in its
 * tr_module (module.h); these calls find it. */
#ifndef TR_DIRECTORY_H
#define TR_DIRECTORY_H

struct tr_db;

/* The user heading user_hex's department in db's tenant (module.h,
 * tr_module.head_of), into out (24 hex digits and a NUL): TR_OK, or
 * TR_ENOTFOUND when no module answers such questions or the answer is no
 * one, or another TR_E* code (TR_EUNAVAILABLE: the database). Worker
 * threads (it reads the database). */
int tr_directory_head_of(struct tr_db *db, const char *user_hex, char out[25]);

/* The active users holding role in db's tenant (module.h,
 * tr_module.users_with_role), at most max, into out: how many (0 when no
 * module answers), or a negative TR_E* code. Worker threads. */
int tr_directory_users_with_role(struct tr_db *db, const char *role, char (*out)[25], int max);

#endif
