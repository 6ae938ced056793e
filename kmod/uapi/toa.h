/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * node-toa user-space ABI. This header is the single definition shared by
 * the kernel module (kmod/), the eBPF backend (bpf/) and the Node addon
 * (native/). Change it only in backward-compatible ways: new fields go into
 * the reserved bytes and are announced by a new TOA_INFO_VERSION.
 */
#ifndef _UAPI_NODE_TOA_H
#define _UAPI_NODE_TOA_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/in6.h>
#else
#include <linux/types.h>
#include <netinet/in.h>
#endif

/*
 * Both queries are getsockopt(fd, IPPROTO_IP, <optname>, ...) and work on
 * AF_INET and AF_INET6 TCP sockets (the IPv6 stack forwards SOL_IP to the
 * IPv4 handlers, so one nf_sockopt registration for PF_INET serves both).
 * One module owns the whole range [TOA_SO_BASE, TOA_SO_MAX).
 */
#define TOA_SO_BASE		4096
/* Tencent / DPVS ABI: struct toa_nat64_peer for NAT64 clients. */
#define TOA_SO_GET_LOOKUP	4096
/* node-toa extended query: struct toa_info, any family. */
#define TOA_SO_GET_INFO		4097
#define TOA_SO_MAX		4098

/*
 * Answer to TOA_SO_GET_LOOKUP. Field for field what Tencent's and DPVS's
 * modules return (20 bytes with padding). Errors: EINVAL when the buffer
 * is shorter or the socket carries no TOA, EFAULT when it carries one that
 * is not NAT64, ENOTCONN when it is not a connected TCP stream socket
 * (UDP and raw IPPROTO_TCP sockets included).
 */
struct toa_nat64_peer {
	struct in6_addr saddr;
	__be16 sport;
};

/* flags of struct toa_info */
/* An option was decoded and the real address below comes from it. */
#define TOA_INFO_F_PRESENT	0x0001u
/* The real address is IPv6 (kind 253 / NAT64 client). */
#define TOA_INFO_F_NAT64	0x0002u
/* The packet's source matched a configured trusted range. */
#define TOA_INFO_F_TRUSTED	0x0004u
/* An option was found but ignored: its source is not trusted. */
#define TOA_INFO_F_UNTRUSTED	0x0008u

#define TOA_INFO_VERSION	1

/*
 * Answer to TOA_SO_GET_INFO. Always succeeds on a connected TCP socket.
 * Without TOA (flags lacks TOA_INFO_F_PRESENT) real_* equals proxy_*, the
 * peer as the kernel saw it. Addresses are raw: an IPv4 address fills the
 * first 4 bytes, the rest are zero. Ports are in network order.
 * sock_family lets user space format the answer as getpeername would
 * (an IPv4 client on an AF_INET6 socket is ::ffff:a.b.c.d).
 * Errors: EINVAL when optlen < sizeof(struct toa_info), ENOTCONN (as for
 * TOA_SO_GET_LOOKUP).
 */
struct toa_info {
	__u32 version;		/* TOA_INFO_VERSION */
	__u32 flags;		/* TOA_INFO_F_* */
	__u16 sock_family;	/* AF_INET or AF_INET6: the socket's family */
	__u16 real_family;	/* AF_INET or AF_INET6: the client's family */
	__be16 real_port;
	__be16 proxy_port;
	__u8 real_addr[16];
	__u8 proxy_addr[16];
	__u16 proxy_family;	/* family of the packet's source (the balancer) */
	__u8 opt_kind;		/* TCP option kind that carried the address, 0 if none */
	__u8 reserved[5];
};

#endif /* _UAPI_NODE_TOA_H */
