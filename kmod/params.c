// SPDX-License-Identifier: GPL-2.0
/*
 * Module parameters, all writable at runtime through
 * /sys/module/toa/parameters/:
 *   ipv4_kinds  option kinds carrying |port|IPv4| (len 8), default "200"
 *   ipv6_kinds  option kinds carrying |port|IPv6| (len 20), default "253"
 *   trusted     balancer/SNAT source CIDRs whose options are honoured,
 *               e.g. "203.0.113.0/24,2001:db8::/32"; empty = all sources
 * Readers run in softirq: kinds are copied word by word (a torn update can
 * only mix old and new kinds for one packet), the trusted list is an
 * RCU-published array.
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

/* "200,254" -> bitmap. EOL/NOP (0, 1) can never name an option. */
static int kinds_set(const char *val, const struct kernel_param *kp)
{
	unsigned long *dst = kp->arg;
	DECLARE_BITMAP(nb, 256);
	char *buf, *cur, *tok;
	unsigned int i;
	int ret = 0;

	bitmap_zero(nb, 256);
	buf = kstrdup(val, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	cur = strim(buf);
	while ((tok = strsep(&cur, ",")) != NULL) {
		u8 k;

		tok = strim(tok);
		if (!*tok)
			continue;
		if (kstrtou8(tok, 0, &k) || k < 2) {
			ret = -EINVAL;
			break;
		}
		__set_bit(k, nb);
	}
	kfree(buf);
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
MODULE_PARM_DESC(ipv4_kinds, "TCP option kinds carrying an IPv4 client, len 8 (default 200; LVS/DPVS use 254)");
module_param_cb(ipv6_kinds, &kinds_ops, kinds.v6, 0644);
MODULE_PARM_DESC(ipv6_kinds, "TCP option kinds carrying an IPv6 client, len 20 (default 253; DPVS uses 254)");

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
		return -EINVAL;
	}
	if (!slash)
		plen = max;
	else if (kstrtou8(slash + 1, 10, &plen) || plen > max)
		return -EINVAL;
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
}

static int trusted_set(const char *val, const struct kernel_param *kp)
{
	struct toa_trusted *nt, *old;
	char *buf, *cur, *tok;
	int ret = 0;

	nt = kzalloc(struct_size(nt, c, TOA_MAX_TRUSTED), GFP_KERNEL);
	buf = kstrdup(val, GFP_KERNEL);
	if (!nt || !buf) {
		kfree(nt);
		kfree(buf);
		return -ENOMEM;
	}
	cur = strim(buf);
	while ((tok = strsep(&cur, ", \n")) != NULL) {
		if (!*tok)
			continue;
		if (nt->n == TOA_MAX_TRUSTED) {
			ret = -E2BIG;
			break;
		}
		ret = parse_cidr(tok, &nt->c[nt->n]);
		if (ret)
			break;
		nt->n++;
	}
	kfree(buf);
	if (ret) {
		kfree(nt);
		return ret;
	}
	/* module_param_cb setters run under kernel_param_lock: one writer */
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

void toa_params_exit(void)
{
	/* hooks are gone; nobody reads the list any more */
	kfree(rcu_replace_pointer(trusted_list, NULL, true));
}
