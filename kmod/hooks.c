// SPDX-License-Identifier: GPL-2.0
/*
 * Where toa.ko meets the TCP stack. The proto_ops and af_ops tables are
 * read-only and stay untouched; each hook uses the mechanism that fits it:
 *
 *  tcp_destroy_sock tracepoint     forget the socket. A tracepoint is a
 *      direct call from tcp_v4_destroy_sock() (which tcpv6_prot.destroy also
 *      reaches): nothing can drop it, unlike a kprobe that fires while another
 *      kprobe handler runs on that CPU (only counted in nmissed).
 *  tcp_disconnect (kprobe)         connect(AF_UNSPEC) keeps the socket: forget
 *      it too. No tracepoint there; a missed hit leaves an entry whose 4-tuple
 *      no longer matches (struct toa_ident), so it can never answer.
 *  tcp_v4_syn_recv_sock / tcp_v6_syn_recv_sock (kretprobes)   the packet that
 *      completes the handshake (final ACK, a data segment when that ACK was
 *      lost, the SYN-cookie ACK, or the SYN itself with TCP Fast Open)
 *      creates the child: parse its options, remember the address. The
 *      return value (the child) is needed, and these functions never sleep.
 *      A :: listener with an IPv4 client runs tcp_v6_syn_recv_sock, which
 *      calls tcp_v4_syn_recv_sock directly: the v4 probe sees it, so the v6
 *      probe ignores IPv4 packets.
 *  getpeername / accept (toa.ko's own proto_ops)   The first handshake
 *      that yields an entry swaps its listener's ops for a module-private
 *      copy of inet_stream_ops / inet6_stream_ops whose getname() rewrites
 *      the peer after the stock one filled it; do_accept() copies the
 *      listener's ops into every child it accepts afterwards. No probe, so
 *      nothing to miss and nothing held across getname's lock_sock() sleep;
 *      sockets of other listeners keep the stock ops and pay nothing.
 *      The copy's owner is this module, so (as for any protocol module)
 *      every socket on it pins toa.ko: rmmod gets EBUSY until they are
 *      closed. A thread already asleep in accept() when the first swap
 *      happens copied the stock ops before it slept: that one child's
 *      getpeername shows the balancer, TOA_SO_GET_INFO still answers.
 */
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/moduleparam.h>
#include <linux/tracepoint.h>
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
#include <net/inet_common.h>
#include <linux/file.h>
#include <linux/fs.h>
#include "compat.h"
#include "toa_kmod.h"

/* ---- handshake ---- */

struct synrecv_data {
	struct sock *listener;
	struct sk_buff *skb;
	bool *own_req;
};

/*
 * Addresses no client can have, whatever a balancer (or a spoofer) wrote:
 * counted per class, never adopted. v4-mapped forms count as IPv4.
 */
static bool bogus_v4(const struct net *net, __be32 a)
{
	if (ipv4_is_zeronet(a))
		TOA_NET_INC(net, bogus_unspecified);
	else if (ipv4_is_loopback(a))
		TOA_NET_INC(net, bogus_loopback);
	else if (ipv4_is_multicast(a))
		TOA_NET_INC(net, bogus_multicast);
	else if (ipv4_is_lbcast(a))
		TOA_NET_INC(net, bogus_broadcast);
	else
		return false;
	return true;
}

static bool bogus(const struct net *net, const struct toa_addr *a)
{
	if (!a->is_v6)
		return bogus_v4(net, a->v4);
	if (ipv6_addr_v4mapped(&a->v6))
		return bogus_v4(net, a->v6.s6_addr32[3]);
	if (ipv6_addr_any(&a->v6))
		TOA_NET_INC(net, bogus_unspecified);
	else if (ipv6_addr_loopback(&a->v6))
		TOA_NET_INC(net, bogus_loopback);
	else if (ipv6_addr_is_multicast(&a->v6))
		TOA_NET_INC(net, bogus_multicast);
	else
		return false;
	return true;
}

