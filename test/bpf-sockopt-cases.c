// Raw getsockopt calls that have nothing to do with TOA, as other programs on
// the machine make them: 8 KiB buffers, optval = NULL size probes and the
// iptables-legacy table dump. Prints one JSON line per call: return value,
// errno, optlen and a hash of the whole buffer (bytes past optlen included,
// so a write beyond the answer shows too). test/bpf-coexist*.test.ts runs it
// once in a cgroup without programs and once in the attached one; both
// outputs must be identical.
//
// Usage: bpf-sockopt-cases <rules>   (run as root: it makes its own netns)
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/netlink.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 8192
static unsigned char buf[BUF];
static int toa;

static uint64_t fnv(const unsigned char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	while (n--)
		h = (h ^ *p++) * 1099511628211ULL;
	return h;
}

/*
 * keep: bytes of the answer that are the same on every socket; the rest of
 * the answer (TCP_INFO's timers) is masked before hashing.
 */
static void call_in(const char *name, int fd, int level, int opt, int null_optval,
		    socklen_t len, int keep, const void *in, size_t inlen)
{
	socklen_t l = len;
	int ret, err;

	memset(buf, 0xa5, sizeof(buf));
	memcpy(buf, in, inlen);
	errno = 0;
	ret = getsockopt(fd, level, opt, null_optval ? NULL : buf, &l);
	err = ret ? errno : 0;
	if (keep >= 0 && ret == 0 && l > (socklen_t)keep)
		memset(buf + keep, 0, l - keep);
	printf("{%s\"case\":\"%s\",\"ret\":%d,\"errno\":\"%s\",\"optlen\":%u,\"hash\":\"%016llx\"}\n",
	       toa ? "\"toa\":true," : "", name, ret, err ? strerrorname_np(err) : "", (unsigned)l,
	       (unsigned long long)fnv(buf, sizeof(buf)));
}

static void call(const char *name, int fd, int level, int opt, int null_optval,
		 socklen_t len, int keep)
{
	call_in(name, fd, level, opt, null_optval, len, keep, "", 0);
}

static int tcp_pair(int *srv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int ls = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);

	if (ls < 0 || c < 0 || bind(ls, (void *)&a, sizeof(a)) || listen(ls, 1) ||
	    getsockname(ls, (void *)&a, &al) || connect(c, (void *)&a, sizeof(a)))
		return -1;
	*srv = accept(ls, NULL, NULL);
	close(ls);
	return c;
}

/* A raw IPPROTO_TCP socket of `family` connected to loopback port 80. */
static int raw_tcp(int family, int *fd)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(80),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(80),
				   .sin6_addr = IN6ADDR_LOOPBACK_INIT };

	*fd = socket(family, SOCK_RAW, IPPROTO_TCP);
	if (*fd < 0)
		return -1;
	return family == AF_INET ? connect(*fd, (struct sockaddr *)&a4, sizeof(a4))
				 : connect(*fd, (struct sockaddr *)&a6, sizeof(a6));
}

