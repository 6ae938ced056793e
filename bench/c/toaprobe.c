// SPDX-License-Identifier: MIT
/*
 * toaprobe: the C side of `npm run bench`, so kernel costs are measured
 * without a JavaScript runtime in the way.
 *
 *   loadgen HOST PORT CONC MS   connect, wait for the server's FIN, reset;
 *                               CONC at a time for MS ms
 *                               -> "conns N failed F ms T cpu_us C"
 *   acceptor PORT               accept + close until stdin closes; a line
 *                               on stdin -> "cpu_us C" (its CPU time so far)
 *   hold HOST PORT N            open N connections, keep them until stdin closes
 *   peercost PORT               listen; stdin commands:
 *                                 accept N      -> "ok COUNT" (N more connections held;
 *                                                  "err ..." after 30 s without one)
 *                                 measure ITERS [K] -> "ns X" (mean getpeername CPU
 *                                                  time, over the first K held)
 *                                 info ITERS    -> "ns X" (mean CPU time of node-toa's
 *                                                  getsockopt query, failed or not)
 *                                 peer I        -> "peer ADDR PORT" of held connection I
 *                                 close         -> "ok"  (all held ones closed)
 *                                 keep K        -> "ok K" (the others reset: no FIN
 *                                                  to wait for, no TIME_WAIT)
 *
 * Closing with SO_LINGER 0 (RST) leaves no TIME_WAIT behind, so a run of
 * tens of thousands of loopback connections never exhausts ephemeral ports.
 * Every loop is bounded by a deadline or a count.
 *
 * Costs are CPU time, not wall time: on a machine shared with other jobs,
 * being preempted inflates wall time but not the CPU a connection costs.
 * Without CONFIG_IRQ_TIME_ACCOUNTING (Debian's default) softirq work, where
 * loopback handshakes and sockops programs run, is charged to the task it
 * interrupted, so client + server CPU covers the whole connection.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../kmod/uapi/toa.h"

static void die(const char *what)
{
	fprintf(stderr, "toaprobe: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static long cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000L +
	       ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

/* "127.0.0.1" or "::1" style literal + port */
static socklen_t make_addr(const char *host, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(host, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			die("bad IPv6 address");
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	s4->sin_family = AF_INET;
	s4->sin_port = htons(port);
	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
		die("bad IPv4 address");
	return sizeof(*s4);
}

static void close_rst(int fd)
{
	struct linger l = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static int start_connect(int ep, const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };

	if (fd < 0)
		die("socket");
	if (connect(fd, (const struct sockaddr *)ss, len) != 0 && errno != EINPROGRESS)
		die("connect");
	ev.data.fd = fd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
		die("epoll_ctl");
	return fd;
}

static int loadgen(const char *host, int port, int conc, int ms)
{
	struct sockaddr_storage ss;
	socklen_t len = make_addr(host, port, &ss);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event evs[256];
	int64_t start = now_ns(), end = start + (int64_t)ms * 1000000;
	long done = 0, failed = 0;
	int live = 0;
	char buf[256];

	if (ep < 0)
		die("epoll_create1");
	for (; live < conc; live++)
		start_connect(ep, &ss, len);
	for (int64_t t = start; t < end; t = now_ns()) {
		int wait = (int)((end - t) / 1000000) + 1;
		int n = epoll_wait(ep, evs, 256, wait);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			ssize_t r = read(fd, buf, sizeof(buf));

			if (r > 0)
				continue;
			if (r < 0 && errno == EAGAIN)
				continue;
			if (r == 0)
				done++;
			else
				failed++;
			epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			close_rst(fd);
			start_connect(ep, &ss, len);
		}
	}
	printf("conns %ld failed %ld ms %.3f cpu_us %ld\n", done, failed, (now_ns() - start) / 1e6, cpu_us());
	return failed > done / 100 ? 1 : 0;
}

static int listen_on(int port)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port),
				  .sin6_addr = IN6ADDR_ANY_INIT };
	int one = 1;
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		die("bind");
	if (listen(fd, 4096) != 0)
		die("listen");
	socklen_t l = sizeof(a);

	getsockname(fd, (struct sockaddr *)&a, &l);
	printf("ready %d\n", ntohs(a.sin6_port));
	fflush(stdout);
	return fd;
}

