/*
 * spawn.c: vroomd processes for the C integration tests (see spawn.h).
 *
 * Ownership: the reader thread owns the pipe's read end until it sees EOF;
 * buf is shared with it under mu. A node's stderr reaches EOF only when the
 * node exits, so spawn_stop() reaps the child before joining the thread.
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_WAIT_MS 10000
#define STOP_WAIT_MS  10000
#define MAX_ARGS      32
#define LISTEN_MARK   "listening on "
#define CLIENTS_MARK  " (clients)"

struct spawn {
	pid_t pid;
	int fd; /* the pipe's read end: the node's stdout and stderr */
	FILE *log;
	char log_path[512];
	char addr[64];
	pthread_t reader;
	int reader_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char *buf; /* all the node wrote, NUL-terminated; under mu */
	size_t len, cap;
	int eof;
};

static const char *const sanitizer_marks[] = {"AddressSanitizer", "LeakSanitizer",
					      "runtime error"};

static void setwhy(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void setwhy(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;
	if (!why || !whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

long long spawn_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *reader_main(void *arg)
{
	struct spawn *s = arg;
	char chunk[4096];
	for (;;) {
		ssize_t n = read(s->fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (s->log) {
			fwrite(chunk, 1, (size_t)n, s->log);
			fflush(s->log);
		}
		pthread_mutex_lock(&s->mu);
		if (s->len + (size_t)n + 1 > s->cap) {
			size_t cap = s->cap ? s->cap : 8192;
			while (cap < s->len + (size_t)n + 1)
				cap *= 2;
			char *p = realloc(s->buf, cap);
			if (p) {
				s->buf = p;
				s->cap = cap;
			}
		}
		if (s->len + (size_t)n + 1 <= s->cap) {
			memcpy(s->buf + s->len, chunk, (size_t)n);
			s->len += (size_t)n;
			s->buf[s->len] = '\0';
		}
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
	}
	pthread_mutex_lock(&s->mu);
	s->eof = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static void open_log(struct spawn *s, const char *name)
{
	static int count;
	const char *dir = getenv("VROOM_TEST_TMP");
	char logdir[400];
	if (dir && *dir) {
		snprintf(logdir, sizeof(logdir), "%s/logs", dir);
		mkdir(logdir, 0777);
	} else {
		snprintf(logdir, sizeof(logdir), "/tmp");
	}
	snprintf(s->log_path, sizeof(s->log_path), "%s/%s-%d-%d.log", logdir, name,
		 (int)getpid(), ++count);
	s->log = fopen(s->log_path, "w");
	if (!s->log)
		s->log_path[0] = '\0';
}

/* Finds "listening on HOST:PORT (clients)" in s->buf; 1 if found. Under mu. */
static int find_addr(struct spawn *s)
{
	const char *p = s->buf ? strstr(s->buf, LISTEN_MARK) : NULL;
	if (!p)
		return 0;
	p += strlen(LISTEN_MARK);
	const char *e = strstr(p, CLIENTS_MARK);
	const char *nl = strchr(p, '\n');
	if (!e || (nl && nl < e) || (size_t)(e - p) >= sizeof(s->addr))
		return 0;
	memcpy(s->addr, p, (size_t)(e - p));
	s->addr[e - p] = '\0';
	return 1;
}

/* Reaps the child within ms milliseconds; then SIGKILL. Returns the status. */
static int reap(struct spawn *s, long long ms)
{
	int status = 0;
	long long deadline = spawn_now_ms() + ms;
	for (;;) {
		pid_t r = waitpid(s->pid, &status, WNOHANG);
		if (r == s->pid)
			break;
		if (r < 0 && errno != EINTR) {
			status = -1; /* unknown: report it as a failure */
			break;
		}
		if (spawn_now_ms() >= deadline) {
			kill(s->pid, SIGKILL);
			while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
				;
			break;
		}
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	s->pid = 0;
	return status;
}

static void spawn_free(struct spawn *s)
{
	if (s->reader_started)
		pthread_join(s->reader, NULL);
	if (s->fd >= 0)
		close(s->fd);
	if (s->log)
		fclose(s->log);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s->buf);
	free(s);
}

struct spawn *spawn_start(const char *name, const char *const *args, char *why, size_t whylen)
{
	const char *bin = getenv("VROOMD");
	if (!bin || !*bin) {
		setwhy(why, whylen, "VROOMD is not set to the vroomd binary");
		return NULL;
	}
	const char *argv[MAX_ARGS + 4];
	size_t argc = 0;
	argv[argc++] = bin;
	argv[argc++] = "--listen";
	argv[argc++] = "127.0.0.1:0";
	for (size_t i = 0; args && args[i]; i++) {
		if (argc >= MAX_ARGS + 3) {
			setwhy(why, whylen, "too many arguments");
			return NULL;
		}
		argv[argc++] = args[i];
	}
	argv[argc] = NULL;

	struct spawn *s = calloc(1, sizeof(*s));
	if (!s) {
		setwhy(why, whylen, "out of memory");
		return NULL;
	}
	s->fd = -1;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	open_log(s, name);

	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		setwhy(why, whylen, "pipe: %s", strerror(errno));
		spawn_free(s);
		return NULL;
	}
	pid_t parent = getpid();
	fflush(NULL);
	s->pid = fork();
	if (s->pid < 0) {
		setwhy(why, whylen, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		spawn_free(s);
		return NULL;
	}
	if (s->pid == 0) {
		/* The child: only async-signal-safe calls until exec. */
		int null = open("/dev/null", O_RDONLY);
		if (null >= 0)
			dup2(null, 0);
		dup2(p[1], 1);
		dup2(p[1], 2);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(126);
		execv(bin, (char *const *)argv);
		static const char msg[] = "spawn: cannot exec vroomd\n";
		(void)!write(2, msg, sizeof(msg) - 1);
		_exit(127);
	}
	close(p[1]);
	s->fd = p[0];
	if (pthread_create(&s->reader, NULL, reader_main, s) != 0) {
		setwhy(why, whylen, "cannot start the log reader thread");
		spawn_kill(s);
		return NULL;
	}
	s->reader_started = 1;

	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += START_WAIT_MS / 1000;
	int found = 0, rc = 0;
	pthread_mutex_lock(&s->mu);
	while (!(found = find_addr(s)) && !s->eof && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&s->cv, &s->mu, &dl);
	pthread_mutex_unlock(&s->mu);
	if (!found) {
		setwhy(why, whylen, "%s did not report a listening address within %d s (%s); log: %s",
		       bin, START_WAIT_MS / 1000, s->eof ? "it exited" : "timed out", s->log_path);
		spawn_kill(s);
		return NULL;
	}
	return s;
}

const char *spawn_addr(const struct spawn *s)
{
	return s->addr;
}

pid_t spawn_pid(const struct spawn *s)
{
	return s->pid;
}

const char *spawn_log_path(const struct spawn *s)
{
	return s->log_path;
}

int spawn_stop(struct spawn *s, char *why, size_t whylen)
{
	if (!s)
		return 0;
	long long t0 = spawn_now_ms();
	kill(s->pid, SIGTERM);
	int status = reap(s, STOP_WAIT_MS);
	long long took = spawn_now_ms() - t0;
	if (s->reader_started) {
		pthread_join(s->reader, NULL);
		s->reader_started = 0;
	}
	int rc = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (WIFSIGNALED(status))
			setwhy(why, whylen, "vroomd was killed by signal %d after %lld ms; log: %s",
			       WTERMSIG(status), took, s->log_path);
		else
			setwhy(why, whylen, "vroomd exited with status %d; log: %s",
			       WEXITSTATUS(status), s->log_path);
		rc = -1;
	}
	for (size_t i = 0; rc == 0 && i < sizeof(sanitizer_marks) / sizeof(*sanitizer_marks); i++) {
		if (s->buf && strstr(s->buf, sanitizer_marks[i])) {
			setwhy(why, whylen, "vroomd's log reports \"%s\"; log: %s",
			       sanitizer_marks[i], s->log_path);
			rc = -1;
		}
	}
	if (rc < 0 && s->buf) {
		/* The tail of the log, for meson's --print-errorlogs. */
		size_t off = s->len > 8192 ? s->len - 8192 : 0;
		fprintf(stderr, "---- vroomd log tail (%s) ----\n%s\n---- end ----\n",
			s->log_path, s->buf + off);
	}
	spawn_free(s);
	return rc;
}

void spawn_kill(struct spawn *s)
{
	if (!s)
		return;
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		reap(s, STOP_WAIT_MS);
	}
	spawn_free(s);
}
