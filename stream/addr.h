/*
 * addr: splitting "HOST:PORT" strings (no I/O, no name resolution).
 * Accepts "host:port", "1.2.3.4:port" and "[v6]:port"; a missing host
 * means the default host given by the caller.
 */
#ifndef VROOM_STREAM_ADDR_H
#define VROOM_STREAM_ADDR_H

#include <stddef.h>

/* Splits s into host[hostlen] and *port. 0, or -1 if s is not HOST:PORT with
 * a port from 0 to 65535 (and a host that fits). */
int addr_split(const char *s, const char *default_host, char *host, size_t hostlen, int *port);

#endif
