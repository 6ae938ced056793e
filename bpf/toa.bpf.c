// SPDX-License-Identifier: (GPL-2.0 OR MIT)
/*
 * node-toa eBPF backend: the user-space ABI of kmod/ without a kernel module.
 *
 *   sockops               parse the TOA option of the packet that completes
 *                         the handshake, keep it in socket-local storage
 *   cgroup/getpeername4/6 report the client instead of the balancer
 *   cgroup/getsockopt     answer IPPROTO_IP 4096 / 4097 (kmod/uapi/toa.h)
 *
 * Only UAPI context structures are touched (bpf_sock_ops, bpf_sock_addr,
 * bpf_sockopt, bpf_sock): the verifier rewrites those accesses for the
 * running kernel, so the object needs no vmlinux.h and one build loads on
 * every kernel from 5.10 on. CO-RE is used for the single thing that does
 * differ: whether a cgroup/getsockopt program may return any errno.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <asm-generic/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

/*
 * toa.h's user-space branch pulls in glibc, which does not build for the
 * bpf target; its kernel branch needs only the UAPI headers already here.
 */
#define __KERNEL__
#include "../kmod/uapi/toa.h"
#undef __KERNEL__

#include "toa_bpf.h"

#define AF_INET		2
#define AF_INET6	10

#define TCPOPT_EOL	0
#define TCPOPT_NOP	1
#define TCPOLEN_TOA4	8
#define TCPOLEN_TOA6	20
/* RFC 7413 experimental TFO cookie: kind 254 followed by ExID 0xF989 */
#define TCPOPT_EXP	254
#define TFO_EXID	0xF989
#define TCP_MAX_HDR	60

#define V4(a, b, c, d)	bpf_htonl(((a) << 24) | ((b) << 16) | ((c) << 8) | (d))

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#ifdef TOA_BPF_STAMP
/* never loaded: only tells two builds apart (their sha256 differs) */
__attribute__((section(".toa_stamp"), used)) static const char toa_stamp[] = TOA_BPF_STAMP;
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct toa_bpf_config);
} toa_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, TOA_BPF_MAX_TRUSTED);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct toa_bpf_cidr);
	__type(value, __u8);
} toa_trusted SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct toa_bpf_ports);
} toa_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TOA_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} toa_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct toa_bpf_state);
} toa_state SEC(".maps");

/* Freed by the kernel together with the socket: nothing to leak. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct toa_bpf_sk);
} toa_sk SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&toa_stats, &idx);

	/*
	 * Atomic although per CPU: on a preemptible kernel the cgroup hooks run
	 * in task context, where a softirq's sockops program can interrupt a
	 * plain read-modify-write of the same slot.
	 */
	if (v)
		__sync_fetch_and_add(v, 1);
}

enum toa_parse { PARSE_NONE, PARSE_FOUND, PARSE_MALFORMED };

struct toa_opt {
	__u8 kind;
	__u8 len;
	__u8 data[TCPOLEN_TOA6 - 2];	/* port (2) + address (4 or 16) */
};

static __always_inline __u8 *pkt_start(struct bpf_sock_ops *skops)
{
	return (__u8 *)(long)*(volatile __u64 *)&skops->skb_data;
}

static __always_inline __u8 *pkt_end(struct bpf_sock_ops *skops)
{
	return (__u8 *)(long)*(volatile __u64 *)&skops->skb_data_end;
}

/* Until the loader writes the map, the kmod's defaults: 200 and 253. */
static __always_inline int kind_in(const struct toa_bpf_config *cfg, int v6,
				   __u8 kind)
{
	const __u8 *set = v6 ? cfg->kinds_v6 : cfg->kinds_v4;

	if (!cfg->configured)
		return kind == (v6 ? TOA_BPF_DEFAULT_KIND_V6 : TOA_BPF_DEFAULT_KIND_V4);
	return set[kind >> 3] & (1u << (kind & 7));
}

