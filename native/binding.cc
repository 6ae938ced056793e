// N-API glue: unpacks arguments, runs the query, hands raw values back.
// Validation and error objects live in TypeScript (src/errors.ts); this file
// only reports numbers and strings.
#include <napi.h>
#include <uv.h>

#include <cstddef>
#include <cstring>

#include "../kmod/uapi/toa.h"
#include "socket_query.h"

namespace {

// Layout of the Int32Array the caller passes to query(). Exported by name
// (META) so src/query.ts reads the indices from here instead of copying them.
enum Meta {
  kErrno, kSyscall, kSource, kFamily, kPort, kFlags, kOptKind,
  kProxyFamily, kProxyPort, kNotTcp, kDomain, kType, kComplete, kMetaLength
};

int FamilyNumber(int af) { return af == AF_INET6 ? 6 : 4; }

// uv_inet_ntop is what Node itself uses for remoteAddress, so the strings
// match it byte for byte (IPv6 zero compression, ::ffff:a.b.c.d).
Napi::Value AddressString(Napi::Env env, const sockaddr_storage& ss,
                          int32_t* family, int32_t* port) {
  char buf[INET6_ADDRSTRLEN];
  if (ss.ss_family == AF_INET6) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    uv_inet_ntop(AF_INET6, &sin6.sin6_addr, buf, sizeof(buf));
    *port = ntohs(sin6.sin6_port);
  } else {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    uv_inet_ntop(AF_INET, &sin.sin_addr, buf, sizeof(buf));
    *port = ntohs(sin.sin_port);
  }
  *family = FamilyNumber(ss.ss_family);
  return Napi::String::New(env, buf);
}

// query(fd, checkType, addressOnly, meta: Int32Array, out: string[]) -> boolean
// true: out[0] = real address, out[1] = proxy address (if meta[kProxyFamily]).
// false: meta[kErrno]/meta[kSyscall], or meta[kNotTcp] with domain/type.
Napi::Value Query(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = info[0].As<Napi::Number>().Int32Value();
  const bool check_type = info[1].As<Napi::Boolean>().Value();
  const auto want = info[2].As<Napi::Boolean>().Value() ? toa::Want::kAddress : toa::Want::kFull;
  auto meta_array = info[3].As<Napi::Int32Array>();
  auto out = info[4].As<Napi::Array>();
  if (meta_array.ElementLength() < kMetaLength) {
    Napi::TypeError::New(env, "meta too short").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int32_t* meta = meta_array.Data();

  const toa::QueryResult r = toa::QuerySocket(fd, check_type, want);
  meta[kErrno] = r.err;
  meta[kSyscall] = static_cast<int32_t>(r.failed);
  meta[kNotTcp] = r.not_tcp;
  meta[kDomain] = r.domain;
  meta[kType] = r.type;
  if (r.err != 0 || r.not_tcp) return Napi::Boolean::New(env, false);

  meta[kSource] = static_cast<int32_t>(r.source);
  meta[kFlags] = static_cast<int32_t>(r.flags);
  meta[kOptKind] = static_cast<int32_t>(r.opt_kind);
  meta[kComplete] = r.complete;
  out.Set(0u, AddressString(env, r.real, &meta[kFamily], &meta[kPort]));
  if (r.has_proxy) {
    out.Set(1u, AddressString(env, r.proxy, &meta[kProxyFamily], &meta[kProxyPort]));
  } else {
    meta[kProxyFamily] = 0;
    meta[kProxyPort] = 0;
  }
  return Napi::Boolean::New(env, true);
}

// Raw getsockopt(IPPROTO_IP, optname) into a caller-sized buffer, for the
// low-level API and tests that check the ABI itself. Returns [errno, len]:
// errno 0 on success, len as the kernel reported it.
Napi::Value RawSockopt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = info[0].As<Napi::Number>().Int32Value();
  const int optname = info[1].As<Napi::Number>().Int32Value();
  auto buf = info[2].As<Napi::Uint8Array>();
  socklen_t len = static_cast<socklen_t>(buf.ByteLength());
  int err = 0;
  if (getsockopt(fd, IPPROTO_IP, optname, buf.Data(), &len) != 0) err = errno;
  auto result = Napi::Array::New(env, 2);
  result.Set(0u, Napi::Number::New(env, err));
  result.Set(1u, Napi::Number::New(env, err ? 0 : len));
  return result;
}