static bool toa_learn(struct sock *child, const struct sk_buff *skb)
{
	const struct net *net = sock_net(child);
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
		TOA_NET_INC(net, not_linear);
		goto no_toa;
	}
	thlen = th->doff * 4;
	if (thlen < sizeof(*th) || (const u8 *)th + thlen > skb_tail_pointer(skb)) {
		TOA_NET_INC(net, not_linear);
		goto no_toa;
	}
	if (!toa_params_port_ok(th->dest)) {
		TOA_NET_INC(net, port_skipped);
		goto no_toa;
	}

	toa_params_kinds(&kinds);
	switch (toa_parse_options((const u8 *)(th + 1), thlen - sizeof(*th),
				  &kinds, th->syn, &a)) {
	case TOA_PARSE_FOUND:
		break;
	case TOA_PARSE_MALFORMED:
		TOA_NET_INC(net, malformed);
		goto no_toa;
	default:
		goto no_toa;
	}
	src_v6 = ((const struct iphdr *)nh)->version == 6;
	trust = toa_params_trusted(src_v6, src_v6 ?
				   (const void *)&ipv6_hdr(skb)->saddr :
				   (const void *)&ip_hdr(skb)->saddr);
	if (trust == 0) {
		TOA_NET_INC(net, untrusted);
		/* remembered so TOA_SO_GET_INFO can say why nothing was used */
		toa_table_store(child, &a, TOA_E_UNTRUSTED);
		goto no_toa;
	}
	/* counted once: an untrusted source's claim is "untrusted" above */
	if (bogus(net, &a))
		goto no_toa;
	if (trust > 0)
		flags |= TOA_E_TRUSTED;
	if (toa_table_store(child, &a, flags))
		goto no_toa;
	TOA_NET_INC(net, syn_recv_sock_toa);
	return true;
no_toa:
	TOA_NET_INC(net, syn_recv_sock_no_toa);
	return false;
}

static int synrecv_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct synrecv_data *d = (void *)ri->data;

	d->listener = (struct sock *)TOA_ARG(regs, 0);
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

/* ---- the private proto_ops of TOA listeners and their children ---- */

static struct proto_ops toa_ops4, toa_ops6;
static const struct proto_ops *stock_ops4, *stock_ops6;
static bool toa_ops_ready;

static void toa_rewrite(struct socket *sock, struct sockaddr *uaddr, int ret);

/*
 * The table ours was copied from. sock->ops is one of ours here (we were
 * called through it) and never changes back: nothing moves a socket off
 * our ops while the two options below are refused.
 */
static const struct proto_ops *toa_stock(const struct socket *sock)
{
	return sock->ops == &toa_ops6 ? stock_ops6 : stock_ops4;
}

static int toa_getname(struct socket *sock, struct sockaddr *uaddr, int peer)
{
	int ret = toa_stock(sock)->getname(sock, uaddr, peer);

	if (peer)
		toa_rewrite(sock, uaddr, ret);
	return ret;
}

/*
 * Both would move the socket to ops that are not ours while it holds our
 * module reference: a TCP_ULP (kTLS, espintcp) copies the socket's current
 * ops as the template for every later socket of that family, and
 * IPV6_ADDRFORM stores &inet_stream_ops.
 */
static int toa_setsockopt(struct socket *sock, int level, int optname,
			  sockptr_t optval, unsigned int optlen)
{
	if ((level == SOL_TCP && optname == TCP_ULP) ||
	    (level == SOL_IPV6 && optname == IPV6_ADDRFORM)) {
		TOA_NET_INC(sock_net(sock->sk), sockopt_refused);
		return -EOPNOTSUPP;
	}
	return toa_stock(sock)->setsockopt(sock, level, optname, optval, optlen);
}

/*
 * From softirq (the syn_recv_sock return handler), on a listener whose user
 * may be closing it right now. sock_release() reads ops->owner once and
 * module_put()s it after release: a swap after that read would leak our
 * reference, a swap after ops = NULL would resurrect a dead socket. It runs
 * only from the file's final fput, so we swap only while holding a file
 * reference taken when the count was not already zero. try_module_get fails
 * once rmmod has begun: no socket can pick up ops that are about to be freed.
 */
