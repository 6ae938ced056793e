// node-toa/proxy-protocol: PROXY protocol v1/v2 behind the same API as TOA
// (lookup(), socket.realRemoteAddress...).
export { acceptProxyProtocol, proxyProtocolCounters, ProxyProtocolHandle } from './accept';
export type { AcceptProxyProtocolOptions, ProxyProtocolCounters, ProxyProtocolMode, ProxyProtocolRefusal } from './accept';
export { encodeProxyHeader } from './encode';
export type { EncodeOptions, EndpointSpec } from './encode';
export { parseProxyHeader, V1_MAX_BYTES, V2_MAX_BYTES, V2_SIGNATURE } from './parse';
export type { ParseResult, ProxyHeader, ProxyRefusal } from './parse';
export { proxyResultOf } from './registry';
export type { ProxySslInfo, ProxyTlv, ProxyTlvs } from './types';
