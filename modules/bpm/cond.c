/* Conditions and durations (cond.h says the language). A condition is
 * parsed once into a flat array of nodes, in one allocation with the text
 * of its strings and paths, and evaluated by walking that tree.
 *
 * Why it is safe on any input (it is fuzzed): the source is at most
 * BPM_COND_MAX_LEN bytes and every token takes at least one of them, so
 * the node array sized by the length cannot overflow, nor the text buffer
 * (a string's unescaped text is shorter than its quoted source, a path's
 * copy as long as its source, and each source byte is in one token). The
 * parser recurses only through "(" and "not", each counted against
 * BPM_COND_MAX_DEPTH, so the C stack is bounded; evaluation recurses
 * along the same tree, whose depth is bounded by the length. */
#include "bpm/cond.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum cond_tok {
	TOK_END,
	TOK_INT,
	TOK_DOUBLE,
	TOK_STRING,
	TOK_PATH,
	TOK_TRUE,
	TOK_FALSE,
	TOK_NULL,
	TOK_AND,
	TOK_OR,
	TOK_NOT,
	TOK_LPAREN,
	TOK_RPAREN,
	TOK_EQ,
	TOK_NE,
	TOK_LT,
	TOK_LE,
	TOK_GT,
	TOK_GE,
};

enum cond_kind {
	NODE_BOOL,
	NODE_INT,
	NODE_DOUBLE,
	NODE_STRING,
	NODE_NULL,
	NODE_PATH,
	NODE_NOT,
	NODE_AND,
	NODE_OR,
	NODE_COMPARE,
};

/* One node of a parsed condition. Children are indexes into the same
 * array; a string's or a path's bytes are text[off, off + len). */
struct cond_node {
	enum cond_kind kind;
	enum cond_tok op; /* NODE_COMPARE: TOK_EQ ... TOK_GE */
	size_t at;	  /* byte offset in the source, for messages */
	int left, right;  /* NODE_NOT: left; NODE_AND, _OR, _COMPARE: both */
	union {
		bool b;
		int64_t i;
		double d;
		struct {
			size_t off, len;
		} text;
	} v;
};

/* Owned by whoever parsed it; never changed after bpm_cond_parse returns. */
struct bpm_cond {
	int root;
	int nnodes, capnodes;
	char *text; /* points just past nodes[capnodes], in the same block */
	size_t textlen, textcap;
	struct cond_node nodes[];
};

/* ---- messages ---- */

static void set_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- the lexer ---- */

struct cond_token {
	enum cond_tok kind;
	size_t at, len; /* where it is in the source */
	int64_t i;
	double d;
	size_t off, textlen; /* TOK_STRING, TOK_PATH: in cond->text */
};

/* The state of one parse. The first error sticks: once failed is set,
 * every function returns at once and err keeps the first reason. */
struct cond_parser {
	const char *src;
	size_t len, pos;
	struct cond_token tok;	/* the next token, not yet taken */
	struct cond_token prev; /* the token taken last (kind TOK_END: none) */
	bool has_prev;
	int depth;
	struct bpm_cond *cond;
	bool failed;
	char *err;
	size_t errlen;
};

