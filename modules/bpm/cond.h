/* The conditions on a process's flows and the durations of its timers
 * (CONTRACT.md "BPM"): pure functions, no database, no I/O.
 *
 * A condition ("when" on a flow, conditionExpression in BPMN) is a
 * comparison of values, never code:
 *
 *   condition  := or
 *   or         := and ("or" and)*
 *   and        := comparison ("and" comparison)*
 *   comparison := unary [("==" | "!=" | "<" | "<=" | ">" | ">=") unary]
 *   unary      := "not" unary | "(" or ")" | literal | path
 *   literal    := integer | decimal | string | "true" | "false" | "null"
 *   path       := name ("." name)*      name: [A-Za-z_][A-Za-z0-9_]*
 *
 * So `not` binds tighter than a comparison (`not a == b` is `(not a) == b`),
 * a comparison tighter than `and`, `and` tighter than `or`; comparisons do
 * not chain (`a < b < c` is refused). Integers are int64 with an optional
 * leading '-' (no space after it), decimals are digits '.' digits (no
 * exponent), strings are quoted with " or ' and know the escapes \\ \" \'
 * only. Keywords are lower case and are never names, not even after a dot;
 * a path has no spaces around its dots and names a value in the process
 * variables, walking sub-documents (`order.total`).
 *
 * Values compare as follows. Numbers compare exactly whatever their width
 * (int32, int64, double; an integer against a double by their mathematical
 * values). == and != between values of different types are false and true
 * (`1 == "1"` is false; null == null is true), never an error. Ordering
 * (< <= > >=) is between two numbers or two strings (byte order), and an
 * error otherwise. A variable that is not there is an error ("unknown
 * variable"), not null. Documents and arrays equal nothing of another type;
 * two of them cannot be compared (an error). A path used as a condition on
 * its own, or under and / or / not, must hold true or false (an error
 * otherwise); a literal number, string or null there is refused when
 * parsing. `and` and `or` evaluate their right side only when needed.
 *
 * Errors are one line. Parse errors start "at N: " where N is the 0-based
 * byte offset in the source ("at 11: expected a value after '=='"). */
#ifndef TR_BPM_COND_H
#define TR_BPM_COND_H

#include <stddef.h>

#include <bson/bson.h>

#define BPM_COND_MAX_LEN 1000 /* bytes of source, the NUL not counted */
#define BPM_COND_MAX_DEPTH 64 /* parentheses and `not`s nested in each other */

/* A parsed condition: immutable once parsed, so one may be evaluated by
 * several threads at once. Opaque. */
struct bpm_cond;

/* Parses src (NUL-terminated, at most BPM_COND_MAX_LEN bytes). Returns a
 * condition, which the caller releases with bpm_cond_free, or NULL with a
 * one-line reason naming the byte offset in err (at most errlen bytes with
 * the NUL; err may be NULL when errlen is 0). Any bytes are safe to pass. */
struct bpm_cond *bpm_cond_parse(const char *src, char *err, size_t errlen);

/* Releases c (NULL is fine). */
void bpm_cond_free(struct bpm_cond *c);

/* Evaluates c against vars (a BSON document of process variables as parsed
 * from JSON; NULL is an empty one). Returns 1 true, 0 false, or -1 when it
 * cannot be evaluated, with err saying why (unknown variable "x.y", cannot
 * order a string and a number, ...). vars is only read. */
int bpm_cond_eval(const struct bpm_cond *c, const bson_t *vars, char *err, size_t errlen);

/* Parses src, evaluates it against vars and frees it: 1, 0, or -1 with
 * err on a parse error as on an evaluation error. */
int bpm_cond_check(const char *src, const bson_t *vars, char *err, size_t errlen);

/* An ISO 8601 duration of fixed length in milliseconds: "PT15M", "PT4H",
 * "P1D", "P1DT2H30M", "P2W" (weeks stand alone), "PT0S". A day is 24 hours.
 * Returns -1 when s is NULL, malformed, empty ("P", "PT", "P1DT"), negative,
 * fractional ("PT0.5S"), out of the range of long long, or uses years or
 * months (whose length depends on the calendar). Designators are upper
 * case, each at most once and in order (D, then T, then H, M, S). */
long long bpm_duration_ms(const char *s);

#endif
