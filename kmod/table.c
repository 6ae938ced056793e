// SPDX-License-Identifier: GPL-2.0
/*
 * Per-socket TOA state, keyed by struct sock *. Our own table instead of
 * sk_user_data (its low bits are flags since 6.0 and sockmap refuses sockets
 * that use it) and instead of replacing destructors (kTLS/sockmap/IPv6 chain
 * them). Readers (getname, getsockopt, /proc) are lockless under RCU; writers
 * take a per-bucket bit lock with interrupts off: stores happen in softirq and
 * removals in probe handlers, where arm64 breakpoint handlers already run with
 * interrupts off and local_bh_enable() would warn.
 * Connections without an option cost nothing: no entry is allocated.
 */
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/hash.h>
#include <linux/list_bl.h>
#include <linux/rculist_bl.h>
#include <linux/seq_file.h>
#include <linux/seq_file_net.h>
#include <linux/vmalloc.h>
#include <linux/mm.h>
#include <net/sock.h>
#include <net/inet_sock.h>
#include <net/ipv6.h>
#include "compat.h"
#include "toa_kmod.h"

#define TOA_HASH_BITS	14

static struct hlist_bl_head *toa_hash;
static struct kmem_cache *toa_cache;
static atomic_t toa_count = ATOMIC_INIT(0);

static struct hlist_bl_head *bucket(const struct sock *sk)
{
	return &toa_hash[hash_ptr(sk, TOA_HASH_BITS)];
}

static void entry_free_rcu(struct rcu_head *head)
{
	struct toa_entry *e = container_of(head, struct toa_entry, rcu);

	if (e->flags & TOA_E_NAT64)
		TOA_INC(ip6_address_free);
	TOA_INC(entry_free);
	kmem_cache_free(toa_cache, e);
}

static void entry_release(struct toa_entry *e)
{
	atomic_dec(&toa_count);
	call_rcu(&e->rcu, entry_free_rcu);
}

int toa_table_store(const struct sock *sk, const struct toa_addr *a, u8 flags)
{
	struct hlist_bl_head *b = bucket(sk);
	struct toa_entry *e, *it, *old = NULL;
	struct hlist_bl_node *pos;
	unsigned long irqf;

	e = kmem_cache_alloc(toa_cache, GFP_ATOMIC);
	if (!e) {
		TOA_INC(entry_alloc_fail);
		return -ENOMEM;
	}
	e->sk = sk;
	if (a->is_v6)
		e->addr.v6 = a->v6;
	else {
		memset(&e->addr, 0, sizeof(e->addr));
		e->addr.v4 = a->v4;
	}
	e->port = a->port;
	e->peer_port = inet_sk(sk)->inet_dport;
	e->kind = a->kind;
	e->flags = flags | (a->is_v6 ? TOA_E_NAT64 : 0);
	TOA_INC(entry_alloc);
	if (a->is_v6)
		TOA_INC(ip6_address_alloc);

	local_irq_save(irqf);
	hlist_bl_lock(b);
	/* A stale entry for this address would mean a missed destroy; replace. */
	hlist_bl_for_each_entry(it, pos, b, node) {
		if (it->sk == sk) {
			old = it;
			break;
		}
	}
	if (old)
		hlist_bl_del_rcu(&old->node);
	hlist_bl_add_head_rcu(&e->node, b);
	hlist_bl_unlock(b);
	local_irq_restore(irqf);
	atomic_inc(&toa_count);
	if (old)
		entry_release(old);
	return 0;
}

bool toa_table_lookup(const struct sock *sk, struct toa_found *out)
{
	struct toa_entry *e;
	struct hlist_bl_node *pos;
	bool found = false;

	if (!atomic_read(&toa_count))
		return false;
	rcu_read_lock();
	hlist_bl_for_each_entry_rcu(e, pos, bucket(sk), node) {
		if (e->sk != sk)
			continue;
		if (e->peer_port != READ_ONCE(inet_sk(sk)->inet_dport)) {
			TOA_INC(getname_toa_mismatch);
			break;
		}
		out->addr.v6 = e->addr.v6;
		out->port = e->port;
		out->kind = e->kind;
		out->flags = e->flags;
		found = true;
		break;
	}
	rcu_read_unlock();
	return found;
}

