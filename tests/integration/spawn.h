/*
 * spawn.h: start and stop real vroomd processes for integration tests.
 *
 * A node listens on 127.0.0.1 with a port the kernel picks. Its stderr goes
 * to a pipe that a thread copies, in order, to a log file under
 * $VROOM_TEST_TMP/logs (else /tmp) and to memory, where spawn_start() finds
 * the "listening on HOST:PORT (clients)" line and spawn_stop() looks for
 * sanitizer reports. The child dies with the test process (PR_SET_PDEATHSIG).
 */
#ifndef VROOM_TESTS_SPAWN_H
#define VROOM_TESTS_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

struct spawn;

/* Starts $VROOMD --listen 127.0.0.1:0 followed by the NULL-terminated extra
 * arguments (args may be NULL) and waits up to 10 s for it to listen. name
 * labels the log file. NULL with a reason in why on failure. */
struct spawn *spawn_start(const char *name, const char *const *args, char *why, size_t whylen);
/* "127.0.0.1:PORT": the node's client address, valid until the spawn is freed. */
const char *spawn_addr(const struct spawn *s);
pid_t spawn_pid(const struct spawn *s);
/* The log file's path. */
const char *spawn_log_path(const struct spawn *s);
/* Sends SIGTERM, waits up to 10 s (then SIGKILL) and frees s. 0 if the node
 * exited with status 0 and its log has no "AddressSanitizer", "LeakSanitizer"
 * or "runtime error"; else -1 with a reason in why. spawn_stop(NULL) is 0. */
int spawn_stop(struct spawn *s, char *why, size_t whylen);
/* SIGKILL, reap and free, with no checks. spawn_kill(NULL) is a no-op. */
void spawn_kill(struct spawn *s);
/* Milliseconds on the monotonic clock, for bounding waits. */
long long spawn_now_ms(void);

#endif