int main(int argc, char **argv)
{
	int rules = argc > 1 ? atoi(argv[1]) : 30;
	int srv, c, c2, u[2], nl, raw, r4, r6, i;
	struct ipt_getinfo info;
	socklen_t il = sizeof(info);
	struct ipt_get_entries *ent;

	/* a private netns: loopback and an iptables table of our own */
	if (unshare(CLONE_NEWNET)) {
		perror("unshare(CLONE_NEWNET)");
		return 2;
	}
	if (system("ip link set lo up") != 0)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);

	c = tcp_pair(&srv);
	c2 = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || srv < 0 || c2 < 0) {
		perror("loopback connection");
		return 2;
	}
	/*
	 * TOA's own options with 8 KiB (python cannot ask for more than 1 KiB):
	 * "toa" lines, checked apart, since these are meant to change
	 */
	toa = 1;
	call("TOA 4096 8K", srv, IPPROTO_IP, 4096, 0, BUF, -1);
	call("TOA 4097 8K", srv, IPPROTO_IP, 4097, 0, BUF, 56);
	call("TOA 4096 8K unconnected", c2, IPPROTO_IP, 4096, 0, BUF, -1);
	call("TOA 4097 8K unconnected", c2, IPPROTO_IP, 4097, 0, BUF, -1);
	/*
	 * connect()ed raw IPPROTO_TCP sockets: protocol TCP, a peer, state
	 * ESTABLISHED (ip4_datagram_connect), yet no TCP connection
	 */
	if (raw_tcp(AF_INET, &r4) || raw_tcp(AF_INET6, &r6)) {
		perror("raw IPPROTO_TCP socket");
		return 2;
	}
	call("TOA 4096 raw", r4, IPPROTO_IP, 4096, 0, BUF, -1);
	call("TOA 4097 raw", r4, IPPROTO_IP, 4097, 0, BUF, -1);
	call("TOA 4096 raw6", r6, IPPROTO_IP, 4096, 0, BUF, -1);
	call("TOA 4097 raw6", r6, IPPROTO_IP, 4097, 0, BUF, -1);
	toa = 0;

	call("TCP_INFO 8K", srv, IPPROTO_TCP, TCP_INFO, 0, BUF, 8);
	call("TCP_INFO 4K", srv, IPPROTO_TCP, TCP_INFO, 0, 4096, 8);
	call("TCP_INFO NULL 8K", srv, IPPROTO_TCP, TCP_INFO, 1, BUF, 8);
	call("TCP_CONGESTION 8K", srv, IPPROTO_TCP, TCP_CONGESTION, 0, BUF, -1);
	call("TCP_NODELAY 8K", srv, IPPROTO_TCP, TCP_NODELAY, 0, BUF, -1);
	call("TCP 4096 8K", srv, IPPROTO_TCP, 4096, 0, BUF, -1);
	call("SO_TYPE 8K", srv, SOL_SOCKET, SO_TYPE, 0, BUF, -1);
	call("SO_ERROR 8K", srv, SOL_SOCKET, SO_ERROR, 0, BUF, -1);
	call("SO_LINGER 8K", srv, SOL_SOCKET, SO_LINGER, 0, BUF, -1);
	call("SO_RCVBUF 8K", srv, SOL_SOCKET, SO_RCVBUF, 0, BUF, -1);
	call("SO_DOMAIN 8K", srv, SOL_SOCKET, SO_DOMAIN, 0, BUF, -1);
	call("SO_PEERSEC 8K", srv, SOL_SOCKET, SO_PEERSEC, 0, BUF, -1);
	call("SO_TYPE NULL 0", srv, SOL_SOCKET, SO_TYPE, 1, 0, -1);
	call("SOL_SOCKET 4096 8K", srv, SOL_SOCKET, 4096, 0, BUF, -1);
	call("IP_TOS 8K", srv, IPPROTO_IP, IP_TOS, 0, BUF, -1);
	call("IP_OPTIONS 8K", srv, IPPROTO_IP, IP_OPTIONS, 0, BUF, -1);
	call("IP 4095 8K", srv, IPPROTO_IP, 4095, 0, BUF, -1);
	call("IP 4098 8K", srv, IPPROTO_IP, 4098, 0, BUF, -1);

	/* size probes: optval NULL, the kernel writes the size it needs */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, u))
		return 2;
	call("SO_PEERGROUPS NULL 0", u[0], SOL_SOCKET, SO_PEERGROUPS, 1, 0, -1);
	call("SO_PEERGROUPS 8K", u[0], SOL_SOCKET, SO_PEERGROUPS, 0, BUF, -1);
	nl = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	i = 1;	/* RTNLGRP_LINK: the probe then has something to report */
	if (nl < 0 || setsockopt(nl, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &i, sizeof(i)))
		return 2;
	call("NETLINK_LIST_MEMBERSHIPS NULL 0", nl, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 1, 0, -1);
	/* answers more than the buffer holds: optlen says the size needed */
	call("NETLINK_LIST_MEMBERSHIPS 4", nl, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 0, 4, -1);
	call("NETLINK_LIST_MEMBERSHIPS 8K", nl, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 0, BUF, -1);

	/*
	 * iptables-legacy: a filter table well over a page, dumped as iptables
	 * does; one iptables-legacy-restore for all rules (a process per rule
	 * costs seconds under the guests' TCG)
	 */
	{
		FILE *r = popen("iptables-legacy-restore", "w");

		if (!r)
			return 2;
		fputs("*filter\n", r);
		for (i = 0; i < rules; i++)
			fprintf(r, "-A INPUT -s 198.51.100.%d/32 -p tcp --dport %d -j ACCEPT\n", i % 250 + 1, 1000 + i);
		fputs("COMMIT\n", r);
		if (pclose(r) != 0)
			return 2;
	}
	raw = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (raw < 0)
		return 2;
	memset(&info, 0, sizeof(info));
	strcpy(info.name, "filter");
	if (getsockopt(raw, IPPROTO_IP, IPT_SO_GET_INFO, &info, &il)) {
		perror("IPT_SO_GET_INFO");
		return 2;
	}
	call_in("IPT_SO_GET_INFO", raw, IPPROTO_IP, IPT_SO_GET_INFO, 0, sizeof(info), -1, &info, sizeof(info.name));
	if (sizeof(*ent) + info.size > BUF) {
		fprintf(stderr, "table of %u bytes is larger than the buffer\n", info.size);
		return 2;
	}
	ent = calloc(1, sizeof(*ent));
	strcpy(ent->name, "filter");
	ent->size = info.size;
	printf("{\"tableBytes\":%u}\n", info.size);
	call_in("IPT_SO_GET_ENTRIES", raw, IPPROTO_IP, IPT_SO_GET_ENTRIES, 0, sizeof(*ent) + info.size, -1, ent, sizeof(*ent));
	/* a wrong size over a page: the kernel's own EINVAL */
	call_in("IPT_SO_GET_ENTRIES wrong size", raw, IPPROTO_IP, IPT_SO_GET_ENTRIES, 0, 4096 + 100, -1, ent, sizeof(*ent));
	fflush(stdout);
	/* the tools themselves: their output and exit code */
	return system("iptables-legacy-save -t filter | grep -v '^#' | md5sum | sed 's/^/{\"case\":\"iptables-legacy-save\",\"md5\":\"/;s/ .*/\"}/'") == 0 ? 0 : 3;
}
