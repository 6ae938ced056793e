// SPDX-License-Identifier: MIT
/*
 * lb-helper: the client side of the load-balancer emulator.
 *
 * One process per emulator. It joins the emulator's cgroup, moves itself into
 * a fresh network namespace (so the namespace, its veth end and its TUN die
 * with it, whatever happens to the test), attaches lb_sockops.bpf.o to the
 * cgroup and then executes commands read line by line from stdin, answering
 * one line per command on stdout ("ok ..." or "err CODE message").
 *
 *   connect DST DPORT SRC SPORT PLACEMENT OPTHEX TIMEOUT_MS  -> ok CID
 *   connect ... TIMEOUT_MS fastopen DATAHEX        -> ok CID SYNDATA_ACKED
 *   sysctl PATH [VALUE]    (under /proc/sys/net/)  -> ok OLDVALUE
 *   send CID HEX                                             -> ok NBYTES
 *   recv CID MAX TIMEOUT_MS                                  -> ok HEX | ok - (EOF)
 *   close CID rst|fin                                        -> ok
 *   stats SPORT                                              -> ok NSYN NACK NDATA LASTERR
 *   tun                                                      -> ok IFNAME
 *   craft N TIMEOUT_MS WINDOW   + N spec lines               -> N "r ..." lines, ok N MS
 *   quit
 *
 * The crafter speaks TCP itself over the TUN device: the kernel under test
 * only ever sees segments whose options are exactly the bytes requested,
 * malformed or not, and no local socket exists that could answer with RST.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define OPT_MAX 40
#define MAX_CONNS 4096
#define MAX_SPECS 200000

/* must match struct conn in lb_sockops.bpf.c */
struct conn_cfg {
	uint8_t opt[OPT_MAX];
	uint32_t opt_len;
	uint32_t placement;
	uint32_t pending, sent_first, sent_data;
	uint32_t n_syn, n_ack, n_data;
	int32_t last_err;
};

static int map_fd = -1;
static int conn_fd[MAX_CONNS];
static int tun_fd = -1;

static void reply_err(int e, const char *what)
{
	printf("err %s %s\n", strerrorname_np(e) ? strerrorname_np(e) : "EUNKNOWN", what);
	fflush(stdout);
}

static void reply_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply_ok(const char *fmt, ...)
{
	va_list ap;

	fputs("ok", stdout);
	if (fmt[0]) {
		fputc(' ', stdout);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	fputc('\n', stdout);
	fflush(stdout);
}

static int unhex(const char *s, uint8_t *out, int max)
{
	int n = 0;

	if (!strcmp(s, "-"))
		return 0;
	if (strlen(s) % 2)
		return -1;
	for (; s[0] && s[1]; s += 2) {
		unsigned int b;

		if (n >= max || sscanf(s, "%2x", &b) != 1)
			return -1;
		out[n++] = b;
	}
	return n;
}

static void puthex(const uint8_t *p, int n)
{
	if (!n) {
		fputc('-', stdout);
		return;
	}
	for (int i = 0; i < n; i++)
		printf("%02x", p[i]);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ull + ts.tv_nsec / 1000000;
}

/* An address string with a ':' is IPv6; returns the sockaddr length or -1. */
static int parse_addr(const char *s, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(s, ':')) {
		struct sockaddr_in6 *a = (void *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		return inet_pton(AF_INET6, s, &a->sin6_addr) == 1 ? (int)sizeof(*a) : -1;
	}
	struct sockaddr_in *a = (void *)ss;

	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	return inet_pton(AF_INET, s, &a->sin_addr) == 1 ? (int)sizeof(*a) : -1;
}

static int write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);
	int ok;

	if (fd < 0)
		return -1;
	ok = write(fd, val, strlen(val)) == (ssize_t)strlen(val);
	close(fd);
	return ok ? 0 : -1;
}

