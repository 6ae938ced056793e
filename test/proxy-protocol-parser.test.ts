// The PROXY protocol parser against the spec (haproxy doc/proxy-protocol.txt),
// the inputs npm's parsers got wrong (test/fixtures/proxy-protocol/library-evaluation.mjs),
// header bytes arriving in any split, and a fuzz of random and mutated headers.
import { describe, expect, it } from 'vitest';
import { encodeProxyHeader, parseProxyHeader, V2_SIGNATURE } from '../src/proxy-protocol/index';
import type { ParseResult } from '../src/proxy-protocol/index';
import { formatIPv6, parseIPv6 } from '../src/proxy-protocol/address';
import { crc32c } from '../src/proxy-protocol/crc32c';

const FUZZ = Number(process.env.PP_FUZZ_COUNT ?? 100_000);

const v2 = (verCmd: number, fam: number, body: Buffer): Buffer => {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(body.length);
  return Buffer.concat([V2_SIGNATURE, Buffer.from([verCmd, fam]), len, body]);
};
const tlv = (type: number, value: Buffer): Buffer => Buffer.concat([Buffer.from([type, value.length >> 8, value.length & 255]), value]);
const V4_BODY = Buffer.from([192, 0, 2, 1, 198, 51, 100, 2, 0x30, 0x39, 0x01, 0xbb]);
const ok = (r: ParseResult) => {
  if (r.status !== 'ok') throw new Error(`expected ok, got ${JSON.stringify(r)}`);
  return r;
};
const reason = (r: ParseResult) => (r.status === 'error' ? r.reason : r.status);

