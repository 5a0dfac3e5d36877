#include "pwhash.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_HASHERS 8
#define HASH_NICE 10
#define MAX_FIELD 2048

/* Argon2id takes 64 MiB per hash; libsodium maps it and unmaps it each
 * time, and unmapping holds the process's memory-map lock long enough to
 * stall the loop thread on any page fault of its own. So hashing runs in
 * child processes (forked at start, before any thread exists), each
 * serving one request at a time over a socketpair. Workers borrow a free
 * child, write the request, read the answer. */
struct hasher {
	int fd;
	pid_t pid;
	bool busy;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	struct hasher h[MAX_HASHERS];
	int n;
} P = {.lock = PTHREAD_MUTEX_INITIALIZER, .freed = PTHREAD_COND_INITIALIZER};

static bool
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static bool
read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Frame: op (1 byte: 'h' hash, 'v' verify), then two length-prefixed
 * strings (password, stored hash or empty). Answer: ok (1 byte) and, for
 * 'h', the hash (crypto_pwhash_STRBYTES). */
static bool
send_str(int fd, const char *s)
{
	uint32_t len = (uint32_t)strlen(s);
	return write_all(fd, &len, sizeof(len)) && write_all(fd, s, len);
}

static bool
recv_str(int fd, char *buf, size_t cap)
{
	uint32_t len;

	if (!read_all(fd, &len, sizeof(len)) || len >= cap)
		return false;
	if (!read_all(fd, buf, len))
		return false;
	buf[len] = '\0';
	return true;
}

static void __attribute__((noreturn)) child_loop(int fd)
{
	char password[MAX_FIELD], stored[MAX_FIELD], out[crypto_pwhash_STRBYTES];

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* A low priority; SCHED_IDLE measured no better for the loop's
	 * latency and cost a third of the logins per second. */
	setpriority(PRIO_PROCESS, 0, HASH_NICE);
	for (;;) {
		char op;
		if (!read_all(fd, &op, 1) || !recv_str(fd, password, sizeof(password)) ||
		    !recv_str(fd, stored, sizeof(stored)))
			break;
		char ok;
		memset(out, 0, sizeof(out));
		if (op == 'h')
			ok = crypto_pwhash_str(out, password, strlen(password),
					       crypto_pwhash_OPSLIMIT_INTERACTIVE,
					       crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0;
		else
			ok = crypto_pwhash_str_verify(stored, password, strlen(password)) == 0;
		sodium_memzero(password, sizeof(password));
		if (!write_all(fd, &ok, 1) || (op == 'h' && !write_all(fd, out, sizeof(out))))
			break;
	}
	_exit(0); /* no atexit handlers: they belong to the parent's state */
}

int
tr_pwhash_start(void)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int want = cores > 1 ? (int)cores - 1 : 1;

	if (want > MAX_HASHERS)
		want = MAX_HASHERS;
	for (int i = 0; i < want; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
			return -1;
		pid_t pid = fork();
		if (pid < 0) {
			close(sv[0]);
			close(sv[1]);
			return -1;
		}
		if (pid == 0) {
			close(sv[0]);
			for (int j = 0; j < P.n; j++)
				close(P.h[j].fd);
			child_loop(sv[1]);
		}
		close(sv[1]);
		P.h[P.n++] = (struct hasher){.fd = sv[0], .pid = pid};
	}
	return 0;
}

static bool
run(char op, const char *password, const char *stored, char *out)
{
	struct hasher *h = NULL;
	bool ok = false;

	if (strlen(password) >= MAX_FIELD || strlen(stored) >= MAX_FIELD)
		return false;
	pthread_mutex_lock(&P.lock);
	while (P.n > 0) {
		for (int i = 0; i < P.n && !h; i++)
			if (!P.h[i].busy && P.h[i].fd >= 0)
				h = &P.h[i];
		if (h)
			break;
		pthread_cond_wait(&P.freed, &P.lock);
	}
	if (h)
		h->busy = true;
	pthread_mutex_unlock(&P.lock);
	if (!h)
		return false;
	char answer = 0;
	bool io = write_all(h->fd, &op, 1) && send_str(h->fd, password) &&
		  send_str(h->fd, stored) && read_all(h->fd, &answer, 1) &&
		  (op != 'h' || read_all(h->fd, out, crypto_pwhash_STRBYTES));
	ok = io && answer;
	pthread_mutex_lock(&P.lock);
	if (!io) { /* the child died: retire it */
		close(h->fd);
		h->fd = -1;
	}
	h->busy = false;
	pthread_cond_signal(&P.freed);
	pthread_mutex_unlock(&P.lock);
	return ok;
}

bool
tr_pwhash(const char *password, char *hash)
{
	return run('h', password, "", hash);
}

bool
tr_pwhash_verify(const char *hash, const char *password)
{
	return run('v', password, hash, NULL);
}

void
tr_pwhash_shutdown(void)
{
	pthread_mutex_lock(&P.lock);
	for (int i = 0; i < P.n; i++) {
		if (P.h[i].fd >= 0)
			close(P.h[i].fd); /* EOF: the child exits */
		P.h[i].fd = -1;
	}
	for (int i = 0; i < P.n; i++)
		waitpid(P.h[i].pid, NULL, 0);
	P.n = 0;
	pthread_mutex_unlock(&P.lock);
}
