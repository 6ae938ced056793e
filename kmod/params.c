// SPDX-License-Identifier: GPL-2.0
/*
 * Module parameters, all writable at runtime through
 * /sys/module/toa/parameters/:
 *   ipv4_kinds  option kinds carrying |port|IPv4| (len 8), default "200"
 *   ipv6_kinds  option kinds carrying |port|IPv6| (len 20), default "253"
 *   trusted     balancer/SNAT source CIDRs whose options are honoured,
 *               e.g. "203.0.113.0/24,2001:db8::/32"; empty = all sources
 *   ports       local ports where TOA is honoured; empty = all ports
 * Readers run in softirq: kinds are copied word by word (a torn update can
 * only mix old and new kinds for one packet); the trusted list and the port
 * map are RCU-published.
 *
 * Setters and getters run under kernel_param_lock(THIS_MODULE) (sysfs and
 * insmod arguments alike), and the sysfs files are removed only after
 * module_exit returns: toa_params_exit() retires the lists under that lock,
 * so no setter can install a list afterwards, and frees them after an RCU
 * grace period, so no getter still reads them.
 */
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/slab.h>
#include <linux/inet.h>
#include <linux/string.h>
#include <linux/ctype.h>
#include <net/ipv6.h>
#include "toa_kmod.h"

#define TOA_MAX_TRUSTED	64

/* set by toa_params_exit() under kernel_param_lock: setters refuse */
static bool params_gone;

static struct toa_kinds kinds = {
	.v4 = { [200 / BITS_PER_LONG] = 1UL << (200 % BITS_PER_LONG) },
	.v6 = { [253 / BITS_PER_LONG] = 1UL << (253 % BITS_PER_LONG) },
};

void toa_params_kinds(struct toa_kinds *out)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(kinds.v4); i++) {
		out->v4[i] = READ_ONCE(kinds.v4[i]);
		out->v6[i] = READ_ONCE(kinds.v6[i]);
	}
}

/*
 * Splits "a,b , c" into tokens and hands each to @one; an empty value is an
 * empty list. A bad token is named in the kernel log: the write itself can
 * only return EINVAL.
 */
