// SPDX-License-Identifier: GPL-2.0
/*
 * TCP option walker. Pure: it sees only the option bytes it is given and the
 * configured kinds, so it is the one place that has to be right about
 * untrusted packet bytes. Rules copied from the kernel's own parser
 * (tcp_parse_options) so TOA never disagrees with TCP about where an option
 * is: EOL ends, NOP is skipped, len < 2 or len > remaining stops the walk,
 * kind and length must both match, first match wins.
 */
#include <linux/kernel.h>
#include <linux/bitops.h>
#include <linux/string.h>
#include <net/tcp.h>
#include "compat.h"
#include "toa_kmod.h"

/*
 * tcp_parse_options() reads kind 254 with ExID 0xF989 (and len >= 4) as a
 * Fast Open cookie only in a SYN; in any other segment those two bytes are a
 * TOA port, 63881. So a SYN's kind-254/0xF989 option is never an address,
 * whatever its length (8: a 4-byte cookie, 20: a 16-byte one).
 */
static bool is_tfo_cookie(const u8 *p, u8 olen, bool syn)
{
	return syn && p[0] == TOA_TFO_KIND && olen >= 4 &&
	       get_unaligned_be16(p + 2) == TOA_TFO_EXID;
}

enum toa_parse_result toa_parse_options(const u8 *opt, unsigned int len,
					const struct toa_kinds *kinds, bool syn,
					struct toa_addr *out)
{
	unsigned int i = 0;

	while (i < len) {
		u8 kind = opt[i];
		u8 olen;

		if (kind == TCPOPT_EOL)
			return TOA_PARSE_NONE;
		if (kind == TCPOPT_NOP) {
			i++;
			continue;
		}
		if (len - i < 2)
			return TOA_PARSE_MALFORMED;
		olen = opt[i + 1];
		if (olen < 2 || olen > len - i)
			return TOA_PARSE_MALFORMED;

		if (is_tfo_cookie(opt + i, olen, syn)) {
			i += olen;
			continue;
		}
		if (olen == TOA_OPTLEN_V4 && test_bit(kind, kinds->v4)) {
			out->port = get_unaligned((__be16 *)(opt + i + 2));
			out->v4 = get_unaligned((__be32 *)(opt + i + 4));
			memset(&out->v6.s6_addr[4], 0, 12);
			out->kind = kind;
			out->is_v6 = false;
			return TOA_PARSE_FOUND;
		}
		if (olen == TOA_OPTLEN_V6 && test_bit(kind, kinds->v6)) {
			out->port = get_unaligned((__be16 *)(opt + i + 2));
			memcpy(&out->v6, opt + i + 4, sizeof(out->v6));
			out->kind = kind;
			out->is_v6 = true;
			return TOA_PARSE_FOUND;
		}
		i += olen;
	}
	return TOA_PARSE_NONE;
}