static void toa_swap_ops(struct sock *listener)
{
	struct socket *sock = READ_ONCE(listener->sk_socket);
	const struct proto_ops *ops, *mine;
	struct file *file;

	if (!sock || !toa_ops_ready)
		return;
	ops = READ_ONCE(sock->ops);
	if (ops == &toa_ops4 || ops == &toa_ops6)
		return;
	if (ops == stock_ops4)
		mine = &toa_ops4;
	else if (ops == stock_ops6)
		mine = &toa_ops6;
	else {
		TOA_NET_INC(sock_net(listener), swap_foreign_ops);
		return;
	}
	file = READ_ONCE(sock->file);
	if (!file || !TOA_FILE_TRYGET(file))
		return;
	/* files are SLAB_TYPESAFE_BY_RCU since 6.7: still this socket's? */
	if (READ_ONCE(sock->file) != file || file->private_data != sock)
		goto out;
	if (!try_module_get(THIS_MODULE))
		goto out;
	if (cmpxchg(&sock->ops, ops, mine) == ops)
		TOA_NET_INC(sock_net(listener), listeners_swapped);
	else
		module_put(THIS_MODULE);
out:
	fput(file);
}

static void toa_ops_copy(struct proto_ops *mine, const struct proto_ops *stock)
{
	*mine = *stock;
	mine->owner = THIS_MODULE;
	mine->getname = toa_getname;
	mine->setsockopt = toa_setsockopt;
}

static int toa_ops_init(void)
{
	struct socket *probe;
	int ret;

	/* inet6_stream_ops is not exported to modules: read it off a socket */
	ret = sock_create_kern(&init_net, AF_INET6, SOCK_STREAM, IPPROTO_TCP, &probe);
	if (ret)
		return ret;
	stock_ops6 = probe->ops;
	sock_release(probe);
	stock_ops4 = &inet_stream_ops;
	toa_ops_copy(&toa_ops4, stock_ops4);
	toa_ops_copy(&toa_ops6, stock_ops6);
	toa_ops_ready = true;
	return 0;
}

static int synrecv_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct synrecv_data *d = (void *)ri->data;
	struct sock *child = (struct sock *)regs_return_value(regs);

	/* Without own_req the kernel drops the child with a bare sock_put(),
	 * no destroy callback would ever remove our entry. */
	if (child && d->own_req && *d->own_req && toa_learn(child, d->skb))
		toa_swap_ops(d->listener);
	return 0;
}

/* ---- getpeername / accept ---- */

static void toa_rewrite(struct socket *sock, struct sockaddr *uaddr, int ret)
{
	struct sock *sk = READ_ONCE(sock->sk);
	struct toa_found f;

	if (!sk || sk->sk_protocol != IPPROTO_TCP || !TOA_GETNAME_FILLED(ret, sk->sk_family))
		return;
	if (!toa_table_lookup(sk, &f) || (f.flags & TOA_E_UNTRUSTED))
		return;
	if (sk->sk_family == AF_INET && (f.flags & TOA_E_NAT64))
		return;
	if (sk->sk_family == AF_INET) {
		struct sockaddr_in *sin = (void *)uaddr;

		if (sin->sin_port != READ_ONCE(inet_sk(sk)->inet_dport) ||
		    sin->sin_addr.s_addr != READ_ONCE(sk->sk_daddr))
			return;
		sin->sin_port = f.port;
		sin->sin_addr.s_addr = f.addr.v4;
	} else {
		struct sockaddr_in6 *sin6 = (void *)uaddr;

		if (sin6->sin6_port != READ_ONCE(inet_sk(sk)->inet_dport) ||
		    !ipv6_addr_equal(&sin6->sin6_addr, &sk->sk_v6_daddr))
			return;
		sin6->sin6_port = f.port;
		if (f.flags & TOA_E_NAT64)
			sin6->sin6_addr = f.addr.v6;
		else
			ipv6_addr_set_v4mapped(f.addr.v4, &sin6->sin6_addr);
		sin6->sin6_flowinfo = 0;
		sin6->sin6_scope_id = 0;
	}
	TOA_NET_INC(sock_net(sk), getname_toa_ok);
}