static int setup(const char *cgroup, const char *obj_path)
{
	char buf[4200];
	struct bpf_object *obj;
	struct bpf_program *prog;
	int cg_fd, err;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	snprintf(buf, sizeof(buf), "%s/cgroup.procs", cgroup);
	if (write_file(buf, "0")) {
		perror("join cgroup");
		return -1;
	}
	if (unshare(CLONE_NEWNET)) {
		perror("unshare(CLONE_NEWNET)");
		return -1;
	}
	/* the namespace forwards between its veth and the crafter's TUN */
	if (write_file("/proc/sys/net/ipv4/ip_forward", "1") ||
	    write_file("/proc/sys/net/ipv6/conf/all/forwarding", "1")) {
		perror("enable forwarding in netns");
		return -1;
	}
	/* the emulator owns every port in this namespace; no ephemeral clashes */
	write_file("/proc/sys/net/ipv4/ip_local_port_range", "20000 29999");

	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	obj = bpf_object__open_file(obj_path, NULL);
	if (!obj) {
		fprintf(stderr, "open %s: %s\n", obj_path, strerror(errno));
		return -1;
	}
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "load %s: %s\n", obj_path, strerror(-err));
		return -1;
	}
	prog = bpf_object__find_program_by_name(obj, "lb_sockops");
	map_fd = bpf_object__find_map_fd_by_name(obj, "conns");
	cg_fd = open(cgroup, O_RDONLY | O_DIRECTORY);
	if (!prog || map_fd < 0 || cg_fd < 0) {
		fprintf(stderr, "bpf object or cgroup missing pieces\n");
		return -1;
	}
	if (bpf_prog_attach(bpf_program__fd(prog), cg_fd, BPF_CGROUP_SOCK_OPS, BPF_F_ALLOW_MULTI)) {
		perror("attach sockops to cgroup");
		return -1;
	}
	close(cg_fd);
	return 0;
}

static void cmd_connect(char **tok, int ntok)
{
	struct sockaddr_storage dst, src;
	struct conn_cfg cfg;
	int dlen, slen, fd, cid, tmo, sport, n;
	struct pollfd pfd;
	socklen_t elen;
	int one = 1;

	static uint8_t fo_data[4096];
	int fastopen = ntok == 10 && !strcmp(tok[8], "fastopen"), fo_n = 0, deferred = 0;

	if (ntok != 8 && !fastopen)
		return reply_err(EINVAL, "usage: connect DST DPORT SRC SPORT PLACEMENT OPTHEX TIMEOUT_MS [fastopen DATAHEX]");
	if (fastopen && (fo_n = unhex(tok[9], fo_data, sizeof(fo_data))) < 0)
		return reply_err(EINVAL, "fastopen data: even-length hex, at most 4096 bytes");
	sport = atoi(tok[4]);
	dlen = parse_addr(tok[1], atoi(tok[2]), &dst);
	slen = strcmp(tok[3], "-") ? parse_addr(tok[3], sport, &src) : 0;
	tmo = atoi(tok[7]);
	if (dlen < 0 || slen < 0 || sport <= 0 || sport > 65535)
		return reply_err(EINVAL, "bad address or port");
	for (cid = 0; cid < MAX_CONNS && conn_fd[cid] > 0; cid++)
		;
	if (cid == MAX_CONNS)
		return reply_err(EMFILE, "too many emulated connections");

	memset(&cfg, 0, sizeof(cfg));
	n = unhex(tok[6], cfg.opt, OPT_MAX);
	if (n < 0)
		return reply_err(EINVAL, "option bytes: even-length hex, at most 40 bytes");
	cfg.opt_len = n;
	cfg.placement = strtoul(tok[5], NULL, 0);
	if (bpf_map_update_elem(map_fd, &sport, &cfg, BPF_ANY))
		return reply_err(errno, "bpf map update");

	fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return reply_err(errno, "socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (!slen) {
		memset(&src, 0, sizeof(src));
		src.ss_family = dst.ss_family;
		((struct sockaddr_in *)&src)->sin_port = htons(sport); /* same offset in sin6 */
		slen = dst.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	}
	if (bind(fd, (void *)&src, slen)) {
		reply_err(errno, "bind");
		close(fd);
		return;
	}
	/*
	 * The kernel's own Fast Open client: with a cookie cached for this
	 * destination connect() sends nothing and the first send() goes out
	 * as SYN+data+cookie; without one connect() sends a SYN asking for a
	 * cookie and the data follows the handshake.
	 */
	if (fastopen && setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof(one))) {
		reply_err(errno, "TCP_FASTOPEN_CONNECT");
		close(fd);
		return;
	}
	if (connect(fd, (void *)&dst, dlen)) {
		if (errno != EINPROGRESS) {
			reply_err(errno, "connect");
			close(fd);
			return;
		}
	} else {
		deferred = fastopen;
	}
	errno = 0;
	/* MSG_DONTWAIT: the deferred connect must not block this helper */
	if (deferred && fo_n && send(fd, fo_data, fo_n, MSG_NOSIGNAL | MSG_DONTWAIT) != fo_n) {
		reply_err(errno ? errno : EMSGSIZE, "send in SYN");
		close(fd);
		return;
	}
	pfd.fd = fd;
	pfd.events = POLLOUT;
	if (poll(&pfd, 1, tmo) != 1) {
		reply_err(ETIMEDOUT, "connect timed out");
		close(fd);
		return;
	}
	elen = sizeof(n);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &n, &elen);
	if (n) {
		reply_err(n, "connect");
		close(fd);
		return;
	}
	errno = 0;
	if (fastopen && !deferred && fo_n && send(fd, fo_data, fo_n, MSG_NOSIGNAL) != fo_n) {
		reply_err(errno ? errno : EMSGSIZE, "send after handshake");
		close(fd);
		return;
	}
	conn_fd[cid] = fd;
	if (!fastopen)
		return reply_ok("%d", cid);
	struct tcp_info ti;

	/* set from the SYN-ACK: it acknowledged data sent in the SYN */
	elen = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &elen);
	reply_ok("%d %d", cid, !!(ti.tcpi_options & TCPI_OPT_SYN_DATA));
}

