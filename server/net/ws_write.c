/* Writing to WebSocket clients (ws_int.h): queued frames framed here and
 * sent several to a write, once per loop turn or on WRITEABLE, and the
 * close frame. Loop thread only. */
#include <string.h>

#include "util.h"
#include "ws_int.h"

/* ---- writing ---- */

/* A server frame header: FIN + text, then the length (servers do not
 * mask). */
static size_t
frame_header(unsigned char *p, size_t len, unsigned char opcode)
{
	p[0] = (unsigned char)(0x80 | opcode);
	if (len < 126) {
		p[1] = (unsigned char)len;
		return 2;
	}
	if (len < 65536) {
		p[1] = 126;
		p[2] = (unsigned char)(len >> 8);
		p[3] = (unsigned char)len;
		return 4;
	}
	p[1] = 127;
	for (int i = 0; i < 8; i++)
		p[2 + i] = (unsigned char)(len >> (56 - 8 * i));
	return 10;
}

static int
write_close(struct ws_conn *c)
{
	/* The close frame is written raw: lws_close_reason() followed by
	 * returning -1 sent none with libwebsockets 4.1. */
	unsigned char buf[LWS_PRE + 4 + sizeof(c->close_reason)];
	size_t rlen = strlen(c->close_reason);
	if (rlen > 120)
		rlen = 120; /* control frames carry at most 125 bytes */
	buf[LWS_PRE] = 0x88;
	buf[LWS_PRE + 1] = (unsigned char)(2 + rlen);
	buf[LWS_PRE + 2] = (unsigned char)(c->close_code >> 8);
	buf[LWS_PRE + 3] = (unsigned char)(c->close_code & 0xff);
	memcpy(buf + LWS_PRE + 4, c->close_reason, rlen);
	if (lws_write(c->wsi, buf + LWS_PRE, 4 + rlen, LWS_WRITE_RAW) < 0)
		return -1;
	/* Closing the socket now could lose the close frame: if the client is
	 * still sending, unread data makes the kernel reset the connection.
	 * Wait for the client's close (lws answers it and closes), discarding
	 * what arrives, for a few seconds. */
	c->close_code = 0;
	c->close_sent = true;
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, 3);
	return 0;
}

/* Keeps the longest delay from a live event's id (the time Redis gave it)
 * to its write among the n frames at the queue's front, for the report. */
static void
note_lag(struct ws_conn *c, int n)
{
	long long now = (long long)tr_now_ms();

	for (int i = 0; i < n; i++) {
		const struct frame *f = tr_ws_fifo_peek(&c->q, i);
		long long lag = now - (long long)f->id.ms;
		if (!f->live)
			continue;
		if (lag < 0)
			lag = 0; /* the clocks of Redis and this host disagree */
		if (lag > c->lag_max_ms)
			c->lag_max_ms = lag;
	}
}

/* Writes queued frames: several small ones go out in one write, framed
 * here (lws frames one message per write). -1 when the write failed. */
static int
write_queued(struct ws_conn *c)
{
	struct frame *f = tr_ws_fifo_peek(&c->q, 0);
	int n = 1, rc;

	if (f->len + 10 > WRITE_BATCH) {
		rc = lws_write(c->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT);
	} else {
		unsigned char *p = W.batch + LWS_PRE;
		size_t used = 0;
		n = 0;
		while (n < c->q.len) {
			f = tr_ws_fifo_peek(&c->q, n);
			if (used + f->len + 10 > WRITE_BATCH)
				break;
			used += frame_header(p + used, f->len, 0x1);
			memcpy(p + used, f->data + LWS_PRE, f->len);
			used += f->len;
			n++;
		}
		rc = lws_write(c->wsi, p, used, LWS_WRITE_RAW);
	}
	if (rc >= 0)
		note_lag(c, n);
	tr_ws_fifo_drop(&c->q, n);
	if (rc < 0)
		return -1;
	if (c->replay_more && !c->checking && c->state == WS_READY &&
	    c->q.len < W.cfg->ws_send_queue / 2)
		tr_ws_replay_page(c);
	return 0;
}

/* After each loop turn: connections with new frames write them now when
 * their socket takes data (one write, no poll change); the others wait for
 * writability. */
void
tr_ws_flush_cb(uv_check_t *h)
{
	struct ws_conn *list = W.dirty;
	(void)h;

	W.dirty = NULL;
	while (list) {
		struct ws_conn *c = list;
		list = c->dnext;
		c->dirty = false;
		c->dnext = NULL;
		if (!c->wsi) {
			tr_ws_conn_free(c); /* closed while on the list */
			continue;
		}
		if (c->close_sent)
			continue;
		if (c->q.len && !lws_send_pipe_choked(c->wsi) && write_queued(c) < 0) {
			/* outside lws's callback a failed write cannot close the
			 * socket directly: lws does it at once */
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
			continue;
		}
		if (c->q.len || c->close_code)
			lws_callback_on_writable(c->wsi);
	}
	if (!W.dirty && W.flush_on) {
		uv_check_stop(&W.flush);
		W.flush_on = false;
	}
}

int
tr_ws_on_writeable(struct ws_conn *c)
{
	if (c->close_sent)
		return 0;
	if (c->q.len) {
		if (write_queued(c) < 0)
			return -1;
		if (c->q.len || c->close_code)
			lws_callback_on_writable(c->wsi);
		return 0;
	}
	if (c->close_code)
		return write_close(c);
	return 0;
}
