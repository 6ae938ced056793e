#include "socket_query.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include <atomic>

#include "../kmod/uapi/toa.h"

namespace toa {
namespace {

// Another vendor's module (the only thing that answers TOA_SO_GET_LOOKUP
// but not TOA_SO_GET_INFO) is rare, kernel-wide and loaded once at boot;
// remembering its absence for a moment saves a syscall on every query when
// there is none. node-toa's own providers are always asked: the eBPF backend
// answers per cgroup, so one socket's ENOPROTOOPT says nothing of the next.
// The window bounds how long a vendor module loaded after start-up stays
// unnoticed (it rewrites getpeername for IPv4 clients meanwhile, so only
// NAT64 clients on AF_INET sockets are affected).
constexpr int64_t kAbsentRecheckNs = 250 * 1000 * 1000;

std::atomic<int64_t> nat64_absent_until{0};

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

bool KnownAbsent(const std::atomic<int64_t>& until, int64_t now) {
  return now < until.load(std::memory_order_relaxed);
}

void MarkAbsent(std::atomic<int64_t>& until, int64_t now) {
  until.store(now + kAbsentRecheckNs, std::memory_order_relaxed);
}

bool IsInetFamily(int family) { return family == AF_INET || family == AF_INET6; }

bool CheckTcp(int fd, QueryResult* r) {
  int value = 0;
  socklen_t len = sizeof(value);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &value, &len) != 0) {
    r->err = errno;
    r->failed = Syscall::kGetsockopt;
    return false;
  }
  r->domain = value;
  len = sizeof(value);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &len) != 0) {
    r->err = errno;
    r->failed = Syscall::kGetsockopt;
    return false;
  }
  r->type = value;
  if (!IsInetFamily(r->domain) || r->type != SOCK_STREAM) {
    r->not_tcp = true;
    return false;
  }
  return true;
}

// 1 = answered, 0 = no provider (fall through), -1 = error set in r.
int TryInfo(int fd, QueryResult* r) {
  toa_info info;
  socklen_t len = sizeof(info);
  if (getsockopt(fd, IPPROTO_IP, TOA_SO_GET_INFO, &info, &len) != 0) {
    if (errno == ENOPROTOOPT) return 0;
    r->err = errno;
    r->failed = Syscall::kGetsockopt;
    return -1;
  }
  if (len < sizeof(info) || info.version < 1 ||
      !IsInetFamily(info.sock_family) || !IsInetFamily(info.real_family) ||
      !IsInetFamily(info.proxy_family)) {
    // A provider that answers with something we cannot read must not be
    // trusted to have told the truth; say so instead of guessing.
    r->err = EPROTO;
    r->failed = Syscall::kGetsockopt;
    return -1;
  }
  r->flags = info.flags;
  r->opt_kind = info.opt_kind;
  r->source = (info.flags & TOA_INFO_F_PRESENT) ? Source::kToa : Source::kPeer;
  StoreAddress(&r->real, info.sock_family, info.real_family, info.real_addr,
               info.real_port);
  StoreAddress(&r->proxy, info.sock_family, info.proxy_family,
               info.proxy_addr, info.proxy_port);
  r->has_proxy = (info.flags & TOA_INFO_F_PRESENT) != 0;
  return 1;
}

// Tencent/DPVS ABI. EINVAL = no TOA, EFAULT = TOA but not NAT64: both mean
// getpeername (rewritten by such a module for IPv4 clients) has the answer.
int TryNat64(int fd, QueryResult* r) {
  toa_nat64_peer peer;
  socklen_t len = sizeof(peer);
  if (getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP, &peer, &len) != 0) {
    if (errno == ENOPROTOOPT) return 0;
    if (errno == EINVAL || errno == EFAULT) return 2;
    r->err = errno;
    r->failed = Syscall::kGetsockopt;
    return -1;
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&r->real);
  memset(&r->real, 0, sizeof(r->real));
  sin6->sin6_family = AF_INET6;
  sin6->sin6_addr = peer.saddr;
  sin6->sin6_port = peer.sport;
  r->source = Source::kToaNat64;
  r->flags = TOA_INFO_F_PRESENT | TOA_INFO_F_NAT64;
  return 1;
}

void PeerName(int fd, QueryResult* r) {
  socklen_t len = sizeof(r->real);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&r->real), &len) != 0) {
    r->err = errno;
    r->failed = Syscall::kGetpeername;
    return;
  }
  if (!IsInetFamily(r->real.ss_family)) {
    r->not_tcp = true;
    r->domain = r->real.ss_family;
    r->type = SOCK_STREAM;
  }
  r->source = Source::kPeer;
}

// A pipe or UDP fd fails in protocol-specific ways (EOPNOTSUPP, ENOTCONN...).
// Say what the fd is rather than echo a misleading errno.
QueryResult Classify(int fd, QueryResult r) {
  if (r.err == 0 || r.err == EBADF || r.err == ENOTSOCK) return r;
  QueryResult kind;
  if (!CheckTcp(fd, &kind) && kind.not_tcp) return kind;
  return r;
}

// The provider queries, then getpeername when none of them decided (or the
// `peer` the caller already has).
QueryResult Full(int fd, const QueryResult* peer = nullptr) {
  QueryResult r;
  if (TryInfo(fd, &r) != 0) return r;
  const int64_t now = MonotonicNs();
  if (!KnownAbsent(nat64_absent_until, now)) {
    const int got = TryNat64(fd, &r);
    if (got == 1 || got == -1) return r;
    if (got == 0) MarkAbsent(nat64_absent_until, now);
  }
  if (peer) return *peer;
  PeerName(fd, &r);
  return r;
}

// Address only: on an AF_INET6 socket getpeername is the whole answer,
// because every provider (node-toa's module and eBPF backend, Tencent's and
// DPVS's modules) rewrites it there, NAT64 clients included. One syscall,
// as cheap as Node's remoteAddress; where the provider asks for a syscall
// that fails (no provider), that cost is saved too. Only an AF_INET socket
// can hide a client from getpeername (an IPv6 client cannot be returned in
// a sockaddr_in), so only there the provider is asked.
QueryResult AddressOnly(int fd) {
  QueryResult r;
  PeerName(fd, &r);
  if (r.err != 0 || r.not_tcp) return r;
  if (r.real.ss_family == AF_INET6) {
    r.complete = false;
    return r;
  }
  return Full(fd, &r);
}

QueryResult Run(int fd, Want want) {
  return want == Want::kAddress ? AddressOnly(fd) : Full(fd);
}

}  // namespace

void StoreAddress(sockaddr_storage* out, int sock_family, int family,
                  const uint8_t* addr, uint16_t port_be) {
  memset(out, 0, sizeof(*out));
  if (family == AF_INET && sock_family == AF_INET6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = port_be;
    sin6->sin6_addr.s6_addr[10] = 0xff;
    sin6->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&sin6->sin6_addr.s6_addr[12], addr, 4);
  } else if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(out);
    sin->sin_family = AF_INET;
    sin->sin_port = port_be;
    memcpy(&sin->sin_addr, addr, 4);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = port_be;
    memcpy(&sin6->sin6_addr, addr, 16);
  }
}

QueryResult QuerySocket(int fd, bool check_type, Want want) {
  if (check_type) {
    QueryResult r;
    if (!CheckTcp(fd, &r)) return r;
    return Run(fd, want);
  }
  return Classify(fd, Run(fd, want));
}

}  // namespace toa