/*
 * Finds the TOA option the way the kernel's tcp_parse_options walks
 * options (EOL ends, NOP skips, len < 2 or past the header stops, kind and
 * length must both match, first match wins) and returns its offset in *at.
 *
 * The loop runs over byte positions, not options, so that the verifier
 * sees one bounded counter (an option-by-option loop tripped 6.12's
 * register-invariant checks and 6.1's 1M-instruction limit). It must also
 * not learn anything else that differs from path to path, or it cannot
 * prune: each step reloads the packet pointers (a range proven in an
 * earlier step would travel along) and the header length, and the offset
 * of the next option lives in a byte of the stack that is not 8-aligned,
 * which every verifier since 5.10 treats as unknown data rather than a
 * tracked register. Measured: ~150k verifier instructions on 6.18 with
 * `next` in a register, 15.6k this way (16.0k on 5.10).
 */
static __always_inline enum toa_parse find_toa(struct bpf_sock_ops *skops,
					       const struct toa_bpf_config *cfg,
					       __u32 *at)
{
	/* next option's offset in byte 1 of an 8-aligned slot (see above) */
	volatile __u8 w[8] __attribute__((aligned(8)));
#define next_opt w[1]
	__u32 i;

	w[0] = 0;	/* keeps the slot whole, so byte 1 stays misaligned */
	next_opt = sizeof(struct tcphdr);

	for (i = sizeof(struct tcphdr); i < TCP_MAX_HDR; i++) {
		struct tcphdr *th = (struct tcphdr *)pkt_start(skops);
		__u8 *p = (__u8 *)th + i, *end = pkt_end(skops);
		__u8 kind, len;

		if (i != next_opt)
			continue;
		if ((void *)(th + 1) > (void *)end)
			return PARSE_NONE;
		if (i >= th->doff * 4u || p + 1 > end)
			return PARSE_NONE;
		kind = p[0];
		if (kind == TCPOPT_EOL)
			return PARSE_NONE;
		if (kind == TCPOPT_NOP) {
			next_opt = i + 1;
			continue;
		}
		if (p + 2 > end)
			return PARSE_MALFORMED;
		len = p[1];
		if (len < 2 || i + len > th->doff * 4u)
			return PARSE_MALFORMED;
		next_opt = i + len;
		if (!(len == TCPOLEN_TOA4 && kind_in(cfg, 0, kind)) &&
		    !(len == TCPOLEN_TOA6 && kind_in(cfg, 1, kind)))
			continue;
		/*
		 * In a SYN, kind 254 with ExID 0xF989 is a TFO option to the
		 * kernel (tcp_parse_options -> tcp_parse_fastopen_option, which
		 * ignores it in any segment but a SYN or SYN-ACK), at either TOA
		 * length (cookies of 4 and 16 bytes); in any other segment those
		 * two bytes are a TOA port of 63881. The SYN is the completing
		 * segment only with TCP Fast Open.
		 */
		if (kind == TCPOPT_EXP && th->syn) {
			if (p + 4 > end)
				return PARSE_MALFORMED;
			if (((p[2] << 8) | p[3]) == TFO_EXID)
				continue;
		}
		*at = i;
		return PARSE_FOUND;
	}
#undef next_opt
	return PARSE_NONE;
}

static __always_inline enum toa_parse parse_toa(struct bpf_sock_ops *skops,
						const struct toa_bpf_config *cfg,
						struct toa_opt *out)
{
	enum toa_parse r;
	__u32 at = 0;
	__u8 *p, *end;

	r = find_toa(skops, cfg, &at);
	if (r != PARSE_FOUND)
		return r;
	if (at >= TCP_MAX_HDR)
		return PARSE_NONE;
	p = pkt_start(skops) + at;
	end = pkt_end(skops);
	if (p + TCPOLEN_TOA4 > end)
		return PARSE_MALFORMED;
	out->kind = p[0];
	out->len = p[1];
	/* constant-size copies: the verifier wants fixed bounds */
	if (out->len == TCPOLEN_TOA4) {
		__builtin_memcpy(out->data, p + 2, TCPOLEN_TOA4 - 2);
	} else {
		if (p + TCPOLEN_TOA6 > end)
			return PARSE_MALFORMED;
		__builtin_memcpy(out->data, p + 2, TCPOLEN_TOA6 - 2);
	}
	return PARSE_FOUND;
}

