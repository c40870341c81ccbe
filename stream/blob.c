#include "stream/blob.h"

#include <assert.h>
#include <stdlib.h>

struct blob {
	unsigned refs;
	size_t len;
	void (*release)(void *arg, size_t tag);
	void *arg;
	size_t tag;
	uint8_t data[];
};

struct blob *blob_new(size_t len)
{
	struct blob *b = malloc(sizeof(*b) + len);
	if (!b)
		return NULL;
	b->refs = 1;
	b->len = len;
	b->release = NULL;
	b->arg = NULL;
	return b;
}

uint8_t *blob_data(struct blob *b)
{
	return b->data;
}

size_t blob_len(const struct blob *b)
{
	return b->len;
}

struct blob *blob_ref(struct blob *b)
{
	assert(b->refs > 0);
	b->refs++;
	return b;
}

void blob_unref(struct blob *b)
{
	if (!b)
		return;
	assert(b->refs > 0);
	if (--b->refs == 0) {
		if (b->release)
			b->release(b->arg, b->tag);
		free(b);
	}
}

void blob_on_release(struct blob *b, void (*fn)(void *arg, size_t tag), void *arg, size_t tag)
{
	b->release = fn;
	b->arg = arg;
	b->tag = tag;
}

int blob_has_release(const struct blob *b)
{
	return b->release != NULL;
}
