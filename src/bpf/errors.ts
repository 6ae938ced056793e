// Errors of the eBPF backend's loader: every failure carries a code a script
// can switch on, and a message that says what to do about it.

export type BpfErrorCode =
  | 'ERR_INVALID_ARG_VALUE'
  | 'ERR_TOA_BPF_PERMISSION_DENIED'
  | 'ERR_TOA_BPF_NO_LOADER'
  | 'ERR_TOA_BPF_LOADER'
  | 'ERR_TOA_BPF_UNTRUSTED_ROOT'
  | 'ERR_TOA_BPF_SERVICE'
  | 'ERR_TOA_BPF_NO_OBJECT'
  | 'ERR_TOA_BPF_NO_CGROUP2'
  | 'ERR_TOA_BPF_NO_BPFFS'
  | 'ERR_TOA_BPF_KERNEL_TOO_OLD'
  | 'ERR_TOA_BPF_KMOD_LOADED'
  | 'ERR_TOA_BPF_LOAD'
  | 'ERR_TOA_BPF_ATTACH'
  | 'ERR_TOA_BPF_ALREADY_ATTACHED'
  | 'ERR_TOA_BPF_NOT_LOADED';

export class BpfError extends Error {
  readonly code: BpfErrorCode;
  /** libbpf's and the verifier's output, when loading failed */
  readonly detail?: string;

  constructor(code: BpfErrorCode, message: string, detail?: string) {
    super(message);
    this.name = 'BpfError';
    this.code = code;
    if (detail !== undefined) this.detail = detail;
  }
}