static void parse_fail(struct cond_parser *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
parse_fail(struct cond_parser *p, size_t at, const char *fmt, ...)
{
	char reason[160];
	va_list ap;

	if (p->failed)
		return;
	p->failed = true;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	set_error(p->err, p->errlen, "at %zu: %s", at, reason);
}

static bool
is_name_start(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_name_char(unsigned char c)
{
	return is_name_start(c) || is_digit(c);
}

/* "'x'" for a printable ASCII byte, "byte 0xNN" for any other, so that a
 * message stays one line of text whatever the source holds. */
static const char *
describe_byte(unsigned char c, char *buf, size_t cap)
{
	if (c >= 0x20 && c < 0x7f)
		snprintf(buf, cap, "'%c'", c);
	else
		snprintf(buf, cap, "byte 0x%02x", c);
	return buf;
}

static const struct {
	const char *word;
	enum cond_tok kind;
} keywords[] = {
    {"and", TOK_AND},	{"or", TOK_OR},	      {"not", TOK_NOT},
    {"true", TOK_TRUE}, {"false", TOK_FALSE}, {"null", TOK_NULL},
};

/* The keyword spelled by src[0, len), or TOK_PATH when it is a name. */
static enum cond_tok
keyword_of(const char *src, size_t len)
{
	size_t k;

	for (k = 0; k < sizeof(keywords) / sizeof(keywords[0]); k++)
		if (strlen(keywords[k].word) == len && memcmp(keywords[k].word, src, len) == 0)
			return keywords[k].kind;
	return TOK_PATH;
}

static void
text_append(struct cond_parser *p, char c)
{
	struct bpm_cond *cond = p->cond;

	/* cannot happen (the header comment says why); kept as a guard */
	if (cond->textlen >= cond->textcap) {
		parse_fail(p, p->pos, "condition too complex");
		return;
	}
	cond->text[cond->textlen++] = c;
}

/* A quoted string starting at p->pos; its unescaped bytes go to the text. */
static void
lex_string(struct cond_parser *p, struct cond_token *t)
{
	const char *s = p->src;
	char quote = s[p->pos];
	char what[16];

	t->kind = TOK_STRING;
	t->off = p->cond->textlen;
	p->pos++;
	for (;;) {
		if (p->pos >= p->len) {
			parse_fail(p, t->at, "unterminated string");
			return;
		}
		if (s[p->pos] == quote) {
			p->pos++;
			break;
		}
		if (s[p->pos] == '\\') {
			if (p->pos + 1 >= p->len) {
				parse_fail(p, t->at, "unterminated string");
				return;
			}
			char e = s[p->pos + 1];
			if (e != '\\' && e != '"' && e != '\'') {
				if (e >= 0x20 && e < 0x7f)
					parse_fail(p, p->pos, "unknown escape '\\%c'", e);
				else
					parse_fail(
					    p, p->pos, "unknown escape: '\\' then %s",
					    describe_byte((unsigned char)e, what, sizeof(what)));
				return;
			}
			text_append(p, e);
			p->pos += 2;
		} else {
			text_append(p, s[p->pos]);
			p->pos++;
		}
		if (p->failed)
			return;
	}
	t->textlen = p->cond->textlen - t->off;
}

/* An integer or a decimal starting at p->pos ('-' or a digit). */
static void
lex_number(struct cond_parser *p, struct cond_token *t)
{
	const char *s = p->src;
	size_t start = p->pos;
	bool negative = false, decimal = false;
	/* the magnitude, within 2^63 (INT64_MIN's) */
	uint64_t magnitude = 0, limit;

	if (s[p->pos] == '-') {
		negative = true;
		p->pos++;
		if (p->pos >= p->len || !is_digit((unsigned char)s[p->pos])) {
			parse_fail(p, p->pos, "expected a digit after '-'");
			return;
		}
	}
	limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	bool too_big = false;
	while (p->pos < p->len && is_digit((unsigned char)s[p->pos])) {
		unsigned digit = (unsigned)(s[p->pos] - '0');
		if (magnitude > (limit - digit) / 10)
			too_big = true;
		else
			magnitude = magnitude * 10 + digit;
		p->pos++;
	}
	if (p->pos < p->len && s[p->pos] == '.') {
		decimal = true;
		p->pos++;
		if (p->pos >= p->len || !is_digit((unsigned char)s[p->pos])) {
			parse_fail(p, p->pos, "expected a digit after '.'");
			return;
		}
		while (p->pos < p->len && is_digit((unsigned char)s[p->pos]))
			p->pos++;
	}
	/* "12abc", "1.2.3", "1.5e3": not a number followed by something else */
	if (p->pos < p->len && (is_name_char((unsigned char)s[p->pos]) || s[p->pos] == '.')) {
		parse_fail(p, start, "malformed number");
		return;
	}
	t->len = p->pos - start;
	if (decimal) {
		/* The lexeme is -?digits.digits, which strtod reads the same in
		 * the "C" locale the server runs in; a copy, so that strtod
		 * cannot read on into what follows. */
		char buf[BPM_COND_MAX_LEN + 1];
		memcpy(buf, s + start, t->len);
		buf[t->len] = '\0';
		t->kind = TOK_DOUBLE;
		t->d = strtod(buf, NULL);
		if (isinf(t->d)) {
			parse_fail(p, start, "number out of range");
			return;
		}
		return;
	}
	if (too_big) {
		parse_fail(p, start, "number out of range");
		return;
	}
	t->kind = TOK_INT;
	/* -(2^63) has no positive int64 to negate */
	if (negative && magnitude == (uint64_t)INT64_MAX + 1)
		t->i = INT64_MIN;
	else
		t->i = negative ? -(int64_t)magnitude : (int64_t)magnitude;
}

/* A keyword or a path starting at p->pos; a path's bytes go to the text. */
static void
lex_word(struct cond_parser *p, struct cond_token *t)
{
	const char *s = p->src;
	size_t start = p->pos, seg;

	t->off = p->cond->textlen;
	for (;;) {
		seg = p->pos;
		while (p->pos < p->len && is_name_char((unsigned char)s[p->pos]))
			p->pos++;
		enum cond_tok kw = keyword_of(s + seg, p->pos - seg);
		bool dotted = p->pos < p->len && s[p->pos] == '.';
		if (kw != TOK_PATH && seg == start && !dotted) {
			t->kind = kw;
			t->len = p->pos - start;
			return;
		}
		if (kw != TOK_PATH) {
			parse_fail(p, seg, "'%.*s' is a reserved word, not a name",
				   (int)(p->pos - seg), s + seg);
			return;
		}
		for (size_t k = seg; k < p->pos; k++)
			text_append(p, s[k]);
		if (!dotted)
			break;
		text_append(p, '.');
		p->pos++;
		if (p->pos >= p->len || !is_name_start((unsigned char)s[p->pos])) {
			parse_fail(p, p->pos, "expected a name after '.'");
			return;
		}
		if (p->failed)
			return;
	}
	t->kind = TOK_PATH;
	t->len = p->pos - start;
	t->textlen = p->cond->textlen - t->off;
}

/* Reads the next token into p->tok; the one before becomes p->prev. */
static void
advance(struct cond_parser *p)
{
	const char *s = p->src;
	struct cond_token *t = &p->tok;
	char what[16];

	if (p->failed)
		return;
	p->prev = p->tok;
	p->has_prev = p->tok.kind != TOK_END || p->pos > 0;
	while (p->pos < p->len &&
	       (s[p->pos] == ' ' || s[p->pos] == '\t' || s[p->pos] == '\n' || s[p->pos] == '\r'))
		p->pos++;
	memset(t, 0, sizeof(*t));
	t->at = p->pos;
	t->len = 1;
	if (p->pos >= p->len) {
		t->kind = TOK_END;
		t->len = 0;
		return;
	}
	unsigned char c = (unsigned char)s[p->pos];
	unsigned char next = p->pos + 1 < p->len ? (unsigned char)s[p->pos + 1] : 0;
	switch (c) {
	case '(':
		t->kind = TOK_LPAREN;
		p->pos++;
		return;
	case ')':
		t->kind = TOK_RPAREN;
		p->pos++;
		return;
	case '=':
	case '!':
		if (next != '=') {
			parse_fail(p, p->pos,
				   c == '=' ? "'=' is not an operator; use '=='"
					    : "'!' is not an operator; use '!=' or 'not'");
			return;
		}
		t->kind = c == '=' ? TOK_EQ : TOK_NE;
		t->len = 2;
		p->pos += 2;
		return;
	case '<':
	case '>':
		if (next == '=') {
			t->kind = c == '<' ? TOK_LE : TOK_GE;
			t->len = 2;
		} else {
			t->kind = c == '<' ? TOK_LT : TOK_GT;
		}
		p->pos += t->len;
		return;
	case '&':
		parse_fail(p, p->pos, "'&' is not an operator; use 'and'");
		return;
	case '|':
		parse_fail(p, p->pos, "'|' is not an operator; use 'or'");
		return;
	case '"':
	case '\'':
		lex_string(p, t);
		t->len = p->pos - t->at;
		return;
	default:
		break;
	}
	if (c == '-' || is_digit(c))
		lex_number(p, t);
	else if (is_name_start(c))
		lex_word(p, t);
	else
		parse_fail(p, p->pos, "unexpected %s", describe_byte(c, what, sizeof(what)));
}

/* A token as a message names it: operators and keywords quoted, a path
 * or a number by its source text, a string as "a string". */
static const char *
describe_token(const struct cond_parser *p, const struct cond_token *t, char *buf, size_t cap)
{
	switch (t->kind) {
	case TOK_END:
		return "the end";
	case TOK_STRING:
		return "a string";
	case TOK_PATH:
		snprintf(buf, cap, "\"%.*s\"", (int)t->len, p->src + t->at);
		return buf;
	default:
		/* keywords, operators and numbers: printable source text */
		snprintf(buf, cap, t->kind == TOK_INT || t->kind == TOK_DOUBLE ? "%.*s" : "'%.*s'",
			 (int)t->len, p->src + t->at);
		return buf;
	}
}

/* ---- the parser ---- */

static int
new_node(struct cond_parser *p, enum cond_kind kind, size_t at)
{
	struct bpm_cond *cond = p->cond;

	/* cannot happen either (one node per token at most); a guard */
	if (cond->nnodes >= cond->capnodes) {
		parse_fail(p, at, "condition too complex");
		return -1;
	}
	struct cond_node *n = &cond->nodes[cond->nnodes];
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	n->at = at;
	n->left = n->right = -1;
	return cond->nnodes++;
}

static const char *
literal_type(enum cond_kind kind)
{
	switch (kind) {
	case NODE_INT:
	case NODE_DOUBLE:
		return "a number";
	case NODE_STRING:
		return "a string";
	case NODE_NULL:
		return "null";
	default:
		return NULL; /* true or false, or unknown until evaluated */
	}
}

/* Refuses a literal that can never be true or false where a condition is
 * needed (`5`, `x and "yes"`, `not null`): better now than at every run. */
static void
require_condition(struct cond_parser *p, int node)
{
	const char *type;

	if (p->failed || node < 0)
		return;
	type = literal_type(p->cond->nodes[node].kind);
	if (type != NULL)
		parse_fail(p, p->cond->nodes[node].at,
			   "expected a condition (true or false), found %s", type);
}

static int parse_or(struct cond_parser *p);

/* Fails with "expected a value after X, found Y" (or "... after X" at the
 * end, or "empty condition" when there is nothing at all). */
static void
expected_value(struct cond_parser *p)
{
	char before[64], found[64];

	if (!p->has_prev) {
		if (p->tok.kind == TOK_END)
			parse_fail(p, p->tok.at, "empty condition");
		else
			parse_fail(p, p->tok.at, "expected a value, found %s",
				   describe_token(p, &p->tok, found, sizeof(found)));
		return;
	}
	describe_token(p, &p->prev, before, sizeof(before));
	if (p->tok.kind == TOK_END)
		parse_fail(p, p->tok.at, "expected a value after %s", before);
	else
		parse_fail(p, p->tok.at, "expected a value after %s, found %s", before,
			   describe_token(p, &p->tok, found, sizeof(found)));
}

/* unary := "not" unary | "(" or ")" | literal | path */
static int
parse_unary(struct cond_parser *p)
{
	struct cond_token t = p->tok;
	int node = -1;

	if (p->failed)
		return -1;
	switch (t.kind) {
	case TOK_NOT:
	case TOK_LPAREN:
		if (++p->depth > BPM_COND_MAX_DEPTH) {
			parse_fail(p, t.at, "nested deeper than %d", BPM_COND_MAX_DEPTH);
			return -1;
		}
		advance(p);
		if (t.kind == TOK_NOT) {
			int operand = parse_unary(p);
			require_condition(p, operand);
			if (p->failed)
				return -1;
			node = new_node(p, NODE_NOT, t.at);
			if (node < 0)
				return -1;
			p->cond->nodes[node].left = operand;
		} else {
			node = parse_or(p);
			if (p->failed)
				return -1;
			if (p->tok.kind != TOK_RPAREN) {
				char found[64];
				if (p->tok.kind == TOK_END)
					parse_fail(p, p->tok.at, "expected ')' to close '(' at %zu",
						   t.at);
				else
					parse_fail(
					    p, p->tok.at, "expected an operator or ')', found %s",
					    describe_token(p, &p->tok, found, sizeof(found)));
				return -1;
			}
			advance(p);
		}
		p->depth--;
		return p->failed ? -1 : node;
	case TOK_TRUE:
	case TOK_FALSE:
		node = new_node(p, NODE_BOOL, t.at);
		if (node >= 0)
			p->cond->nodes[node].v.b = t.kind == TOK_TRUE;
		break;
	case TOK_NULL:
		node = new_node(p, NODE_NULL, t.at);
		break;
	case TOK_INT:
		node = new_node(p, NODE_INT, t.at);
		if (node >= 0)
			p->cond->nodes[node].v.i = t.i;
		break;
	case TOK_DOUBLE:
		node = new_node(p, NODE_DOUBLE, t.at);
		if (node >= 0)
			p->cond->nodes[node].v.d = t.d;
		break;
	case TOK_STRING:
	case TOK_PATH:
		node = new_node(p, t.kind == TOK_STRING ? NODE_STRING : NODE_PATH, t.at);
		if (node >= 0) {
			p->cond->nodes[node].v.text.off = t.off;
			p->cond->nodes[node].v.text.len = t.textlen;
		}
		break;
	default:
		expected_value(p);
		return -1;
	}
	advance(p);
	return p->failed ? -1 : node;
}

static bool
is_comparison(enum cond_tok kind)
{
	return kind >= TOK_EQ && kind <= TOK_GE;
}

/* comparison := unary [op unary]; a second operator is refused. */
static int
parse_comparison(struct cond_parser *p)
{
	int left = parse_unary(p), node;
	struct cond_token op = p->tok;

	if (p->failed || !is_comparison(op.kind))
		return p->failed ? -1 : left;
	advance(p);
	int right = parse_unary(p);
	if (p->failed)
		return -1;
	if (is_comparison(p->tok.kind)) {
		parse_fail(p, p->tok.at, "comparisons do not chain; join them with 'and'");
		return -1;
	}
	node = new_node(p, NODE_COMPARE, op.at);
	if (node >= 0) {
		p->cond->nodes[node].op = op.kind;
		p->cond->nodes[node].left = left;
		p->cond->nodes[node].right = right;
	}
	return node;
}

/* and := comparison ("and" comparison)*, and the same for or; left to
 * right, so `a and b and c` is `(a and b) and c`. */
static int
parse_chain(struct cond_parser *p, enum cond_tok word, enum cond_kind kind,
	    int (*operand)(struct cond_parser *))
{
	int left = operand(p);

	while (!p->failed && p->tok.kind == word) {
		struct cond_token t = p->tok;
		advance(p);
		int right = operand(p);
		require_condition(p, left);
		require_condition(p, right);
		if (p->failed)
			return -1;
		int node = new_node(p, kind, t.at);
		if (node < 0)
			return -1;
		p->cond->nodes[node].left = left;
		p->cond->nodes[node].right = right;
		left = node;
	}
	return p->failed ? -1 : left;
}

static int
parse_and(struct cond_parser *p)
{
	return parse_chain(p, TOK_AND, NODE_AND, parse_comparison);
}

static int
parse_or(struct cond_parser *p)
{
	return parse_chain(p, TOK_OR, NODE_OR, parse_and);
}

struct bpm_cond *
bpm_cond_parse(const char *src, char *err, size_t errlen)
{
	struct cond_parser p = {.src = src, .err = err, .errlen = errlen};
	struct bpm_cond *cond = NULL;
	size_t len;

	set_error(err, errlen, "%s", "");
	if (src == NULL) {
		set_error(err, errlen, "at 0: no condition");
		return NULL;
	}
	len = strnlen(src, BPM_COND_MAX_LEN + 1);
	if (len > BPM_COND_MAX_LEN) {
		set_error(err, errlen, "at %d: longer than %d bytes", BPM_COND_MAX_LEN,
			  BPM_COND_MAX_LEN);
		return NULL;
	}
	/* a node per byte and a byte of text per byte are enough (above) */
	size_t capnodes = len + 1, textcap = len + 1;
	cond = malloc(sizeof(*cond) + capnodes * sizeof(cond->nodes[0]) + textcap);
	if (cond == NULL) {
		set_error(err, errlen, "at 0: out of memory");
		return NULL;
	}
	cond->root = -1;
	cond->nnodes = 0;
	cond->capnodes = (int)capnodes;
	cond->text = (char *)(cond->nodes + capnodes);
	cond->textlen = 0;
	cond->textcap = textcap;

	p.len = len;
	p.cond = cond;
	p.tok.kind = TOK_END;
	advance(&p);
	cond->root = parse_or(&p);
	if (!p.failed && p.tok.kind != TOK_END) {
		char found[64];
		if (p.tok.kind == TOK_RPAREN)
			parse_fail(&p, p.tok.at, "')' without '('");
		else
			parse_fail(&p, p.tok.at, "expected an operator or the end, found %s",
				   describe_token(&p, &p.tok, found, sizeof(found)));
	}
	require_condition(&p, cond->root);
	if (p.failed) {
		free(cond);
		return NULL;
	}
	return cond;
}

void
bpm_cond_free(struct bpm_cond *c)
{
	free(c);
}

/* ---- evaluation ---- */

/* A value met while evaluating: a literal's, a variable's, or a
 * comparison's. Strings are borrowed from the condition or from vars. */
struct cond_value {
	enum {
		VAL_NULL,
		VAL_BOOL,
		VAL_INT,
		VAL_DOUBLE,
		VAL_STRING,
		VAL_DOCUMENT,
		VAL_ARRAY,
		VAL_OTHER
	} type;
	bool b;
	int64_t i;
	double d;
	const char *s;
	size_t slen;
};

static const char *
value_type(const struct cond_value *v)
{
	switch (v->type) {
	case VAL_NULL:
		return "null";
	case VAL_BOOL:
		return "a bool";
	case VAL_INT:
	case VAL_DOUBLE:
		return "a number";
	case VAL_STRING:
		return "a string";
	case VAL_DOCUMENT:
		return "a document";
	case VAL_ARRAY:
		return "an array";
	default:
		return "a value of another BSON type";
	}
}

struct cond_eval {
	const struct bpm_cond *cond;
	const bson_t *vars;
	char *err;
	size_t errlen;
};

/* The variable at path (names joined by '.') in vars: 0, or -1 with
 * "unknown variable" when a name is missing or walks into a non-document. */
static int
lookup(const struct cond_eval *e, const char *path, size_t len, struct cond_value *out)
{
	bson_iter_t it, child;
	size_t start = 0;
	bool found = false;

	if (e->vars == NULL)
		goto unknown;
	if (!bson_iter_init(&it, e->vars)) {
		set_error(e->err, e->errlen, "the variables are not a BSON document");
		return -1;
	}
	for (;;) {
		size_t end = start;
		while (end < len && path[end] != '.')
			end++;
		found = false;
		while (bson_iter_next(&it)) {
			if (bson_iter_key_len(&it) == end - start &&
			    memcmp(bson_iter_key(&it), path + start, end - start) == 0) {
				found = true;
				break;
			}
		}
		if (!found)
			goto unknown;
		if (end == len)
			break;
		if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &child))
			goto unknown;
		it = child;
		start = end + 1;
	}
	memset(out, 0, sizeof(*out));
	switch (bson_iter_type(&it)) {
	case BSON_TYPE_NULL:
		out->type = VAL_NULL;
		break;
	case BSON_TYPE_BOOL:
		out->type = VAL_BOOL;
		out->b = bson_iter_bool(&it);
		break;
	case BSON_TYPE_INT32:
		out->type = VAL_INT;
		out->i = bson_iter_int32(&it);
		break;
	case BSON_TYPE_INT64:
		out->type = VAL_INT;
		out->i = bson_iter_int64(&it);
		break;
	case BSON_TYPE_DOUBLE:
		out->type = VAL_DOUBLE;
		out->d = bson_iter_double(&it);
		break;
	case BSON_TYPE_UTF8: {
		uint32_t slen = 0;
		out->type = VAL_STRING;
		out->s = bson_iter_utf8(&it, &slen);
		out->slen = slen;
		break;
	}
	case BSON_TYPE_DOCUMENT:
		out->type = VAL_DOCUMENT;
		break;
	case BSON_TYPE_ARRAY:
		out->type = VAL_ARRAY;
		break;
	default:
		out->type = VAL_OTHER;
		break;
	}
	return 0;
unknown:
	set_error(e->err, e->errlen, "unknown variable \"%.*s\"", (int)len, path);
	return -1;
}

