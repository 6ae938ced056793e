/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every kernel-version difference toa.ko cares about, in one place
 * (WireGuard's compat.h style). Each entry: why it matters, and the version
 * that introduced the behaviour. Compiles on 5.1+ (refused below, see the
 * #errors); built and tested on Debian 5.10, 6.1, 6.12 and sid's 7.x.
 */
#ifndef _TOA_COMPAT_H
#define _TOA_COMPAT_H

#include <linux/version.h>
#include <linux/kprobes.h>

/*
 * inet_getname()/inet6_getname() return the address length instead of 0
 * since 4.17: toa.ko's getname() treats "return value ==
 * sizeof(sockaddr_in{,6})" as "the stock getname filled the buffer".
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(4, 17, 0)
#error "toa.ko needs 4.17+: older getname() returns 0, not the length"
#endif
#define TOA_GETNAME_FILLED(ret, family) \
	((ret) == ((family) == AF_INET6 ? (int)sizeof(struct sockaddr_in6) : \
					  (int)sizeof(struct sockaddr_in)))

/*
 * proc_create_net_single() (per-namespace /proc/net file without our own
 * file_operations/proc_ops) exists since 4.18; it also keeps
 * us clear of the file_operations -> proc_ops switch of 5.6.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(4, 18, 0)
#error "toa.ko needs 4.18+: proc_create_net_single()"
#endif

/*
 * Function arguments from a kprobe's pt_regs: regs_get_kernel_argument()
 * exists on x86 and arm64 since 5.1 (x86 earlier); older kernels
 * would need per-arch register names.
 */
#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 1, 0)
#error "toa.ko needs 5.1+: regs_get_kernel_argument() on arm64"
#endif
#define TOA_ARG(regs, n) regs_get_kernel_argument((regs), (n))

/*
 * <asm/unaligned.h> moved to <linux/unaligned.h> in 6.12.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
#include <linux/unaligned.h>
#else
#include <asm/unaligned.h>
#endif

/*
 * Hook arguments. tcp_v{4,6}_syn_recv_sock(sk, skb, req, dst, req_unhash,
 * own_req) has had this shape since 4.4 (own_req added then); 7.x appends a
 * 7th argument (opt_child_init), positions 1 and 5 are unchanged. The child
 * is only ours to remember when *own_req is true, otherwise the kernel frees
 * it through sock_put() without a destroy callback.
 */
#define TOA_SYNRECV_ARG_SKB	1
#define TOA_SYNRECV_ARG_OWN_REQ	5

/*
 * Socket destruction: tcp_v4_destroy_sock() fires the tcp_destroy_sock
 * tracepoint (TP_PROTO(struct sock *sk)) for every TCP socket that reaches
 * inet_csk_destroy_sock(), IPv6 ones too: tcpv6_prot.destroy *is*
 * tcp_v4_destroy_sock in Debian's 5.10.262, 6.1.192 and 6.12.117 sources
 * (upstream 6.3, backported to stable; before that tcp_v6_destroy_sock()
 * called it). The
 * tracepoint is found by name (for_each_kernel_tracepoint): its symbol is
 * not exported to modules.
 */
#ifndef CONFIG_TRACEPOINTS
#error "toa.ko needs CONFIG_TRACEPOINTS: the tcp_destroy_sock tracepoint frees entries"
#endif
#define TOA_DESTROY_TRACEPOINT	"tcp_destroy_sock"

/*
 * kretprobe maxactive (instances per probe; 6.7 moved them to an objpool,
 * same knob). syn_recv_sock never sleeps: a few per CPU cover softirq
 * nesting over process context.
 */
#define TOA_MAXACTIVE		(4 * num_possible_cpus() + 16)

/*
 * A reference on a listener's file from softirq, only if it is not already
 * being released (the ops swap must never race __sock_release's read of
 * ops->owner). 6.13 turned f_count into file_ref_t.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
#define TOA_FILE_TRYGET(f)	file_ref_get(&(f)->f_ref)
#else
#define TOA_FILE_TRYGET(f)	atomic_long_inc_not_zero(&(f)->f_count)
#endif

#endif
