/* The XML reader and writer of xml.h. The reader is one pass over the
 * input with an explicit stack of open elements (never recursion, so a
 * deep file cannot exhaust the C stack); every read is bounded by the
 * input's length, which is why it may be handed any bytes. */
#include "xml.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define XML_NS "http://www.w3.org/XML/1998/namespace"
/* The longest character or entity reference read, "&" and ";" included;
 * room for leading zeros, while a reference that long still says what it is. */
#define MAX_REFERENCE 32
/* How much of a name a message quotes. */
#define QUOTED 48

/* A namespace declaration in scope: prefix "" is the default namespace. */
struct binding {
	const char *prefix;
	size_t prefix_len;
	const char *uri;
};

/* An element whose end tag has not been read yet. */
struct frame {
	struct bpm_xml_element *element;
	const char *qname; /* as written, in the input */
	size_t qname_len;
	size_t nbindings; /* bindings in scope before the element's own */
	struct bpm_xml_element *last_child;
};

/* An attribute as written, before namespaces are resolved. */
struct raw_attribute {
	const char *qname; /* in the input */
	size_t qname_len;
	const char *value; /* decoded, in the arena */
};

struct parser {
	const char *s;
	size_t len, pos;
	size_t line_pos; /* lines are counted up to here */
	int line;
	struct tr_arena *arena;
	struct bpm_xml_error *error;
	bool failed;
	struct frame frames[BPM_XML_MAX_DEPTH];
	struct bpm_xml_out texts[BPM_XML_MAX_DEPTH]; /* each open element's text so far */
	struct bpm_xml_out scratch;		     /* an attribute value being decoded */
	int depth;
	struct binding bindings[BPM_XML_MAX_NAMESPACES];
	size_t nbindings;
	struct bpm_xml_element *root;
};

static bool
is_xml_char(uint32_t c)
{
	if (c < 0x20)
		return c == 0x9 || c == 0xA || c == 0xD;
	if (c >= 0xD800 && c <= 0xDFFF)
		return false;
	return c != 0xFFFE && c != 0xFFFF && c <= 0x10FFFF;
}

size_t
bpm_xml_char_len(const unsigned char *s, size_t n)
{
	uint32_t c;
	size_t k, i;

	if (n == 0)
		return 0;
	if (s[0] < 0x80)
		return is_xml_char(s[0]) ? 1 : 0;
	if (s[0] >= 0xC2 && s[0] <= 0xDF) {
		k = 2;
		c = s[0] & 0x1F;
	} else if ((s[0] & 0xF0) == 0xE0) {
		k = 3;
		c = s[0] & 0x0F;
	} else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		k = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < k)
		return 0;
	for (i = 1; i < k; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if ((k == 3 && c < 0x800) || (k == 4 && c < 0x10000))
		return 0; /* overlong */
	return is_xml_char(c) ? k : 0;
}

/* ---- the growing buffer, shared by the reader's texts and the writer ---- */

static bool
out_reserve(struct bpm_xml_out *o, size_t more)
{
	size_t need, cap;
	char *text;

	if (o->failed)
		return false;
	if (more > SIZE_MAX / 2 - o->len) {
		o->failed = true;
		return false;
	}
	need = o->len + more + 1;
	if (need <= o->cap)
		return true;
	cap = o->cap ? o->cap : 256;
	while (cap < need)
		cap *= 2;
	text = realloc(o->text, cap);
	if (!text) {
		o->failed = true;
		return false;
	}
	o->text = text;
	o->cap = cap;
	return true;
}

static void
out_bytes(struct bpm_xml_out *o, const char *s, size_t n)
{
	if (!out_reserve(o, n))
		return;
	memcpy(o->text + o->len, s, n);
	o->len += n;
	o->text[o->len] = '\0';
}

void
bpm_xml_out_raw(struct bpm_xml_out *o, const char *s)
{
	out_bytes(o, s, strlen(s));
}