/* ---- end of a connection ---- */

/*
 * TEST ONLY (test/kernel/kmod-socket-reuse.test.ts): behave as if every
 * destroy were missed, so the test can prove that a left-over entry never
 * answers for the socket that reuses its memory. Read-only after load;
 * setting it taints the kernel.
 */
static bool test_skip_destroy;
module_param(test_skip_destroy, bool, 0444);
MODULE_PARM_DESC(test_skip_destroy, "TEST ONLY, taints: never forget a destroyed socket (entries leak until rmmod)");

static void destroy_probe(void *data, struct sock *sk)
{
	if (!test_skip_destroy)
		toa_table_forget(sk);
}

static struct tracepoint *destroy_tp;

static void find_destroy_tp(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, TOA_DESTROY_TRACEPOINT))
		*(struct tracepoint **)priv = tp;
}

static int disconnect_pre(struct kprobe *kp, struct pt_regs *regs)
{
	toa_table_forget((const struct sock *)TOA_ARG(regs, 0));
	return 0;
}

static struct kprobe disconnect_probe = {
	.symbol_name = "tcp_disconnect",
	.pre_handler = disconnect_pre,
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

static struct kretprobe *toa_rps[] = {
	&synrecv4_probe, &synrecv6_probe,
};

unsigned long toa_hooks_missed(void)
{
	unsigned long n = disconnect_probe.nmissed;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(toa_rps); i++)
		n += toa_rps[i]->nmissed + toa_rps[i]->kp.nmissed;
	return n;
}

int toa_hooks_init(void)
{
	int ret;

	/* Removal first: no entry may ever be stored without a way out. */
	for_each_kernel_tracepoint(find_destroy_tp, &destroy_tp);
	if (!destroy_tp) {
		pr_err("no %s tracepoint in this kernel\n", TOA_DESTROY_TRACEPOINT);
		return -ENOENT;
	}
	ret = tracepoint_probe_register(destroy_tp, (void *)destroy_probe, NULL);
	if (ret) {
		pr_err("cannot attach to the %s tracepoint: %d\n", TOA_DESTROY_TRACEPOINT, ret);
		return ret;
	}
	if (test_skip_destroy) {
		pr_warn("test_skip_destroy is set: entries leak until rmmod (tests only)\n");
		add_taint(TAINT_USER, LOCKDEP_STILL_OK);
	}
	ret = register_kprobe(&disconnect_probe);
	if (ret) {
		pr_err("cannot probe tcp_disconnect: %d\n", ret);
		goto err_tp;
	}
	synrecv4_probe.maxactive = TOA_MAXACTIVE;
	synrecv6_probe.maxactive = TOA_MAXACTIVE;
	ret = toa_ops_init();
	if (ret)
		goto err_kp;
	ret = register_kretprobes(toa_rps, ARRAY_SIZE(toa_rps));
	if (ret) {
		pr_err("cannot probe syn_recv_sock/getname: %d\n", ret);
		goto err_kp;
	}
	return 0;
err_kp:
	unregister_kprobe(&disconnect_probe);
err_tp:
	tracepoint_probe_unregister(destroy_tp, (void *)destroy_probe, NULL);
	tracepoint_synchronize_unregister();
	return ret;
}

/*
 * Unregistering waits for handlers in flight (and pending kretprobe
 * instances never call back into us); storing stops before removal does.
 */
void toa_hooks_exit(void)
{
	unregister_kretprobes(toa_rps, ARRAY_SIZE(toa_rps));
	unregister_kprobe(&disconnect_probe);
	tracepoint_probe_unregister(destroy_tp, (void *)destroy_probe, NULL);
	/* no destroy_probe() runs after this */
	tracepoint_synchronize_unregister();
}
