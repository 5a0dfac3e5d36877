/* Operator commands (command.h): the configuration and the platform a
 * command runs with, the same for `trellis <area> <verb>` and tools/. */
#include <sodium.h>
#include <stdio.h>

#include "command.h"
#include "config.h"
#include "dbpool.h"
#include "kvconn.h"
#include "log.h"
#include "pwhash.h"
#include "session.h"

/* The running configuration of a command (tr_cfg points here). */
static struct tr_config command_cfg;

int
tr_command_run(int (*run)(int argc, char **argv), int argc, char **argv)
{
	char err[512];
	int rc;

	if (sodium_init() < 0) {
		fprintf(stderr, "trellis: libsodium failed to initialise\n");
		return 1;
	}
	if (tr_config_load(&command_cfg, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "trellis: invalid configuration: %s\n", err);
		return 2;
	}
	tr_log_set_level(TR_LOG_WARN);
	tr_cfg = &command_cfg;
	/* Before any thread exists (mongoc starts its own later). */
	if (tr_pwhash_start() != 0) {
		fprintf(stderr, "trellis: cannot start the password hashing processes\n");
		return 1;
	}
	if (tr_dbpool_init(&command_cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "trellis: %s\n", err);
		tr_pwhash_shutdown();
		return 2;
	}
	tr_kv_init(&command_cfg);
	tr_session_init(&command_cfg);
	rc = run(argc, argv);
	tr_kv_close_all();
	tr_pwhash_shutdown();
	tr_dbpool_free();
	return rc;
}