static int for_each_token(const char *val, const char *what, const char *seps,
			  int (*one)(char *tok, void *ctx), void *ctx)
{
	char *buf, *cur, *tok;
	int ret = 0;

	buf = kstrdup(val, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	cur = strim(buf);
	while ((tok = strsep(&cur, seps)) != NULL) {
		tok = strim(tok);
		if (!*tok)
			continue;
		ret = one(tok, ctx);
		if (ret) {
			pr_err("%s: bad %s \"%s\"\n", what,
			       !strcmp(what, "trusted") ? "range" :
			       !strcmp(what, "ports") ? "port" : "kind", tok);
			break;
		}
	}
	kfree(buf);
	return ret;
}

/* EOL/NOP (0, 1) can never name an option; decimal only ("010" is 10) */
static int kind_token(char *tok, void *ctx)
{
	u8 k;

	if (kstrtou8(tok, 10, &k) || k < 2)
		return -EINVAL;
	__set_bit(k, ctx);
	return 0;
}

static int kinds_set(const char *val, const struct kernel_param *kp)
{
	unsigned long *dst = kp->arg;
	DECLARE_BITMAP(nb, 256);
	unsigned int i;
	int ret;

	if (params_gone)
		return -ENODEV;
	bitmap_zero(nb, 256);
	ret = for_each_token(val, kp->name, ",", kind_token, nb);
	if (ret)
		return ret;
	for (i = 0; i < BITS_TO_LONGS(256); i++)
		WRITE_ONCE(dst[i], nb[i]);
	return 0;
}

static int kinds_get(char *buffer, const struct kernel_param *kp)
{
	const unsigned long *src = kp->arg;
	unsigned int k;
	int n = 0;

	for_each_set_bit(k, src, 256)
		n += scnprintf(buffer + n, PAGE_SIZE - n, "%s%u", n ? "," : "", k);
	n += scnprintf(buffer + n, PAGE_SIZE - n, "\n");
	return n;
}

static const struct kernel_param_ops kinds_ops = {
	.set = kinds_set,
	.get = kinds_get,
};

module_param_cb(ipv4_kinds, &kinds_ops, kinds.v4, 0644);
MODULE_PARM_DESC(ipv4_kinds, "TCP option kinds carrying an IPv4 client, len 8, decimal (default 200; LVS/DPVS use 254)");
module_param_cb(ipv6_kinds, &kinds_ops, kinds.v6, 0644);
MODULE_PARM_DESC(ipv6_kinds, "TCP option kinds carrying an IPv6 client, len 20, decimal (default 253; DPVS uses 254)");

/* ---- trusted ---- */

struct toa_cidr {
	struct in6_addr addr;	/* IPv4 ranges in the first 4 bytes */
	u8 plen;
	bool is_v6;
};

struct toa_trusted {
	struct rcu_head rcu;
	unsigned int n;
	struct toa_cidr c[];
};

static struct toa_trusted __rcu *trusted_list;

static bool prefix_match(const u8 *a, const u8 *b, unsigned int plen)
{
	unsigned int bytes = plen / 8, bits = plen % 8;

	if (memcmp(a, b, bytes))
		return false;
	if (!bits)
		return true;
	return !((a[bytes] ^ b[bytes]) & (0xff00 >> bits));
}

int toa_params_trusted(bool is_v6, const void *saddr)
{
	const struct toa_trusted *t;
	int ret = -1;
	unsigned int i;

	rcu_read_lock();
	t = rcu_dereference(trusted_list);
	if (t && t->n) {
		ret = 0;
		for (i = 0; i < t->n; i++) {
			if (t->c[i].is_v6 == is_v6 &&
			    prefix_match(t->c[i].addr.s6_addr, saddr, t->c[i].plen)) {
				ret = 1;
				break;
			}
		}
	}
	rcu_read_unlock();
	return ret;
}

static int parse_cidr(char *tok, struct toa_cidr *c)
{
	char *slash = strchr(tok, '/');
	const char *end;
	unsigned int max;
	u8 plen;

	if (slash)
		*slash = '\0';
	memset(c, 0, sizeof(*c));
	if (in4_pton(tok, -1, c->addr.s6_addr, -1, &end) && !*end) {
		c->is_v6 = false;
		max = 32;
	} else if (in6_pton(tok, -1, c->addr.s6_addr, -1, &end) && !*end) {
		c->is_v6 = true;
		max = 128;
	} else {
		goto bad;
	}
	if (!slash)
		plen = max;
	else if (kstrtou8(slash + 1, 10, &plen) || plen > max)
		goto bad;
	/* ::ffff:a.b.c.d/96+n names IPv4 sources: store it as the IPv4 range
	 * it means, since IPv4 packets are matched against IPv4 ranges */
	if (c->is_v6 && plen >= 96 && ipv6_addr_v4mapped(&c->addr)) {
		memmove(c->addr.s6_addr, &c->addr.s6_addr[12], 4);
		memset(&c->addr.s6_addr[4], 0, 12);
		c->is_v6 = false;
		plen -= 96;
	}
	c->plen = plen;
	return 0;
bad:
	if (slash)
		*slash = '/';	/* the log names the token as written */
	return -EINVAL;
}

static int cidr_token(char *tok, void *ctx)
{
	struct toa_trusted *nt = ctx;

	if (nt->n == TOA_MAX_TRUSTED)
		return -E2BIG;
	if (parse_cidr(tok, &nt->c[nt->n]))
		return -EINVAL;
	nt->n++;
	return 0;
}

static int trusted_set(const char *val, const struct kernel_param *kp)
{
	struct toa_trusted *nt, *old;
	int ret;

	if (params_gone)
		return -ENODEV;
	nt = kzalloc(struct_size(nt, c, TOA_MAX_TRUSTED), GFP_KERNEL);
	if (!nt)
		return -ENOMEM;
	ret = for_each_token(val, "trusted", ", \n", cidr_token, nt);
	if (ret) {
		kfree(nt);
		return ret;
	}
	old = rcu_replace_pointer(trusted_list, nt, true);
	if (old)
		kfree_rcu(old, rcu);
	return 0;
}

static int trusted_get(char *buffer, const struct kernel_param *kp)
{
	const struct toa_trusted *t;
	unsigned int i;
	int n = 0;

	rcu_read_lock();
	t = rcu_dereference(trusted_list);
	for (i = 0; t && i < t->n; i++) {
		const struct toa_cidr *c = &t->c[i];

		if (c->is_v6)
			n += scnprintf(buffer + n, PAGE_SIZE - n, "%s%pI6c/%u",
				       n ? "," : "", &c->addr, c->plen);
		else
			n += scnprintf(buffer + n, PAGE_SIZE - n, "%s%pI4/%u",
				       n ? "," : "", &c->addr, c->plen);
	}
	rcu_read_unlock();
	n += scnprintf(buffer + n, PAGE_SIZE - n, "\n");
	return n;
}

static const struct kernel_param_ops trusted_ops = {
	.set = trusted_set,
	.get = trusted_get,
};

module_param_cb(trusted, &trusted_ops, NULL, 0644);
MODULE_PARM_DESC(trusted, "Comma-separated balancer/SNAT source CIDRs whose TOA is honoured (IPv4 and IPv6); empty = every source");

/* ---- ports ---- */

struct toa_ports {
	struct rcu_head rcu;
	DECLARE_BITMAP(map, 65536);
};

/* NULL: every local port */
static struct toa_ports __rcu *ports_map;

bool toa_params_port_ok(__be16 port)
{
	const struct toa_ports *p;
	bool ok;

	/* lockless: the common configuration (no list) costs one load */
	if (!rcu_access_pointer(ports_map))
		return true;
	rcu_read_lock();
	p = rcu_dereference(ports_map);
	ok = !p || test_bit(ntohs(port), p->map);
	rcu_read_unlock();
	return ok;
}

static int port_token(char *tok, void *ctx)
{
	struct toa_ports *p = ctx;
	u16 port;

	if (kstrtou16(tok, 10, &port) || !port)
		return -EINVAL;
	__set_bit(port, p->map);
	return 0;
}

static int ports_set(const char *val, const struct kernel_param *kp)
{
	struct toa_ports *np, *old;
	int ret;

	if (params_gone)
		return -ENODEV;
	np = kzalloc(sizeof(*np), GFP_KERNEL);
	if (!np)
		return -ENOMEM;
	ret = for_each_token(val, "ports", ", \n", port_token, np);
	if (ret || bitmap_empty(np->map, 65536)) {
		kfree(np);
		if (ret)
			return ret;
		np = NULL;	/* empty list: every port */
	}
	old = rcu_replace_pointer(ports_map, np, true);
	if (old)
		kfree_rcu(old, rcu);
	return 0;
}

static int ports_get(char *buffer, const struct kernel_param *kp)
{
	const struct toa_ports *p;
	unsigned int port;
	int n = 0;

	rcu_read_lock();
	p = rcu_dereference(ports_map);
	if (p)
		for_each_set_bit(port, p->map, 65536)
			n += scnprintf(buffer + n, PAGE_SIZE - n, "%s%u", n ? "," : "", port);
	rcu_read_unlock();
	n += scnprintf(buffer + n, PAGE_SIZE - n, "\n");
	return n;
}

static const struct kernel_param_ops ports_ops = {
	.set = ports_set,
	.get = ports_get,
};

module_param_cb(ports, &ports_ops, NULL, 0644);
MODULE_PARM_DESC(ports, "Comma-separated local ports where TOA is honoured (other services keep their real peers); empty = every port");

void toa_params_check(void)
{
	bool empty;

	rcu_read_lock();
	empty = !rcu_dereference(trusted_list) || !rcu_dereference(trusted_list)->n;
	rcu_read_unlock();
	if (empty)
		pr_warn("trusted is empty: TOA is believed from every source; set it to the balancers' ranges\n");
}

void toa_params_exit(void)
{
	struct toa_trusted *t;
	struct toa_ports *p;

	kernel_param_lock(THIS_MODULE);
	params_gone = true;
	t = rcu_replace_pointer(trusted_list, NULL, true);
	p = rcu_replace_pointer(ports_map, NULL, true);
	kernel_param_unlock(THIS_MODULE);
	/* readers that found the old pointers are done after a grace period */
	synchronize_rcu();
	kfree(t);
	kfree(p);
}
