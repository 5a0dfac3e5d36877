/* The BPM condition language and durations (modules/bpm/cond.c): what a
 * process definition's author writes on a flow, parsed when the
 * definition is saved and evaluated against an instance's variables.
 * An input is the variables as a JSON object on its first line (read as
 * a request body is, by tr_json_parse; anything else is no variables),
 * then the condition. The condition's text is also read as a duration.
 *
 * Beyond not crashing: parsing gives a condition or a reason; evaluation
 * gives 1, 0, or -1 with a reason; bpm_cond_check agrees with parse and
 * eval; a duration is -1 or not negative. */
#include "fuzz.h"

#include "bpm/cond.h"
#include "json.h"

static void
check_condition(const char *src, const bson_t *vars)
{
	char err[256] = "", err2[256] = "";
	struct bpm_cond *c = bpm_cond_parse(src, err, sizeof(err));
	int r, again;

	if (!c) {
		if (!err[0])
			fuzz_fail("a refused condition without a reason");
		if (bpm_cond_check(src, vars, err2, sizeof(err2)) != -1)
			fuzz_fail("bpm_cond_check takes what bpm_cond_parse refused");
		return;
	}
	r = bpm_cond_eval(c, vars, err, sizeof(err));
	if (r < -1 || r > 1)
		fuzz_fail("bpm_cond_eval returned %d", r);
	if (r == -1 && !err[0])
		fuzz_fail("an evaluation error without a reason");
	/* a condition is immutable: evaluating it again gives the same */
	if (bpm_cond_eval(c, vars, err2, sizeof(err2)) != r)
		fuzz_fail("two evaluations of one condition differ");
	again = bpm_cond_check(src, vars, err2, sizeof(err2));
	if (again != r)
		fuzz_fail("bpm_cond_check gives %d, parse and eval %d", again, r);
	/* a one-byte error buffer holds the NUL only */
	memset(err2, 0, sizeof(err2));
	(void)bpm_cond_eval(c, vars, err2, 1);
	if (err2[0])
		fuzz_fail("a one-byte error buffer holds text");
	bpm_cond_free(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t vlen = nl ? (size_t)(nl - data) : 0;
	bson_t vars;
	char err[256], *src;
	bool has_vars;

	has_vars = nl && tr_json_parse((const char *)data, vlen, &vars, err, sizeof(err)) == 0;
	if (nl && !has_vars)
		bson_destroy(&vars);
	src = nl ? fuzz_cstring(nl + 1, size - vlen - 1) : fuzz_cstring(data, size);
	check_condition(src, has_vars ? &vars : NULL);
	if (bpm_duration_ms(src) < -1)
		fuzz_fail("duration %s is negative", src);
	free(src);
	if (has_vars)
		bson_destroy(&vars);
	return 0;
}
