// SPDX-License-Identifier: GPL-2.0
/*
 * Client-side half of the load-balancer emulator: a sockops program attached
 * to a cgroup that only the emulator's client helper lives in. For every
 * connection whose local port has an entry in `conns`, it writes the
 * configured TCP option into the segments selected by `placement`, the way
 * a full-NAT balancer (LVS, DPVS, CLB) would have inserted it.
 *
 * The option bytes are stored verbatim: the emulator decides what a "good"
 * TOA looks like, this program only places it. Malformed options that the
 * kernel's bpf_store_hdr_opt refuses (len < 2, len > buffer) go through the
 * TUN packet crafter instead.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#define PLACE_SYN	0x1	/* every SYN, retransmits included */
#define PLACE_ACK	0x2	/* first segment after the SYN (the 3WHS ACK) */
#define PLACE_DATA	0x4	/* first segment that carries payload */
#define PLACE_ALL	0x8	/* every segment */

#define OPT_MAX 40

struct conn {
	__u8 opt[OPT_MAX];
	__u32 opt_len;		/* bytes handed to bpf_store_hdr_opt */
	__u32 placement;
	/* written by this program, read back by the emulator */
	__u32 pending;		/* LEN_CB reserved space for the skb in flight */
	__u32 sent_first;	/* a non-SYN segment has been emitted */
	__u32 sent_data;	/* a payload segment has been emitted */
	__u32 n_syn;		/* segments that carried the option, by type */
	__u32 n_ack;
	__u32 n_data;
	__s32 last_err;		/* last negative return of reserve/store */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);	/* client local port, host order */
	__type(value, struct conn);
} conns SEC(".maps");

#define TCP_FLAG_SYN 0x02

static __always_inline int wanted(struct conn *c, __u32 flags, int has_data)
{
	if (c->placement & PLACE_ALL)
		return 1;
	if (flags & TCP_FLAG_SYN)
		return c->placement & PLACE_SYN;
	if ((c->placement & PLACE_ACK) && !c->sent_first)
		return 1;
	if ((c->placement & PLACE_DATA) && has_data && !c->sent_data)
		return 1;
	return 0;
}

SEC("sockops")
int lb_sockops(struct bpf_sock_ops *skops)
{
	__u32 port = skops->local_port;
	struct conn *c = bpf_map_lookup_elem(&conns, &port);
	__u32 len;
	long err;

	if (!c)
		return 1;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
					  BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
		return 1;
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB: {
		__u32 flags = skops->skb_tcp_flags;
		/* header not pushed yet: skb_len is the payload */
		int has_data = skops->skb_len > 0;

		len = c->opt_len;
		if (len < 2 || len > OPT_MAX)
			return 1;
		if (skops->args[0] == BPF_WRITE_HDR_TCP_CURRENT_MSS) {
			/* MSS probe without an skb: keep room while an option may still be due */
			if ((c->placement & (PLACE_ALL | PLACE_DATA | PLACE_ACK)) &&
			    (!c->sent_data || (c->placement & PLACE_ALL)))
				bpf_reserve_hdr_opt(skops, len, 0);
			return 1;
		}
		c->pending = wanted(c, flags, has_data);
		if (!(flags & TCP_FLAG_SYN)) {
			c->sent_first = 1;
			if (has_data)
				c->sent_data = 1;
		}
		if (c->pending) {
			err = bpf_reserve_hdr_opt(skops, len, 0);
			if (err) {
				c->last_err = err;
				c->pending = 0;
			}
		}
		/* remember the segment type for WRITE_HDR_OPT_CB */
		if (c->pending)
			c->pending = (flags & TCP_FLAG_SYN) ? 1 : has_data ? 3 : 2;
		return 1;
	}
	case BPF_SOCK_OPS_WRITE_HDR_OPT_CB: {
		__u32 kind = c->pending;

		if (!kind)
			return 1;
		c->pending = 0;
		len = c->opt_len;
		if (len < 2 || len > OPT_MAX)
			return 1;
		err = bpf_store_hdr_opt(skops, c->opt, len, 0);
		if (err) {
			c->last_err = err;
			return 1;
		}
		if (kind == 1)
			c->n_syn++;
		else if (kind == 2)
			c->n_ack++;
		else
			c->n_data++;
		return 1;
	}
	}
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