static int eval_bool(const struct cond_eval *e, int node);

/* The value of any node: 0, or -1 with err set. */
static int
eval_value(const struct cond_eval *e, int node, struct cond_value *out)
{
	const struct cond_node *n = &e->cond->nodes[node];

	memset(out, 0, sizeof(*out));
	switch (n->kind) {
	case NODE_BOOL:
		out->type = VAL_BOOL;
		out->b = n->v.b;
		return 0;
	case NODE_NULL:
		out->type = VAL_NULL;
		return 0;
	case NODE_INT:
		out->type = VAL_INT;
		out->i = n->v.i;
		return 0;
	case NODE_DOUBLE:
		out->type = VAL_DOUBLE;
		out->d = n->v.d;
		return 0;
	case NODE_STRING:
		out->type = VAL_STRING;
		out->s = e->cond->text + n->v.text.off;
		out->slen = n->v.text.len;
		return 0;
	case NODE_PATH:
		return lookup(e, e->cond->text + n->v.text.off, n->v.text.len, out);
	default: {
		int r = eval_bool(e, node);
		if (r < 0)
			return -1;
		out->type = VAL_BOOL;
		out->b = r == 1;
		return 0;
	}
	}
}

/* An integer against a double by their mathematical values: -1, 0, 1, or
 * 2 when d is NaN (unordered). Converting i to double would round above
 * 2^53 and call 2^53 + 1 equal to 2^53. */
