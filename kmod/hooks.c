// SPDX-License-Identifier: GPL-2.0
/*
 * Where toa.ko meets the TCP stack, with kretprobes only: the proto_ops and
 * af_ops tables are read-only and stay untouched.
 *
 *  tcp_v4_syn_recv_sock / tcp_v6_syn_recv_sock   the packet that completes
 *      the handshake (final ACK, a data segment when that ACK was lost, the
 *      SYN-cookie ACK, or the SYN itself with TCP Fast Open) creates the
 *      child: parse its options, remember the address for the child.
 *      A :: listener with an IPv4 client runs tcp_v6_syn_recv_sock, which
 *      calls tcp_v4_syn_recv_sock directly: the v4 probe sees it, so the v6
 *      probe ignores IPv4 packets.
 *  inet_getname / inet6_getname   rewrite the peer address in the kernel
 *      buffer after the kernel filled it (getpeername(), accept()).
 *  tcp_v4_destroy_sock            forget the socket (see compat.h).
 */
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/ptrace.h>
#include <linux/skbuff.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/net.h>
#include <net/sock.h>
#include <net/ipv6.h>
#include "compat.h"
#include "toa_kmod.h"

/* ---- handshake ---- */

struct synrecv_data {
	struct sk_buff *skb;
	bool *own_req;
};

static void toa_learn(struct sock *child, const struct sk_buff *skb)
{
	const struct tcphdr *th = tcp_hdr(skb);
	const u8 *nh = skb_network_header(skb);
	struct toa_kinds kinds;
	struct toa_addr a;
	unsigned int thlen;
	bool src_v6;
	int trust;
	u8 flags = 0;

	/* tcp_v{4,6}_rcv pulled the full header into the linear area; check
	 * anyway rather than trust every caller of syn_recv_sock. */
	if ((const u8 *)th < skb->head ||
	    (const u8 *)th + sizeof(*th) > skb_tail_pointer(skb) ||
	    nh < skb->head || nh >= (const u8 *)th) {
		TOA_INC(not_linear);
		goto no_toa;
	}
	thlen = th->doff * 4;
	if (thlen < sizeof(*th) || (const u8 *)th + thlen > skb_tail_pointer(skb)) {
		TOA_INC(not_linear);
		goto no_toa;
	}

	toa_params_kinds(&kinds);
	switch (toa_parse_options((const u8 *)(th + 1), thlen - sizeof(*th),
				  &kinds, &a)) {
	case TOA_PARSE_FOUND:
		break;
	case TOA_PARSE_MALFORMED:
		TOA_INC(malformed);
		goto no_toa;
	default:
		goto no_toa;
	}

	src_v6 = ((const struct iphdr *)nh)->version == 6;
	trust = toa_params_trusted(src_v6, src_v6 ?
				   (const void *)&ipv6_hdr(skb)->saddr :
				   (const void *)&ip_hdr(skb)->saddr);
	if (trust == 0) {
		TOA_INC(untrusted);
		/* remembered so TOA_SO_GET_INFO can say why nothing was used */
		toa_table_store(child, &a, TOA_E_UNTRUSTED);
		goto no_toa;
	}
	if (trust > 0)
		flags |= TOA_E_TRUSTED;
	if (toa_table_store(child, &a, flags))
		goto no_toa;
	TOA_INC(syn_recv_sock_toa);
	return;
no_toa:
	TOA_INC(syn_recv_sock_no_toa);
}

static int synrecv_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct synrecv_data *d = (void *)ri->data;

	d->skb = (struct sk_buff *)TOA_ARG(regs, TOA_SYNRECV_ARG_SKB);
	d->own_req = (bool *)TOA_ARG(regs, TOA_SYNRECV_ARG_OWN_REQ);
	return 0;
}

static int synrecv6_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	const struct sk_buff *skb;

	skb = (const struct sk_buff *)TOA_ARG(regs, TOA_SYNRECV_ARG_SKB);
	/* IPv4 on a :: listener: tcp_v4_syn_recv_sock's probe handles it */
	if (ip_hdr(skb)->version == 4)
		return 1;
	return synrecv_entry(ri, regs);
}

static int synrecv_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct synrecv_data *d = (void *)ri->data;
	struct sock *child = (struct sock *)regs_return_value(regs);

	/* Without own_req the kernel drops the child with a bare sock_put(),
	 * no destroy callback would ever remove our entry. */
	if (child && d->own_req && *d->own_req)
		toa_learn(child, d->skb);
	return 0;
}

/* ---- getpeername / accept ---- */

struct getname_data {
	struct sock *sk;
	void *uaddr;
	struct toa_found f;
};

