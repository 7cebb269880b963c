#include "support/raw_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

namespace etna::test {

int connect_loopback(int port, int guard_seconds) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{guard_seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

bool send_all(int fd, const std::string& s) {
  if (fd < 0) return false;
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

std::string read_all(int fd) {
  std::string out;
  if (fd < 0) return out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

RawSocket::RawSocket(int port, int guard_seconds) : fd_(connect_loopback(port, guard_seconds)) {}

RawSocket::~RawSocket() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<std::string> RawSocket::read_until_closed() const {
  std::string out;
  if (fd_ < 0) return std::nullopt;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0 || errno == ECONNRESET) return out;
    return std::nullopt;  // EAGAIN: the guard expired before the server closed
  }
}

std::string RawSocket::read_response() const {
  std::string out;
  if (fd_ < 0) return out;
  char buf[4096];
  for (;;) {
    const auto head_end = out.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      const auto cl = out.find("Content-Length: ");
      const std::size_t len = cl == std::string::npos || cl > head_end ? 0 : std::stoul(out.substr(cl + 16));
      if (out.size() >= head_end + 4 + len) return out;
    }
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

std::string exchange(int port, const std::string& request, int guard_seconds) {
  RawSocket s(port, guard_seconds);
  if (!s.connected() || !s.send_text(request)) return "";
  return s.read_all();
}

}  // namespace etna::test
