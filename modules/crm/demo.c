/* `trellis demo seed --tenant SLUG`: not built yet. */
#include <stdio.h>

#include "crm.h"

int
crm_demo_seed(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "trellis: demo seed is not available yet\n");
	return 1;
}
