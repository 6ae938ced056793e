/* SPDX-License-Identifier: (GPL-2.0 OR MIT) */
/*
 * Layout of the maps the loader (src/bpf/) writes and reads. The loader
 * encodes these by hand: keep src/bpf/encode.ts in step with this file.
 */
#ifndef NODE_TOA_BPF_H
#define NODE_TOA_BPF_H

#define TOA_BPF_DEFAULT_KIND_V4	200
#define TOA_BPF_DEFAULT_KIND_V6	253
#define TOA_BPF_MAX_TRUSTED	1024

/* toa_config[0]; kinds are bitmaps (bit k of byte k / 8) as in the kmod */
struct toa_bpf_config {
	__u8 kinds_v4[32];	/* kinds carrying |port|IPv4| (len 8) */
	__u8 kinds_v6[32];	/* kinds carrying |port|IPv6| (len 20) */
	__u8 configured;	/* 0: never written, use 200 / 253 */
	__u8 trusted_only;	/* honor options only from toa_trusted */
	__u8 ports_only;	/* honor options only on the local ports in toa_ports */
	__u8 reserved[5];
};

/* toa_ports[0]: bit p of byte p / 8 = local port p (host order) */
struct toa_bpf_ports {
	__u8 bits[65536 / 8];
};

/*
 * toa_state[0]: where the loader attached the programs. Written and read by
 * the loader only; kept in a pinned map so the record lives exactly as long
 * as the programs (BPF_PROG_QUERY cannot be relied on: bpftool >= 7.0 asks
 * for fields that kernels before 6.0 refuse).
 */
struct toa_bpf_state {
	__u64 cgroup_ino;	/* inode of the cgroup directory */
	__u32 attached;		/* bit i: program i of the loader's list attached */
	__u32 path_len;
	char path[4080];	/* cgroup directory, not NUL-terminated */
};

/*
 * toa_sk value: what only the handshake knows. Everything else struct
 * toa_info (kmod/uapi/toa.h) reports is the socket's own state (family,
 * peer), read again at query time. The kernel allocates the element as
 * offsetof(struct bpf_local_storage_elem, sdata.data[value_size]), 72 +
 * value on 6.1 (kernel/bpf/bpf_local_storage.c): 24 bytes fit kmalloc-96,
 * a whole toa_info (56) needed kmalloc-128. 5.10 allocates the padded
 * struct (128) + value: kmalloc-192 either way.
 */
struct toa_bpf_sk {
	__u8 real_addr[16];	/* the client; IPv4 fills the first 4 bytes */
	__be16 real_port;
	__u8 flags;		/* TOA_INFO_F_* (all below 0x100) */
	__u8 opt_kind;
	__u8 reserved[4];
};

/* toa_trusted key: IPv4 ranges are stored as ::ffff:a.b.c.d/(96 + len) */
struct toa_bpf_cidr {
	__u32 prefixlen;
	__u8 addr[16];
};

/*
 * toa_stats index; names and meaning as in the kernel module's
 * /proc/net/toa_stats (an untrusted or malformed option also counts as
 * syn_recv_sock_no_toa there, and here).
 */
enum toa_bpf_stat {
	TOA_STAT_SYN_RECV_SOCK_TOA,
	TOA_STAT_SYN_RECV_SOCK_NO_TOA,
	TOA_STAT_GETNAME_TOA_OK,
	TOA_STAT_GETNAME_TOA_MISMATCH,
	TOA_STAT_GETNAME_TOA_EMPTY,
	TOA_STAT_UNTRUSTED,
	TOA_STAT_MALFORMED,
	/* trusted options naming an address no client can have: never adopted */
	TOA_STAT_BOGUS_UNSPECIFIED,
	TOA_STAT_BOGUS_LOOPBACK,
	TOA_STAT_BOGUS_MULTICAST,
	TOA_STAT_BOGUS_BROADCAST,
	TOA_STAT_MAX
};

#endif