/* The balancer as toa.h reports it: an IPv4 address fills 4 bytes. */
static __always_inline void peer_of(struct bpf_sock_ops *skops,
				    struct toa_info *ti)
{
	__u32 *a = (__u32 *)ti->proxy_addr;

	ti->proxy_port = bpf_htons((__u16)bpf_ntohl(skops->remote_port));
	if (skops->family == AF_INET) {
		ti->proxy_family = AF_INET;
		a[0] = skops->remote_ip4;
		return;
	}
	a[0] = skops->remote_ip6[0];
	a[1] = skops->remote_ip6[1];
	a[2] = skops->remote_ip6[2];
	a[3] = skops->remote_ip6[3];
	/* an IPv4 client of a dual-stack socket: the packet came over IPv4 */
	if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff)) {
		ti->proxy_family = AF_INET;
		a[0] = a[3];
		a[2] = a[3] = 0;
		return;
	}
	ti->proxy_family = AF_INET6;
}

/*
 * The balancer's address as a key of the trusted-range trie: IPv4 sources
 * become ::ffff:a.b.c.d, which is what an IPv4 peer of a dual-stack socket
 * already looks like, so one trie serves both families.
 */
static __always_inline int source_trusted(const struct toa_info *ti)
{
	struct toa_bpf_cidr key;
	__u32 *k = (__u32 *)key.addr;
	const __u32 *a = (const __u32 *)ti->proxy_addr;

	key.prefixlen = 128;
	if (ti->proxy_family == AF_INET) {
		k[0] = 0;
		k[1] = 0;
		k[2] = bpf_htonl(0xffff);
		k[3] = a[0];
	} else {
		k[0] = a[0];
		k[1] = a[1];
		k[2] = a[2];
		k[3] = a[3];
	}
	return bpf_map_lookup_elem(&toa_trusted, &key) != NULL;
}

/*
 * An address no client can have (toa_bpf.h, TOA_STAT_BOGUS_*): adopting it
 * would let a balancer's bug or a forged option pass for this host itself
 * (loopback), or for nobody. Same classes as the kernel module.
 */
static __always_inline int bogus_class(const struct toa_info *ti)
{
	const __u32 *a = (const __u32 *)ti->real_addr;
	__u32 v4 = a[0];

	if (ti->real_family == AF_INET6) {
		if ((a[0] & bpf_htonl(0xff000000)) == bpf_htonl(0xff000000))
			return TOA_STAT_BOGUS_MULTICAST;
		if (a[0] || a[1])
			return 0;
		if (!a[2] && !a[3])
			return TOA_STAT_BOGUS_UNSPECIFIED;
		if (!a[2] && a[3] == bpf_htonl(1))
			return TOA_STAT_BOGUS_LOOPBACK;
		if (a[2] != bpf_htonl(0xffff))
			return 0;
		/* v4-mapped: only the forms that mean this host */
		if (!a[3])
			return TOA_STAT_BOGUS_UNSPECIFIED;
		if ((a[3] & V4(255, 0, 0, 0)) == V4(127, 0, 0, 0))
			return TOA_STAT_BOGUS_LOOPBACK;
		return 0;
	}
	if (!v4)
		return TOA_STAT_BOGUS_UNSPECIFIED;
	if ((v4 & V4(255, 0, 0, 0)) == V4(127, 0, 0, 0))
		return TOA_STAT_BOGUS_LOOPBACK;
	if ((v4 & V4(240, 0, 0, 0)) == V4(224, 0, 0, 0))
		return TOA_STAT_BOGUS_MULTICAST;
	if (v4 == V4(255, 255, 255, 255))
		return TOA_STAT_BOGUS_BROADCAST;
	return 0;
}

