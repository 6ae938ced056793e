export { lookup, lookupFd } from './lookup';
export type { AddressFamily, LookupResult, LookupSource, PeerAddress } from './lookup';
export { getNat64Peer, getToaInfo } from './raw';
export type { ToaInfo } from './raw';
export type { SystemErrorCode, ToaError, ToaErrorCode, ToaSystemError } from './errors';
export { supported } from './native';
