// SPDX-License-Identifier: GPL-2.0
/*
 * Per-socket TOA state, keyed by the socket cookie (see struct toa_ident).
 * Our own table instead of sk_user_data (its low bits are flags since 6.0 and
 * sockmap refuses sockets that use it) and instead of replacing destructors
 * (kTLS/sockmap/IPv6 chain them).
 *
 * Readers (getname, getsockopt, /proc) are lockless under RCU. Writers take a
 * per-bucket bit lock with interrupts off: stores run in softirq, removals in
 * the destroy tracepoint (any context) and in a kprobe handler (arm64 runs
 * breakpoint handlers with interrupts off, where local_bh_enable() warns).
 *
 * Sockets without TOA cost nothing here: no entry, and every path starts
 * with a lockless test of the socket's own cookie word (0: we never stored
 * it) before touching the shared table; removal takes the lock only for an
 * entry that is there. No shared counter is written: alloc/free are per CPU.
 *
 * Size: a fixed array of 2^16 buckets (512 KiB). At 100,000 entries the mean
 * chain is 1.5; lookups walk one chain. Cookies are sequential, hash_64
 * spreads them evenly.
 */
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/hash.h>
#include <linux/list_bl.h>
#include <linux/rculist_bl.h>
#include <linux/seq_file.h>
#include <linux/seq_file_net.h>
#include <linux/sock_diag.h>
#include <linux/mm.h>
#include <net/sock.h>
#include <net/inet_sock.h>
#include <net/ipv6.h>
#include "compat.h"
#include "toa_kmod.h"

#define TOA_HASH_BITS	16
#define TOA_BUCKETS	(1U << TOA_HASH_BITS)

static struct hlist_bl_head *toa_hash;
static struct kmem_cache *toa_cache;		/* struct toa_entry, 64 B */
static struct kmem_cache *toa_cache_wide;	/* struct toa_entry_wide */

/* the promise README and kmod-memory hold it to (64-bit, network namespaces) */
static_assert(sizeof(struct toa_entry) <= 64);

static struct toa_entry_wide *wide_of(const struct toa_entry *e)
{
	return container_of(e, struct toa_entry_wide, e);
}

static struct hlist_bl_head *bucket(u64 cookie)
{
	return &toa_hash[hash_64(cookie, TOA_HASH_BITS)];
}

/* The socket's cookie if it has one; 0 means we never stored it. */
static u64 cookie_of(const struct sock *sk)
{
	return atomic64_read(&sk->sk_cookie);
}

static void peer_of(const struct sock *sk, struct in6_addr *peer)
{
#if IS_ENABLED(CONFIG_IPV6)
	/* sk_daddr_set() keeps sk_v6_daddr as ::ffff:daddr for IPv4 peers */
	if (sk->sk_family == AF_INET6) {
		*peer = sk->sk_v6_daddr;
		return;
	}
#endif
	ipv6_addr_set_v4mapped(READ_ONCE(sk->sk_daddr), peer);
}

static bool ident_match(const struct toa_entry *e, const struct sock *sk,
			u64 cookie)
{
	const struct toa_ident *id = &e->id;
	struct in6_addr peer;

	if (id->cookie != cookie || !net_eq(read_pnet(&id->net), sock_net(sk)) ||
	    id->lport != READ_ONCE(inet_sk(sk)->inet_sport) ||
	    id->rport != READ_ONCE(inet_sk(sk)->inet_dport))
		return false;
	peer_of(sk, &peer);
	if (e->flags & TOA_E_WIDE)
		return ipv6_addr_equal(&wide_of(e)->peer, &peer);
	return ipv6_addr_v4mapped(&peer) && peer.s6_addr32[3] == id->peer4;
}

/* The balancer the entry was made for, IPv4 as ::ffff:a.b.c.d. */
static void entry_peer(const struct toa_entry *e, struct in6_addr *peer)
{
	if (e->flags & TOA_E_WIDE)
		*peer = wide_of(e)->peer;
	else
		ipv6_addr_set_v4mapped(e->id.peer4, peer);
}

static void entry_found(const struct toa_entry *e, struct toa_found *out)
{
	memset(&out->addr, 0, sizeof(out->addr));
	if (e->flags & TOA_E_NAT64)
		out->addr.v6 = wide_of(e)->addr.v6;
	else if (e->flags & TOA_E_WIDE)
		out->addr.v4 = wide_of(e)->addr.v4;
	else
		out->addr.v4 = e->addr4;
	out->port = e->port;
	out->kind = e->kind;
	out->flags = e->flags;
}

static void entry_free_rcu(struct rcu_head *head)
{
	struct toa_entry *e = container_of(head, struct toa_entry, rcu);

	if (e->flags & TOA_E_NAT64)
		TOA_INC(ip6_address_free);
	TOA_INC(entry_free);
	if (e->flags & TOA_E_WIDE)
		kmem_cache_free(toa_cache_wide, wide_of(e));
	else
		kmem_cache_free(toa_cache, e);
}