/* --ports: TOA only for connections to these local ports (sshd stays itself) */
static __always_inline int port_honoured(const struct toa_bpf_config *cfg,
					 __u32 port)
{
	__u32 zero = 0;
	struct toa_bpf_ports *ports;

	if (!cfg->ports_only)
		return 1;
	ports = bpf_map_lookup_elem(&toa_ports, &zero);
	if (!ports || port > 65535)
		return 0;
	return ports->bits[port >> 3] & (1u << (port & 7));
}

static __always_inline int on_passive_established(struct bpf_sock_ops *skops)
{
	__u32 zero = 0;
	struct toa_bpf_config *cfg = bpf_map_lookup_elem(&toa_config, &zero);
	struct toa_opt opt = {};
	struct toa_info ti = {};
	struct toa_bpf_sk *st;
	struct bpf_sock *sk;
	enum toa_parse r;
	int bogus;

	if (!cfg || !port_honoured(cfg, skops->local_port))
		return 1;
	r = parse_toa(skops, cfg, &opt);
	if (r != PARSE_FOUND) {
		if (r == PARSE_MALFORMED)
			stat_inc(TOA_STAT_MALFORMED);
		stat_inc(TOA_STAT_SYN_RECV_SOCK_NO_TOA);
		return 1;
	}

	ti.opt_kind = opt.kind;
	peer_of(skops, &ti);
	if (cfg->trusted_only) {
		if (!source_trusted(&ti)) {
			stat_inc(TOA_STAT_UNTRUSTED);
			stat_inc(TOA_STAT_SYN_RECV_SOCK_NO_TOA);
			ti.flags = TOA_INFO_F_UNTRUSTED;
			goto store;
		}
		ti.flags = TOA_INFO_F_TRUSTED;
	}
	ti.flags |= TOA_INFO_F_PRESENT;
	ti.real_port = *(__be16 *)opt.data;
	if (opt.len == TCPOLEN_TOA4) {
		ti.real_family = AF_INET;
		__builtin_memcpy(ti.real_addr, opt.data + 2, 4);
	} else {
		ti.real_family = AF_INET6;
		ti.flags |= TOA_INFO_F_NAT64;
		__builtin_memcpy(ti.real_addr, opt.data + 2, 16);
	}
	bogus = bogus_class(&ti);
	if (bogus) {
		/* as if there were no option: nothing stored */
		stat_inc(bogus);
		stat_inc(TOA_STAT_SYN_RECV_SOCK_NO_TOA);
		return 1;
	}
store:
	sk = skops->sk;
	st = sk ? bpf_sk_storage_get(&toa_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE) : NULL;
	if (st) {
		/* an untrusted option keeps only its flag and kind (real = peer) */
		__builtin_memcpy(st->real_addr, ti.real_addr, 16);
		st->real_port = ti.real_port;
		st->flags = ti.flags;
		st->opt_kind = ti.opt_kind;
	}
	/* as the kmod: an address that could not be kept was not received */
	if (ti.flags & TOA_INFO_F_PRESENT)
		stat_inc(st ? TOA_STAT_SYN_RECV_SOCK_TOA : TOA_STAT_SYN_RECV_SOCK_NO_TOA);
	return 1;
}

SEC("sockops")
int toa_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return on_passive_established(skops);
	return 1;
}

static __always_inline struct toa_bpf_sk *toa_of(struct bpf_sock *sk)
{
	if (!sk || sk->protocol != IPPROTO_TCP)
		return NULL;
	return bpf_sk_storage_get(&toa_sk, sk, 0, 0);
}

/*
 * getpeername: an IPv4 client is a.b.c.d on an AF_INET socket and
 * ::ffff:a.b.c.d on a dual-stack one; an IPv6 client replaces the peer of
 * an AF_INET6 socket only. An AF_INET socket cannot hold an IPv6 address,
 * so a NAT64 client leaves it alone (getsockopt 4096 is the way there).
 */