void
bpm_xml_out_escaped(struct bpm_xml_out *o, const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, run = 0;

	while (i < n) {
		size_t k = bpm_xml_char_len(u + i, n - i);
		const char *entity = NULL;

		if (k == 0)
			entity = "\xEF\xBF\xBD"; /* U+FFFD for what XML cannot carry */
		else if (u[i] == '&')
			entity = "&amp;";
		else if (u[i] == '<')
			entity = "&lt;";
		else if (u[i] == '>')
			entity = "&gt;";
		else if (u[i] == '"')
			entity = "&quot;";
		else if (u[i] == '\'')
			entity = "&apos;";
		else if (u[i] == '\t')
			entity = "&#9;";
		else if (u[i] == '\n')
			entity = "&#10;";
		else if (u[i] == '\r')
			entity = "&#13;";
		if (!entity) {
			i += k;
			continue;
		}
		out_bytes(o, s + run, i - run);
		bpm_xml_out_raw(o, entity);
		i += k ? k : 1;
		run = i;
	}
	out_bytes(o, s + run, i - run);
}

char *
bpm_xml_out_take(struct bpm_xml_out *o, size_t *len)
{
	char *text;

	if (!o->text && !o->failed)
		out_reserve(o, 0);
	if (o->failed) {
		free(o->text);
		o->text = NULL;
		o->len = o->cap = 0;
		return NULL;
	}
	text = o->text;
	text[o->len] = '\0';
	if (len)
		*len = o->len;
	o->text = NULL;
	o->len = o->cap = 0;
	return text;
}

/* ---- the reader ---- */

/* The line of position pos, counting forward from the last position asked
 * about (positions asked for only grow, except on the way out of an error). */
static int
line_of(struct parser *p, size_t pos)
{
	if (pos < p->line_pos) {
		p->line_pos = 0;
		p->line = 1;
	}
	while (p->line_pos < pos && p->line_pos < p->len) {
		if (p->s[p->line_pos] == '\n')
			p->line++;
		p->line_pos++;
	}
	return p->line;
}

/* The first problem wins; the later ones are its consequences. */
static void __attribute__((format(printf, 3, 4)))
fail_at(struct parser *p, size_t pos, const char *fmt, ...)
{
	va_list ap;

	if (p->failed)
		return;
	p->failed = true;
	p->error->line = line_of(p, pos);
	va_start(ap, fmt);
	vsnprintf(p->error->message, sizeof(p->error->message), fmt, ap);
	va_end(ap);
}

static void
fail_memory(struct parser *p)
{
	if (p->failed)
		return;
	p->failed = true;
	p->error->line = 0;
	snprintf(p->error->message, sizeof(p->error->message), "out of memory");
}

/* How many bytes of a name (n bytes, valid UTF-8) a message quotes: at most
 * QUOTED, never half a character. */
static int
quoted(const char *name, size_t n)
{
	if (n <= QUOTED)
		return (int)n;
	n = QUOTED;
	while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
		n--;
	return (int)n;
}

static bool
remains(const struct parser *p, const char *literal)
{
	size_t n = strlen(literal);

	return p->len - p->pos >= n && memcmp(p->s + p->pos, literal, n) == 0;
}

/* The offset of literal at or after from, or len when it does not occur. */
static size_t
find(const struct parser *p, size_t from, const char *literal)
{
	size_t n = strlen(literal), i;

	for (i = from; i + n <= p->len; i++) {
		if (p->s[i] == literal[0] && memcmp(p->s + i, literal, n) == 0)
			return i;
	}
	return p->len;
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Skips white space; true when there was some. */
static bool
skip_space(struct parser *p)
{
	size_t from = p->pos;

	while (p->pos < p->len && is_space(p->s[p->pos]))
		p->pos++;
	return p->pos > from;
}

static bool
is_name_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
	       c >= 0x80;
}

