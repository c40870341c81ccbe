#include "stream/addr.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int addr_split(const char *s, const char *default_host, char *host, size_t hostlen, int *port)
{
	const char *colon = strrchr(s, ':');
	/* digits only: strtol alone would take " 80", "+80" and "-0" */
	if (!colon || !isdigit((unsigned char)colon[1]))
		return -1;
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (*end != '\0' || p < 0 || p > 65535)
		return -1;
	const char *h = s;
	size_t hl = (size_t)(colon - s);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	} else if (memchr(h, ':', hl)) {
		return -1; /* a bare IPv6 address needs brackets */
	}
	if (hl == 0) {
		h = default_host;
		hl = strlen(default_host);
	}
	if (hl >= hostlen)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (int)p;
	return 0;
}
