// SPDX-License-Identifier: GPL-2.0
/*
 * Counters and the /proc/net files. Counters are per CPU (Tencent's layout:
 * one row per counter, one column per CPU). They are host-wide: every network
 * namespace shows the same toa_stats (as with Tencent's module), while
 * toa_table lists only that namespace's entries.
 */
#include <linux/kernel.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include "compat.h"
#include "toa_kmod.h"

struct toa_stats __percpu *toa_stats;

static const struct {
	const char *name;
	size_t off;
} toa_stat_rows[] = {
#define ROW(f) { #f, offsetof(struct toa_stats, f) }
	ROW(syn_recv_sock_toa),
	ROW(syn_recv_sock_no_toa),
	ROW(getname_toa_ok),
	ROW(getname_toa_mismatch),
	ROW(getname_toa_empty),
	ROW(ip6_address_alloc),
	ROW(ip6_address_free),
	ROW(entry_alloc),
	ROW(entry_free),
	ROW(entry_alloc_fail),
	ROW(untrusted),
	ROW(malformed),
	ROW(not_linear),
	ROW(port_skipped),
	ROW(bogus_unspecified),
	ROW(bogus_loopback),
	ROW(bogus_multicast),
	ROW(bogus_broadcast),
#undef ROW
};

static int stats_show(struct seq_file *seq, void *v)
{
	unsigned int i;
	int cpu;

	seq_printf(seq, "%-24s", "");
	for_each_possible_cpu(cpu) {
		char name[16];

		snprintf(name, sizeof(name), "CPU%d", cpu);
		seq_printf(seq, " %16s", name);
	}
	seq_putc(seq, '\n');
	for (i = 0; i < ARRAY_SIZE(toa_stat_rows); i++) {
		seq_printf(seq, "%-24s", toa_stat_rows[i].name);
		for_each_possible_cpu(cpu) {
			const u64 *p = (const void *)per_cpu_ptr(toa_stats, cpu) +
				       toa_stat_rows[i].off;

			seq_printf(seq, " %16llu", READ_ONCE(*p));
		}
		seq_putc(seq, '\n');
	}
	/* Not per CPU: gauges of the module as a whole. */
	seq_printf(seq, "%-24s %16ld\n", "table_entries", toa_stats_entries());
	seq_printf(seq, "%-24s %16lu\n", "probe_missed", toa_hooks_missed());
	return 0;
}

long toa_stats_entries(void)
{
	long n = 0;
	int cpu;

	for_each_possible_cpu(cpu) {
		const struct toa_stats *s = per_cpu_ptr(toa_stats, cpu);

		n += (long)(READ_ONCE(s->entry_alloc) - READ_ONCE(s->entry_free));
	}
	return n;
}

static int __net_init toa_net_init(struct net *net)
{
	if (!proc_create_net_single("toa_stats", 0444, net->proc_net,
				    stats_show, NULL))
		return -ENOMEM;
	if (!proc_create_net("toa_table", 0400, net->proc_net,
			     &toa_table_seq_ops, toa_table_seq_private_size())) {
		remove_proc_entry("toa_stats", net->proc_net);
		return -ENOMEM;
	}
	return 0;
}

static void __net_exit toa_net_exit(struct net *net)
{
	remove_proc_entry("toa_table", net->proc_net);
	remove_proc_entry("toa_stats", net->proc_net);
}

static struct pernet_operations toa_net_ops = {
	.init = toa_net_init,
	.exit = toa_net_exit,
};

int toa_stats_init(void)
{
	toa_stats = alloc_percpu(struct toa_stats);
	return toa_stats ? 0 : -ENOMEM;
}

void toa_stats_exit(void)
{
	free_percpu(toa_stats);
}

int toa_proc_init(void)
{
	return register_pernet_subsys(&toa_net_ops);
}

void toa_proc_exit(void)
{
	unregister_pernet_subsys(&toa_net_ops);
}