describe('v1', () => {
  it('reads TCP4 and TCP6 lines and says where the header ends', () => {
    const text = 'PROXY TCP4 192.0.2.1 198.51.100.2 12345 443\r\nGET /';
    const r = ok(parseProxyHeader(Buffer.from(text)));
    expect(r.length).toBe(text.indexOf('GET'));
    expect(r.header).toEqual({
      version: 1, command: 'PROXY', protocol: 'TCP4',
      source: { address: '192.0.2.1', port: 12345, family: 'IPv4' },
      destination: { address: '198.51.100.2', port: 443, family: 'IPv4' },
    });
    const r6 = ok(parseProxyHeader(Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:7 2001:db8::1 65535 0\r\n')));
    // formatted as Node formats remoteAddress
    expect(r6.header.source).toEqual({ address: '2001:db8::7', port: 65535, family: 'IPv6' });
    expect(r6.header.destination?.port).toBe(0);
  });

  it('takes UNKNOWN (short and long form) as "use the connection\'s endpoints"', () => {
    for (const line of ['PROXY UNKNOWN\r\n', 'PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n']) {
      const r = ok(parseProxyHeader(Buffer.from(line)));
      expect(r.length).toBe(line.length);
      expect(r.header).toEqual({ version: 1, command: 'LOCAL', protocol: 'UNKNOWN' });
    }
  });

  it.each([
    ['address 999.1.1.1', 'PROXY TCP4 999.1.1.1 198.51.100.2 12345 443\r\n', 'malformed'],
    ['leading zero in an address', 'PROXY TCP4 192.0.2.01 198.51.100.2 12345 443\r\n', 'malformed'],
    ['port 70000', 'PROXY TCP4 192.0.2.1 198.51.100.2 70000 443\r\n', 'malformed'],
    ['port with a leading zero', 'PROXY TCP4 192.0.2.1 198.51.100.2 0123 443\r\n', 'malformed'],
    ['IPv6 address under TCP4', 'PROXY TCP4 2001:db8::1 198.51.100.2 1 443\r\n', 'malformed'],
    ['IPv4 address under TCP6', 'PROXY TCP6 192.0.2.1 2001:db8::1 1 443\r\n', 'malformed'],
    ['IPv6 zone', 'PROXY TCP6 fe80::1%eth0 2001:db8::1 1 443\r\n', 'malformed'],
    ['two colons twice', 'PROXY TCP6 2001::db8::1 2001:db8::1 1 443\r\n', 'malformed'],
    ['bare LF', 'PROXY TCP4 192.0.2.1 198.51.100.2 12345 443\n', 'malformed'],
    ['CR without LF', 'PROXY TCP4 192.0.2.1 198.51.100.2 12345 443\rX', 'malformed'],
    ['two spaces', 'PROXY TCP4  192.0.2.1 198.51.100.2 12345 443\r\n', 'malformed'],
    ['missing destination port', 'PROXY TCP4 192.0.2.1 198.51.100.2 12345\r\n', 'malformed'],
    ['extra field', 'PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n', 'malformed'],
    ['TCP5', 'PROXY TCP5 192.0.2.1 198.51.100.2 12345 443\r\n', 'malformed'],
    ['lower-case keyword', 'proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n', 'not-proxy'],
    ['NUL in the line', 'PROXY TCP4 192.0.2.1\0 198.51.100.2 1 2\r\n', 'malformed'],
    ['line over 107 bytes', `PROXY UNKNOWN ${'f'.repeat(120)}\r\n`, 'oversized'],
    ['HTTP request', 'GET / HTTP/1.1\r\n\r\n', 'not-proxy'],
    ['"PROXY" without the space', 'PROXYTCP4 1.1.1.1 1.1.1.1 1 1\r\n', 'not-proxy'],
  ])('refuses %s', (_what, text, why) => {
    expect(reason(parseProxyHeader(Buffer.from(text, 'latin1')))).toBe(why);
  });

  it('a 107-byte line is the longest accepted', () => {
    const at = (n: number) => `PROXY UNKNOWN ${'f'.repeat(n - 16)}\r\n`;
    expect(at(107)).toHaveLength(107);
    expect(reason(parseProxyHeader(Buffer.from(at(107))))).toBe('ok');
    expect(reason(parseProxyHeader(Buffer.from(at(108))))).toBe('oversized');
  });
});

describe('v2', () => {
  it('reads TCP4 and TCP6 with their ports', () => {
    const r = ok(parseProxyHeader(Buffer.concat([v2(0x21, 0x11, V4_BODY), Buffer.from('rest')])));
    expect(r.length).toBe(28);
    expect(r.header.source).toEqual({ address: '192.0.2.1', port: 12345, family: 'IPv4' });
    expect(r.header.destination).toEqual({ address: '198.51.100.2', port: 443, family: 'IPv4' });
    const h = encodeProxyHeader({ version: 2, source: { address: '2001:db8::7', port: 1 }, destination: { address: '::ffff:192.0.2.9', port: 2 } });
    const r6 = ok(parseProxyHeader(h));
    expect(r6.header.source?.address).toBe('2001:db8::7');
    expect(r6.header.destination?.address).toBe('::ffff:192.0.2.9');
  });

  it('LOCAL discards the block whatever its family and length', () => {
    for (const [fam, body] of [[0x00, Buffer.alloc(0)], [0x11, V4_BODY], [0x21, Buffer.alloc(40)]] as const) {
      const r = ok(parseProxyHeader(v2(0x20, fam, body)));
      expect(r.header).toEqual({ version: 2, command: 'LOCAL', protocol: 'UNSPEC' });
      expect(r.length).toBe(16 + body.length);
    }
  });

  it('PROXY with UNSPEC or UNIX addresses means "use the connection\'s endpoints"', () => {
    expect(ok(parseProxyHeader(v2(0x21, 0x00, Buffer.alloc(0)))).header.command).toBe('LOCAL');
    expect(ok(parseProxyHeader(v2(0x21, 0x31, Buffer.alloc(216)))).header.protocol).toBe('UNIX');
  });

  it.each([
    ['version 1', v2(0x11, 0x11, V4_BODY), 'malformed'],
    ['version 3', v2(0x31, 0x11, V4_BODY), 'malformed'],
    ['command 2', v2(0x22, 0x11, V4_BODY), 'malformed'],
    ['family 4', v2(0x21, 0x41, V4_BODY), 'malformed'],
    ['transport 3', v2(0x21, 0x13, V4_BODY), 'malformed'],
    ['UDP on a stream connection', v2(0x21, 0x12, V4_BODY), 'malformed'],
    ['length shorter than TCP4 addresses', v2(0x21, 0x11, V4_BODY.subarray(0, 11)), 'bad-length'],
    ['length shorter than TCP6 addresses', v2(0x21, 0x21, Buffer.alloc(35)), 'bad-length'],
    ['length shorter than UNIX addresses', v2(0x21, 0x31, Buffer.alloc(215)), 'bad-length'],
    ['TLV overrunning the header', v2(0x21, 0x11, Buffer.concat([V4_BODY, Buffer.from([0x01, 0x00, 0x09, 0x68])])), 'bad-tlv'],
    ['2 bytes where a TLV needs 3', v2(0x21, 0x11, Buffer.concat([V4_BODY, Buffer.from([0x01, 0x00])])), 'bad-tlv'],
    ['UNIQUE_ID of 129 bytes', v2(0x21, 0x11, Buffer.concat([V4_BODY, tlv(0x05, Buffer.alloc(129, 1))])), 'bad-tlv'],
    ['CRC32C of 3 bytes', v2(0x21, 0x11, Buffer.concat([V4_BODY, tlv(0x03, Buffer.alloc(3))])), 'bad-tlv'],
    ['wrong CRC32C', v2(0x21, 0x11, Buffer.concat([V4_BODY, tlv(0x03, Buffer.from([1, 2, 3, 4]))])), 'checksum'],
    ['SSL shorter than client + verify', v2(0x21, 0x11, Buffer.concat([V4_BODY, tlv(0x20, Buffer.alloc(4))])), 'bad-tlv'],
    ['SSL sub-TLV overrunning SSL', v2(0x21, 0x11, Buffer.concat([V4_BODY, tlv(0x20, Buffer.from([1, 0, 0, 0, 0, 0x21, 0, 5, 0x54]))])), 'bad-tlv'],
    ['AWS TLV without subtype', v2(0x21, 0x11, Buffer.concat([V4_BODY, tlv(0xea, Buffer.alloc(0))])), 'bad-tlv'],
    ['Azure LINKID of 3 bytes', v2(0x21, 0x11, Buffer.concat([V4_BODY, tlv(0xee, Buffer.from([1, 1, 2, 3]))])), 'bad-tlv'],
    ['GCP PSC ID of 7 bytes', v2(0x21, 0x11, Buffer.concat([V4_BODY, tlv(0xe0, Buffer.alloc(7))])), 'bad-tlv'],
    ['signature with a wrong byte', Buffer.concat([Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x55]), Buffer.alloc(20)]), 'not-proxy'],
  ])('refuses %s', (_what, bytes, why) => {
    expect(reason(parseProxyHeader(bytes))).toBe(why);
  });

  it('refuses a header over maxHeaderBytes as soon as its length is known', () => {
    const big = v2(0x21, 0x11, Buffer.concat([V4_BODY, tlv(0x04, Buffer.alloc(5000))]));
    expect(reason(parseProxyHeader(big.subarray(0, 16), 4096))).toBe('oversized');
    expect(reason(parseProxyHeader(big, 16 + big.length))).toBe('ok');
  });

  it('decodes ALPN, authority, unique ID, SSL with sub-TLVs, NETNS, AWS, Azure, GCP, CRC32C; keeps every TLV raw', () => {
    const ssl = Buffer.concat([
      Buffer.from([0x07, 0, 0, 0, 0]),
      tlv(0x21, Buffer.from('TLSv1.3')), tlv(0x22, Buffer.from('client.example')), tlv(0x23, Buffer.from('TLS_AES_128_GCM_SHA256')),
      tlv(0x24, Buffer.from('ECDSA-SHA256')), tlv(0x25, Buffer.from('EC256')),
    ]);
    const header = encodeProxyHeader({
      version: 2,
      source: { address: '203.0.113.7', port: 50000 },
      destination: { address: '198.51.100.1', port: 443 },
      crc32c: true,
      tlvs: [
        { type: 0x01, value: Buffer.from('h2') },
        { type: 0x02, value: Buffer.from('www.example.com') },
        { type: 0x05, value: Buffer.from('0123456789abcdef') },
        { type: 0x20, value: ssl },
        { type: 0x30, value: Buffer.from('blue') },
        { type: 0xea, value: Buffer.concat([Buffer.from([0x01]), Buffer.from('vpce-08d2bf15fac5001c9')]) },
        { type: 0xee, value: Buffer.from([0x01, 0x78, 0x56, 0x34, 0x12]) },
        { type: 0xe0, value: Buffer.from('0102030405060708', 'hex') },
        { type: 0xf0, value: Buffer.from([9]) },
      ],
    });
    const t = ok(parseProxyHeader(header)).header.tlvs!;
    expect(t.alpn).toBe('h2');
    expect(t.authority).toBe('www.example.com');
    expect(t.uniqueId?.toString()).toBe('0123456789abcdef');
    expect(t.ssl).toMatchObject({
      client: 7, verify: 0, tls: true, certInConnection: true, certInSession: true,
      version: 'TLSv1.3', cn: 'client.example', cipher: 'TLS_AES_128_GCM_SHA256', sigAlg: 'ECDSA-SHA256', keyAlg: 'EC256',
    });
    expect(t.ssl?.raw).toHaveLength(5);
    expect(t.netns).toBe('blue');
    expect(t.awsVpceId).toBe('vpce-08d2bf15fac5001c9');
    expect(t.azureLinkId).toBe(0x12345678);
    expect(t.gcpPscConnectionId).toBe(BigInt('0x0102030405060708').toString());
    expect(t.crc32c).toBe(header.readUInt32BE(header.length - 4));
    expect(t.raw.map((x) => x.type)).toEqual([0x01, 0x02, 0x05, 0x20, 0x30, 0xea, 0xee, 0xe0, 0xf0, 0x03]);
    expect(t.raw[8].value).toEqual(Buffer.from([9]));
  });

  it('CRC32c is the Castagnoli checksum (RFC 3720 check value)', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
  });
});

