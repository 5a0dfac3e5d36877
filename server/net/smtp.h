/* Outgoing mail: one message to one recipient through the SMTP server the
 * configuration names (smtp_url, STARTTLS, AUTH), with libcurl, throttled
 * to smtp_rate messages a second across every process (a slot in Redis).
 *
 * Job threads only: a send blocks for the throttle and for the server.
 * Modules see this header, never curl. */
#ifndef TR_SMTP_H
#define TR_SMTP_H

#include <stdbool.h>
#include <stddef.h>

/* One message. Strings are UTF-8 and borrowed for the call. The
 * subject's CR and LF become spaces (a header never takes a line from a
 * value); the bodies are sent base64-encoded, so any text is safe. */
struct tr_mail {
	const char *to;		     /* one address, as validated by the caller */
	const char *subject;	     /* rendered */
	const char *text;	     /* the plain-text body */
	const char *html;	     /* the HTML body, or NULL */
	const char *unsubscribe_url; /* List-Unsubscribe (RFC 8058), or NULL */
	const char *message_id;	     /* unique, [A-Za-z0-9.-], or NULL for none */
};

/* What became of a send. */
enum tr_smtp_outcome {
	TR_SMTP_SENT = 0,      /* the server accepted the message */
	TR_SMTP_TEMPORARY = 1, /* try again later: 4xx, no connection, a drop */
	TR_SMTP_PERMANENT = 2, /* the server refused it for good: 5xx */
	/* the message went out but the server's answer never came (a drop or
	 * a timeout after DATA): it may have been taken; sending again may
	 * deliver it twice (RFC 1047) */
	TR_SMTP_UNKNOWN = 3,
};

/* Is an SMTP server configured (smtp_url and smtp_from)? */
bool tr_smtp_configured(void);

/* Waits for a slot of the cross-process throttle, then sends. reply gets
 * the server's last reply line ("550 5.1.1 no such user") or what went
 * wrong on the way ("connection refused"): never the password. */
enum tr_smtp_outcome tr_smtp_send(const struct tr_mail *m, char *reply, size_t replylen);

#endif
