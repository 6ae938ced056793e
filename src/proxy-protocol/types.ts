// Types shared by the parser, the wrapper and lookup(): kept apart so that
// lookup.ts can name them without loading any PROXY protocol code.

/** SSL information a balancer that terminated TLS forwards (PP2_TYPE_SSL, 0x20). */
export interface ProxySslInfo {
  /** The `client` bit field: 0x01 TLS, 0x02 certificate on this connection, 0x04 certificate in the session. */
  readonly client: number;
  /** 0 when the client presented a certificate and it verified, non-zero otherwise. */
  readonly verify: number;
  readonly tls: boolean;
  readonly certInConnection: boolean;
  readonly certInSession: boolean;
  readonly version?: string;
  readonly cn?: string;
  readonly cipher?: string;
  readonly sigAlg?: string;
  readonly keyAlg?: string;
  /** Every sub-TLV as received, decoded or not. */
  readonly raw: readonly ProxyTlv[];
}

export interface ProxyTlv {
  readonly type: number;
  readonly value: Buffer;
}

/** Decoded v2 TLVs; `raw` lists every TLV of the header in order, decoded or not. */
export interface ProxyTlvs {
  /** PP2_TYPE_ALPN (0x01), e.g. 'h2'. */
  readonly alpn?: string;
  /** PP2_TYPE_AUTHORITY (0x02): the host name the client asked for (TLS SNI). */
  readonly authority?: string;
  /** PP2_TYPE_CRC32C (0x03): present only when it matched (a mismatch refuses the header). */
  readonly crc32c?: number;
  /** PP2_TYPE_UNIQUE_ID (0x05): opaque, up to 128 bytes. */
  readonly uniqueId?: Buffer;
  /** PP2_TYPE_SSL (0x20) with its sub-TLVs 0x21-0x25. */
  readonly ssl?: ProxySslInfo;
  /** PP2_TYPE_NETNS (0x30). */
  readonly netns?: string;
  /** AWS (0xEA) subtype PP2_SUBTYPE_AWS_VPCE_ID (0x01): the VPC endpoint ID. */
  readonly awsVpceId?: string;
  /** Azure (0xEE) subtype PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID (0x01): uint32, little-endian on the wire. */
  readonly azureLinkId?: number;
  /** GCP (0xE0): the Private Service Connect connection ID, a uint64 in network order, as a decimal string. */
  readonly gcpPscConnectionId?: string;
  readonly raw: readonly ProxyTlv[];
}
