// SPDX-License-Identifier: GPL-2.0
/*
 * The balancer's half for rate benchmarks: attached to a cgroup holding only
 * the bench's load generator, it writes a TOA option into every segment the
 * generator sends (SYN, handshake ACK, data), as LVS does. The LB emulator
 * in test/support/lb drives one connection per command, which is right for
 * correctness tests and far too slow to saturate an accept loop.
 *
 * Built twice: -DTOA_V6=0 writes kind 200 with 192.0.2.x, -DTOA_V6=1 kind
 * 253 with 2001:db8::x (a NAT64 client). The client port goes in the option
 * so each connection carries a different address.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#if TOA_V6
#define OPT_KIND 253
#define OPT_LEN 20
#else
#define OPT_KIND 200
#define OPT_LEN 8
#endif

SEC("sockops")
int toa_client(struct bpf_sock_ops *skops)
{
	__u8 opt[OPT_LEN] = { OPT_KIND, OPT_LEN };
	__u16 port = (__u16)skops->local_port;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
					  BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
		return 1;
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		bpf_reserve_hdr_opt(skops, OPT_LEN, 0);
		return 1;
	case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
		opt[2] = port >> 8;
		opt[3] = port & 0xff;
#if TOA_V6
		opt[4] = 0x20;
		opt[5] = 0x01;
		opt[6] = 0x0d;
		opt[7] = 0xb8;
		opt[18] = port >> 8;
		opt[19] = port & 0xff;
#else
		opt[4] = 192;
		opt[5] = 0;
		opt[6] = 2;
		opt[7] = 1 + port % 254;
#endif
		bpf_store_hdr_opt(skops, opt, OPT_LEN, 0);
		return 1;
	}
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