describe('any split of the bytes', () => {
  const samples = [
    Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n'),
    Buffer.from('PROXY UNKNOWN\r\n'),
    encodeProxyHeader({ version: 2, source: { address: '192.0.2.1', port: 1 }, destination: { address: '192.0.2.2', port: 2 }, tlvs: [{ type: 1, value: Buffer.from('h2') }], crc32c: true }),
    encodeProxyHeader({ version: 2, command: 'LOCAL' }),
  ];
  it('every strict prefix of a valid header is "incomplete", the whole is ok', () => {
    for (const h of samples) {
      for (let n = 0; n < h.length; n++) expect(parseProxyHeader(h.subarray(0, n)).status, `${n} of ${h.length}`).toBe('incomplete');
      expect(ok(parseProxyHeader(h)).length).toBe(h.length);
    }
  });
  it('a prefix that already breaks the signature is refused at once', () => {
    expect(reason(parseProxyHeader(Buffer.from('PROXX')))).toBe('not-proxy');
    expect(reason(parseProxyHeader(Buffer.from([0x0d, 0x0a, 0x0d, 0x0b])))).toBe('not-proxy');
    expect(reason(parseProxyHeader(Buffer.concat([V2_SIGNATURE, Buffer.from([0x31])])))).toBe('malformed');
  });
});

