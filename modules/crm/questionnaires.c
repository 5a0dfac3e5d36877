/* Questionnaires (issue 17): a title, an intro and up to
 * crm_questionnaire_max_questions questions, each single or multiple
 * choice, a scale or free text; status draft -> open -> closed (and back
 * to open). Contacts answer them through a link of their own
 * (questionnaire_links.c); this file holds the questionnaire as a
 * resource, the rules its questions follow, the check of an answer
 * against them, and the results.
 *
 * Questions change only while the questionnaire is a draft: links are
 * sent, and answers taken, only once it is open, and it never goes back
 * to draft, so every answer was given to the questions stored now. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm.h"
#include "db.h"
#include "json.h"

#define KEY_MAX 40	      /* characters of a question's key */
#define QUESTION_TEXT_MAX 500 /* characters of a question's text */
#define OPTION_MAX 200	      /* characters of one option */
#define SCALE_TOP 100	      /* a scale runs within 0..SCALE_TOP */
#define FIELD_MAX 96	      /* bytes of a field name in a problem */
#define LATEST_TEXTS 10	      /* text answers the results show */
/* Questions the results hold room for: crm_questionnaire_max_questions
 * goes up to 100. */
#define RESULT_QUESTIONS 128
/* Counters per question: a scale's values, more than the 50 options a
 * choice may have at most (crm_questionnaire_max_options). */
#define COUNT_SLOTS (SCALE_TOP + 1)
/* Options one question's check holds: above the most the config allows. */
#define OPTIONS_ROOM 64

static const char *const statuses[] = {"draft", "open", "closed", NULL};
static const char *const sorts[] = {"-created_at", "created_at", "title", NULL};
static const char *const types[] = {"single", "multiple", "scale", "text", NULL};

