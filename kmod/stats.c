// SPDX-License-Identifier: GPL-2.0
/*
 * Counters and the /proc/net files. Counters are per CPU (Tencent's layout:
 * one row per counter, one column per CPU). Event rows are per network
 * namespace, so a container's toa_stats shows its own connections only;
 * the module's memory rows and gauges are host-wide and shown in the initial
 * namespace only. toa_table lists only the reader's namespace's entries.
 */
#include <linux/kernel.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/rcupdate.h>
#include <linux/seq_file.h>
#include <linux/seq_file_net.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include "compat.h"
#include "toa_kmod.h"

struct toa_mem_stats __percpu *toa_mem_stats;

struct toa_net {
	struct toa_net_stats __percpu *stats;
};

static unsigned int toa_net_id __read_mostly;

struct stat_row {
	const char *name;
	size_t off;
};

#define ROW(s, f) { #f, offsetof(struct s, f) }
static const struct stat_row net_rows[] = {
	ROW(toa_net_stats, syn_recv_sock_toa),
	ROW(toa_net_stats, syn_recv_sock_no_toa),
	ROW(toa_net_stats, getname_toa_ok),
	ROW(toa_net_stats, getname_toa_mismatch),
	ROW(toa_net_stats, getname_toa_empty),
	ROW(toa_net_stats, untrusted),
	ROW(toa_net_stats, malformed),
	ROW(toa_net_stats, not_linear),
	ROW(toa_net_stats, port_skipped),
	ROW(toa_net_stats, bogus_unspecified),
	ROW(toa_net_stats, bogus_loopback),
	ROW(toa_net_stats, bogus_multicast),
	ROW(toa_net_stats, bogus_broadcast),
	ROW(toa_net_stats, listeners_swapped),
	ROW(toa_net_stats, swap_foreign_ops),
	ROW(toa_net_stats, sockopt_refused),
};

static const struct stat_row mem_rows[] = {
	ROW(toa_mem_stats, ip6_address_alloc),
	ROW(toa_mem_stats, ip6_address_free),
	ROW(toa_mem_stats, entry_alloc),
	ROW(toa_mem_stats, entry_free),
	ROW(toa_mem_stats, entry_alloc_fail),
};
#undef ROW

struct toa_net_stats __percpu *toa_net_stats(const struct net *net)
{
	struct toa_net_stats __percpu *p;

	/* net->gen is RCU-managed; the slot it points to lives as long as net */
	rcu_read_lock();
	p = ((struct toa_net *)net_generic(net, toa_net_id))->stats;
	rcu_read_unlock();
	return p;
}

static void show_rows(struct seq_file *seq, const void __percpu *base,
		      const struct stat_row *rows, size_t n)
{
	size_t i;
	int cpu;

	for (i = 0; i < n; i++) {
		seq_printf(seq, "%-24s", rows[i].name);
		for_each_possible_cpu(cpu) {
			const u64 *p = (const void *)per_cpu_ptr(base, cpu) +
				       rows[i].off;

			seq_printf(seq, " %16llu", READ_ONCE(*p));
		}
		seq_putc(seq, '\n');
	}
}

static int stats_show(struct seq_file *seq, void *v)
{
	struct net *net = seq_file_single_net(seq);
	int cpu;

	seq_printf(seq, "%-24s", "");
	for_each_possible_cpu(cpu) {
		char name[16];

		snprintf(name, sizeof(name), "CPU%d", cpu);
		seq_printf(seq, " %16s", name);
	}
	seq_putc(seq, '\n');
	show_rows(seq, toa_net_stats(net), net_rows, ARRAY_SIZE(net_rows));
	if (!net_eq(net, &init_net))
		return 0;
	show_rows(seq, toa_mem_stats, mem_rows, ARRAY_SIZE(mem_rows));
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
		const struct toa_mem_stats *s = per_cpu_ptr(toa_mem_stats, cpu);

		n += (long)(READ_ONCE(s->entry_alloc) - READ_ONCE(s->entry_free));
	}
	return n;
}

static int __net_init toa_net_init(struct net *net)
{
	struct toa_net *tn = net_generic(net, toa_net_id);

	tn->stats = alloc_percpu(struct toa_net_stats);
	if (!tn->stats)
		return -ENOMEM;
	if (!proc_create_net_single("toa_stats", 0444, net->proc_net,
				    stats_show, NULL))
		goto err_stats;
	if (!proc_create_net("toa_table", 0400, net->proc_net,
			     &toa_table_seq_ops, toa_table_seq_private_size()))
		goto err_table;
	return 0;
err_table:
	remove_proc_entry("toa_stats", net->proc_net);
err_stats:
	free_percpu(tn->stats);
	return -ENOMEM;
}

/*
 * No counter of this namespace is touched after it is freed: a namespace is
 * dismantled only after its last user socket is gone (each holds a reference
 * from sk_alloc()/sk_clone_lock()); its devices are gone before any
 * subsystem's exit runs (cleanup_net() exits pernet_list in reverse, device
 * ops last in it), so no segment reaches a kernel socket still open in it;
 * and at unload the hooks are unregistered before this runs.
 */
static void __net_exit toa_net_exit(struct net *net)
{
	struct toa_net *tn = net_generic(net, toa_net_id);

	remove_proc_entry("toa_table", net->proc_net);
	remove_proc_entry("toa_stats", net->proc_net);
	free_percpu(tn->stats);
}

static struct pernet_operations toa_net_ops = {
	.init = toa_net_init,
	.exit = toa_net_exit,
	.id = &toa_net_id,
	.size = sizeof(struct toa_net),
};

int toa_stats_init(void)
{
	toa_mem_stats = alloc_percpu(struct toa_mem_stats);
	return toa_mem_stats ? 0 : -ENOMEM;
}

void toa_stats_exit(void)
{
	free_percpu(toa_mem_stats);
}

int toa_proc_init(void)
{
	return register_pernet_subsys(&toa_net_ops);
}

void toa_proc_exit(void)
{
	unregister_pernet_subsys(&toa_net_ops);
}
