/*
 * mem: giving the process's freed memory back to the system once the node is
 * quiet, so that RSS follows the load down and not only up.
 *
 * glibc keeps freed memory for reuse; malloc_trim(0) returns every whole
 * free page of its heap, but not the pages under chunks it counts as in
 * use. Among those are the chunks of its per-thread cache (tcache: up to 7
 * freed chunks of each size up to 1 KiB, 64 sizes), which after a load are
 * the last ones freed, wherever they were: a few hundred of them, scattered
 * over the heap the load grew, each keep a page resident. mem_give_back
 * first moves the cache onto fresh chunks (taken together, so they share a
 * few pages) and frees the scattered ones for good, then trims.
 *
 * Elsewhere than glibc it does nothing.
 */
#ifndef VROOM_NODE_MEM_H
#define VROOM_NODE_MEM_H

/* Repacks glibc's tcache and calls malloc_trim(0): about 900 malloc/free
 * pairs (0.2 ms) and the trim, which makes one madvise call per free chunk:
 * 10-20 ms on a heap left with 10,000 free chunks, under 1 ms on a settled
 * one. Meant for quiet moments (the node's sweep, at most every 10 s). */
void mem_give_back(void);

#endif