/* Node and most runtimes listen on ::, so IPv4 clients arrive v4-mapped: the path TOA providers must handle. */
static int acceptor(int port)
{
	int lfd = listen_on(port);
	struct pollfd p[2] = { { .fd = lfd, .events = POLLIN }, { .fd = 0, .events = POLLIN } };

	fcntl(lfd, F_SETFL, O_NONBLOCK);
	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			die("poll");
		if (p[1].revents) {
			char buf[64];

			if (read(0, buf, sizeof(buf)) <= 0)
				return 0;
			printf("cpu_us %ld\n", cpu_us());
			fflush(stdout);
		}
		for (int i = 0; i < 4096; i++) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			if (fd < 0)
				break;
			close(fd);
		}
	}
}

static void wait_stdin_eof(void)
{
	char buf[64];

	while (read(0, buf, sizeof(buf)) > 0)
		;
}

static int hold(const char *host, int port, int n)
{
	struct sockaddr_storage ss;
	socklen_t len = make_addr(host, port, &ss);
	int *fds = calloc(n, sizeof(int));

	for (int i = 0; i < n; i++) {
		fds[i] = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0)
			die("socket");
		if (connect(fds[i], (struct sockaddr *)&ss, len) != 0)
			die("connect");
	}
	printf("ready %d\n", n);
	fflush(stdout);
	wait_stdin_eof();
	for (int i = 0; i < n; i++)
		close_rst(fds[i]);
	return 0;
}

static int peercost(int port)
{
	int lfd = listen_on(port);
	int cap = 65536, count = 0;
	int *fds = calloc(cap, sizeof(int));
	char line[128];

	while (fgets(line, sizeof(line), stdin)) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		long n, k = 0;

		if (sscanf(line, "accept %ld", &n) == 1) {
			long i = 0;

			/* bounded: a connection that never arrives must not hang the bench */
			for (; i < n && poll(&p, 1, 30000) == 1; i++) {
				int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

				if (fd < 0)
					die("accept");
				if (count == cap && !(fds = realloc(fds, (cap *= 2) * sizeof(int))))
					die("realloc");
				fds[count++] = fd;
			}
			if (i < n)
				printf("err accept: %ld of %ld arrived within 30 s, %d held\n", i, n, count);
			else
				printf("ok %d\n", count);
		} else if (sscanf(line, "measure %ld %ld", &n, &k) >= 1 || sscanf(line, "info %ld", &n) == 1) {
			/* large enough for struct toa_info (56 bytes) */
			struct sockaddr_in6 a[4];
			socklen_t l;
			int64_t t0;
			int info = line[0] == 'i';

			if (!count) {
				printf("err no connections\n");
				fflush(stdout);
				continue;
			}
			t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
			if (k <= 0 || k > count)
				k = count;
			for (long i = 0; i < n; i++) {
				l = sizeof(a);
				if (info)
					getsockopt(fds[i % k], IPPROTO_IP, TOA_SO_GET_INFO, a, &l);
				else if (getpeername(fds[i % k], (struct sockaddr *)a, &l) != 0)
					die("getpeername");
			}
			printf("ns %.2f\n", (double)(clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0) / n);
		} else if (sscanf(line, "peer %ld", &n) == 1 && n >= 0 && n < count) {
			struct sockaddr_in6 a;
			socklen_t l = sizeof(a);
			char buf[INET6_ADDRSTRLEN];

			if (getpeername(fds[n], (struct sockaddr *)&a, &l) != 0)
				die("getpeername");
			inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof(buf));
			printf("peer %s %d\n", buf, ntohs(a.sin6_port));
		} else if (sscanf(line, "keep %ld", &n) == 1 && n >= 0) {
			for (; count > n; count--)
				close_rst(fds[count - 1]);
			printf("ok %d\n", count);
		} else if (!strncmp(line, "close", 5)) {
			for (int i = 0; i < count; i++)
				close(fds[i]);
			count = 0;
			printf("ok 0\n");
		} else {
			printf("err unknown command\n");
		}
		fflush(stdout);
	}
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 6 && !strcmp(argv[1], "loadgen"))
		return loadgen(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	if (argc == 3 && !strcmp(argv[1], "acceptor"))
		return acceptor(atoi(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "hold"))
		return hold(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (argc == 3 && !strcmp(argv[1], "peercost"))
		return peercost(atoi(argv[2]));
	fprintf(stderr, "usage: toaprobe loadgen HOST PORT CONC MS | acceptor PORT | hold HOST PORT N | peercost PORT\n");
	return 2;
}
