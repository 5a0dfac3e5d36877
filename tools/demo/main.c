/* trellis-demo: the demo data, a program of its own beside the server.
 *
 *   trellis-demo seed --tenant SLUG < password   a CRM tenant that looks
 *                                                lived in (demo.c)
 *
 * It is linked with the server's code but is no part of the server: it
 * runs as `trellis <area> <verb>` commands do (command.h), configured by
 * TRELLIS_CONFIG and TRELLIS_* variables, and like a module it sees only
 * the platform's public headers (make boundaries checks it).
 *
 * Exit codes: those of the seed (demo.c); 2 for a missing or unknown
 * command. */
#include <stdio.h>
#include <string.h>

#include "command.h"
#include "demo.h"

int
main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "seed") != 0) {
		if (argc >= 2)
			fprintf(stderr, "trellis-demo: unknown command: %s\n", argv[1]);
		crm_demo_usage();
		return 2;
	}
	return tr_command_run(crm_demo_seed, argc - 2, argv + 2);
}
