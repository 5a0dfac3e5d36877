#include "pwhash.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_THREADS 8
#define HASH_NICE 10

/* One request, owned by the waiting caller; the hashing thread fills it. */
struct job {
	const char *password;
	const char *hash; /* verify: the stored hash */
	char *out;	  /* hash: where to write */
	bool ok, done;
	struct job *next;
};

static struct {
	pthread_once_t once;
	pthread_mutex_t lock;
	pthread_cond_t work, finished;
	struct job *head, *tail;
	pthread_t threads[MAX_THREADS];
	int nthreads;
	bool stopping;
} P = {.once = PTHREAD_ONCE_INIT,
       .lock = PTHREAD_MUTEX_INITIALIZER,
       .work = PTHREAD_COND_INITIALIZER,
       .finished = PTHREAD_COND_INITIALIZER};

static void *
hasher(void *arg)
{
	(void)arg;
	/* Lower this thread's priority; raising it back is never needed. */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), HASH_NICE);
	pthread_mutex_lock(&P.lock);
	for (;;) {
		while (!P.head && !P.stopping)
			pthread_cond_wait(&P.work, &P.lock);
		if (!P.head)
			break;
		struct job *j = P.head;
		P.head = j->next;
		if (!P.head)
			P.tail = NULL;
		pthread_mutex_unlock(&P.lock);
		if (j->out)
			j->ok = crypto_pwhash_str(j->out, j->password, strlen(j->password),
						  crypto_pwhash_OPSLIMIT_INTERACTIVE,
						  crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0;
		else
			j->ok = crypto_pwhash_str_verify(j->hash, j->password,
							 strlen(j->password)) == 0;
		pthread_mutex_lock(&P.lock);
		j->done = true;
		pthread_cond_broadcast(&P.finished);
	}
	pthread_mutex_unlock(&P.lock);
	return NULL;
}

static void
start(void)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int n = cores > 1 ? (int)cores - 1 : 1;

	if (n > MAX_THREADS)
		n = MAX_THREADS;
	for (int i = 0; i < n; i++)
		if (pthread_create(&P.threads[P.nthreads], NULL, hasher, NULL) == 0)
			P.nthreads++;
}

static bool
run(struct job *j)
{
	pthread_once(&P.once, start);
	if (P.nthreads == 0)
		return false;
	pthread_mutex_lock(&P.lock);
	if (P.tail)
		P.tail->next = j;
	else
		P.head = j;
	P.tail = j;
	pthread_cond_signal(&P.work);
	while (!j->done)
		pthread_cond_wait(&P.finished, &P.lock);
	pthread_mutex_unlock(&P.lock);
	return j->ok;
}

bool
tr_pwhash(const char *password, char *hash)
{
	struct job j = {.password = password, .out = hash};

	return run(&j);
}

bool
tr_pwhash_verify(const char *hash, const char *password)
{
	struct job j = {.password = password, .hash = hash};

	return run(&j);
}

void
tr_pwhash_shutdown(void)
{
	pthread_mutex_lock(&P.lock);
	P.stopping = true;
	pthread_cond_broadcast(&P.work);
	pthread_mutex_unlock(&P.lock);
	for (int i = 0; i < P.nthreads; i++)
		pthread_join(P.threads[i], NULL);
	P.nthreads = 0;
}
