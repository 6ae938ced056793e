// SPDX-License-Identifier: GPL-2.0
/*
 * The guest harness's detector self-test: loaded once at the end of every
 * guest run, it makes the kernel print the reports the harness must catch
 * (a WARN, and a KFENCE use-after-free report where the kernel has KFENCE),
 * between two marker lines carrying the run's nonce. The harness then
 * requires exactly those reports between the markers and fails the kernel
 * on any report outside them (test/support/guest/dmesg.mjs).
 *
 * Both are safe by design: WARN only prints and taints; KFENCE guards the
 * freed object's page, reports the access from its fault handler and lets
 * it complete. Init always fails, so the module never stays loaded.
 */
#include <linux/delay.h>
#include <linux/module.h>
#include <linux/slab.h>
#ifdef CONFIG_KFENCE	/* 5.12+; Debian turns it on, sample interval 0 */
#include <linux/kfence.h>
#endif

static char *nonce = "";
module_param(nonce, charp, 0);

#ifdef CONFIG_KFENCE
/*
 * With kfence.sample_interval=1 the next allocation after each 1 ms tick
 * is a KFENCE object; other allocations in the guest may take it first,
 * hence a bounded retry.
 */
static void kfence_use_after_free(void)
{
	char *p = NULL;
	int i;

	for (i = 0; i < 5000; i++) {
		p = kmalloc(32, GFP_KERNEL);
		if (!p || is_kfence_address(p))
			break;
		kfree(p);
		p = NULL;
		usleep_range(200, 400);
	}
	if (!p) {
		pr_warn("toa-selftest %s: no KFENCE allocation after %d tries\n", nonce, i);
		return;
	}
	kfree(p);
	/* the compiler must not see through the freed pointer */
	OPTIMIZER_HIDE_VAR(p);
	pr_warn("toa-selftest %s: read after free: %d\n", nonce, READ_ONCE(*p));
}
#endif

static int __init toa_selftest_init(void)
{
	pr_warn("toa-selftest %s: begin\n", nonce);
	WARN(1, "toa-selftest %s: deliberate WARN\n", nonce);
#ifdef CONFIG_KFENCE
	kfence_use_after_free();
#endif
	pr_warn("toa-selftest %s: end\n", nonce);
	return -ECANCELED;
}
module_init(toa_selftest_init);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("node-toa guest harness: deliberate WARN and KFENCE report for the detector self-test");
