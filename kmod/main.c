// SPDX-License-Identifier: GPL-2.0
/*
 * toa.ko: TCP Option Address. Load balancers (Tencent CLB, LVS FULLNAT,
 * DPVS, ...) that SNAT a connection put the client's address in a TCP option
 * of the handshake; this module makes getpeername()/accept() return it and
 * answers getsockopt(IPPROTO_IP, 4096/4097) as described in uapi/toa.h.
 */
#include <linux/kernel.h>
#include <linux/module.h>
#include "compat.h"
#include "toa_kmod.h"

static int __init toa_init(void)
{
	int ret;

	ret = toa_stats_init();
	if (ret)
		return ret;
	ret = toa_table_init();
	if (ret)
		goto err_stats;
	ret = toa_proc_init();
	if (ret)
		goto err_table;
	ret = toa_hooks_init();
	if (ret)
		goto err_proc;
	ret = toa_sockopt_init();
	if (ret)
		goto err_hooks;
	toa_params_check();
	pr_info("loaded, version %s\n", TOA_VERSION);
	return 0;

err_hooks:
	toa_hooks_exit();
err_proc:
	toa_proc_exit();
err_table:
	toa_table_exit();
err_stats:
	toa_params_exit();
	toa_stats_exit();
	return ret;
}

static void __exit toa_exit(void)
{
	toa_sockopt_exit();
	/* hooks before the namespaces' counters they write */
	toa_hooks_exit();
	toa_proc_exit();
	toa_table_exit();
	toa_params_exit();
	toa_stats_exit();
	pr_info("unloaded\n");
}

module_init(toa_init);
module_exit(toa_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("TCP Option Address (TOA): real client address behind load balancers");
MODULE_AUTHOR("node-toa");
MODULE_VERSION(TOA_VERSION);
