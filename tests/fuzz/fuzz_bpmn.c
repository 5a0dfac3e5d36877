/* The BPMN reader (modules/bpm/bpmn_read.c over its XML reader, xml.c):
 * the bytes of a file a client uploads as a process definition. Beyond
 * not crashing: a refused file has problems listed, at most
 * BPM_BPMN_MAX_PROBLEMS and the "more" entry; an accepted one writes
 * (bpm_bpmn_write) to BPMN that reads again without problems into the
 * same nodes and flows. */
#include "fuzz.h"

#include "bpm/bpmn.h"

/* The definitions agree on field (absent in both is agreement). */
static void
check_same(const bson_t *a, const bson_t *b, const char *field)
{
	bson_iter_t ia, ib;
	bool in_a = bson_iter_init_find(&ia, a, field), in_b = bson_iter_init_find(&ib, b, field);

	if (in_a != in_b)
		fuzz_fail("\"%s\" %s after writing and reading again", field,
			  in_a ? "is lost" : "appears");
	if (in_a) {
		bson_t va = BSON_INITIALIZER, vb = BSON_INITIALIZER;
		bson_append_iter(&va, "v", 1, &ia);
		bson_append_iter(&vb, "v", 1, &ib);
		if (!bson_equal(&va, &vb))
			fuzz_fail("\"%s\" differs after writing and reading again", field);
		bson_destroy(&va);
		bson_destroy(&vb);
	}
}

static void
check_round_trip(const bson_t *definition)
{
	static const char *const fields[] = {"key",	    "name",  "start_on",
					     "start_every", "nodes", "flows"};
	bson_t again, problems = BSON_INITIALIZER;
	size_t len = 0;
	char *xml = bpm_bpmn_write(definition, &len);

	if (!xml)
		fuzz_fail("bpm_bpmn_write returned NULL");
	if (bpm_bpmn_read(xml, len, &again, &problems) != 0) {
		char *listed = bson_as_relaxed_extended_json(&problems, NULL);
		fuzz_fail("the written BPMN is refused: %s\n%s", listed, xml);
	}
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		check_same(definition, &again, fields[i]);
	free(xml);
	bson_destroy(&again);
	bson_destroy(&problems);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bson_t definition, problems = BSON_INITIALIZER;
	uint32_t n;

	if (bpm_bpmn_read((const char *)data, size, &definition, &problems) == 0) {
		if (bson_count_keys(&problems) != 0)
			fuzz_fail("a file read without problems listed some");
		check_round_trip(&definition);
	} else {
		n = bson_count_keys(&problems);
		if (n == 0 || n > BPM_BPMN_MAX_PROBLEMS + 1)
			fuzz_fail("a refused file with %u problems listed", n);
		if (!bson_empty(&definition))
			fuzz_fail("a refused file left a definition");
	}
	bson_destroy(&definition);
	bson_destroy(&problems);
	return 0;
}
