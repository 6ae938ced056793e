// SPDX-License-Identifier: GPL-2.0
/*
 * Counters and the /proc/net files. Counters are per CPU (Tencent's layout:
 * one row per counter, one column per CPU) and module-wide; the files exist
 * in every network namespace, toa_table lists only that namespace's sockets.
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
	seq_printf(seq, "%-24s %16u\n", "table_entries", toa_table_count());
	seq_printf(seq, "%-24s %16lu\n", "probe_missed", toa_hooks_missed());
	return 0;
}

static int table_show(struct seq_file *seq, void *v)
{
	toa_table_show(seq);
	return 0;
}

static int __net_init toa_net_init(struct net *net)
{
	if (!proc_create_net_single("toa_stats", 0444, net->proc_net,
				    stats_show, NULL))
		return -ENOMEM;
	if (!proc_create_net_single("toa_table", 0400, net->proc_net,
				    table_show, NULL)) {
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
