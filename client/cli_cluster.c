/*
 * The vroom command's cluster subcommands: keygen (a new cluster key file)
 * and room (where a room lives, as a node sees the cluster).
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "client/cli.h"
#include "client/vroom.h"
#include "cluster/seal.h"

int cli_cluster(struct cli *c)
{
	const char *sub = c->npos > 1 ? c->pos[1] : "";
	if (strcmp(sub, "keygen") == 0) {
		if (c->npos != 3)
			return cli_usage("cluster keygen: expected FILE");
		char why[512];
		if (seal_keygen(c->pos[2], why, sizeof(why)) < 0) {
			fprintf(stderr, "vroom: io: %s\n", why);
			return 1;
		}
		return 0;
	}
	if (strcmp(sub, "room") == 0) {
		if (c->npos != 3)
			return cli_usage("cluster room: expected ID");
		struct vroom_error e;
		struct vroom_placement pl;
		struct vroom *v =
			cli_open(c, NULL, NULL, &e);
		if (!v)
			return cli_fail(&e);
		int rc = vroom_place(v, c->pos[2], &pl, &e);
		vroom_close(v);
		if (rc < 0)
			return cli_fail(&e);
		json_t *backups = json_array();
		for (size_t i = 0; i < pl.nbackups; i++)
			json_array_append_new(backups, json_string(pl.backups[i]));
		json_t *o = json_pack("{s:s, s:s, s:s, s:o}", "room", c->pos[2], "node", pl.node,
				      "relay", pl.relay, "backups", backups);
		json_dumpf(o, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		json_decref(o);
		return 0;
	}
	return cli_usage("cluster: expected keygen FILE or room ID, not '%s'", sub);
}
