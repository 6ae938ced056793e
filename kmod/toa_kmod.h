/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Declarations shared by the parts of toa.ko. Each part lives in its own file
 * the way a driver is split: option parsing (option.c), per-socket storage
 * (table.c), kernel hooks (hooks.c), the getsockopt ABI (sockopt.c),
 * counters and /proc (stats.c), module parameters (params.c), init (main.c).
 */
#ifndef _TOA_KMOD_H
#define _TOA_KMOD_H

#include <linux/types.h>
#include <linux/in6.h>
#include <linux/percpu.h>
#include <linux/rculist_bl.h>
#include <net/net_namespace.h>
#include "uapi/toa.h"

/* Wire sizes: |kind|len|port(2)|addr(4 or 16)|. */
#define TOA_VERSION	"1.1.0"

#define TOA_OPTLEN_V4	8
#define TOA_OPTLEN_V6	20

/* RFC 7413 experimental TCP Fast Open cookie: kind 254 with this ExID. */
#define TOA_TFO_KIND	254
#define TOA_TFO_EXID	0xF989

/* ---- option.c: pure parser, no kernel state ---- */

enum toa_parse_result {
	TOA_PARSE_NONE,		/* well-formed list, no TOA option */
	TOA_PARSE_FOUND,	/* *out filled from the first matching option */
	TOA_PARSE_MALFORMED,	/* walk stopped on a bad length, nothing found */
};

struct toa_kinds {
	/* bit k set: kind k carries an address of that family */
	unsigned long v4[BITS_TO_LONGS(256)];
	unsigned long v6[BITS_TO_LONGS(256)];
};

struct toa_addr {
	union {
		__be32 v4;
		struct in6_addr v6;
	};
	__be16 port;
	u8 kind;
	bool is_v6;
};

/* @syn: the segment is a SYN (kind 254 / 0xF989 is then a TFO cookie) */
enum toa_parse_result toa_parse_options(const u8 *opt, unsigned int len,
					const struct toa_kinds *kinds, bool syn,
					struct toa_addr *out);

/* ---- params.c ---- */

/* Snapshot of the kind bitmaps; copied so one parse sees one configuration. */
void toa_params_kinds(struct toa_kinds *out);
/* Is a packet source (IPv4 when !is_v6) inside a trusted range?
 * Returns 1 trusted, 0 untrusted, -1 no list configured (accept all). */
int toa_params_trusted(bool is_v6, const void *saddr);
/* Is TOA honoured on this local port (the `ports` list, empty = all)? */
bool toa_params_port_ok(__be16 port);
/* Load-time warnings about the configuration (trusted empty). */
void toa_params_check(void);
void toa_params_exit(void);

/* ---- table.c: per-socket state ---- */

/* entry flags (kept small: stored per connection) */
#define TOA_E_NAT64	0x01	/* address is IPv6 */
#define TOA_E_TRUSTED	0x02	/* source matched a configured range */
#define TOA_E_UNTRUSTED	0x04	/* option ignored: source not trusted */
#define TOA_E_WIDE	0x08	/* a struct toa_entry_wide (some address is IPv6) */

/*
 * Who an entry belongs to. tcp_sock memory is SLAB_TYPESAFE_BY_RCU and reused
 * at once, so the struct sock address says nothing: the socket cookie
 * (sock_gen_cookie(): one 64-bit counter for the whole machine on every
 * kernel we build for, never reused while it runs) plus the netns and the
 * 4-tuple the socket had when the entry was made. A socket that was
 * disconnected and reconnected elsewhere keeps its cookie but not its tuple.
 */
struct toa_ident {
	u64 cookie;
	possible_net_t net;
	__be16 lport;
	__be16 rport;
	__be32 peer4;	/* the balancer, narrow entries; wide: toa_entry_wide.peer */
};

/*
 * One per TOA connection. An IPv4 client behind an IPv4 balancer, the
 * common case, fits in 64 bytes; an entry with any IPv6 address (a NAT64
 * client, an IPv6 balancer) is a struct toa_entry_wide from its own cache.
 */
struct toa_entry {
	struct hlist_bl_node node;
	struct rcu_head rcu;
	struct toa_ident id;
	__be16 port;
	u8 kind;
	u8 flags;
	__be32 addr4;	/* the client, narrow entries */
};

struct toa_entry_wide {
	struct toa_entry e;
	struct in6_addr peer;	/* the balancer; IPv4 as ::ffff:a.b.c.d */
	union {
		__be32 v4;
		struct in6_addr v6;
	} addr;
};

/* What a lookup copies out, so callers never hold an entry. */
struct toa_found {
	union {
		__be32 v4;
		struct in6_addr v6;
	} addr;
	__be16 port;
	u8 kind;
	u8 flags;
};

int toa_table_init(void);
void toa_table_exit(void);
int toa_table_store(struct sock *sk, const struct toa_addr *a, u8 flags);
bool toa_table_lookup(const struct sock *sk, struct toa_found *out);
void toa_table_forget(const struct sock *sk);
/* /proc/net/toa_table iterator */
extern const struct seq_operations toa_table_seq_ops;
size_t toa_table_seq_private_size(void);

/* ---- stats.c ---- */

/*
 * Event counters, one set per network namespace: a namespace (a container)
 * sees the connections made in it, no other tenant's. Kept per CPU.
 */
struct toa_net_stats {
	u64 syn_recv_sock_toa;
	u64 syn_recv_sock_no_toa;
	u64 getname_toa_ok;
	u64 getname_toa_mismatch;
	u64 getname_toa_empty;
	u64 untrusted;
	u64 malformed;
	u64 not_linear;
	u64 port_skipped;
	u64 bogus_unspecified;
	u64 bogus_loopback;
	u64 bogus_multicast;
	u64 bogus_broadcast;
	u64 listeners_swapped;
	u64 swap_foreign_ops;
	u64 sockopt_refused;
};

/* The module's own memory, host-wide: shown in the initial namespace only. */
struct toa_mem_stats {
	u64 ip6_address_alloc;
	u64 ip6_address_free;
	u64 entry_alloc;
	u64 entry_free;
	u64 entry_alloc_fail;
};

extern struct toa_mem_stats __percpu *toa_mem_stats;
/* The namespace's counters; valid while the caller holds a socket of it. */
struct toa_net_stats __percpu *toa_net_stats(const struct net *net);
/* Safe from preemptible context (sockopt) as well as from probes. */
#define TOA_INC(field) this_cpu_inc(toa_mem_stats->field)
#define TOA_NET_INC(net, field) this_cpu_inc(toa_net_stats(net)->field)

int toa_stats_init(void);
void toa_stats_exit(void);
/* /proc/net/toa_{stats,table} in every namespace */
int toa_proc_init(void);
void toa_proc_exit(void);

/* ---- hooks.c ---- */

int toa_hooks_init(void);
void toa_hooks_exit(void);
/* kretprobe/kprobe misses, reported in toa_stats */
unsigned long toa_hooks_missed(void);
/* table_entries gauge: stored minus freed, summed over CPUs */
long toa_stats_entries(void);

/* ---- sockopt.c ---- */

int toa_sockopt_init(void);
void toa_sockopt_exit(void);

/* shared helper: the socket's peer as the kernel saw it */
struct sock;
void toa_sock_peer(const struct sock *sk, u16 *family, u8 addr[16],
		   __be16 *port);

#endif