static __always_inline int rewrite_peer(struct bpf_sock_addr *ctx, int sock6)
{
	struct toa_bpf_sk *ti = toa_of(ctx->sk);
	const __u32 *a;

	/* counted like the kmod: only a rewrite, the rest is getsockopt's */
	if (!ti || !(ti->flags & TOA_INFO_F_PRESENT))
		return 1;
	a = (const __u32 *)ti->real_addr;
	if ((ti->flags & TOA_INFO_F_NAT64) && !sock6)
		return 1;
	if (!sock6) {
		ctx->user_ip4 = a[0];
	} else if (!(ti->flags & TOA_INFO_F_NAT64)) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = a[0];
	} else {
		ctx->user_ip6[0] = a[0];
		ctx->user_ip6[1] = a[1];
		ctx->user_ip6[2] = a[2];
		ctx->user_ip6[3] = a[3];
	}
	ctx->user_port = ti->real_port;
	stat_inc(TOA_STAT_GETNAME_TOA_OK);
	return 1;
}

SEC("cgroup/getpeername4")
int toa_peername4(struct bpf_sock_addr *ctx)
{
	return rewrite_peer(ctx, 0);
}

SEC("cgroup/getpeername6")
int toa_peername6(struct bpf_sock_addr *ctx)
{
	return rewrite_peer(ctx, 1);
}

/*
 * Leaves the kernel's answer (or error) exactly as it is. The program sees
 * at most a page of the caller's buffer, and ctx->optlen is the caller's
 * length (failed call) or the length the kernel wrote back (success), which
 * may exceed that view: an iptables table dump, a buffer over 4 KiB, or a
 * size probe whose answer is larger than the buffer. The kernel then fails
 * the call with EFAULT (kernel/bpf/cgroup.c: always in Debian's 5.10.262;
 * 6.1.192, with the backport of 29ebbba7d461 from 6.5, still when the
 * caller's length was under a page). optlen 0 makes every kernel copy
 * nothing back, so the caller keeps what the kernel wrote. Only then: an
 * earlier program of the same cgroup may have answered, and its answer
 * must stand.
 */
static __always_inline int pass(struct bpf_sockopt *ctx)
{
	__u8 *buf = ctx->optval, *end = ctx->optval_end;
	__u32 len = ctx->optlen;	/* a negative optlen becomes huge */

	if (len > 0xffff || buf + len > end)
		ctx->optlen = 0;
	return 1;
}

/*
 * Before 5.18 a getsockopt program may only clear the error: any other
 * retval is turned into EFAULT by the kernel's own check
 * (`ctx.retval != 0 && ctx.retval != retval`, 5.10's kernel/bpf/cgroup.c),
 * which is how EFAULT is produced there, without an invalid optlen. Since
 * 5.18 (BPF_FUNC_set_retval) retval is the errno the caller gets. Without
 * that, EINVAL and ENOTCONN cannot be told apart from "no module"
 * (ENOPROTOOPT, left as it is).
 */
static __always_inline int sockopt_fail(struct bpf_sockopt *ctx, int err)
{
	if (err == EFAULT ||
	    bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_set_retval))
		ctx->retval = -err;
	return pass(ctx);
}

static __always_inline int sockopt_reply(struct bpf_sockopt *ctx, __u32 len)
{
	ctx->optlen = len;
	/*
	 * Keeps clang from merging these two 4-byte context stores into one
	 * 8-byte store, which the verifier rejects.
	 */
	barrier_var(len);
	asm volatile("" ::: "memory");
	ctx->retval = 0;
	return 1;
}

/* no UAPI header defines it; 1 everywhere but MIPS, which we do not ship */
#define TOA_SOCK_STREAM 1

/*
 * The kmod's toa_connected(): a TCP stream socket getpeername would call
 * connected. A connect()ed raw IPPROTO_TCP socket has the protocol and the
 * state too (ip4_datagram_connect): only its type tells it apart.
 */
static __always_inline int toa_connected(struct bpf_sock *sk)
{
	__u32 s = sk->state;

	return sk->type == TOA_SOCK_STREAM && sk->protocol == IPPROTO_TCP &&
	       s != BPF_TCP_CLOSE &&
	       s != BPF_TCP_SYN_SENT && s != BPF_TCP_LISTEN;
}