static const struct tr_field fields[] = {
    {"title", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"intro", TR_K_TEXT, TR_F_NULLABLE, 1, 2000, NULL, NULL},
    {"questions", TR_K_ARRAY, TR_F_REQUIRED, 0, 0, NULL, NULL},
    {"status", TR_K_ENUM, TR_F_FILTER, 0, 0, statuses, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* A new questionnaire is a draft, or open at once; an open one closes and
 * reopens; none goes back to draft. */
static const struct tr_transition moves[] = {
    {NULL, "draft", NULL, NULL},     {NULL, "open", NULL, NULL},     {"draft", "open", NULL, NULL},
    {"draft", "closed", NULL, NULL}, {"open", "closed", NULL, NULL}, {"closed", "open", NULL, NULL},
    {NULL, NULL, NULL, NULL},
};
static const struct tr_states states = {"status", moves};

/* ---- small helpers ---- */

static size_t
code_points(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

static bool
one_of(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

/* "questions[3].key" (or "questions[3]" for member NULL) in the arena. */
static const char *
question_field(struct tr_ctx *c, unsigned i, const char *member)
{
	char *f = tr_arena_alloc(c->req->arena, FIELD_MAX);

	if (member)
		snprintf(f, FIELD_MAX, "questions[%u].%.40s", i, member);
	else
		snprintf(f, FIELD_MAX, "questions[%u]", i);
	return f;
}

static const char *
printed(struct tr_ctx *c, const char *fmt, long a, long b)
{
	char *m = tr_arena_alloc(c->req->arena, 160);

	snprintf(m, 160, fmt, a, b);
	return m;
}

static bool
is_integer(const bson_iter_t *it)
{
	return BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it);
}

/* A key: a lower-case letter, then lower-case letters, digits and "_". */
static bool
key_ok(const char *k)
{
	size_t n = strlen(k);

	if (n < 1 || n > KEY_MAX || k[0] < 'a' || k[0] > 'z')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
			return false;
	return true;
}

/* ---- the questions ---- */

/* The options of a choice question: 2..crm_questionnaire_max_options
 * distinct one-line strings, copied to out. */
static bool
options_ok(struct tr_ctx *c, unsigned qi, bson_iter_t *it, bson_t *out)
{
	long max = tr_config_int("crm_questionnaire_max_options");
	const char *f = question_field(c, qi, "options");
	const char *seen[OPTIONS_ROOM];
	bson_iter_t o;
	bson_t list;
	char key[16];
	long n = 0;
	bool ok = true;

	if (!BSON_ITER_HOLDS_ARRAY(it) || !bson_iter_recurse(it, &o)) {
		tr_problem_field(c, f, "must be an array of options");
		return false;
	}
	BSON_APPEND_ARRAY_BEGIN(out, "options", &list);
	while (ok && bson_iter_next(&o)) {
		const char *v, *k;
		if (n >= max || n >= (long)(sizeof(seen) / sizeof(seen[0]))) {
			tr_problem_field(c, f, printed(c, "must hold 2 to %ld options", max, 0));
			ok = false;
			break;
		}
		v = BSON_ITER_HOLDS_UTF8(&o) ? bson_iter_utf8(&o, NULL) : NULL;
		if (!v || !*v || code_points(v) > OPTION_MAX || strpbrk(v, "\r\n\t")) {
			tr_problem_field(c, f,
					 printed(c,
						 "each option is a one-line string of 1 to %ld "
						 "characters",
						 OPTION_MAX, 0));
			ok = false;
			break;
		}
		for (long j = 0; j < n; j++)
			if (strcmp(seen[j], v) == 0) {
				tr_problem_field(c, f, "options must differ from each other");
				ok = false;
			}
		seen[n] = v;
		bson_uint32_to_string((uint32_t)n++, &k, key, sizeof(key));
		BSON_APPEND_UTF8(&list, k, v);
	}
	bson_append_array_end(out, &list);
	if (ok && n < 2) {
		tr_problem_field(c, f, printed(c, "must hold 2 to %ld options", max, 0));
		ok = false;
	}
	return ok;
}

/* One question (element qi of the body's array) into out as stored:
 * {key, text, type, required, options | min, max}. */
static bool
question_ok(struct tr_ctx *c, unsigned qi, bson_iter_t *elem, bson_t *out, const char **key_out)
{
	static const char *const members[] = {"key", "text", "type",	 "options",
					      "min", "max",  "required", NULL};
	const char *key = NULL, *text = NULL, *type = NULL;
	bson_iter_t q, opts = {0};
	bool has_opts = false, has_min = false, has_max = false, required = false, ok = true;
	int64_t min = 0, max = 0;

	if (!BSON_ITER_HOLDS_DOCUMENT(elem) || !bson_iter_recurse(elem, &q)) {
		tr_problem_field(c, question_field(c, qi, NULL), "must be an object");
		return false;
	}
	while (bson_iter_next(&q)) {
		const char *m = bson_iter_key(&q);
		if (!one_of(m, members)) {
			tr_problem_field(c, question_field(c, qi, m),
					 "is not a member of a question (key, text, type, options, "
					 "min, max, required)");
			ok = false;
		} else if (strcmp(m, "key") == 0) {
			key = BSON_ITER_HOLDS_UTF8(&q) ? bson_iter_utf8(&q, NULL) : "";
		} else if (strcmp(m, "text") == 0) {
			text = BSON_ITER_HOLDS_UTF8(&q) ? bson_iter_utf8(&q, NULL) : "";
		} else if (strcmp(m, "type") == 0) {
			type = BSON_ITER_HOLDS_UTF8(&q) ? bson_iter_utf8(&q, NULL) : "";
		} else if (strcmp(m, "options") == 0) {
			has_opts = !BSON_ITER_HOLDS_NULL(&q);
			opts = q;
		} else if (strcmp(m, "required") == 0) {
			if (!BSON_ITER_HOLDS_BOOL(&q)) {
				tr_problem_field(c, question_field(c, qi, m),
						 "must be true or false");
				ok = false;
			} else
				required = bson_iter_bool(&q);
		} else { /* min, max */
			bool is_min = strcmp(m, "min") == 0;
			if (!is_integer(&q)) {
				tr_problem_field(c, question_field(c, qi, m), "must be an integer");
				ok = false;
			} else if (is_min) {
				has_min = true;
				min = bson_iter_as_int64(&q);
			} else {
				has_max = true;
				max = bson_iter_as_int64(&q);
			}
		}
	}
	if (!key || !key_ok(key)) {
		tr_problem_field(c, question_field(c, qi, "key"),
				 printed(c,
					 "must be 1 to %ld characters: a lower-case letter, then "
					 "lower-case letters, digits and _",
					 KEY_MAX, 0));
		ok = false;
	}
	if (!text || !*text || code_points(text) > QUESTION_TEXT_MAX) {
		tr_problem_field(
		    c, question_field(c, qi, "text"),
		    printed(c, "must be a string of 1 to %ld characters", QUESTION_TEXT_MAX, 0));
		ok = false;
	}
	if (!type || !one_of(type, types)) {
		tr_problem_field(c, question_field(c, qi, "type"),
				 "must be one of single, multiple, scale, text");
		return false;
	}
	bool choice = strcmp(type, "single") == 0 || strcmp(type, "multiple") == 0;
	bool scale = strcmp(type, "scale") == 0;
	if (!choice && has_opts) {
		tr_problem_field(c, question_field(c, qi, "options"),
				 "only single and multiple choice questions have options");
		ok = false;
	}
	if (choice && !has_opts) {
		tr_problem_field(c, question_field(c, qi, "options"),
				 "a choice question needs its options");
		ok = false;
	}
	if (!scale && (has_min || has_max)) {
		tr_problem_field(c, question_field(c, qi, has_min ? "min" : "max"),
				 "only scale questions have min and max");
		ok = false;
	}
	if (scale && (!has_min || !has_max || min < 0 || max > SCALE_TOP || min >= max)) {
		tr_problem_field(c, question_field(c, qi, !has_min || min < 0 ? "min" : "max"),
				 printed(c,
					 "a scale needs integers min and max, %ld <= min < max "
					 "<= %ld",
					 0, SCALE_TOP));
		ok = false;
	}
	if (!ok)
		return false;
	*key_out = key;
	BSON_APPEND_UTF8(out, "key", key);
	BSON_APPEND_UTF8(out, "text", text);
	BSON_APPEND_UTF8(out, "type", type);
	BSON_APPEND_BOOL(out, "required", required);
	if (choice)
		return options_ok(c, qi, &opts, out);
	if (scale) {
		BSON_APPEND_INT64(out, "min", min);
		BSON_APPEND_INT64(out, "max", max);
	}
	return true;
}

/* questions: 1..crm_questionnaire_max_questions, keys distinct; stored
 * as checked. Only a draft's questions change (409 otherwise). */
static bool
questionnaire_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	long max = tr_config_int("crm_questionnaire_max_questions");
	const char *keys[512];
	bson_iter_t it, q;
	bson_t list;
	unsigned n = 0;
	bool ok = true;
	(void)e;

	if (!bson_iter_init_find(&it, &c->req->body, "questions") || BSON_ITER_HOLDS_NULL(&it))
		return true; /* not changed (the engine requires it on create) */
	if (old) {
		const char *status = tr_doc_str(old, "status");
		if (!status || strcmp(status, "draft") != 0) {
			tr_problem(c, 409, "conflict",
				   "questions change only while the questionnaire is a draft; "
				   "make a new questionnaire");
			return false;
		}
	}
	if (!bson_iter_recurse(&it, &q))
		return false;
	BSON_APPEND_ARRAY_BEGIN(set, "questions", &list);
	while (bson_iter_next(&q)) {
		bson_t one;
		char idx[16];
		const char *k;
		if ((long)n >= max || n >= sizeof(keys) / sizeof(keys[0])) {
			n++;
			continue;
		}
		bson_uint32_to_string(n, &k, idx, sizeof(idx));
		BSON_APPEND_DOCUMENT_BEGIN(&list, k, &one);
		keys[n] = NULL;
		if (question_ok(c, n, &q, &one, &keys[n])) {
			for (unsigned j = 0; j < n; j++)
				if (keys[j] && strcmp(keys[j], keys[n]) == 0) {
					char *m = tr_arena_alloc(c->req->arena, 64);
					snprintf(m, 64, "repeats the key of questions[%u]", j);
					tr_problem_field(c, question_field(c, n, "key"), m);
					ok = false;
				}
		} else {
			keys[n] = NULL;
			ok = false;
		}
		bson_append_document_end(&list, &one);
		n++;
	}
	bson_append_array_end(set, &list);
	if (n == 0 || (long)n > max) {
		tr_problem_field(c, "questions",
				 printed(c, "must hold 1 to %ld questions", max, 0));
		ok = false;
	}
	return ok;
}

/* A questionnaire that was sent keeps its links' history: close it. */
static bool
questionnaire_may_delete(struct tr_ctx *c, const bson_t *stored)
{
	bson_t filter = BSON_INITIALIZER;
	bson_oid_t id;
	long long n = 0;
	int rc;

	tr_doc_oid(stored, "_id", &id);
	BSON_APPEND_OID(&filter, "questionnaire_id", &id);
	rc = tr_db_count(c->db, CRM_Q_INVITATIONS, &filter, &n);
	bson_destroy(&filter);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		return false;
	}
	if (n > 0) {
		tr_problem(c, 409, "conflict",
			   "the questionnaire was sent to contacts; close it instead");
		return false;
	}
	return true;
}

const struct tr_resource crm_questionnaires = {
    .name = "questionnaire",
    .coll = CRM_QUESTIONNAIRES,
    .path = "/v1/crm/questionnaires",
    .read = "crm.questionnaires.read",
    .write = "crm.questionnaires.write",
    .about = "Questions (single or multiple choice, scale, text) sent to contacts by a link "
	     "each; status draft -> open -> closed (reopened to open); questions change only "
	     "while a draft.",
    .fields = fields,
    .sorts = sorts,
    .states = &states,
    .hook = questionnaire_hook,
    .may_delete = questionnaire_may_delete,
    .deletable = true,
};

/* ---- answers ---- */

/* "answers.<key>" in the arena (the key cut short when long). */
static const char *
answer_field(struct tr_ctx *c, const char *key)
{
	char *f = tr_arena_alloc(c->req->arena, FIELD_MAX);

	snprintf(f, FIELD_MAX, "answers.%.64s", key);
	return f;
}

static bool
offered(const bson_t *question, const char *v)
{
	bson_iter_t it, o;

	if (!bson_iter_init_find(&it, question, "options") || !bson_iter_recurse(&it, &o))
		return false;
	while (bson_iter_next(&o))
		if (BSON_ITER_HOLDS_UTF8(&o) && strcmp(bson_iter_utf8(&o, NULL), v) == 0)
			return true;
	return false;
}

/* One answer v to question into out under its key. */
static bool
answer_ok(struct tr_ctx *c, const bson_t *question, const char *key, bson_iter_t *v, bson_t *out)
{
	const char *type = tr_doc_str(question, "type"), *f = answer_field(c, key);

	if (strcmp(type, "single") == 0) {
		if (!BSON_ITER_HOLDS_UTF8(v) || !offered(question, bson_iter_utf8(v, NULL))) {
			tr_problem_field(c, f, "must be one of the question's options");
			return false;
		}
		BSON_APPEND_UTF8(out, key, bson_iter_utf8(v, NULL));
		return true;
	}
	if (strcmp(type, "multiple") == 0) {
		const char *picked[OPTIONS_ROOM];
		bson_iter_t o;
		bson_t list;
		uint32_t n = 0;
		bool ok = BSON_ITER_HOLDS_ARRAY(v) && bson_iter_recurse(v, &o);
		if (ok) {
			BSON_APPEND_ARRAY_BEGIN(out, key, &list);
			while (ok && bson_iter_next(&o)) {
				char idx[16];
				const char *k, *s;
				s = BSON_ITER_HOLDS_UTF8(&o) ? bson_iter_utf8(&o, NULL) : NULL;
				ok = s && n < OPTIONS_ROOM && offered(question, s);
				for (uint32_t j = 0; ok && j < n; j++)
					ok = strcmp(picked[j], s) != 0;
				if (ok) {
					picked[n] = s;
					bson_uint32_to_string(n++, &k, idx, sizeof(idx));
					BSON_APPEND_UTF8(&list, k, s);
				}
			}
			bson_append_array_end(out, &list);
		}
		if (!ok || n == 0) {
			tr_problem_field(
			    c, f,
			    "must be an array of one or more of the question's options, "
			    "each once");
			return false;
		}
		return true;
	}
	if (strcmp(type, "scale") == 0) {
		int64_t min = tr_doc_int(question, "min", 0), max = tr_doc_int(question, "max", 0);
		if (!is_integer(v) || bson_iter_as_int64(v) < min || bson_iter_as_int64(v) > max) {
			tr_problem_field(
			    c, f,
			    printed(c, "must be an integer from %ld to %ld", (long)min, (long)max));
			return false;
		}
		BSON_APPEND_INT64(out, key, bson_iter_as_int64(v));
		return true;
	}
	/* text */
	long max = tr_config_int("crm_questionnaire_text_max");
	if (!BSON_ITER_HOLDS_UTF8(v) || !*bson_iter_utf8(v, NULL) ||
	    (long)code_points(bson_iter_utf8(v, NULL)) > max) {
		tr_problem_field(c, f, printed(c, "must be a text of 1 to %ld characters", max, 0));
		return false;
	}
	BSON_APPEND_UTF8(out, key, bson_iter_utf8(v, NULL));
	return true;
}

bool
crm_answers_check(struct tr_ctx *c, const bson_t *questionnaire, const bson_t *answers, bson_t *out)
{
	bson_iter_t qs, q, a;
	bool ok = true;

	/* members that name no question */
	if (bson_iter_init(&a, answers))
		while (bson_iter_next(&a)) {
			bool known = false;
			if (bson_iter_init_find(&qs, questionnaire, "questions") &&
			    bson_iter_recurse(&qs, &q))
				while (!known && bson_iter_next(&q)) {
					bson_t one;
					uint32_t len;
					const uint8_t *data;
					bson_iter_document(&q, &len, &data);
					if (bson_init_static(&one, data, len))
						known = strcmp(tr_doc_str(&one, "key"),
							       bson_iter_key(&a)) == 0;
				}
			if (!known) {
				tr_problem_field(c, answer_field(c, bson_iter_key(&a)),
						 "is not a question of this questionnaire");
				ok = false;
			}
		}
	if (!bson_iter_init_find(&qs, questionnaire, "questions") || !bson_iter_recurse(&qs, &q))
		return false;
	while (bson_iter_next(&q)) {
		bson_t one;
		uint32_t len;
		const uint8_t *data;
		const char *key;
		bson_iter_document(&q, &len, &data);
		if (!bson_init_static(&one, data, len))
			continue;
		key = tr_doc_str(&one, "key");
		if (!bson_iter_init_find(&a, answers, key) || BSON_ITER_HOLDS_NULL(&a)) {
			if (bson_iter_init_find(&a, &one, "required") && bson_iter_as_bool(&a)) {
				tr_problem_field(c, answer_field(c, key), "is required");
				ok = false;
			}
			continue;
		}
		if (!answer_ok(c, &one, key, &a, out))
			ok = false;
	}
	return ok;
}

/* ---- results ---- */

/* What the walk over a questionnaire's answers counts, per question: for
 * choices a count per option, for scales a count per value from min to
 * max, for texts the LATEST_TEXTS newest answers. */
struct tally {
	const bson_t *questionnaire;
	int64_t answered;
	int64_t *counts[RESULT_QUESTIONS]; /* per question, COUNT_SLOTS each */
	int64_t given[RESULT_QUESTIONS];   /* answers that answered the question */
	struct text_answer {
		char at[32], id[25];
		const char *text; /* strdup'd */
	} latest[RESULT_QUESTIONS][LATEST_TEXTS];
};

static int
option_index(const bson_t *question, const char *v)
{
	bson_iter_t it, o;
	int i = 0;

	if (bson_iter_init_find(&it, question, "options") && bson_iter_recurse(&it, &o))
		for (; bson_iter_next(&o); i++)
			if (BSON_ITER_HOLDS_UTF8(&o) && strcmp(bson_iter_utf8(&o, NULL), v) == 0)
				return i;
	return -1;
}

/* Keeps the text if it is among the newest (at, then id, descending). */
static void
keep_latest(struct text_answer *latest, const char *at, const char *id, const char *text)
{
	int pos = LATEST_TEXTS;

	while (pos > 0 &&
	       (!latest[pos - 1].text || strcmp(latest[pos - 1].at, at) < 0 ||
		(strcmp(latest[pos - 1].at, at) == 0 && strcmp(latest[pos - 1].id, id) < 0)))
		pos--;
	if (pos >= LATEST_TEXTS)
		return;
	free((char *)latest[LATEST_TEXTS - 1].text);
	memmove(&latest[pos + 1], &latest[pos], sizeof(latest[0]) * (LATEST_TEXTS - 1 - pos));
	snprintf(latest[pos].at, sizeof(latest[pos].at), "%s", at);
	snprintf(latest[pos].id, sizeof(latest[pos].id), "%s", id);
	latest[pos].text = strdup(text);
}

static int
tally_answer(void *arg, const bson_t *answer)
{
	struct tally *t = arg;
	const char *at = tr_doc_str(answer, "created_at"), *id = tr_doc_str(answer, "id");
	bson_iter_t qs, q, given, v;
	int i = 0;

	t->answered++;
	if (!bson_iter_init_find(&qs, t->questionnaire, "questions") ||
	    !bson_iter_recurse(&qs, &q) || !bson_iter_init_find(&given, answer, "answers") ||
	    !BSON_ITER_HOLDS_DOCUMENT(&given))
		return 0;
	for (; i < RESULT_QUESTIONS && bson_iter_next(&q); i++) {
		bson_t one, doc;
		uint32_t len;
		const uint8_t *data;
		const char *type, *key;
		bson_iter_document(&q, &len, &data);
		if (!bson_init_static(&one, data, len))
			continue;
		type = tr_doc_str(&one, "type");
		key = tr_doc_str(&one, "key");
		bson_iter_document(&given, &len, &data);
		if (!bson_init_static(&doc, data, len) || !bson_iter_init_find(&v, &doc, key) ||
		    BSON_ITER_HOLDS_NULL(&v))
			continue;
		t->given[i]++;
		if (strcmp(type, "single") == 0 && BSON_ITER_HOLDS_UTF8(&v)) {
			int o = option_index(&one, bson_iter_utf8(&v, NULL));
			if (o >= 0 && o < COUNT_SLOTS)
				t->counts[i][o]++;
		} else if (strcmp(type, "multiple") == 0 && BSON_ITER_HOLDS_ARRAY(&v)) {
			bson_iter_t picks;
			bson_iter_recurse(&v, &picks);
			while (bson_iter_next(&picks)) {
				int o = BSON_ITER_HOLDS_UTF8(&picks)
					    ? option_index(&one, bson_iter_utf8(&picks, NULL))
					    : -1;
				if (o >= 0 && o < COUNT_SLOTS)
					t->counts[i][o]++;
			}
		} else if (strcmp(type, "scale") == 0 && is_integer(&v)) {
			int64_t x = bson_iter_as_int64(&v) - tr_doc_int(&one, "min", 0);
			if (x >= 0 && x < COUNT_SLOTS)
				t->counts[i][x]++;
		} else if (strcmp(type, "text") == 0 && BSON_ITER_HOLDS_UTF8(&v) && at && id) {
			keep_latest(t->latest[i], at, id, bson_iter_utf8(&v, NULL));
		}
	}
	return 0;
}

/* sum / n rounded half up to 4 decimals, as "3.5000" (sums are never
 * negative: scales start at 0 or above); null without answers. */
static void
mean_append(bson_t *out, int64_t sum, int64_t n)
{
	char s[48];

	if (n <= 0) {
		BSON_APPEND_NULL(out, "mean");
		return;
	}
	int64_t scaled = (sum * 20000 + n) / (n * 2);
	snprintf(s, sizeof(s), "%lld.%04lld", (long long)(scaled / 10000),
		 (long long)(scaled % 10000));
	BSON_APPEND_UTF8(out, "mean", s);
}

/* One question's part of the results. */
static void
question_results(const struct tally *t, int i, const bson_t *question, bson_t *out)
{
	const char *type = tr_doc_str(question, "type");
	bson_iter_t it, o;
	bson_t list, item;
	char idx[16];
	const char *k;
	uint32_t n = 0;

	BSON_APPEND_UTF8(out, "key", tr_doc_str(question, "key"));
	BSON_APPEND_UTF8(out, "type", type);
	BSON_APPEND_UTF8(out, "text", tr_doc_str(question, "text"));
	BSON_APPEND_INT64(out, "answered", t->given[i]);
	if (strcmp(type, "single") == 0 || strcmp(type, "multiple") == 0) {
		BSON_APPEND_ARRAY_BEGIN(out, "options", &list);
		if (bson_iter_init_find(&it, question, "options") && bson_iter_recurse(&it, &o))
			for (; n < COUNT_SLOTS && bson_iter_next(&o); n++) {
				bson_uint32_to_string(n, &k, idx, sizeof(idx));
				BSON_APPEND_DOCUMENT_BEGIN(&list, k, &item);
				BSON_APPEND_UTF8(&item, "option", bson_iter_utf8(&o, NULL));
				BSON_APPEND_INT64(&item, "count", t->counts[i][n]);
				bson_append_document_end(&list, &item);
			}
		bson_append_array_end(out, &list);
	} else if (strcmp(type, "scale") == 0) {
		int64_t min = tr_doc_int(question, "min", 0), max = tr_doc_int(question, "max", 0);
		int64_t sum = 0, count = 0;
		BSON_APPEND_INT64(out, "min", min);
		BSON_APPEND_INT64(out, "max", max);
		BSON_APPEND_ARRAY_BEGIN(out, "distribution", &list);
		for (int64_t v = min; v <= max; v++, n++) {
			int64_t c = t->counts[i][v - min];
			sum += c * v;
			count += c;
			bson_uint32_to_string(n, &k, idx, sizeof(idx));
			BSON_APPEND_DOCUMENT_BEGIN(&list, k, &item);
			BSON_APPEND_INT64(&item, "value", v);
			BSON_APPEND_INT64(&item, "count", c);
			bson_append_document_end(&list, &item);
		}
		bson_append_array_end(out, &list);
		mean_append(out, sum, count);
	} else {
		BSON_APPEND_ARRAY_BEGIN(out, "latest", &list);
		for (; n < LATEST_TEXTS && t->latest[i][n].text; n++) {
			bson_uint32_to_string(n, &k, idx, sizeof(idx));
			BSON_APPEND_DOCUMENT_BEGIN(&list, k, &item);
			BSON_APPEND_UTF8(&item, "answer_id", t->latest[i][n].id);
			BSON_APPEND_UTF8(&item, "at", t->latest[i][n].at);
			BSON_APPEND_UTF8(&item, "text", t->latest[i][n].text);
			bson_append_document_end(&list, &item);
		}
		bson_append_array_end(out, &list);
	}
}

/* GET /v1/crm/questionnaires/{id}/results: invited and answered counts,
 * then per question what its answers say (see struct tally). Read from
 * the answers themselves, so exact whatever process took them. */
void
crm_questionnaire_results(struct tr_ctx *c)
{
	bson_t q = BSON_INITIALIZER, filter = BSON_INITIALIZER, out = BSON_INITIALIZER, list;
	struct tally *t = calloc(1, sizeof(*t));
	bson_iter_t it, qs;
	bson_oid_t id;
	char hex[25], idx[16];
	const char *k;
	long long invited = 0;
	int rc, n = 0;

	bson_destroy(&q);
	if (!tr_res_load(c, &crm_questionnaires, tr_param(c, 0), &q))
		goto out;
	if (!t) {
		tr_problem_from_err(c, TR_ENOMEM);
		goto out;
	}
	t->questionnaire = &q;
	if (bson_iter_init_find(&it, &q, "questions") && bson_iter_recurse(&it, &qs))
		for (; n < RESULT_QUESTIONS && bson_iter_next(&qs); n++) {
			t->counts[n] = calloc(COUNT_SLOTS, sizeof(int64_t));
			if (!t->counts[n]) {
				tr_problem_from_err(c, TR_ENOMEM);
				goto out;
			}
		}
	tr_doc_oid(&q, "_id", &id);
	BSON_APPEND_OID(&filter, "questionnaire_id", &id);
	rc = tr_db_count(c->db, CRM_Q_INVITATIONS, &filter, &invited);
	if (rc == TR_OK)
		rc = tr_db_each(c->db, CRM_Q_ANSWERS, &filter, tally_answer, t);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	bson_oid_to_string(&id, hex);
	BSON_APPEND_UTF8(&out, "questionnaire_id", hex);
	BSON_APPEND_UTF8(&out, "status", tr_doc_str(&q, "status"));
	BSON_APPEND_INT64(&out, "invited", invited);
	BSON_APPEND_INT64(&out, "answered", t->answered);
	BSON_APPEND_ARRAY_BEGIN(&out, "questions", &list);
	bson_iter_init_find(&it, &q, "questions");
	bson_iter_recurse(&it, &qs);
	for (int i = 0; i < n && bson_iter_next(&qs); i++) {
		bson_t one, part;
		uint32_t len;
		const uint8_t *data;
		bson_iter_document(&qs, &len, &data);
		if (!bson_init_static(&one, data, len))
			continue;
		bson_uint32_to_string((uint32_t)i, &k, idx, sizeof(idx));
		BSON_APPEND_DOCUMENT_BEGIN(&list, k, &part);
		question_results(t, i, &one, &part);
		bson_append_document_end(&list, &part);
	}
	bson_append_array_end(&out, &list);
	tr_reply_json(c, 200, &out);
out:
	if (t) {
		for (int i = 0; i < RESULT_QUESTIONS; i++) {
			free(t->counts[i]);
			for (int j = 0; j < LATEST_TEXTS; j++)
				free((char *)t->latest[i][j].text);
		}
		free(t);
	}
	bson_destroy(&q);
	bson_destroy(&filter);
	bson_destroy(&out);
}