static int
compare_int_double(int64_t i, double d)
{
	if (d != d)
		return 2;
	if (d >= 9223372036854775808.0) /* 2^63: beyond every int64 */
		return -1;
	if (d < -9223372036854775808.0)
		return 1;
	/* |d| < 2^63 (or d == -2^63): its integer part is an int64, and
	 * the double nearest it is exactly it */
	int64_t whole = (int64_t)d;
	if (i != whole)
		return i < whole ? -1 : 1;
	double fraction = d - (double)whole;
	return fraction > 0 ? -1 : fraction < 0 ? 1 : 0;
}

/* Orders two numbers: -1, 0, 1, or 2 when unordered (a NaN). */
static int
compare_numbers(const struct cond_value *a, const struct cond_value *b)
{
	if (a->type == VAL_INT && b->type == VAL_INT)
		return a->i < b->i ? -1 : a->i > b->i;
	if (a->type == VAL_INT)
		return compare_int_double(a->i, b->d);
	if (b->type == VAL_INT) {
		int r = compare_int_double(b->i, a->d);
		return r == 2 ? 2 : -r;
	}
	if (a->d < b->d)
		return -1;
	if (a->d > b->d)
		return 1;
	return a->d == b->d ? 0 : 2;
}

static int
compare_strings(const struct cond_value *a, const struct cond_value *b)
{
	size_t n = a->slen < b->slen ? a->slen : b->slen;
	int r = n > 0 ? memcmp(a->s, b->s, n) : 0;

	if (r != 0)
		return r < 0 ? -1 : 1;
	return a->slen < b->slen ? -1 : a->slen > b->slen;
}

