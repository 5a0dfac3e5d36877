/* The tenant's event stream read back (stream.h). */
#include "stream.h"

#include <stdlib.h>
#include <string.h>

#include "perm.h"

/* (Redis reports trimming in no field of its own: max-deleted-entry-id
 * moves only with XDEL, which nothing does to this stream. entries-added,
 * Redis 7, counts every XADD: more than are held means some were
 * trimmed.) */
const char tr_stream_bounds_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {'0-0', '', 0, 0} end\n"
    "local info = redis.call('XINFO', 'STREAM', KEYS[1])\n"
    "local last, first, added, held = '0-0', '', -1, 0\n"
    "for i = 1, #info, 2 do\n"
    "  if info[i] == 'last-generated-id' then last = info[i + 1] end\n"
    "  if info[i] == 'first-entry' and type(info[i + 1]) == 'table' then\n"
    "    first = info[i + 1][1]\n"
    "  end\n"
    "  if info[i] == 'entries-added' then added = info[i + 1] end\n"
    "  if info[i] == 'length' then held = info[i + 1] end\n"
    "end\n"
    "return {last, first, added, held}\n";

bool
tr_stream_bounds_parse(const redisReply *r, struct tr_stream_bounds *out)
{
	const redisReply *last, *first, *added, *held;

	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 4)
		return false;
	last = r->element[0];
	first = r->element[1];
	added = r->element[2];
	held = r->element[3];
	if (last->type != REDIS_REPLY_STRING || first->type != REDIS_REPLY_STRING ||
	    added->type != REDIS_REPLY_INTEGER || held->type != REDIS_REPLY_INTEGER)
		return false;
	memset(out, 0, sizeof(*out));
	if (!tr_evid_parse(last->str, last->len, &out->last))
		return false;
	if (first->len) {
		if (!tr_evid_parse(first->str, first->len, &out->first))
			return false;
		out->held = true;
	}
	out->trimmed = added->integer < 0 || added->integer > held->integer;
	out->added = added->integer;
	out->length = held->integer;
	return true;
}

bool
tr_stream_entry_parse(const redisReply *e, struct tr_stream_entry *out)
{
	const redisReply *id, *fields, *t = NULL, *o = NULL, *b = NULL;

	out->id_len = 0;
	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
		return false;
	id = e->element[0];
	fields = e->element[1];
	if (id->type != REDIS_REPLY_STRING || id->len > 40 ||
	    !tr_evid_parse(id->str, id->len, &out->id))
		return false;
	out->id_str = id->str;
	out->id_len = id->len;
	if (fields->type != REDIS_REPLY_ARRAY)
		return false;
	for (size_t i = 0; i + 1 < fields->elements; i += 2) {
		const redisReply *k = fields->element[i], *v = fields->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 1)
			continue;
		if (k->str[0] == 't')
			t = v;
		else if (k->str[0] == 'o')
			o = v;
		else if (k->str[0] == 'b')
			b = v;
	}
	if (!t || !b)
		return false;
	out->topic = tr_topic_find(t->str, t->len);
	if (out->topic < 0)
		return false;
	out->owner[0] = '\0';
	if (o)
		tr_owners_parse(o->str, o->len, out->owner);
	out->tail = b->str;
	out->tail_len = b->len;
	return true;
}