int toa_table_store(struct sock *sk, const struct toa_addr *a, u8 flags)
{
	struct toa_entry *e, *it, *old = NULL;
	struct toa_entry_wide *w = NULL;
	struct hlist_bl_node *pos;
	struct hlist_bl_head *b;
	struct in6_addr peer;
	unsigned long irqf;
	u32 ck[2];

	peer_of(sk, &peer);
	if (a->is_v6 || !ipv6_addr_v4mapped(&peer)) {
		w = kmem_cache_alloc(toa_cache_wide, GFP_ATOMIC);
		e = w ? &w->e : NULL;
	} else {
		e = kmem_cache_alloc(toa_cache, GFP_ATOMIC);
	}
	if (!e) {
		TOA_INC(entry_alloc_fail);
		return -ENOMEM;
	}
	/* sock_gen_cookie() is not exported; this exported wrapper is */
	sock_diag_save_cookie(sk, ck);
	e->id.cookie = (u64)ck[1] << 32 | ck[0];
	write_pnet(&e->id.net, sock_net(sk));
	e->id.lport = inet_sk(sk)->inet_sport;
	e->id.rport = inet_sk(sk)->inet_dport;
	e->port = a->port;
	e->kind = a->kind;
	e->flags = flags | (a->is_v6 ? TOA_E_NAT64 : 0) | (w ? TOA_E_WIDE : 0);
	if (w) {
		e->id.peer4 = 0;
		e->addr4 = 0;
		w->peer = peer;
		memset(&w->addr, 0, sizeof(w->addr));
		if (a->is_v6)
			w->addr.v6 = a->v6;
		else
			w->addr.v4 = a->v4;
	} else {
		e->id.peer4 = peer.s6_addr32[3];
		e->addr4 = a->v4;
	}
	/* counted before it is visible: a reader never sees free > alloc */
	TOA_INC(entry_alloc);
	if (a->is_v6)
		TOA_INC(ip6_address_alloc);

	b = bucket(e->id.cookie);
	local_irq_save(irqf);
	hlist_bl_lock(b);
	/* a fresh child has a fresh cookie; an old entry would be a bug */
	hlist_bl_for_each_entry(it, pos, b, node) {
		if (it->id.cookie == e->id.cookie) {
			old = it;
			break;
		}
	}
	if (old)
		hlist_bl_del_rcu(&old->node);
	hlist_bl_add_head_rcu(&e->node, b);
	hlist_bl_unlock(b);
	local_irq_restore(irqf);
	if (old)
		call_rcu(&old->rcu, entry_free_rcu);
	return 0;
}

bool toa_table_lookup(const struct sock *sk, struct toa_found *out)
{
	u64 cookie = cookie_of(sk);
	struct hlist_bl_node *pos;
	struct toa_entry *e;
	bool found = false;

	if (!cookie)
		return false;
	rcu_read_lock();
	hlist_bl_for_each_entry_rcu(e, pos, bucket(cookie), node) {
		if (e->id.cookie != cookie)
			continue;
		if (!ident_match(e, sk, cookie)) {
			/* same socket, other connection: reconnected */
			TOA_NET_INC(sock_net(sk), getname_toa_mismatch);
			break;
		}
		entry_found(e, out);
		found = true;
		break;
	}
	rcu_read_unlock();
	return found;
}

void toa_table_forget(const struct sock *sk)
{
	u64 cookie = cookie_of(sk);
	struct hlist_bl_node *pos;
	struct hlist_bl_head *b;
	struct toa_entry *e;
	bool there = false;
	unsigned long irqf;

	if (!cookie)
		return;
	b = bucket(cookie);
	/* most sockets with a cookie (ss, BPF) have no entry: look first */
	rcu_read_lock();
	hlist_bl_for_each_entry_rcu(e, pos, b, node) {
		if (e->id.cookie == cookie) {
			there = true;
			break;
		}
	}
	rcu_read_unlock();
	if (!there)
		return;
	there = false;
	local_irq_save(irqf);
	hlist_bl_lock(b);
	hlist_bl_for_each_entry(e, pos, b, node) {
		if (e->id.cookie == cookie) {
			hlist_bl_del_rcu(&e->node);
			there = true;
			break;
		}
	}
	hlist_bl_unlock(b);
	local_irq_restore(irqf);
	if (there)
		call_rcu(&e->rcu, entry_free_rcu);
}

/*
 * /proc/net/toa_table: a seq_file iterator like /proc/net/tcp. It prints
 * what the entry stored (never dereferences a socket) and resumes from the
 * bucket/offset it stopped at when the buffer filled, instead of walking the
 * table again.
 */
struct toa_iter {
	struct seq_net_private p;
	unsigned int bucket;
	unsigned int offset;	/* entries of this netns before it in the bucket */
	loff_t pos;		/* *pos of the entry at bucket/offset */
};

size_t toa_table_seq_private_size(void)
{
	return sizeof(struct toa_iter);
}

