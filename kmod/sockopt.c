// SPDX-License-Identifier: GPL-2.0
/*
 * getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP / TOA_SO_GET_INFO): the ABI in
 * uapi/toa.h. Registered for PF_INET only: an AF_INET6 TCP socket's SOL_IP
 * getsockopt goes ipv6_getsockopt -> udp_prot.getsockopt -> ip_getsockopt ->
 * nf_getsockopt(PF_INET), so one registration serves both families.
 * nf_sockopt takes a module reference around each call (.owner).
 */
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/netfilter.h>
#include <linux/uaccess.h>
#include <linux/tcp.h>
#include <net/sock.h>
#include <net/inet_sock.h>
#include <net/ipv6.h>
#include <net/tcp_states.h>
#include "compat.h"
#include "toa_kmod.h"

void toa_sock_peer(const struct sock *sk, u16 *family, u8 addr[16],
		   __be16 *port)
{
	memset(addr, 0, 16);
	*port = READ_ONCE(inet_sk(sk)->inet_dport);
#if IS_ENABLED(CONFIG_IPV6)
	if (sk->sk_family == AF_INET6 &&
	    !ipv6_addr_v4mapped(&sk->sk_v6_daddr)) {
		*family = AF_INET6;
		memcpy(addr, &sk->sk_v6_daddr, 16);
		return;
	}
#endif
	/* AF_INET, or an IPv4 peer of a dual-stack socket (daddr mirrors it) */
	*family = AF_INET;
	memcpy(addr, &sk->sk_daddr, 4);
}

/*
 * A connected TCP stream socket, as getpeername would see it. A raw
 * IPPROTO_TCP socket has the same sk_protocol and, once connect()ed, a peer
 * port and TCP_ESTABLISHED (ip4_datagram_connect): only the type tells it
 * apart.
 */
static bool toa_connected(const struct sock *sk)
{
	return sk->sk_type == SOCK_STREAM && sk->sk_protocol == IPPROTO_TCP &&
	       READ_ONCE(inet_sk(sk)->inet_dport) &&
	       !((1 << READ_ONCE(sk->sk_state)) &
		 (TCPF_CLOSE | TCPF_SYN_SENT | TCPF_LISTEN));
}

static int get_lookup(struct sock *sk, void __user *user, int *len)
{
	struct toa_nat64_peer peer;
	struct toa_found f;

	if (*len < (int)sizeof(peer))
		return -EINVAL;
	if (!toa_connected(sk))
		return -ENOTCONN;
	if (!toa_table_lookup(sk, &f) || (f.flags & TOA_E_UNTRUSTED)) {
		TOA_NET_INC(sock_net(sk), getname_toa_empty);
		return -EINVAL;
	}
	if (!(f.flags & TOA_E_NAT64)) {
		TOA_NET_INC(sock_net(sk), getname_toa_mismatch);
		return -EFAULT;
	}
	memset(&peer, 0, sizeof(peer));
	peer.saddr = f.addr.v6;
	peer.sport = f.port;
	if (copy_to_user(user, &peer, sizeof(peer)))
		return -EFAULT;
	*len = sizeof(peer);
	TOA_NET_INC(sock_net(sk), getname_toa_ok);
	return 0;
}

static int get_info(struct sock *sk, void __user *user, int *len)
{
	struct toa_info info;
	struct toa_found f;
	u16 pfam;

	if (*len < (int)sizeof(info))
		return -EINVAL;
	if (!toa_connected(sk))
		return -ENOTCONN;
	memset(&info, 0, sizeof(info));
	info.version = TOA_INFO_VERSION;
	info.sock_family = sk->sk_family;
	toa_sock_peer(sk, &pfam, info.proxy_addr, &info.proxy_port);
	info.proxy_family = pfam;
	info.real_family = pfam;
	info.real_port = info.proxy_port;
	memcpy(info.real_addr, info.proxy_addr, sizeof(info.real_addr));

	if (toa_table_lookup(sk, &f)) {
		info.opt_kind = f.kind;
		if (f.flags & TOA_E_UNTRUSTED) {
			info.flags |= TOA_INFO_F_UNTRUSTED;
		} else {
			info.flags |= TOA_INFO_F_PRESENT;
			if (f.flags & TOA_E_TRUSTED)
				info.flags |= TOA_INFO_F_TRUSTED;
			info.real_port = f.port;
			memset(info.real_addr, 0, sizeof(info.real_addr));
			if (f.flags & TOA_E_NAT64) {
				info.flags |= TOA_INFO_F_NAT64;
				info.real_family = AF_INET6;
				memcpy(info.real_addr, &f.addr.v6, 16);
			} else {
				info.real_family = AF_INET;
				memcpy(info.real_addr, &f.addr.v4, 4);
			}
		}
	}
	if (copy_to_user(user, &info, sizeof(info)))
		return -EFAULT;
	*len = sizeof(info);
	return 0;
}

static int toa_getsockopt(struct sock *sk, int optval, void __user *user,
			  int *len)
{
	switch (optval) {
	case TOA_SO_GET_LOOKUP:
		return get_lookup(sk, user, len);
	case TOA_SO_GET_INFO:
		return get_info(sk, user, len);
	}
	return -ENOPROTOOPT;
}

static struct nf_sockopt_ops toa_sockopt_ops = {
	.pf = PF_INET,
	/* empty set range: nothing to set, and no clash with anyone's */
	.set_optmin = TOA_SO_BASE,
	.set_optmax = TOA_SO_BASE,
	.get_optmin = TOA_SO_BASE,
	.get_optmax = TOA_SO_MAX,
	.get = toa_getsockopt,
	.owner = THIS_MODULE,
};

int toa_sockopt_init(void)
{
	int ret = nf_register_sockopt(&toa_sockopt_ops);

	if (ret == -EBUSY)
		pr_err("getsockopt %d..%d already taken: is another TOA module loaded?\n",
		       TOA_SO_BASE, TOA_SO_MAX - 1);
	return ret;
}

void toa_sockopt_exit(void)
{
	nf_unregister_sockopt(&toa_sockopt_ops);
}
