/* Redis Cluster arithmetic shared by both Redis clients (redis.c on the
 * loop, kv.c on worker threads): which hash slot a command goes to, what a
 * MOVED or ASK redirection says, and the slot map read from CLUSTER SLOTS.
 * Pure functions, no I/O. */
#ifndef TR_RCLUSTER_H
#define TR_RCLUSTER_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#define TR_RCL_SLOTS 16384
#define TR_RCL_MAX_NODES 32
#define TR_RCL_NO_NODE 0xff

/* tr_rcl_command_slot for a command without keys (PING, SCRIPT LOAD,
 * PUBLISH): any node answers it. */
#define TR_RCL_ANY (-1)
/* ... and for one whose keys hash to different slots, which a cluster
 * refuses (CROSSSLOT): a key naming bug, caught before it is sent. */
#define TR_RCL_CROSS (-2)

/* The slot of a key: CRC16 (XMODEM) of the key, or of its hash tag - what
 * lies between the first '{' and the next '}', when that is not empty -
 * modulo 16384. Keys t:{tid}:a and t:{tid}:b share a slot. */
int tr_rcl_keyslot(const char *key, size_t len);

/* The slot a command's keys hash to, TR_RCL_ANY or TR_RCL_CROSS. Knows
 * where the keys are for the commands this server sends: EVAL/EVALSHA
 * (numkeys), XREAD/XREADGROUP (after STREAMS), XGROUP/XINFO (the third
 * word), multi-key DEL/EXISTS/MGET/UNLINK/RENAME, sharded pub/sub
 * channels, keyless ones; otherwise the key is the second word. lens may
 * be NULL for C strings. */
int tr_rcl_command_slot(int argc, const char *const *argv, const size_t *lens);

enum tr_rcl_redirect { TR_RCL_NOT_REDIRECT, TR_RCL_MOVED, TR_RCL_ASK };

/* Reads an error reply "MOVED 3999 127.0.0.1:6381" or "ASK 3999 ...".
 * host gets the address (an empty host in the reply means the node that
 * sent it: the caller keeps its own). */
enum tr_rcl_redirect tr_rcl_redirect(const char *err, size_t len, int *slot, char *host,
				     size_t hostlen, int *port);

struct tr_rcl_node {
	char host[64];
	int port;
};

/* Which master serves each slot. */
struct tr_rcl_map {
	int nnodes;
	struct tr_rcl_node nodes[TR_RCL_MAX_NODES];
	uint8_t owner[TR_RCL_SLOTS]; /* index into nodes, or TR_RCL_NO_NODE */
};

/* Fills m from a CLUSTER SLOTS reply. A master announced with an empty
 * host (a node that does not know its own address) gets default_host.
 * Returns 0, or -1 for a reply of the wrong shape or too many masters. */
int tr_rcl_map_parse(struct tr_rcl_map *m, const redisReply *r, const char *default_host);

/* The node index serving slot, or -1 when no master serves it. */
int tr_rcl_map_node(const struct tr_rcl_map *m, int slot);

/* Slot tags: for every slot, a short string (at most 4 characters of
 * [0-9a-z]) whose key slot is that slot, so a name "...{TAG}" hashes to
 * it. Sharded pub/sub uses one channel per slot named that way: a script
 * may only SPUBLISH to a channel of its own keys' slot. The same table on
 * every process: the first string of the enumeration 0..9, a..z, 00, 01,
 * ... that lands on each slot. Fills tags (80 KiB). */
#define TR_RCL_TAG_SIZE 5
void tr_rcl_slot_tags(char tags[TR_RCL_SLOTS][TR_RCL_TAG_SIZE]);

#endif