static int get_conn(const char *s)
{
	int cid = atoi(s);

	return cid >= 0 && cid < MAX_CONNS && conn_fd[cid] > 0 ? cid : -1;
}

static void cmd_send(char **tok, int ntok)
{
	static uint8_t buf[65536];
	int cid, n, off = 0;

	if (ntok != 3 || (cid = get_conn(tok[1])) < 0)
		return reply_err(EBADF, "usage: send CID HEX");
	n = unhex(tok[2], buf, sizeof(buf));
	if (n < 0)
		return reply_err(EINVAL, "bad hex");
	while (off < n) {
		struct pollfd pfd = { .fd = conn_fd[cid], .events = POLLOUT };
		ssize_t w = send(conn_fd[cid], buf + off, n - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EAGAIN) {
			if (poll(&pfd, 1, 5000) != 1)
				return reply_err(ETIMEDOUT, "send blocked");
			continue;
		}
		if (w < 0)
			return reply_err(errno, "send");
		off += w;
	}
	reply_ok("%d", n);
}

static void cmd_recv(char **tok, int ntok)
{
	static uint8_t buf[65536];
	struct pollfd pfd;
	int cid, max;
	ssize_t r;

	if (ntok != 4 || (cid = get_conn(tok[1])) < 0)
		return reply_err(EBADF, "usage: recv CID MAX TIMEOUT_MS");
	max = atoi(tok[2]);
	if (max <= 0 || max > (int)sizeof(buf))
		max = sizeof(buf);
	pfd.fd = conn_fd[cid];
	pfd.events = POLLIN;
	if (poll(&pfd, 1, atoi(tok[3])) != 1)
		return reply_err(ETIMEDOUT, "nothing received");
	r = recv(conn_fd[cid], buf, max, 0);
	if (r < 0)
		return reply_err(errno, "recv");
	fputs("ok ", stdout);
	puthex(buf, r);
	fputc('\n', stdout);
	fflush(stdout);
}