/* toa_info as the socket alone tells it: no option, real = peer */
static __always_inline void info_from_peer(struct bpf_sock *sk,
					   struct toa_info *ti)
{
	__u32 *a = (__u32 *)ti->proxy_addr;
	/* 4-byte load: 5.10 rejects narrow loads of dst_port */
	__u32 dport = *(volatile __u32 *)&sk->dst_port;

	ti->version = TOA_INFO_VERSION;
	ti->sock_family = sk->family;
	ti->proxy_port = (__be16)dport;
	if (sk->family == AF_INET) {
		ti->proxy_family = AF_INET;
		a[0] = sk->dst_ip4;
	} else {
		a[0] = sk->dst_ip6[0];
		a[1] = sk->dst_ip6[1];
		a[2] = sk->dst_ip6[2];
		a[3] = sk->dst_ip6[3];
		ti->proxy_family = AF_INET6;
		if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff)) {
			ti->proxy_family = AF_INET;
			a[0] = a[3];
			a[2] = a[3] = 0;
		}
	}
	ti->real_family = ti->proxy_family;
	ti->real_port = ti->proxy_port;
	__builtin_memcpy(ti->real_addr, ti->proxy_addr, 16);
}

SEC("cgroup/getsockopt")
int toa_getsockopt(struct bpf_sockopt *ctx)
{
	struct toa_bpf_sk *ti;
	struct toa_info local;
	struct bpf_sock *sk;
	__u8 *buf, *end;
	int info;

	/* every other getsockopt of the cgroup passes here: leave at once */
	if (ctx->level != IPPROTO_IP ||
	    (ctx->optname != TOA_SO_GET_LOOKUP && ctx->optname != TOA_SO_GET_INFO))
		return pass(ctx);
	/* a kernel module already answered: it owns the range */
	if (ctx->retval != -ENOPROTOOPT)
		return pass(ctx);
	sk = ctx->sk;
	if (!sk)
		return pass(ctx);

	/* checks in the kmod's order: buffer size, connection, then TOA */
	info = ctx->optname == TOA_SO_GET_INFO;
	buf = ctx->optval;
	end = ctx->optval_end;
	if (buf + (info ? sizeof(struct toa_info)
			: sizeof(struct toa_nat64_peer)) > end)
		return sockopt_fail(ctx, EINVAL);
	if (!toa_connected(sk))
		return sockopt_fail(ctx, ENOTCONN);
	ti = bpf_sk_storage_get(&toa_sk, sk, 0, 0);

	if (info) {
		if (buf + sizeof(struct toa_info) > end)
			return pass(ctx);
		__builtin_memset(&local, 0, sizeof(local));
		info_from_peer(sk, &local);
		if (ti) {
			local.flags = ti->flags;
			local.opt_kind = ti->opt_kind;
		}
		if (ti && (ti->flags & TOA_INFO_F_PRESENT)) {
			local.real_family = ti->flags & TOA_INFO_F_NAT64 ? AF_INET6 : AF_INET;
			local.real_port = ti->real_port;
			__builtin_memcpy(local.real_addr, ti->real_addr, 16);
		}
		__builtin_memcpy(buf, &local, sizeof(local));
		return sockopt_reply(ctx, sizeof(local));
	}

	if (!ti || !(ti->flags & TOA_INFO_F_PRESENT)) {
		stat_inc(TOA_STAT_GETNAME_TOA_EMPTY);
		return sockopt_fail(ctx, EINVAL);
	}
	if (!(ti->flags & TOA_INFO_F_NAT64)) {
		stat_inc(TOA_STAT_GETNAME_TOA_MISMATCH);
		return sockopt_fail(ctx, EFAULT);
	}
	if (buf + sizeof(struct toa_nat64_peer) > end)
		return pass(ctx);
	{
		struct toa_nat64_peer *peer = (struct toa_nat64_peer *)buf;

		__builtin_memset(buf, 0, sizeof(*peer));
		__builtin_memcpy(&peer->saddr, ti->real_addr, 16);
		peer->sport = ti->real_port;
	}
	stat_inc(TOA_STAT_GETNAME_TOA_OK);
	return sockopt_reply(ctx, sizeof(struct toa_nat64_peer));
}
