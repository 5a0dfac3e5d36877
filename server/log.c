#include "log.h"

#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static enum tr_log_level min_level = TR_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void
tr_log_set_level(enum tr_log_level level)
{
	min_level = level;
}

int
tr_log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

/* Appends s to buf as the inside of a JSON string; always leaves room for
 * the closing of the line. */
static size_t
escape(char *buf, size_t pos, size_t cap, const char *s)
{
	for (; s && *s && pos + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[pos++] = '\\';
			buf[pos++] = (char)c;
		} else if (c < 0x20) {
			pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", c);
		} else {
			buf[pos++] = (char)c;
		}
	}
	return pos;
}

static void
emit(char *line, size_t len)
{
	line[len++] = '\n';
	ssize_t n = write(STDERR_FILENO, line, len);
	(void)n;
}

void
tr_log(enum tr_log_level level, const char *fmt, ...)
{
	char msg[1024], line[2304], ts[25];
	size_t pos;
	va_list ap;

	if (level < min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tr_format_time(tr_now_ms(), ts);
	pos = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
			       level_names[level]);
	pos = escape(line, pos, sizeof(line) - 4, msg);
	line[pos++] = '"';
	line[pos++] = '}';
	emit(line, pos);
}

void
tr_log_access(const struct tr_access_entry *e)
{
	char line[2048], ts[25];
	size_t pos, cap = sizeof(line) - 4;

	if (TR_LOG_INFO < min_level)
		return;
	tr_format_time(tr_now_ms(), ts);
	pos = (size_t)snprintf(
	    line, cap, "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"request\",\"request_id\":\"",
	    ts);
	pos = escape(line, pos, cap, e->request_id);
	pos +=
	    (size_t)snprintf(line + pos, cap - pos, "\",\"method\":\"%s\",\"route\":\"", e->method);
	pos = escape(line, pos, cap, e->route);
	pos += (size_t)snprintf(line + pos, cap - pos, "\",\"path\":\"");
	pos = escape(line, pos, cap, e->path);
	pos += (size_t)snprintf(line + pos, cap - pos, "\",\"tenant\":");
	if (e->tenant)
		pos += (size_t)snprintf(line + pos, cap - pos, "\"%s\"", e->tenant);
	else
		pos += (size_t)snprintf(line + pos, cap - pos, "null");
	if (pos < cap)
		pos +=
		    (size_t)snprintf(line + pos, cap - pos, ",\"status\":%d,\"duration_ms\":%.3f}",
				     e->status, e->duration_ms);
	if (pos > cap)
		pos = cap;
	emit(line, pos);
}
