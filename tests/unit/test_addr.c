/*
 * Unit tests for stream/addr: splitting HOST:PORT, with brackets for IPv6 and
 * a default host for ":PORT".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stream/addr.h"

#define DEFAULT_HOST "127.0.0.1"

/* Splits s into a 64-byte host; asserts success and the parts. */
static void assert_split(const char *s, const char *host, int port)
{
	char h[64];
	int p = -1;
	if (addr_split(s, DEFAULT_HOST, h, sizeof(h), &p) != 0)
		fail_msg("\"%s\" rejected", s);
	assert_string_equal(h, host);
	assert_int_equal(p, port);
}

static void assert_rejected(const char *s)
{
	char h[64];
	int p = -1;
	if (addr_split(s, DEFAULT_HOST, h, sizeof(h), &p) != -1)
		fail_msg("\"%s\" accepted", s);
}

static void test_host_port(void **state)
{
	assert_split("example.org:8080", "example.org", 8080);
	assert_split("localhost:1", "localhost", 1);
	assert_split("10.1.2.3:0", "10.1.2.3", 0);
	assert_split("node-7.internal:65535", "node-7.internal", 65535);
}

static void test_ipv6_brackets(void **state)
{
	assert_split("[::1]:7400", "::1", 7400);
	assert_split("[fe80::1%eth0]:80", "fe80::1%eth0", 80);
	assert_split("[2001:db8::42]:443", "2001:db8::42", 443);
}

static void test_default_host(void **state)
{
	assert_split(":7400", DEFAULT_HOST, 7400);
	assert_split(":0", DEFAULT_HOST, 0);

	char h[64];
	int p = 0;
	assert_int_equal(addr_split(":9", "::", h, sizeof(h), &p), 0);
	assert_string_equal(h, "::");
	assert_int_equal(p, 9);
}

static void test_bad_ports(void **state)
{
	assert_rejected("host");
	assert_rejected("host:");
	assert_rejected(":");
	assert_rejected("");
	assert_rejected("host:65536");
	assert_rejected("host:99999999999999999999");
	assert_rejected("host:-1");
	assert_rejected("host:-0");
	assert_rejected("host:+80");
	assert_rejected("host: 80");
	assert_rejected("host:80 ");
	assert_rejected("host:80x");
	assert_rejected("host:0x50");
	assert_rejected("host:http");
	assert_rejected("[::1]");
	assert_rejected("[::1]:");
}

static void test_bare_ipv6(void **state)
{
	assert_rejected("::1:80");
	assert_rejected("fe80::1:80");
	assert_rejected("2001:db8::42:443");
	assert_rejected("host:name:80");
	/* half brackets are not brackets */
	assert_rejected("[::1:80");
	assert_rejected("::1]:80");
}

/* The host and its NUL must fit in hostlen. */
static void test_host_too_long(void **state)
{
	char h[8];
	int p = 0;

	assert_int_equal(addr_split("abcdefg:1", DEFAULT_HOST, h, sizeof(h), &p), 0);
	assert_string_equal(h, "abcdefg");
	assert_int_equal(addr_split("abcdefgh:1", DEFAULT_HOST, h, sizeof(h), &p), -1);
	assert_int_equal(addr_split("[abcd::ef]:1", DEFAULT_HOST, h, sizeof(h), &p), -1);
	assert_int_equal(addr_split("[abcd::e]:1", DEFAULT_HOST, h, sizeof(h), &p), 0);
	assert_string_equal(h, "abcd::e");
	/* the default host must fit too */
	assert_int_equal(addr_split(":1", "127.0.0.1", h, sizeof(h), &p), -1);
	assert_int_equal(addr_split(":1", "::1", h, sizeof(h), &p), 0);
	assert_string_equal(h, "::1");
	/* no room at all */
	assert_int_equal(addr_split("a:1", DEFAULT_HOST, h, 1, &p), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_port),
		cmocka_unit_test(test_ipv6_brackets),
		cmocka_unit_test(test_default_host),
		cmocka_unit_test(test_bad_ports),
		cmocka_unit_test(test_bare_ipv6),
		cmocka_unit_test(test_host_too_long),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
