/* Operator commands: `trellis <area> <verb> ...` (a module's struct
 * tr_command, module.h) and the programs in tools/ (trellis-demo). They run
 * outside the server, on the main thread, before any loop exists, and may
 * block; this is how they all get their configuration and the platform
 * they use, so that a tool needs no driver header of its own. */
#ifndef TR_COMMAND_H
#define TR_COMMAND_H

/* Loads the configuration - the documented defaults, the file named by
 * TRELLIS_CONFIG, then TRELLIS_* variables (there is no --config: a
 * command's arguments are its own) - logs warnings only, starts what a
 * command may use (the password hashing processes, the database pool, the
 * workers' Redis, the session store), runs run(argc, argv), stops them
 * again and returns run's exit code. When it cannot start, it says why on
 * stderr ("trellis: ...") and returns 2 for a configuration that does not
 * load or a database pool it refuses, 1 otherwise; run is then not called.
 * Call it once per process, before any thread exists. */
int tr_command_run(int (*run)(int argc, char **argv), int argc, char **argv);

#endif