// formatAddress(sockFamily, family, bytes: Uint8Array) -> string: an address
// from a provider's raw answer (AF_* numbers as in struct toa_info), shown
// as getpeername on a socket of sockFamily would show it.
Napi::Value FormatAddress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int sock_family = info[0].As<Napi::Number>().Int32Value();
  const int family = info[1].As<Napi::Number>().Int32Value();
  auto bytes = info[2].As<Napi::Uint8Array>();
  if ((family != AF_INET && family != AF_INET6) || (sock_family != AF_INET && sock_family != AF_INET6) ||
      bytes.ByteLength() < (family == AF_INET6 ? 16u : 4u)) {
    Napi::RangeError::New(env, "bad family or address too short").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  sockaddr_storage ss;
  toa::StoreAddress(&ss, sock_family, family, bytes.Data(), 0);
  int32_t out_family = 0;
  int32_t out_port = 0;
  return AddressString(env, ss, &out_family, &out_port);
}

// Everything JavaScript needs to read struct toa_info, taken from the header
// by the compiler: offsets, size, flags, version, address families.
Napi::Object ToaInfoLayout(Napi::Env env) {
  auto layout = Napi::Object::New(env);
  auto offsets = Napi::Object::New(env);
#define TOA_OFFSET(field) offsets.Set(#field, Napi::Number::New(env, offsetof(toa_info, field)))
  TOA_OFFSET(version);
  TOA_OFFSET(flags);
  TOA_OFFSET(sock_family);
  TOA_OFFSET(real_family);
  TOA_OFFSET(real_port);
  TOA_OFFSET(proxy_port);
  TOA_OFFSET(real_addr);
  TOA_OFFSET(proxy_addr);
  TOA_OFFSET(proxy_family);
  TOA_OFFSET(opt_kind);
#undef TOA_OFFSET
  layout.Set("offsets", offsets);
  layout.Set("size", Napi::Number::New(env, sizeof(toa_info)));
  layout.Set("version", Napi::Number::New(env, TOA_INFO_VERSION));
  auto flags = Napi::Object::New(env);
  flags.Set("PRESENT", Napi::Number::New(env, TOA_INFO_F_PRESENT));
  flags.Set("NAT64", Napi::Number::New(env, TOA_INFO_F_NAT64));
  flags.Set("TRUSTED", Napi::Number::New(env, TOA_INFO_F_TRUSTED));
  flags.Set("UNTRUSTED", Napi::Number::New(env, TOA_INFO_F_UNTRUSTED));
  layout.Set("flags", flags);
  layout.Set("AF_INET", Napi::Number::New(env, AF_INET));
  layout.Set("AF_INET6", Napi::Number::New(env, AF_INET6));
  return layout;
}

Napi::Object MetaIndices(Napi::Env env) {
  auto meta = Napi::Object::New(env);
#define META_INDEX(name) meta.Set(#name, Napi::Number::New(env, k##name))
  META_INDEX(Errno);
  META_INDEX(Syscall);
  META_INDEX(Source);
  META_INDEX(Family);
  META_INDEX(Port);
  META_INDEX(Flags);
  META_INDEX(OptKind);
  META_INDEX(ProxyFamily);
  META_INDEX(ProxyPort);
  META_INDEX(NotTcp);
  META_INDEX(Domain);
  META_INDEX(Type);
  META_INDEX(Complete);
  META_INDEX(MetaLength);
#undef META_INDEX
  return meta;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("query", Napi::Function::New(env, Query, "query"));
  exports.Set("rawSockopt", Napi::Function::New(env, RawSockopt, "rawSockopt"));
  exports.Set("formatAddress", Napi::Function::New(env, FormatAddress, "formatAddress"));
  exports.Set("META", MetaIndices(env));
  // Names of meta[kSource] and meta[kSyscall] values, indexed by the enums.
  auto sources = Napi::Array::New(env);
  sources.Set(static_cast<uint32_t>(toa::Source::kPeer), "peer");
  sources.Set(static_cast<uint32_t>(toa::Source::kToa), "toa");
  sources.Set(static_cast<uint32_t>(toa::Source::kToaNat64), "toa-nat64");
  exports.Set("SOURCES", sources);
  auto syscalls = Napi::Array::New(env);
  syscalls.Set(static_cast<uint32_t>(toa::Syscall::kNone), "");
  syscalls.Set(static_cast<uint32_t>(toa::Syscall::kGetsockopt), "getsockopt");
  syscalls.Set(static_cast<uint32_t>(toa::Syscall::kGetpeername), "getpeername");
  exports.Set("SYSCALLS", syscalls);
  exports.Set("TOA_SO_GET_LOOKUP", Napi::Number::New(env, TOA_SO_GET_LOOKUP));
  exports.Set("TOA_SO_GET_INFO", Napi::Number::New(env, TOA_SO_GET_INFO));
  exports.Set("TOA_INFO", ToaInfoLayout(env));
  exports.Set("TOA_NAT64_PEER_SIZE", Napi::Number::New(env, sizeof(toa_nat64_peer)));
  return exports;
}

}  // namespace

NODE_API_MODULE(toa, Init)