void toa_table_forget(const struct sock *sk)
{
	struct hlist_bl_head *b;
	struct toa_entry *e;
	struct hlist_bl_node *pos;
	bool found = false;
	unsigned long irqf;

	if (!atomic_read(&toa_count))
		return;
	b = bucket(sk);
	local_irq_save(irqf);
	hlist_bl_lock(b);
	hlist_bl_for_each_entry(e, pos, b, node) {
		if (e->sk == sk) {
			hlist_bl_del_rcu(&e->node);
			found = true;
			break;
		}
	}
	hlist_bl_unlock(b);
	local_irq_restore(irqf);
	if (found)
		entry_release(e);
}

unsigned int toa_table_count(void)
{
	return atomic_read(&toa_count);
}

void toa_table_show(struct seq_file *seq)
{
	struct net *net = seq_file_single_net(seq);
	unsigned int i;

	seq_puts(seq, "local remote client kind flags\n");
	rcu_read_lock();
	for (i = 0; i < (1U << TOA_HASH_BITS); i++) {
		struct toa_entry *e;
		struct hlist_bl_node *pos;

		hlist_bl_for_each_entry_rcu(e, pos, &toa_hash[i], node) {
			/*
			 * The entry is unlinked before its socket is destroyed,
			 * and TCP sockets live in SLAB_TYPESAFE_BY_RCU caches,
			 * so under RCU e->sk is a struct sock.
			 */
			const struct sock *sk = e->sk;
			u16 fam;
			u8 peer[16];
			__be16 pport;

			if (!net_eq(sock_net(sk), net))
				continue;
			toa_sock_peer(sk, &fam, peer, &pport);
			if (sk->sk_family == AF_INET6)
				seq_printf(seq, "[%pI6c]:%u ", &sk->sk_v6_rcv_saddr,
					   ntohs(inet_sk(sk)->inet_sport));
			else
				seq_printf(seq, "%pI4:%u ", &inet_sk(sk)->inet_rcv_saddr,
					   ntohs(inet_sk(sk)->inet_sport));
			if (fam == AF_INET6)
				seq_printf(seq, "[%pI6c]:%u ", peer, ntohs(pport));
			else
				seq_printf(seq, "%pI4:%u ", peer, ntohs(pport));
			if (e->flags & TOA_E_NAT64)
				seq_printf(seq, "[%pI6c]:%u", &e->addr.v6, ntohs(e->port));
			else
				seq_printf(seq, "%pI4:%u", &e->addr.v4, ntohs(e->port));
			seq_printf(seq, " %u %s\n", e->kind,
				   e->flags & TOA_E_UNTRUSTED ? "untrusted" :
				   e->flags & TOA_E_TRUSTED ? "trusted" : "-");
		}
	}
	rcu_read_unlock();
}

int toa_table_init(void)
{
	toa_hash = kvcalloc(1U << TOA_HASH_BITS, sizeof(*toa_hash), GFP_KERNEL);
	if (!toa_hash)
		return -ENOMEM;
	/* Own cache: exact object size and /proc/slabinfo accounting. */
	toa_cache = kmem_cache_create("toa_entry", sizeof(struct toa_entry), 0,
				      0, NULL);
	if (!toa_cache) {
		kvfree(toa_hash);
		return -ENOMEM;
	}
	return 0;
}

/* Called once no hook can run any more. */
void toa_table_exit(void)
{
	unsigned int i;

	for (i = 0; i < (1U << TOA_HASH_BITS); i++) {
		struct hlist_bl_head *b = &toa_hash[i];
		struct hlist_bl_node *pos, *tmp;
		struct toa_entry *e;
		unsigned long irqf;

		local_irq_save(irqf);
		hlist_bl_lock(b);
		hlist_bl_for_each_entry_safe(e, pos, tmp, b, node) {
			hlist_bl_del_rcu(&e->node);
			entry_release(e);
		}
		hlist_bl_unlock(b);
		local_irq_restore(irqf);
	}
	/* entry_free_rcu() must have run before the cache and counters go. */
	rcu_barrier();
	kmem_cache_destroy(toa_cache);
	kvfree(toa_hash);
}