describe('addresses', () => {
  it('IPv6 round trip and Node formatting on 3,000 random addresses with zero runs', async () => {
    const net = await import('node:net');
    const rand = rng(7);
    for (let i = 0; i < 3000; i++) {
      const b = new Uint8Array(16);
      // zero runs of random place and length, so every compression case occurs
      for (let w = 0; w < 8; w++) if (rand() < 0.45) { b[2 * w] = Math.floor(rand() * 256); b[2 * w + 1] = Math.floor(rand() * 256); }
      if (i % 5 === 0) { b.fill(0, 0, 10); b[10] = 0xff; b[11] = 0xff; }
      const text = formatIPv6(b);
      expect(parseIPv6(text), text).toEqual(b);
      expect(parseIPv6(text.toUpperCase()), text).toEqual(b);
      expect(text).toBe(new net.SocketAddress({ address: text, family: 'ipv6' }).address);
    }
  });

  it('formats IPv6 exactly like Node (libuv inet_ntop)', async () => {
    const net = await import('node:net');
    const cases = ['::', '::1', '::2', '1::', '2001:db8::', '::ffff:1.2.3.4', '::1.2.3.4', '::ffff:0:1.2.3.4', '1:0:0:2:0:0:0:3', '1:0:0:2:0:0:3:4',
      '2001:db8:0:1:1:1:1:1', 'fe80::1:0:0:0', '0:0:1::', '::fffe:1.2.3.4', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'];
    for (const text of cases) {
      const bytes = parseIPv6(text)!;
      expect(bytes, text).toBeDefined();
      expect(formatIPv6(bytes), text).toBe(new net.SocketAddress({ address: text, family: 'ipv6' }).address);
    }
  });
});

// Deterministic PRNG so a failure can be replayed (the seed is in the message).
function rng(seed: number) {
  let s = seed >>> 0;
  return () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}

describe(`fuzz: ${FUZZ} headers, random and mutated valid ones`, () => {
  it('never throws, never reads past its input, and a split never changes the answer', () => {
    const seed = Number(process.env.PP_FUZZ_SEED ?? Date.now() % 1e9);
    const rand = rng(seed);
    const int = (n: number) => Math.floor(rand() * n);
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
    const v4 = () => `${int(256)}.${int(256)}.${int(256)}.${int(256)}`;
    const v6 = () => formatIPv6(bytes(16));
    const valid = (): Buffer => {
      const fam = int(2) ? 4 : 6;
      const addr = fam === 4 ? v4 : v6;
      const ends = { source: { address: addr(), port: int(65536) }, destination: { address: addr(), port: int(65536) } };
      if (int(2)) return encodeProxyHeader({ version: 1, ...ends, command: int(10) ? 'PROXY' : 'LOCAL' });
      // valid values for the types whose value the parser checks; any bytes for the others
      const known = [
        () => ({ type: 0x20, value: Buffer.concat([bytes(5), tlv(0x21 + int(5), bytes(int(20)))]) }),
        () => ({ type: 0xe0, value: bytes(8) }),
        () => ({ type: 0xea, value: Buffer.concat([Buffer.from([int(3)]), bytes(int(30))]) }),
        () => ({ type: 0xee, value: Buffer.concat([Buffer.from([0x01]), bytes(4)]) }),
        () => ({ type: [0x01, 0x02, 0x04, 0x05, 0x30, 0x31, 0xf0, 0xff][int(8)], value: bytes(int(40)) }),
      ];
      const tlvs = Array.from({ length: int(5) }, () => known[int(known.length)]());
      return encodeProxyHeader({ version: 2, ...ends, tlvs, crc32c: int(4) === 0, command: int(10) ? 'PROXY' : 'LOCAL' });
    };
    const mutate = (b: Buffer): Buffer => {
      const m = Buffer.from(b);
      const n = 1 + int(4);
      for (let i = 0; i < n; i++) {
        const op = int(4);
        if (op === 0) m[int(m.length)] = int(256);
        else if (op === 1) m[int(m.length)] ^= 1 << int(8);
        else if (op === 2 && m.length > 16) return Buffer.concat([m.subarray(0, int(m.length)), m.subarray(int(m.length))]);
        else m[int(m.length)] = [0x0d, 0x0a, 0x20, 0x3a, 0x2e, 0x30, 0x00, 0xff][int(8)];
      }
      return m;
    };
    const counts: Record<string, number> = {};
    for (let i = 0; i < FUZZ; i++) {
      const kind = int(3);
      const input = kind === 0 ? bytes(int(120)) : kind === 1 ? mutate(valid()) : valid();
      const tail = bytes(int(8));
      const stream = Buffer.concat([input, tail]);
      let whole: ParseResult;
      try {
        whole = parseProxyHeader(stream, 4096);
      } catch (e) {
        throw new Error(`seed ${seed} input ${i} ${input.toString('hex')}: threw ${(e as Error).message}`);
      }
      const key = `${['random', 'mutated', 'valid'][kind]}:${whole.status === 'error' ? whole.reason : whole.status}`;
      counts[key] = (counts[key] ?? 0) + 1;
      // plain checks in the loop: expect() would cost more than the parser
      const fail = (what: string) => { throw new Error(`seed ${seed} #${i} ${stream.toString('hex')}: ${what}`); };
      if (whole.status === 'ok') {
        if (whole.length > stream.length) fail(`length ${whole.length} past the ${stream.length} bytes given`);
        const h = whole.header;
        // anything accepted with addresses re-encodes to an equivalent header
        if (h.command === 'PROXY') {
          const again = parseProxyHeader(encodeProxyHeader({ version: h.version, source: h.source, destination: h.destination }));
          if (again.status !== 'ok' || JSON.stringify([again.header.source, again.header.destination]) !== JSON.stringify([h.source, h.destination])) {
            fail('re-encoded header reads differently');
          }
        }
      }
      if (kind === 2 && whole.status !== 'ok') fail(`valid header refused: ${JSON.stringify(whole)}`);
      // streaming: a random split, fed as the wrapper feeds it (the bytes so far)
      const cut = int(stream.length + 1);
      const first = parseProxyHeader(stream.subarray(0, cut), 4096);
      const verdict = (r: ParseResult) => (r.status === 'error' ? r.reason : r.status);
      if (first.status !== 'incomplete' && verdict(first) !== verdict(whole)) {
        fail(`cut at ${cut}: ${verdict(first)}, whole: ${verdict(whole)}`);
      }
      if (first.status === 'ok' && whole.status === 'ok' && first.length !== whole.length) fail('cut changed the length');
    }
    const valids = Object.entries(counts).filter(([k]) => k.startsWith('valid:'));
    expect(valids).toEqual([['valid:ok', expect.any(Number)]]);
    console.log(`fuzz seed ${seed}: ${FUZZ} headers`, counts);
  });
});

describe('trusted CIDRs', () => {
  it('match by prefix bits, IPv4 also as v4-mapped, compared with net.BlockList on random addresses', async () => {
    const { trustedMatcher } = await import('../src/proxy-protocol/cidr');
    const net = await import('node:net');
    const invalid = (m: string) => new Error(m);
    const cidrs = ['127.0.0.1', '10.0.0.0/8', '192.0.2.128/25', '198.51.100.7/31', '2001:db8::/33', '::1', 'fe80::/10', '0.0.0.0/0'];
    for (const cidr of cidrs) {
      const match = trustedMatcher([cidr], invalid);
      const [addr, bits] = cidr.split('/');
      const v4 = net.isIPv4(addr);
      const bl = new net.BlockList();
      bl.addSubnet(addr, bits === undefined ? (v4 ? 32 : 128) : Number(bits), v4 ? 'ipv4' : 'ipv6');
      const rand = rng(cidrs.indexOf(cidr) + 1);
      const byte = () => Math.floor(rand() * 256);
      const near = (a: string) => a.replace(/\d+$/, () => String(byte())); // same /24 often, to hit prefix edges
      for (let i = 0; i < 2000; i++) {
        const a = i % 3 === 0 ? `${byte()}.${byte()}.${byte()}.${byte()}` : i % 3 === 1 && v4 ? near(addr) : formatIPv6(Uint8Array.from({ length: 16 }, (_, k) => (k < 4 && !v4 ? (parseIPv6(addr)![k] ^ (rand() < 0.5 ? 0 : 1 << Math.floor(rand() * 8))) : byte())));
        const family = net.isIPv4(a) ? 'ipv4' : 'ipv6';
        expect(match(a), `${a} in ${cidr}`).toBe(bl.check(a, family));
        if (family === 'ipv4') expect(match(`::ffff:${a}`), `::ffff:${a} in ${cidr}`).toBe(bl.check(a, 'ipv4'));
      }
    }
  });
  it('refuses what is not a CIDR', async () => {
    const { trustedMatcher } = await import('../src/proxy-protocol/cidr');
    for (const bad of [[], ['10.0.0.0/33'], ['::/129'], ['10.0.0.0/8/1'], ['10.0.0.0/-1'], ['010.0.0.0/8'], ['host.example'], [42]]) {
      expect(() => trustedMatcher(bad, (m) => new Error(m)), JSON.stringify(bad)).toThrow();
    }
  });
});
