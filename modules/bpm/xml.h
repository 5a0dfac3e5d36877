/* A small XML reader and writer, enough for BPMN 2.0 files and safe on any
 * bytes: what a client uploads is read here before anything else sees it.
 *
 * The reader builds a tree of elements with their namespaces resolved.
 * It accepts UTF-8 only, the five predefined entities and numeric character
 * references; it refuses every DTD (<!DOCTYPE, <!ENTITY), so there is no
 * entity expansion at all and the "billion laughs" file is refused before
 * anything grows. Comments and processing instructions are skipped, CDATA
 * sections are text. Limits: BPM_XML_MAX_INPUT bytes, elements nested
 * BPM_XML_MAX_DEPTH deep, BPM_XML_MAX_ATTRIBUTES attributes on one element,
 * BPM_XML_MAX_NAMESPACES namespace declarations in scope at once. Every
 * refusal names the line it happened on.
 *
 * The writer is a growing text buffer that escapes what it is given. */
#ifndef BPM_XML_H
#define BPM_XML_H

#include <stdbool.h>
#include <stddef.h>

#include "arena.h"

#define BPM_XML_MAX_INPUT ((size_t)1024 * 1024)
#define BPM_XML_MAX_DEPTH 64
#define BPM_XML_MAX_ATTRIBUTES 64
#define BPM_XML_MAX_NAMESPACES 256

/* An attribute; ns is the namespace URI of its prefix ("" for an attribute
 * without one, which belongs to no namespace). Namespace declarations
 * (xmlns, xmlns:p) are not listed. */
struct bpm_xml_attribute {
	const char *ns;
	const char *name;  /* the local name, without the prefix */
	const char *value; /* entities and references decoded, white space normalised */
};

/* An element of the tree. Everything it points to lives in its document's
 * arena and is released with the document. */
struct bpm_xml_element {
	const char *ns;	  /* namespace URI, "" when the element has none */
	const char *name; /* the local name, without the prefix */
	/* The character data directly inside (CDATA sections included, child
	 * elements' text not), decoded, line ends as "\n"; "" when none. */
	const char *text;
	int line; /* where its start tag begins, from 1 */
	size_t nattributes;
	struct bpm_xml_attribute *attributes;
	struct bpm_xml_element *parent;
	struct bpm_xml_element *children; /* the first child; the others follow by next */
	struct bpm_xml_element *next;
};

struct bpm_xml_doc {
	struct tr_arena arena;
	struct bpm_xml_element *root;
};

struct bpm_xml_error {
	int line; /* the line of the problem, from 1; 0 when it is the whole input */
	char message[160];
};

/* Reads len bytes of xml into a new document, released by bpm_xml_doc_free.
 * NULL when the input is not well-formed XML this reader accepts, or when
 * out of memory; *error then says why. */
struct bpm_xml_doc *bpm_xml_doc_new(const char *xml, size_t len, struct bpm_xml_error *error);
void bpm_xml_doc_free(struct bpm_xml_doc *doc);

/* True when e is the element ns:name. */
bool bpm_xml_is(const struct bpm_xml_element *e, const char *ns, const char *name);
/* The value of e's attribute ns:name (ns "" for one without a prefix), or
 * NULL when e has none. */
const char *bpm_xml_attribute(const struct bpm_xml_element *e, const char *ns, const char *name);
/* e's first child element ns:name, or NULL. */
const struct bpm_xml_element *bpm_xml_child(const struct bpm_xml_element *e, const char *ns,
					    const char *name);

/* The length of the UTF-8 character at s (n bytes available) when it is
 * one XML 1.0 allows in a document, else 0. */
size_t bpm_xml_char_len(const unsigned char *s, size_t n);

/* Text being written. Initialise to {0}; an allocation that fails sets
 * failed and makes every later call do nothing. */
struct bpm_xml_out {
	char *text;
	size_t len, cap;
	bool failed;
};

/* Appends s as it is (markup written by the caller). */
void bpm_xml_out_raw(struct bpm_xml_out *o, const char *s);
/* Appends s escaped for text or an attribute value in either quote:
 * & < > " ' as entities, tab, line feed and carriage return as character
 * references (so that attribute normalisation keeps them), and anything
 * XML cannot carry (control characters, broken UTF-8) as U+FFFD. */
void bpm_xml_out_escaped(struct bpm_xml_out *o, const char *s);
/* The text written, NUL-terminated, with its length in *len: the caller
 * owns it (free). NULL when an allocation failed; the buffer is released
 * either way. */
char *bpm_xml_out_take(struct bpm_xml_out *o, size_t *len);

#endif