static bool
is_name_char(unsigned char c)
{
	return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* Reads a name at the position; false (and nothing read) when none starts
 * there. */
static bool
read_name(struct parser *p, const char **name, size_t *len)
{
	size_t start = p->pos;

	if (p->pos >= p->len || !is_name_start((unsigned char)p->s[p->pos]))
		return false;
	while (p->pos < p->len && is_name_char((unsigned char)p->s[p->pos]))
		p->pos++;
	*name = p->s + start;
	*len = p->pos - start;
	return true;
}

static char *
arena_copy(struct parser *p, const char *s, size_t n)
{
	char *copy = tr_arena_strndup(p->arena, s, n);

	if (!copy)
		fail_memory(p);
	return copy;
}

static size_t
put_utf8(char *w, uint32_t c)
{
	if (c < 0x80) {
		w[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		w[0] = (char)(0xC0 | (c >> 6));
		w[1] = (char)(0x80 | (c & 0x3F));
		return 2;
	}
	if (c < 0x10000) {
		w[0] = (char)(0xE0 | (c >> 12));
		w[1] = (char)(0x80 | ((c >> 6) & 0x3F));
		w[2] = (char)(0x80 | (c & 0x3F));
		return 3;
	}
	w[0] = (char)(0xF0 | (c >> 18));
	w[1] = (char)(0x80 | ((c >> 12) & 0x3F));
	w[2] = (char)(0x80 | ((c >> 6) & 0x3F));
	w[3] = (char)(0x80 | (c & 0x3F));
	return 4;
}

/* The reference between & and ; (name, n bytes) as UTF-8 into w: one of
 * the five predefined entities or a character reference to a character XML
 * allows. Returns the bytes written, 0 when it is neither. */
static size_t
reference(const char *name, size_t n, char *w)
{
	static const struct {
		const char *name;
		char c;
	} predefined[] = {{"lt", '<'}, {"gt", '>'}, {"amp", '&'}, {"quot", '"'}, {"apos", '\''}};
	uint32_t c = 0;
	size_t i, first;
	bool hex;

	for (i = 0; i < sizeof(predefined) / sizeof(predefined[0]); i++) {
		if (strlen(predefined[i].name) == n && memcmp(predefined[i].name, name, n) == 0) {
			w[0] = predefined[i].c;
			return 1;
		}
	}
	if (n < 2 || name[0] != '#')
		return 0;
	hex = name[1] == 'x';
	first = hex ? 2 : 1;
	if (first == n)
		return 0;
	for (i = first; i < n; i++) {
		char d = name[i];
		uint32_t v;

		if (d >= '0' && d <= '9')
			v = (uint32_t)(d - '0');
		else if (hex && d >= 'a' && d <= 'f')
			v = (uint32_t)(d - 'a' + 10);
		else if (hex && d >= 'A' && d <= 'F')
			v = (uint32_t)(d - 'A' + 10);
		else
			return 0;
		c = c * (hex ? 16 : 10) + v;
		if (c > 0x10FFFF)
			return 0;
	}
	if (!is_xml_char(c))
		return 0;
	return put_utf8(w, c);
}

/* Appends the character data s[start, end) to out, decoded: references
 * replaced, line ends made "\n"; in an attribute value also tab and line
 * ends made spaces (XML's attribute-value normalisation) and '<' refused.
 * What it writes is never longer than what it reads, so one reservation
 * covers it. */
static void
decode(struct parser *p, size_t start, size_t end, struct bpm_xml_out *out, bool attribute)
{
	size_t i = start;
	char *w;

	if (!out_reserve(out, end - start)) {
		fail_memory(p);
		return;
	}
	w = out->text + out->len;
	while (i < end) {
		char c = p->s[i];

		if (c == '&') {
			size_t semi = i + 1, n;

			while (semi < end && semi - i < MAX_REFERENCE && p->s[semi] != ';')
				semi++;
			if (semi >= end || p->s[semi] != ';') {
				fail_at(p, i, "an & that starts no entity (write &amp;)");
				return;
			}
			n = reference(p->s + i + 1, semi - i - 1, w);
			if (n == 0) {
				int q = quoted(p->s + i + 1, semi - i - 1);

				if (p->s[i + 1] == '#')
					fail_at(p, i, "&%.*s; is not a character XML allows", q,
						p->s + i + 1);
				else
					fail_at(
					    p, i,
					    "unknown entity &%.*s; (only &lt; &gt; &amp; &quot; "
					    "&apos; are known)",
					    q, p->s + i + 1);
				return;
			}
			w += n;
			i = semi + 1;
		} else if (c == '\r') {
			*w++ = attribute ? ' ' : '\n';
			i++;
			if (i < end && p->s[i] == '\n')
				i++;
		} else if (attribute && (c == '\n' || c == '\t')) {
			*w++ = ' ';
			i++;
		} else if (attribute && c == '<') {
			fail_at(p, i, "a < in an attribute value (write &lt;)");
			return;
		} else {
			*w++ = c;
			i++;
		}
	}
	out->len = (size_t)(w - out->text);
	out->text[out->len] = '\0';
}

/* The namespace URI bound to prefix (n bytes; 0 for the default namespace)
 * where the parser is; NULL for a prefix never declared. */
static const char *
lookup(const struct parser *p, const char *prefix, size_t n)
{
	size_t i = p->nbindings;

	if (n == 3 && memcmp(prefix, "xml", 3) == 0)
		return XML_NS;
	while (i > 0) {
		i--;
		if (p->bindings[i].prefix_len == n && memcmp(p->bindings[i].prefix, prefix, n) == 0)
			return p->bindings[i].uri;
	}
	return n == 0 ? "" : NULL;
}

/* Splits a qualified name at its colon; false when it has more than one or
 * one at an end. */
static bool
split_qname(const char *qname, size_t n, size_t *prefix_len, const char **local, size_t *local_len)
{
	const char *colon = memchr(qname, ':', n);

	if (!colon) {
		*prefix_len = 0;
		*local = qname;
		*local_len = n;
		return true;
	}
	*prefix_len = (size_t)(colon - qname);
	*local = colon + 1;
	*local_len = n - *prefix_len - 1;
	return *prefix_len > 0 && *local_len > 0 && !memchr(*local, ':', *local_len);
}

/* Declares the namespace declarations among an element's attributes; the
 * caller drops them again (nbindings) when the element ends. */
static void
declare(struct parser *p, size_t lt, const struct raw_attribute *raw, size_t nraw)
{
	size_t i;

	for (i = 0; i < nraw && !p->failed; i++) {
		const char *prefix;
		size_t n;

		if (raw[i].qname_len == 5 && memcmp(raw[i].qname, "xmlns", 5) == 0) {
			prefix = "";
			n = 0;
		} else if (raw[i].qname_len > 6 && memcmp(raw[i].qname, "xmlns:", 6) == 0) {
			prefix = raw[i].qname + 6;
			n = raw[i].qname_len - 6;
			if (memchr(prefix, ':', n) || raw[i].value[0] == '\0') {
				fail_at(p, lt,
					"a namespace declaration %.*s that XML does not allow",
					quoted(raw[i].qname, raw[i].qname_len), raw[i].qname);
				return;
			}
		} else {
			continue;
		}
		if (p->nbindings == BPM_XML_MAX_NAMESPACES) {
			fail_at(p, lt, "more than %d namespace declarations in scope",
				BPM_XML_MAX_NAMESPACES);
			return;
		}
		p->bindings[p->nbindings].prefix = prefix;
		p->bindings[p->nbindings].prefix_len = n;
		p->bindings[p->nbindings].uri = raw[i].value;
		p->nbindings++;
	}
}

/* Resolves an element's or attribute's qualified name: *ns and *name in the
 * arena. An attribute without a prefix has no namespace. */
static bool
resolve(struct parser *p, size_t lt, const char *qname, size_t n, bool attribute, const char **ns,
	const char **name)
{
	size_t prefix_len, local_len;
	const char *local;

	if (!split_qname(qname, n, &prefix_len, &local, &local_len)) {
		fail_at(p, lt, "%.*s is not a name XML namespaces allow", quoted(qname, n), qname);
		return false;
	}
	if (attribute && prefix_len == 0)
		*ns = "";
	else
		*ns = lookup(p, qname, prefix_len);
	if (!*ns) {
		fail_at(p, lt, "the prefix of %.*s is not declared", quoted(qname, n), qname);
		return false;
	}
	*name = arena_copy(p, local, local_len);
	return *name != NULL;
}

/* The attributes other than namespace declarations, resolved, each name
 * once. */
static bool
resolve_attributes(struct parser *p, size_t lt, const struct raw_attribute *raw, size_t nraw,
		   struct bpm_xml_element *element)
{
	size_t i, j;

	element->attributes =
	    tr_arena_alloc(p->arena, (nraw ? nraw : 1) * sizeof(*element->attributes));
	if (!element->attributes) {
		fail_memory(p);
		return false;
	}
	for (i = 0; i < nraw; i++) {
		struct bpm_xml_attribute *a = &element->attributes[element->nattributes];

		if ((raw[i].qname_len == 5 && memcmp(raw[i].qname, "xmlns", 5) == 0) ||
		    (raw[i].qname_len > 6 && memcmp(raw[i].qname, "xmlns:", 6) == 0))
			continue;
		if (!resolve(p, lt, raw[i].qname, raw[i].qname_len, true, &a->ns, &a->name))
			return false;
		a->value = raw[i].value;
		for (j = 0; j < element->nattributes; j++) {
			const struct bpm_xml_attribute *b = &element->attributes[j];

			if (strcmp(a->ns, b->ns) == 0 && strcmp(a->name, b->name) == 0) {
				fail_at(p, lt, "the attribute %.*s is given twice",
					quoted(raw[i].qname, raw[i].qname_len), raw[i].qname);
				return false;
			}
		}
		element->nattributes++;
	}
	return true;
}

/* Reads one attribute (name="value" or name='value') into *raw. */
static bool
read_attribute(struct parser *p, size_t lt, struct raw_attribute *raw)
{
	const char *close;
	char quote;
	size_t start;

	if (!read_name(p, &raw->qname, &raw->qname_len)) {
		fail_at(p, p->pos, "garbage in a tag");
		return false;
	}
	skip_space(p);
	if (p->pos >= p->len || p->s[p->pos] != '=') {
		fail_at(p, p->pos, "the attribute %.*s has no value",
			quoted(raw->qname, raw->qname_len), raw->qname);
		return false;
	}
	p->pos++;
	skip_space(p);
	if (p->pos >= p->len || (p->s[p->pos] != '"' && p->s[p->pos] != '\'')) {
		fail_at(p, p->pos, "the value of %.*s is not in quotes",
			quoted(raw->qname, raw->qname_len), raw->qname);
		return false;
	}
	quote = p->s[p->pos];
	start = p->pos + 1;
	close = memchr(p->s + start, quote, p->len - start);
	if (!close) {
		fail_at(p, lt, "the value of %.*s is not closed",
			quoted(raw->qname, raw->qname_len), raw->qname);
		return false;
	}
	p->scratch.len = 0;
	decode(p, start, (size_t)(close - p->s), &p->scratch, true);
	if (p->failed)
		return false;
	raw->value = arena_copy(p, p->scratch.text, p->scratch.len);
	p->pos = (size_t)(close - p->s) + 1;
	return raw->value != NULL;
}

/* A start tag or an empty-element tag: the element joins the tree, and
 * unless it is empty it opens. */
static void
parse_start_tag(struct parser *p)
{
	struct raw_attribute raw[BPM_XML_MAX_ATTRIBUTES];
	size_t nraw = 0, lt = p->pos, qname_len, nbindings = p->nbindings;
	struct bpm_xml_element *element;
	const char *qname;
	bool empty = false;

	p->pos++;
	if (!read_name(p, &qname, &qname_len)) {
		fail_at(p, lt, "a < that starts no tag (write &lt;)");
		return;
	}
	if (p->depth >= BPM_XML_MAX_DEPTH) {
		fail_at(p, lt, "elements nested deeper than %d", BPM_XML_MAX_DEPTH);
		return;
	}
	for (;;) {
		bool space = skip_space(p);

		if (p->pos >= p->len) {
			fail_at(p, lt, "the tag <%.*s is not closed", quoted(qname, qname_len),
				qname);
			return;
		}
		if (p->s[p->pos] == '>') {
			p->pos++;
			break;
		}
		if (p->s[p->pos] == '/') {
			if (p->pos + 1 < p->len && p->s[p->pos + 1] == '>') {
				p->pos += 2;
				empty = true;
				break;
			}
			fail_at(p, p->pos, "a / in the tag <%.*s", quoted(qname, qname_len), qname);
			return;
		}
		if (!space) {
			fail_at(p, p->pos, "garbage in the tag <%.*s", quoted(qname, qname_len),
				qname);
			return;
		}
		if (nraw == BPM_XML_MAX_ATTRIBUTES) {
			fail_at(p, lt, "<%.*s has more than %d attributes",
				quoted(qname, qname_len), qname, BPM_XML_MAX_ATTRIBUTES);
			return;
		}
		if (!read_attribute(p, lt, &raw[nraw]))
			return;
		nraw++;
	}

	element = tr_arena_alloc(p->arena, sizeof(*element));
	if (!element) {
		fail_memory(p);
		return;
	}
	element->line = line_of(p, lt);
	element->text = "";
	declare(p, lt, raw, nraw);
	if (p->failed || !resolve(p, lt, qname, qname_len, false, &element->ns, &element->name) ||
	    !resolve_attributes(p, lt, raw, nraw, element))
		return;

	if (p->depth == 0) {
		p->root = element;
	} else {
		struct frame *parent = &p->frames[p->depth - 1];

		element->parent = parent->element;
		if (parent->last_child)
			parent->last_child->next = element;
		else
			parent->element->children = element;
		parent->last_child = element;
	}
	if (empty) {
		p->nbindings = nbindings;
		return;
	}
	p->frames[p->depth].element = element;
	p->frames[p->depth].qname = qname;
	p->frames[p->depth].qname_len = qname_len;
	p->frames[p->depth].nbindings = nbindings;
	p->frames[p->depth].last_child = NULL;
	p->texts[p->depth].len = 0;
	p->depth++;
}

/* An end tag: it must close the element opened last. */
static void
parse_end_tag(struct parser *p)
{
	size_t lt = p->pos, n;
	const char *name;
	struct frame *open;
	struct bpm_xml_out *text;

	p->pos += 2;
	if (!read_name(p, &name, &n)) {
		fail_at(p, lt, "garbage in an end tag");
		return;
	}
	skip_space(p);
	if (p->pos >= p->len || p->s[p->pos] != '>') {
		fail_at(p, lt, "the end tag </%.*s is not closed", quoted(name, n), name);
		return;
	}
	p->pos++;
	if (p->depth == 0) {
		fail_at(p, lt, "</%.*s> closes no element", quoted(name, n), name);
		return;
	}
	open = &p->frames[p->depth - 1];
	if (open->qname_len != n || memcmp(open->qname, name, n) != 0) {
		fail_at(p, lt, "</%.*s> does not close <%.*s> (line %d)", quoted(name, n), name,
			quoted(open->qname, open->qname_len), open->qname, open->element->line);
		return;
	}
	text = &p->texts[p->depth - 1];
	if (text->len > 0) {
		open->element->text = arena_copy(p, text->text, text->len);
		if (!open->element->text)
			return;
	}
	p->nbindings = open->nbindings;
	p->depth--;
}

static void
skip_comment(struct parser *p)
{
	size_t end = find(p, p->pos + 4, "-->");

	if (end == p->len) {
		fail_at(p, p->pos, "a comment is not closed");
		return;
	}
	p->pos = end + 3;
}

/* A processing instruction; the XML declaration is one only at the start
 * of the document, and there it says UTF-8 (or nothing). */
static void
skip_processing_instruction(struct parser *p, bool first)
{
	size_t lt = p->pos, end = find(p, p->pos + 2, "?>"), n;
	const char *target;

	p->pos += 2;
	if (!read_name(p, &target, &n)) {
		fail_at(p, lt, "a <? that starts no processing instruction");
		return;
	}
	if (end == p->len) {
		fail_at(p, lt, "a processing instruction is not closed");
		return;
	}
	if (n == 3 && strncasecmp(target, "xml", 3) == 0) {
		size_t at = find(p, p->pos, "encoding");

		if (!first) {
			fail_at(p, lt, "the XML declaration must come first");
			return;
		}
		if (at < end) {
			const char *enc;
			size_t enc_len;
			char quote;

			p->pos = at + 8;
			skip_space(p);
			if (p->pos < end && p->s[p->pos] == '=')
				p->pos++;
			skip_space(p);
			quote = p->pos < end ? p->s[p->pos] : '\0';
			enc = p->s + p->pos + 1;
			enc_len = 0;
			while (p->pos + 1 + enc_len < end && enc[enc_len] != quote)
				enc_len++;
			if ((quote != '"' && quote != '\'') ||
			    !((enc_len == 5 && strncasecmp(enc, "utf-8", 5) == 0) ||
			      (enc_len == 8 && strncasecmp(enc, "us-ascii", 8) == 0))) {
				fail_at(p, lt, "only UTF-8 documents are accepted");
				return;
			}
		}
	}
	p->pos = end + 2;
}

static void
parse_cdata(struct parser *p)
{
	size_t start = p->pos + 9, end = find(p, start, "]]>"), i;
	struct bpm_xml_out *text = &p->texts[p->depth - 1];

	if (end == p->len) {
		fail_at(p, p->pos, "a CDATA section is not closed");
		return;
	}
	/* taken as written: no references inside, only the line ends made "\n" */
	for (i = start; i < end && !text->failed; i++) {
		if (p->s[i] != '\r')
			out_bytes(text, p->s + i, 1);
		else if (i + 1 == end || p->s[i + 1] != '\n')
			out_bytes(text, "\n", 1);
	}
	if (text->failed)
		fail_memory(p);
	p->pos = end + 3;
}

/* Character data inside an element, up to the next markup. */
static void
parse_text(struct parser *p)
{
	const char *lt = memchr(p->s + p->pos, '<', p->len - p->pos);
	size_t end = lt ? (size_t)(lt - p->s) : p->len;

	decode(p, p->pos, end, &p->texts[p->depth - 1], false);
	p->pos = end;
}

/* Markup that starts with "<!": a comment, a CDATA section, or a DTD's
 * declaration, which is refused whatever it declares. */
static void
parse_bang(struct parser *p)
{
	static const char *const dtd[] = {"<!DOCTYPE", "<!ENTITY", "<!ELEMENT", "<!ATTLIST",
					  "<!NOTATION"};
	size_t i;

	if (remains(p, "<!--")) {
		skip_comment(p);
		return;
	}
	if (remains(p, "<![CDATA[")) {
		if (p->depth == 0)
			fail_at(p, p->pos, "text outside the root element");
		else
			parse_cdata(p);
		return;
	}
	for (i = 0; i < sizeof(dtd) / sizeof(dtd[0]); i++) {
		if (remains(p, dtd[i])) {
			fail_at(p, p->pos, "DTDs are not accepted");
			return;
		}
	}
	fail_at(p, p->pos, "garbage after <!");
}

/* Checks the whole input first: UTF-8, and only characters XML allows, so
 * that everything the tree holds is valid UTF-8. */
static void
check_characters(struct parser *p)
{
	const unsigned char *u = (const unsigned char *)p->s;
	size_t i = 0;

	while (i < p->len) {
		size_t k;

		if (u[i] >= 0x20 && u[i] < 0x80) {
			i++;
			continue;
		}
		k = bpm_xml_char_len(u + i, p->len - i);
		if (k == 0) {
			fail_at(p, i,
				"bytes that are not UTF-8, or a character XML does not allow");
			return;
		}
		i += k;
	}
}

static void
parse_document(struct parser *p)
{
	bool first = true;

	if (remains(p, "\xEF\xBB\xBF"))
		p->pos = 3;
	while (p->pos < p->len && !p->failed) {
		char c = p->s[p->pos];

		if (c != '<') {
			if (p->depth > 0)
				parse_text(p);
			else if (is_space(c))
				p->pos++;
			else
				fail_at(p, p->pos, "text outside the root element");
		} else if (remains(p, "<?")) {
			skip_processing_instruction(p, first);
		} else if (remains(p, "<!")) {
			parse_bang(p);
		} else if (remains(p, "</")) {
			parse_end_tag(p);
		} else if (p->depth == 0 && p->root) {
			fail_at(p, p->pos, "text outside the root element: a second element");
		} else {
			parse_start_tag(p);
		}
		first = false;
	}
	if (p->failed)
		return;
	if (p->depth > 0) {
		struct frame *open = &p->frames[p->depth - 1];

		fail_at(p, p->len, "<%.*s> (line %d) is not closed",
			quoted(open->qname, open->qname_len), open->qname, open->element->line);
	} else if (!p->root) {
		fail_at(p, p->len, "the document has no root element");
	}
}

struct bpm_xml_doc *
bpm_xml_doc_new(const char *xml, size_t len, struct bpm_xml_error *error)
{
	struct bpm_xml_doc *doc = NULL;
	struct parser *p = NULL;
	int i;

	error->line = 0;
	error->message[0] = '\0';
	if (!xml)
		len = 0;
	if (len > BPM_XML_MAX_INPUT) {
		snprintf(error->message, sizeof(error->message),
			 "the document is larger than %zu bytes", BPM_XML_MAX_INPUT);
		return NULL;
	}
	doc = calloc(1, sizeof(*doc));
	p = calloc(1, sizeof(*p)); /* a few kilobytes: not on the stack */
	if (!doc || !p) {
		snprintf(error->message, sizeof(error->message), "out of memory");
		goto fail;
	}
	tr_arena_init(&doc->arena);
	p->s = xml ? xml : "";
	p->len = len;
	p->line = 1;
	p->arena = &doc->arena;
	p->error = error;
	check_characters(p);
	if (!p->failed)
		parse_document(p);
	if (p->failed)
		goto fail;
	doc->root = p->root;
	goto out;
fail:
	bpm_xml_doc_free(doc);
	doc = NULL;
out:
	if (p) {
		for (i = 0; i < BPM_XML_MAX_DEPTH; i++)
			free(p->texts[i].text);
		free(p->scratch.text);
	}
	free(p);
	return doc;
}

void
bpm_xml_doc_free(struct bpm_xml_doc *doc)
{
	if (!doc)
		return;
	tr_arena_free(&doc->arena);
	free(doc);
}

bool
bpm_xml_is(const struct bpm_xml_element *e, const char *ns, const char *name)
{
	return e && strcmp(e->ns, ns) == 0 && strcmp(e->name, name) == 0;
}

const char *
bpm_xml_attribute(const struct bpm_xml_element *e, const char *ns, const char *name)
{
	size_t i;

	for (i = 0; i < e->nattributes; i++) {
		if (strcmp(e->attributes[i].ns, ns) == 0 &&
		    strcmp(e->attributes[i].name, name) == 0)
			return e->attributes[i].value;
	}
	return NULL;
}

const struct bpm_xml_element *
bpm_xml_child(const struct bpm_xml_element *e, const char *ns, const char *name)
{
	const struct bpm_xml_element *c;

	for (c = e->children; c; c = c->next) {
		if (bpm_xml_is(c, ns, name))
			return c;
	}
	return NULL;
}
