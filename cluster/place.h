/*
 * place: rendezvous (highest random weight) placement of rooms on nodes.
 *
 * A node's weight for a room is XXH3-64 of the room id, seeded with the XXH3
 * of the node's name under the cluster seed; the cluster seed comes from the
 * cluster key, so clients cannot aim rooms at a node. A room's preference
 * list is the live nodes in decreasing weight: the first is its relay, the
 * next ones its ordered backups. Every node with the same membership computes
 * the same list; adding a node moves only the rooms it now wins, and removing
 * one moves only its rooms, each to its first backup.
 */
#ifndef VROOM_CLUSTER_PLACE_H
#define VROOM_CLUSTER_PLACE_H

#include <stddef.h>
#include <stdint.h>

/* A node's seed for weights under the cluster seed. */
uint64_t place_node_seed(uint64_t cluster_seed, const char *node, size_t len);
/* The weight of a room on a node (given by its node seed). */
uint64_t place_weight(uint64_t node_seed, const char *room, size_t len);
/* Writes into order[] the indices (into node_seeds[0..n)) of the k heaviest
 * nodes for the room, heaviest first; ties go to the lower index (names are
 * sorted, so every node breaks them alike). Returns min(k, n). */
size_t place_rank(const uint64_t *node_seeds, size_t n, const char *room, size_t len, size_t *order,
		  size_t k);

#endif
