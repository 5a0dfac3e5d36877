/* Password hashing (Argon2id, libsodium crypto_pwhash_str) on its own small
 * pool of low-priority threads: at most (cores - 1) hashes run at once, at
 * nice 10, so a burst of logins never starves the loop thread of CPU.
 * Callers (worker threads) block until their hash is done. */
#ifndef TR_PWHASH_H
#define TR_PWHASH_H

#include <sodium.h>
#include <stdbool.h>

#define TR_PWHASH_STRBYTES crypto_pwhash_STRBYTES

/* Hashes password into hash (TR_PWHASH_STRBYTES); false when out of memory. */
bool tr_pwhash(const char *password, char *hash);
/* True when password matches hash. */
bool tr_pwhash_verify(const char *hash, const char *password);
/* Stops the hashing threads (at shutdown, when no worker uses them). */
void tr_pwhash_shutdown(void);

#endif
