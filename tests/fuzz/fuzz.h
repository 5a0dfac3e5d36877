/* What the libFuzzer harnesses in tests/fuzz share. Each harness is one
 * program (build/fuzz/fuzz_<name>) that libFuzzer calls with one input at
 * a time; whatever a call allocates it frees before returning, because
 * LeakSanitizer reports what is left at exit as a crash.
 *
 * A harness checks more than "does not crash" where the code promises
 * more (a rendered document parses again, a decoded cursor encodes to the
 * same position): a broken promise calls fuzz_fail, which aborts, and
 * libFuzzer keeps the input as a crash. */
#ifndef TR_FUZZ_H
#define TR_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libFuzzer's entry points, declared for -Wmissing-prototypes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A NUL-terminated copy of the input, for the APIs that take C strings
 * (an input with a NUL byte is seen up to it, as a client's would be);
 * free() it. Aborts when out of memory: a harness has nothing to fall
 * back on. */
static inline char *
fuzz_cstring(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	if (size)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* A promise of the code under test is broken: say which, then abort so
 * that libFuzzer saves the input. */
#define fuzz_fail(...)                                                                             \
	do {                                                                                       \
		fprintf(stderr, "fuzz: " __VA_ARGS__);                                             \
		fputc('\n', stderr);                                                               \
		abort();                                                                           \
	} while (0)

#endif