static int getname_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct getname_data *d = (void *)ri->data;
	struct socket *sock = (struct socket *)TOA_ARG(regs, TOA_GETNAME_ARG_SOCK);
	struct sock *sk;

	if (!TOA_ARG(regs, TOA_GETNAME_ARG_PEER) || !toa_table_count())
		return 1;
	sk = READ_ONCE(sock->sk);
	if (!sk || sk->sk_protocol != IPPROTO_TCP)
		return 1;
	if (!toa_table_lookup(sk, &d->f) || (d->f.flags & TOA_E_UNTRUSTED))
		return 1;
	/* An IPv4 socket cannot carry an IPv6 client: getpeername stays the
	 * balancer, the client is reachable through TOA_SO_GET_LOOKUP. */
	if (sk->sk_family == AF_INET && (d->f.flags & TOA_E_NAT64))
		return 1;
	d->sk = sk;
	d->uaddr = (void *)TOA_ARG(regs, TOA_GETNAME_ARG_UADDR);
	return 0;
}

static int getname_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct getname_data *d = (void *)ri->data;
	int ret = (int)regs_return_value(regs);

	if (!TOA_GETNAME_FILLED(ret, d->sk->sk_family))
		return 0;
	if (d->sk->sk_family == AF_INET) {
		struct sockaddr_in *sin = d->uaddr;

		sin->sin_port = d->f.port;
		sin->sin_addr.s_addr = d->f.addr.v4;
	} else {
		struct sockaddr_in6 *sin6 = d->uaddr;

		sin6->sin6_port = d->f.port;
		if (d->f.flags & TOA_E_NAT64)
			sin6->sin6_addr = d->f.addr.v6;
		else
			ipv6_addr_set_v4mapped(d->f.addr.v4, &sin6->sin6_addr);
		sin6->sin6_flowinfo = 0;
		sin6->sin6_scope_id = 0;
	}
	TOA_INC(getname_toa_ok);
	return 0;
}

/* ---- destruction ---- */

static int destroy_pre(struct kprobe *kp, struct pt_regs *regs)
{
	toa_table_forget((const struct sock *)TOA_ARG(regs, 0));
	return 0;
}

static struct kprobe destroy_probe = {
	.symbol_name = TOA_DESTROY_SYMBOL,
	.pre_handler = destroy_pre,
};

static struct kretprobe synrecv4_probe = {
	.kp.symbol_name = "tcp_v4_syn_recv_sock",
	.entry_handler = synrecv_entry,
	.handler = synrecv_return,
	.data_size = sizeof(struct synrecv_data),
};

static struct kretprobe synrecv6_probe = {
	.kp.symbol_name = "tcp_v6_syn_recv_sock",
	.entry_handler = synrecv6_entry,
	.handler = synrecv_return,
	.data_size = sizeof(struct synrecv_data),
};

static struct kretprobe getname4_probe = {
	.kp.symbol_name = "inet_getname",
	.entry_handler = getname_entry,
	.handler = getname_return,
	.data_size = sizeof(struct getname_data),
};

static struct kretprobe getname6_probe = {
	.kp.symbol_name = "inet6_getname",
	.entry_handler = getname_entry,
	.handler = getname_return,
	.data_size = sizeof(struct getname_data),
};

static struct kretprobe *toa_rps[] = {
	&synrecv4_probe, &synrecv6_probe, &getname4_probe, &getname6_probe,
};

unsigned long toa_hooks_missed(void)
{
	unsigned long n = destroy_probe.nmissed;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(toa_rps); i++)
		n += toa_rps[i]->nmissed + toa_rps[i]->kp.nmissed;
	return n;
}

int toa_hooks_init(void)
{
	unsigned int i;
	int ret;

	/* Removal first: no entry may ever be stored without a way out. */
	ret = register_kprobe(&destroy_probe);
	if (ret) {
		pr_err("cannot probe %s: %d\n", TOA_DESTROY_SYMBOL, ret);
		return ret;
	}
	for (i = 0; i < ARRAY_SIZE(toa_rps); i++)
		toa_rps[i]->maxactive = TOA_MAXACTIVE;
	ret = register_kretprobes(toa_rps, ARRAY_SIZE(toa_rps));
	if (ret) {
		pr_err("cannot probe syn_recv_sock/getname: %d\n", ret);
		unregister_kprobe(&destroy_probe);
	}
	return ret;
}

/*
 * Unregistering waits for handlers in flight (and pending kretprobe
 * instances never call back into us); storing stops before removal does.
 */
void toa_hooks_exit(void)
{
	unregister_kretprobes(toa_rps, ARRAY_SIZE(toa_rps));
	unregister_kprobe(&destroy_probe);
}
