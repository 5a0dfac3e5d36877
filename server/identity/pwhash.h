/* Password hashing (Argon2id, libsodium crypto_pwhash_str) in child
 * processes forked at start: (cores - 1) of them at nice 10, one hash
 * each at a time. A separate address space keeps Argon2's 64 MiB map and
 * unmap churn from stalling the loop thread. Worker threads call these and
 * block until the answer comes. */
#ifndef TR_PWHASH_H
#define TR_PWHASH_H

#include <sodium.h>
#include <stdbool.h>

#define TR_PWHASH_STRBYTES crypto_pwhash_STRBYTES

/* Forks the hashing processes. Call before any thread exists. 0 or -1. */
int tr_pwhash_start(void);
/* Hashes password into hash (TR_PWHASH_STRBYTES); false when out of memory. */
bool tr_pwhash(const char *password, char *hash);
/* True when password matches hash. */
bool tr_pwhash_verify(const char *hash, const char *password);
/* Ends the hashing processes (at shutdown, when no worker uses them). */
void tr_pwhash_shutdown(void);

#endif
