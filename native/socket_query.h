// fd -> real client address: the syscalls, no N-API. Kept free of Node types
// so the logic can be read (and reasoned about) as plain POSIX code.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <cstdint>

namespace toa {

// What decided the answer; binding.cc exports the names JavaScript shows.
enum class Source : int32_t { kPeer = 0, kToa = 1, kToaNat64 = 2 };

// What the caller needs: the full answer (source, balancer, flags) or only
// the client's address, which is cheaper on AF_INET6 sockets.
enum class Want : int32_t { kFull = 0, kAddress = 1 };

// The syscall that failed, so JS can name it in the error (`syscall`).
enum class Syscall : int32_t { kNone = 0, kGetsockopt = 1, kGetpeername = 2 };

struct QueryResult {
  int err = 0;  // errno of the failing syscall, 0 on success
  Syscall failed = Syscall::kNone;
  // Set when the fd is a socket but not a TCP/IPv4/IPv6 stream socket; err
  // is then 0 and domain/type say what it is.
  bool not_tcp = false;
  int domain = 0;
  int type = 0;

  Source source = Source::kPeer;
  uint32_t flags = 0;      // TOA_INFO_F_* from the extended query
  uint32_t opt_kind = 0;   // option kind that carried the address
  sockaddr_storage real{};   // formatted as getpeername on this socket would
  bool has_proxy = false;
  // False when only the address was looked up (Want::kAddress on an
  // AF_INET6 socket): source, flags and proxy are then unknown, not absent.
  bool complete = true;
  sockaddr_storage proxy{};  // the balancer, when a provider told us
};

// Writes family/addr/port into `out` the way getpeername on a socket of
// `sock_family` would: an IPv4 address on an AF_INET6 socket becomes
// ::ffff:a.b.c.d. The one place that formatting rule lives (the extended
// query's answer and getToaInfo() both go through it).
void StoreAddress(sockaddr_storage* out, int sock_family, int family,
                  const uint8_t* addr, uint16_t port_be);

// Runs the cheapest chain that answers for `fd`: node-toa's extended query,
// else the Tencent/DPVS NAT64 query, else getpeername (for Want::kAddress on
// an AF_INET6 socket, getpeername alone). With `check_type` the
// fd is first checked to be a TCP socket (raw fds from users); socket
// objects whose handle is known to be TCP skip that syscall.
QueryResult QuerySocket(int fd, bool check_type, Want want);

}  // namespace toa
