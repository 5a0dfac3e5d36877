/* Logging: one JSON object per line on stderr. Safe from any thread (one
 * write(2) per line). Never pass secrets or tokens. */
#ifndef TR_LOG_H
#define TR_LOG_H

#include <stdint.h>

enum tr_log_level { TR_LOG_DEBUG, TR_LOG_INFO, TR_LOG_WARN, TR_LOG_ERROR };

void tr_log_set_level(enum tr_log_level level);
/* Parses "debug|info|warn|error"; -1 if unknown. */
int tr_log_level_parse(const char *s);

void tr_log(enum tr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The access log line written once per finished request. */
struct tr_access_entry {
	const char *request_id;
	const char *method;
	const char *route; /* the route pattern, or "-" */
	const char *path;
	const char *tenant; /* hex id or NULL */
	int status;
	double duration_ms;
};
void tr_log_access(const struct tr_access_entry *e);

#define tr_debug(...) tr_log(TR_LOG_DEBUG, __VA_ARGS__)
#define tr_info(...) tr_log(TR_LOG_INFO, __VA_ARGS__)
#define tr_warn(...) tr_log(TR_LOG_WARN, __VA_ARGS__)
#define tr_error(...) tr_log(TR_LOG_ERROR, __VA_ARGS__)

#endif