static struct toa_entry *iter_from(struct seq_file *seq, unsigned int bkt,
				   unsigned int skip)
{
	struct toa_iter *it = seq->private;
	struct net *net = seq_file_net(seq);
	struct hlist_bl_node *pos;
	struct toa_entry *e;

	for (; bkt < TOA_BUCKETS; bkt++, skip = 0) {
		unsigned int n = 0;

		hlist_bl_for_each_entry_rcu(e, pos, &toa_hash[bkt], node) {
			if (!net_eq(read_pnet(&e->id.net), net))
				continue;
			if (n++ < skip)
				continue;
			it->bucket = bkt;
			it->offset = n - 1;
			return e;
		}
	}
	return NULL;
}

static void *toa_seq_start(struct seq_file *seq, loff_t *pos)
	__acquires(RCU)
{
	struct toa_iter *it = seq->private;
	struct toa_entry *e;
	loff_t i;

	rcu_read_lock();
	if (!*pos)
		return SEQ_START_TOKEN;
	if (it->pos && *pos == it->pos)
		return iter_from(seq, it->bucket, it->offset);
	e = iter_from(seq, 0, 0);
	for (i = 1; e && i < *pos; i++)
		e = iter_from(seq, it->bucket, it->offset + 1);
	it->pos = e ? *pos : 0;
	return e;
}

static void *toa_seq_next(struct seq_file *seq, void *v, loff_t *pos)
{
	struct toa_iter *it = seq->private;
	struct toa_entry *e;

	e = v == SEQ_START_TOKEN ? iter_from(seq, 0, 0) :
				   iter_from(seq, it->bucket, it->offset + 1);
	++*pos;
	it->pos = e ? *pos : 0;
	return e;
}

static void toa_seq_stop(struct seq_file *seq, void *v)
	__releases(RCU)
{
	rcu_read_unlock();
}

static int toa_seq_show(struct seq_file *seq, void *v)
{
	const struct toa_entry *e = v;
	struct in6_addr peer;
	struct toa_found f;

	if (v == SEQ_START_TOKEN) {
		seq_puts(seq, "cookie local_port remote client kind flags\n");
		return 0;
	}
	seq_printf(seq, "%llu %u ", e->id.cookie, ntohs(e->id.lport));
	entry_peer(e, &peer);
	if (ipv6_addr_v4mapped(&peer))
		seq_printf(seq, "%pI4:%u ", &peer.s6_addr32[3], ntohs(e->id.rport));
	else
		seq_printf(seq, "[%pI6c]:%u ", &peer, ntohs(e->id.rport));
	entry_found(e, &f);
	if (f.flags & TOA_E_NAT64)
		seq_printf(seq, "[%pI6c]:%u", &f.addr.v6, ntohs(f.port));
	else
		seq_printf(seq, "%pI4:%u", &f.addr.v4, ntohs(f.port));
	seq_printf(seq, " %u %s\n", f.kind,
		   f.flags & TOA_E_UNTRUSTED ? "untrusted" :
		   f.flags & TOA_E_TRUSTED ? "trusted" : "-");
	return 0;
}

const struct seq_operations toa_table_seq_ops = {
	.start = toa_seq_start,
	.next = toa_seq_next,
	.stop = toa_seq_stop,
	.show = toa_seq_show,
};

int toa_table_init(void)
{
	toa_hash = kvcalloc(TOA_BUCKETS, sizeof(*toa_hash), GFP_KERNEL);
	if (!toa_hash)
		return -ENOMEM;
	/*
	 * Own caches for the exact object sizes. SLUB may still merge them with
	 * other caches of those sizes (SLAB_MERGE_DEFAULT), so slab counts are
	 * read from /sys/kernel/slab/toa_entry{,_wide} (aliases when merged),
	 * and entry_alloc / entry_free count our objects exactly.
	 */
	toa_cache = kmem_cache_create("toa_entry", sizeof(struct toa_entry), 0,
				      0, NULL);
	toa_cache_wide = kmem_cache_create("toa_entry_wide",
					   sizeof(struct toa_entry_wide), 0, 0,
					   NULL);
	if (!toa_cache || !toa_cache_wide) {
		kmem_cache_destroy(toa_cache);
		kmem_cache_destroy(toa_cache_wide);
		kvfree(toa_hash);
		return -ENOMEM;
	}
	return 0;
}

/* Called once no hook can run any more. */
void toa_table_exit(void)
{
	unsigned int i;

	for (i = 0; i < TOA_BUCKETS; i++) {
		struct hlist_bl_head *b = &toa_hash[i];
		struct hlist_bl_node *pos, *tmp;
		struct toa_entry *e;
		unsigned long irqf;

		local_irq_save(irqf);
		hlist_bl_lock(b);
		hlist_bl_for_each_entry_safe(e, pos, tmp, b, node) {
			hlist_bl_del_rcu(&e->node);
			call_rcu(&e->rcu, entry_free_rcu);
		}
		hlist_bl_unlock(b);
		local_irq_restore(irqf);
	}
	/* entry_free_rcu() must have run before the cache and counters go. */
	rcu_barrier();
	kmem_cache_destroy(toa_cache);
	kmem_cache_destroy(toa_cache_wide);
	kvfree(toa_hash);
}