static bool
is_number(const struct cond_value *v)
{
	return v->type == VAL_INT || v->type == VAL_DOUBLE;
}

static const char *
op_name(enum cond_tok op)
{
	switch (op) {
	case TOK_EQ:
		return "==";
	case TOK_NE:
		return "!=";
	case TOK_LT:
		return "<";
	case TOK_LE:
		return "<=";
	case TOK_GT:
		return ">";
	default:
		return ">=";
	}
}

/* A comparison node: 1, 0 or -1. */
static int
eval_compare(const struct cond_eval *e, const struct cond_node *n)
{
	struct cond_value a, b;
	bool equality = n->op == TOK_EQ || n->op == TOK_NE;
	int order; /* -1, 0, 1, or 2: unordered */

	if (eval_value(e, n->left, &a) < 0 || eval_value(e, n->right, &b) < 0)
		return -1;
	if (is_number(&a) && is_number(&b)) {
		order = compare_numbers(&a, &b);
	} else if (a.type == VAL_STRING && b.type == VAL_STRING) {
		order = compare_strings(&a, &b);
	} else if (!equality) {
		set_error(e->err, e->errlen, "cannot order %s and %s with '%s'", value_type(&a),
			  value_type(&b), op_name(n->op));
		return -1;
	} else if (a.type != b.type) {
		order = 2; /* different types are never equal */
	} else if (a.type == VAL_NULL) {
		order = 0;
	} else if (a.type == VAL_BOOL) {
		order = a.b == b.b ? 0 : 2;
	} else {
		set_error(e->err, e->errlen, "cannot compare %s and %s with '%s'", value_type(&a),
			  value_type(&b), op_name(n->op));
		return -1;
	}
	switch (n->op) {
	case TOK_EQ:
		return order == 0;
	case TOK_NE:
		return order != 0;
	case TOK_LT:
		return order == -1;
	case TOK_LE:
		return order == -1 || order == 0;
	case TOK_GT:
		return order == 1;
	default:
		return order == 1 || order == 0;
	}
}

