/*
 * notify: tells systemd how the service is doing (sd_notify: READY=1,
 * RELOADING=1, STOPPING=1, STATUS=...) when vroomd was built with libsystemd
 * and runs under a unit with Type=notify; otherwise every call does nothing.
 */
#ifndef VROOM_NODE_NOTIFY_H
#define VROOM_NODE_NOTIFY_H

/* Whether this build can notify systemd. */
int notify_supported(void);
/* Serving: the listeners are bound. status: a short line for systemctl status. */
void notify_ready(const char *status);
/* A reload (SIGHUP) begins; notify_ready() ends it. */
void notify_reloading(void);
/* Draining after SIGTERM. */
void notify_stopping(void);

#endif