static void cmd_close(char **tok, int ntok)
{
	int cid;

	if (ntok < 2 || (cid = get_conn(tok[1])) < 0)
		return reply_err(EBADF, "usage: close CID [rst]");
	if (ntok > 2 && !strcmp(tok[2], "rst")) {
		struct linger l = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(conn_fd[cid], SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	close(conn_fd[cid]);
	conn_fd[cid] = 0;
	puts("ok");
	fflush(stdout);
}

static void cmd_stats(char **tok, int ntok)
{
	struct conn_cfg cfg;
	uint32_t port;

	if (ntok != 2)
		return reply_err(EINVAL, "usage: stats SPORT");
	port = atoi(tok[1]);
	if (bpf_map_lookup_elem(map_fd, &port, &cfg))
		return reply_err(errno, "no such emulated connection");
	reply_ok("%u %u %u %d", cfg.n_syn, cfg.n_ack, cfg.n_data, cfg.last_err);
}

/* The helper's netns has its own net.* sysctls (the client side's). */
static void cmd_sysctl(char **tok, int ntok)
{
	char path[256], old[128];
	ssize_t n;
	int fd;

	if ((ntok != 2 && ntok != 3) || strncmp(tok[1], "net/", 4) || strstr(tok[1], ".."))
		return reply_err(EINVAL, "usage: sysctl net/PATH [VALUE]");
	snprintf(path, sizeof(path), "/proc/sys/%s", tok[1]);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return reply_err(errno, path);
	n = read(fd, old, sizeof(old) - 1);
	close(fd);
	if (n < 0)
		return reply_err(errno, path);
	old[n] = 0;
	old[strcspn(old, "\n")] = 0;
	if (ntok == 3 && write_file(path, tok[2]))
		return reply_err(errno, path);
	reply_ok("%s", old);
}

static void cmd_tun(void)
{
	struct ifreq ifr;

	if (tun_fd >= 0)
		return reply_err(EEXIST, "tun already created");
	tun_fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (tun_fd < 0)
		return reply_err(errno, "open /dev/net/tun");
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	strcpy(ifr.ifr_name, "toacraft");
	if (ioctl(tun_fd, TUNSETIFF, &ifr)) {
		int e = errno;

		close(tun_fd);
		tun_fd = -1;
		return reply_err(e, "TUNSETIFF");
	}
	fcntl(tun_fd, F_SETFL, O_NONBLOCK);
	reply_ok("%s", ifr.ifr_name);
}

/* ---- packet crafter ---------------------------------------------------- */

enum { F_NOACK = 1, F_NOMSS = 2, F_KEEP = 4, F_DATAFIN = 8 };

struct spec {
	struct sockaddr_storage src, dst;
	uint8_t syn_opt[60], ack_opt[60], data_opt[60], data[256];
	int syn_n, ack_n, data_opt_n, data_n;
	int flags;
};

struct cstate {
	int spec;		/* index into specs, -1 when the slot is free */
	uint64_t start;
	uint32_t isn, snd_nxt, rcv_nxt, acked_to;
	int synack, fin_rcvd, rst, fin_sent, resent;
	uint8_t reply[64];
	int reply_n;
};

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10

static uint32_t csum_add(uint32_t sum, const uint8_t *p, int n)
{
	for (int i = 0; i + 1 < n; i += 2)
		sum += (p[i] << 8) | p[i + 1];
	if (n & 1)
		sum += p[n - 1] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static int addr_bytes(const struct sockaddr_storage *ss, const uint8_t **p)
{
	if (ss->ss_family == AF_INET6) {
		*p = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
		return 16;
	}
	*p = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
	return 4;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	return ntohs(((const struct sockaddr_in *)ss)->sin_port); /* same offset in sin6 */
}

/* Options are padded with EOL to a multiple of 4, as any sender must. */
static void send_seg(const struct spec *s, uint32_t seq, uint32_t ack, int flags,
		     const uint8_t *opt, int opt_n, const uint8_t *data, int data_n)
{
	uint8_t pkt[1600], *tcp;
	const uint8_t *sa, *da;
	int alen = addr_bytes(&s->src, &sa), iphl, ohl = (opt_n + 3) & ~3;
	int tcplen = 20 + ohl + data_n;
	uint32_t sum;

	addr_bytes(&s->dst, &da);
	memset(pkt, 0, 20 + 40 + 20 + ohl);
	if (alen == 4) {
		iphl = 20;
		pkt[0] = 0x45;
		pkt[2] = (iphl + tcplen) >> 8;
		pkt[3] = (iphl + tcplen) & 0xff;
		pkt[6] = 0x40; /* DF */
		pkt[8] = 64;
		pkt[9] = IPPROTO_TCP;
		memcpy(pkt + 12, sa, 4);
		memcpy(pkt + 16, da, 4);
		sum = csum_fold(csum_add(0, pkt, 20));
		pkt[10] = sum >> 8;
		pkt[11] = sum & 0xff;
	} else {
		iphl = 40;
		pkt[0] = 0x60;
		pkt[4] = tcplen >> 8;
		pkt[5] = tcplen & 0xff;
		pkt[6] = IPPROTO_TCP;
		pkt[7] = 64;
		memcpy(pkt + 8, sa, 16);
		memcpy(pkt + 24, da, 16);
	}
	tcp = pkt + iphl;
	tcp[0] = port_of(&s->src) >> 8;
	tcp[1] = port_of(&s->src) & 0xff;
	tcp[2] = port_of(&s->dst) >> 8;
	tcp[3] = port_of(&s->dst) & 0xff;
	*(uint32_t *)(tcp + 4) = htonl(seq);
	*(uint32_t *)(tcp + 8) = htonl(ack);
	tcp[12] = ((20 + ohl) / 4) << 4;
	tcp[13] = flags;
	tcp[14] = 0xff;
	tcp[15] = 0xff;
	memcpy(tcp + 20, opt, opt_n);
	memcpy(tcp + 20 + ohl, data, data_n);
	sum = csum_add(0, sa, alen);
	sum = csum_add(sum, da, alen);
	sum += IPPROTO_TCP + tcplen;
	sum = csum_fold(csum_add(sum, tcp, tcplen));
	tcp[16] = sum >> 8;
	tcp[17] = sum & 0xff;
	if (write(tun_fd, pkt, iphl + tcplen) < 0 && errno != EAGAIN)
		perror("tun write");
}

static int parse_flags(const char *s)
{
	int f = 0;

	if (strstr(s, "noack"))
		f |= F_NOACK;
	if (strstr(s, "nomss"))
		f |= F_NOMSS;
	if (strstr(s, "keep"))
		f |= F_KEEP;
	if (strstr(s, "datafin"))
		f |= F_DATAFIN;
	return f;
}

/* spec: SRC SPORT DST DPORT SYNOPT ACKOPT DATAOPT DATA FLAGS */
static int parse_spec(char *line, struct spec *s)
{
	char *tok[10];
	int n = 0;

	for (char *p = strtok(line, " \t\r\n"); p && n < 10; p = strtok(NULL, " \t\r\n"))
		tok[n++] = p;
	if (n != 9)
		return -1;
	if (parse_addr(tok[0], atoi(tok[1]), &s->src) < 0 ||
	    parse_addr(tok[2], atoi(tok[3]), &s->dst) < 0 ||
	    s->src.ss_family != s->dst.ss_family)
		return -1;
	s->syn_n = unhex(tok[4], s->syn_opt, 36);
	s->ack_n = unhex(tok[5], s->ack_opt, 40);
	s->data_opt_n = unhex(tok[6], s->data_opt, 40);
	s->data_n = unhex(tok[7], s->data, sizeof(s->data));
	s->flags = parse_flags(tok[8]);
	if (s->syn_n < 0 || s->ack_n < 0 || s->data_opt_n < 0 || s->data_n < 0)
		return -1;
	if (!(s->flags & F_NOMSS) && s->syn_n > 36)
		return -1;
	return 0;
}

static void start_conn(struct spec *specs, struct cstate *c, int idx)
{
	struct spec *s = &specs[idx];
	uint8_t opt[64];
	int n = 0;

	memset(c, 0, sizeof(*c));
	c->spec = idx;
	c->start = now_ms();
	c->isn = ((uint32_t)rand() << 16) ^ rand();
	c->snd_nxt = c->isn + 1;
	c->acked_to = c->isn + 1;
	if (!(s->flags & F_NOMSS)) {
		opt[0] = 2, opt[1] = 4, opt[2] = 0x05, opt[3] = 0x78; /* MSS 1400 */
		n = 4;
	}
	memcpy(opt + n, s->syn_opt, s->syn_n);
	send_seg(s, c->isn, 0, TH_SYN, opt, n + s->syn_n, NULL, 0);
}

/* After the SYN-ACK: final ACK, data, FIN, in that order, without waiting. */
static void after_synack(struct spec *s, struct cstate *c)
{
	uint32_t seq = c->isn + 1;

	if (!(s->flags & F_NOACK) || !s->data_n)
		send_seg(s, seq, c->rcv_nxt, TH_ACK, s->ack_opt, s->ack_n, NULL, 0);
	if (s->data_n) {
		int fl = TH_ACK | TH_PSH | ((s->flags & F_DATAFIN) ? TH_FIN : 0);

		send_seg(s, seq, c->rcv_nxt, fl, s->data_opt, s->data_opt_n, s->data, s->data_n);
		seq += s->data_n;
		if (fl & TH_FIN) {
			seq++;
			c->fin_sent = 1;
		}
	}
	if (!c->fin_sent && !(s->flags & F_KEEP)) {
		send_seg(s, seq, c->rcv_nxt, TH_ACK | TH_FIN, NULL, 0, NULL, 0);
		seq++;
		c->fin_sent = 1;
	}
	c->snd_nxt = seq;
}

static int conn_done(const struct cstate *c)
{
	return c->rst || (c->fin_rcvd && c->fin_sent && c->acked_to == c->snd_nxt);
}

static void report(struct spec *specs, struct cstate *c, int timeout)
{
	(void)specs;
	printf("r %d %d %u %u %d %d %d %llu %d ", c->spec, c->synack,
	       c->acked_to - c->isn - 1, c->snd_nxt - c->isn - 1,
	       c->fin_rcvd, c->rst, timeout, (unsigned long long)(now_ms() - c->start), c->resent);
	puthex(c->reply, c->reply_n);
	fputc('\n', stdout);
}

static int seq_after(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) > 0;
}

static void on_packet(struct spec *specs, struct cstate *slots, int nslots,
		      int *port_slot, uint8_t *pkt, int len)
{
	int iphl, alen;
	uint8_t *tcp, *src;
	struct spec tmp;
	int v = pkt[0] >> 4;

	if (v == 4 && len >= 40 && pkt[9] == IPPROTO_TCP) {
		iphl = (pkt[0] & 15) * 4;
		alen = 4;
		src = pkt + 12;
	} else if (v == 6 && len >= 60 && pkt[6] == IPPROTO_TCP) {
		iphl = 40;
		alen = 16;
		src = pkt + 8;
	} else {
		return;
	}
	tcp = pkt + iphl;
	if (iphl + 20 > len)
		return;
	int doff = (tcp[12] >> 4) * 4, flags = tcp[13];
	uint16_t sport = (tcp[0] << 8) | tcp[1], dport = (tcp[2] << 8) | tcp[3];
	uint32_t seq = ntohl(*(uint32_t *)(tcp + 4)), ack = ntohl(*(uint32_t *)(tcp + 8));
	int plen = len - iphl - doff;

	if (plen < 0)
		return;
	int si = port_slot[dport];
	struct cstate *c = si >= 0 && si < nslots ? &slots[si] : NULL;
	struct spec *s = c && c->spec >= 0 ? &specs[c->spec] : NULL;
	const uint8_t *want;

	if (s && (addr_bytes(&s->dst, &want) != alen || memcmp(want, src, alen) ||
		  port_of(&s->dst) != sport))
		s = NULL;
	if (!s) {
		/* a leftover of a finished handshake: make the server forget it */
		if (flags & TH_RST)
			return;
		memset(&tmp, 0, sizeof(tmp));
		if (v == 4) {
			struct sockaddr_in *a = (void *)&tmp.src, *b = (void *)&tmp.dst;

			a->sin_family = b->sin_family = AF_INET;
			memcpy(&a->sin_addr, pkt + 16, 4);
			memcpy(&b->sin_addr, pkt + 12, 4);
			a->sin_port = htons(dport);
			b->sin_port = htons(sport);
		} else {
			struct sockaddr_in6 *a = (void *)&tmp.src, *b = (void *)&tmp.dst;

			a->sin6_family = b->sin6_family = AF_INET6;
			memcpy(&a->sin6_addr, pkt + 24, 16);
			memcpy(&b->sin6_addr, pkt + 8, 16);
			a->sin6_port = htons(dport);
			b->sin6_port = htons(sport);
		}
		send_seg(&tmp, (flags & TH_ACK) ? ack : 0, seq + plen + !!(flags & (TH_SYN | TH_FIN)),
			 (flags & TH_ACK) ? TH_RST : TH_RST | TH_ACK, NULL, 0, NULL, 0);
		return;
	}
	if (flags & TH_RST) {
		c->rst = 1;
		return;
	}
	if ((flags & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK)) {
		if (ack != c->isn + 1) {
			fprintf(stderr, "DBG mismatch slot %d spec %d port %d\n", si, c->spec, dport);
			return;
		}
		if (!c->synack) {
			c->synack = 1;
			c->rcv_nxt = seq + 1;
			after_synack(s, c);
		} else if (!c->resent) {
			/*
			 * SYN-ACK retransmitted: every segment we sent after the
			 * SYN was dropped (any of them would have completed the
			 * handshake). Complete it with a bare ACK and carry on as
			 * if nothing had been sent, so the exchange still ends
			 * cleanly instead of waiting for the timeout.
			 */
			c->resent = 1;
			c->snd_nxt = c->isn + 1;
			c->fin_sent = 0;
			send_seg(s, c->snd_nxt, c->rcv_nxt, TH_ACK, NULL, 0, NULL, 0);
			if (!(s->flags & F_KEEP)) {
				send_seg(s, c->snd_nxt, c->rcv_nxt, TH_ACK | TH_FIN, NULL, 0, NULL, 0);
				c->snd_nxt++;
				c->fin_sent = 1;
			}
		} else {
			send_seg(s, c->snd_nxt, c->rcv_nxt, TH_ACK, NULL, 0, NULL, 0);
		}
		return;
	}
	if (!c->synack)
		return;
	if ((flags & TH_ACK) && !plen && !(flags & TH_FIN) && ack == c->isn + 1 &&
	    seq_after(c->snd_nxt, ack) && !c->resent) {
		/*
		 * Established (a later segment completed the handshake) but
		 * nothing we sent after the SYN is acknowledged: the segments
		 * carrying the options were dropped. As above, carry on from
		 * there without them.
		 */
		c->resent = 1;
		c->snd_nxt = c->isn + 1;
		c->fin_sent = 0;
		if (!(s->flags & F_KEEP)) {
			send_seg(s, c->snd_nxt, c->rcv_nxt, TH_ACK | TH_FIN, NULL, 0, NULL, 0);
			c->snd_nxt++;
			c->fin_sent = 1;
		}
		return;
	}
	if ((flags & TH_ACK) && seq_after(ack, c->acked_to) && !seq_after(ack, c->snd_nxt))
		c->acked_to = ack;
	if (seq == c->rcv_nxt && (plen || (flags & TH_FIN))) {
		int take = plen;

		if (take > (int)sizeof(c->reply) - c->reply_n)
			take = sizeof(c->reply) - c->reply_n;
		memcpy(c->reply + c->reply_n, tcp + doff, take);
		c->reply_n += take;
		c->rcv_nxt += plen;
		if (flags & TH_FIN) {
			c->rcv_nxt++;
			c->fin_rcvd = 1;
		}
		if (c->fin_rcvd && !c->fin_sent) {
			send_seg(s, c->snd_nxt, c->rcv_nxt, TH_ACK | TH_FIN, NULL, 0, NULL, 0);
			c->snd_nxt++;
			c->fin_sent = 1;
		} else {
			send_seg(s, c->snd_nxt, c->rcv_nxt, TH_ACK, NULL, 0, NULL, 0);
		}
	}
}

static void cmd_craft(char **tok, int ntok)
{
	static char line[4096];
	static int port_slot[65536];
	struct spec *specs;
	struct cstate *slots;
	int n, tmo, window, next = 0, done = 0, bad = -1;
	uint64_t t0 = now_ms();
	uint8_t pkt[2048];

	if (ntok != 4)
		return reply_err(EINVAL, "usage: craft N TIMEOUT_MS WINDOW");
	n = atoi(tok[1]);
	tmo = atoi(tok[2]);
	window = atoi(tok[3]);
	if (n < 0 || n > MAX_SPECS || window < 1 || window > 1024 || tmo < 1)
		return reply_err(EINVAL, "N, WINDOW or TIMEOUT out of range");
	specs = calloc(n ? n : 1, sizeof(*specs));
	slots = calloc(window, sizeof(*slots));
	for (int i = 0; i < n; i++) {
		if (!fgets(line, sizeof(line), stdin)) {
			bad = i;
			break;
		}
		if (bad < 0 && parse_spec(line, &specs[i]))
			bad = i;
	}
	if (tun_fd < 0 || bad >= 0) {
		free(specs);
		free(slots);
		if (tun_fd < 0)
			return reply_err(ENODEV, "no tun: send 'tun' first");
		snprintf(line, sizeof(line), "bad spec line %d", bad);
		return reply_err(EINVAL, line);
	}
	memset(port_slot, 0xff, sizeof(port_slot));
	for (int i = 0; i < window; i++)
		slots[i].spec = -1;
	/* drain what a previous batch left queued */
	while (read(tun_fd, pkt, sizeof(pkt)) > 0)
		;
	while (done < n) {
		uint64_t now = now_ms();
		int wait = tmo, blocked = 0, progress = 0;

		for (int i = 0; i < window; i++) {
			struct cstate *c = &slots[i];

			if (c->spec < 0 && next < n && !blocked) {
				int port = port_of(&specs[next].src);

				/* same port still in flight: keep order, start it later */
				if (port_slot[port] >= 0 && slots[port_slot[port]].spec >= 0) {
					blocked = 1;
				} else {
					port_slot[port] = i;
					start_conn(specs, c, next++);
				}
			}
			if (c->spec < 0)
				continue;
			int expired = (int64_t)(now - c->start) >= tmo;

			if (conn_done(c) || expired) {
				if (!conn_done(c) && c->synack)
					send_seg(&specs[c->spec], c->snd_nxt, c->rcv_nxt,
						 TH_RST | TH_ACK, NULL, 0, NULL, 0);
				report(specs, c, !conn_done(c));
				port_slot[port_of(&specs[c->spec].src)] = -1;
				c->spec = -1;
				done++;
				progress = 1;
				i--; /* refill this slot now */
				continue;
			}
			if ((int)(c->start + tmo - now) < wait)
				wait = c->start + tmo - now;
		}
		if (done == n)
			break;
		struct pollfd pfd = { .fd = tun_fd, .events = POLLIN };

		/* a slot freed after a blocked start: refill before sleeping */
		if (progress && blocked)
			wait = 0;
		if (poll(&pfd, 1, wait < 0 ? 0 : wait) > 0) {
			int r;

			for (int k = 0; k < 256 && (r = read(tun_fd, pkt, sizeof(pkt))) > 0; k++)
				on_packet(specs, slots, window, port_slot, pkt, r);
		}
	}
	free(specs);
	free(slots);
	reply_ok("%d %llu", n, (unsigned long long)(now_ms() - t0));
}

int main(int argc, char **argv)
{
	static char line[8192];

	if (argc != 3) {
		fprintf(stderr, "usage: %s CGROUP_DIR LB_SOCKOPS_BPF_O\n", argv[0]);
		return 2;
	}
	if (setup(argv[1], argv[2]))
		return 1;
	srand(getpid() ^ now_ms());
	printf("ready %d\n", getpid());
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		char *tok[16];
		int n = 0;

		for (char *p = strtok(line, " \t\r\n"); p && n < 16; p = strtok(NULL, " \t\r\n"))
			tok[n++] = p;
		if (!n)
			continue;
		if (!strcmp(tok[0], "connect"))
			cmd_connect(tok, n);
		else if (!strcmp(tok[0], "send"))
			cmd_send(tok, n);
		else if (!strcmp(tok[0], "recv"))
			cmd_recv(tok, n);
		else if (!strcmp(tok[0], "close"))
			cmd_close(tok, n);
		else if (!strcmp(tok[0], "stats"))
			cmd_stats(tok, n);
		else if (!strcmp(tok[0], "sysctl"))
			cmd_sysctl(tok, n);
		else if (!strcmp(tok[0], "tun"))
			cmd_tun();
		else if (!strcmp(tok[0], "craft"))
			cmd_craft(tok, n);
		else if (!strcmp(tok[0], "quit"))
			break;
		else
			reply_err(EINVAL, "unknown command");
	}
	return 0;
}