/* A node that must be true or false: 1, 0, or -1 with err set. */
static int
eval_bool(const struct cond_eval *e, int node)
{
	const struct cond_node *n = &e->cond->nodes[node];
	struct cond_value v;
	int r;

	switch (n->kind) {
	case NODE_NOT:
		r = eval_bool(e, n->left);
		return r < 0 ? -1 : !r;
	case NODE_AND:
	case NODE_OR:
		r = eval_bool(e, n->left);
		if (r < 0)
			return -1;
		/* `false and x`, `true or x`: x is not evaluated */
		if (r == (n->kind == NODE_OR))
			return r;
		return eval_bool(e, n->right);
	case NODE_COMPARE:
		return eval_compare(e, n);
	default:
		if (eval_value(e, node, &v) < 0)
			return -1;
		if (v.type != VAL_BOOL) {
			if (n->kind == NODE_PATH)
				set_error(e->err, e->errlen, "\"%.*s\" is %s, not true or false",
					  (int)n->v.text.len, e->cond->text + n->v.text.off,
					  value_type(&v));
			else
				set_error(e->err, e->errlen, "%s is not true or false",
					  value_type(&v));
			return -1;
		}
		return v.b ? 1 : 0;
	}
}

int
bpm_cond_eval(const struct bpm_cond *c, const bson_t *vars, char *err, size_t errlen)
{
	struct cond_eval e = {.cond = c, .vars = vars, .err = err, .errlen = errlen};

	set_error(err, errlen, "%s", "");
	if (c == NULL || c->root < 0) {
		set_error(err, errlen, "no condition");
		return -1;
	}
	return eval_bool(&e, c->root);
}

int
bpm_cond_check(const char *src, const bson_t *vars, char *err, size_t errlen)
{
	struct bpm_cond *c = bpm_cond_parse(src, err, errlen);
	int r;

	if (c == NULL)
		return -1;
	r = bpm_cond_eval(c, vars, err, errlen);
	bpm_cond_free(c);
	return r;
}

/* ---- durations ---- */

#define MS_PER_SECOND 1000LL
#define MS_PER_MINUTE (60 * MS_PER_SECOND)
#define MS_PER_HOUR (60 * MS_PER_MINUTE)
#define MS_PER_DAY (24 * MS_PER_HOUR)
#define MS_PER_WEEK (7 * MS_PER_DAY)

/* The designators a duration may use, in the order it must use them;
 * years (Y) and months (M before T) are refused: their length depends on
 * the calendar. */
static const struct {
	char designator;
	bool time; /* after the T */
	long long ms;
} duration_units[] = {
    {'W', false, MS_PER_WEEK},	{'D', false, MS_PER_DAY},   {'H', true, MS_PER_HOUR},
    {'M', true, MS_PER_MINUTE}, {'S', true, MS_PER_SECOND},
};

long long
bpm_duration_ms(const char *s)
{
	size_t pos = 1, next_unit = 0, nunits = sizeof(duration_units) / sizeof(duration_units[0]);
	bool in_time = false, any = false, any_time = false, weeks = false;
	long long total = 0;

	if (s == NULL || s[0] != 'P')
		return -1;
	while (s[pos] != '\0') {
		if (s[pos] == 'T') {
			if (in_time || weeks)
				return -1;
			in_time = true;
			pos++;
			continue;
		}
		if (!is_digit((unsigned char)s[pos]))
			return -1;
		long long n = 0;
		while (is_digit((unsigned char)s[pos])) {
			int digit = s[pos] - '0';
			if (n > (LLONG_MAX - digit) / 10)
				return -1;
			n = n * 10 + digit;
			pos++;
		}
		/* the next designator in order, on this side of the T */
		size_t u = next_unit;
		while (u < nunits && (duration_units[u].designator != s[pos] ||
				      duration_units[u].time != in_time))
			u++;
		if (u == nunits)
			return -1; /* unknown, repeated, out of order, Y, month M, '.' */
		if (duration_units[u].designator == 'W') {
			weeks = true;
		} else if (weeks) {
			return -1; /* "P2W3D": weeks stand alone */
		}
		if (n > LLONG_MAX / duration_units[u].ms)
			return -1;
		n *= duration_units[u].ms;
		if (total > LLONG_MAX - n)
			return -1;
		total += n;
		any = true;
		any_time = any_time || in_time;
		next_unit = u + 1;
		pos++;
	}
	if (!any || (in_time && !any_time))
		return -1;
	return total;
}
