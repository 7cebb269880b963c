/* LD_PRELOAD library for the zero-egress test (tests/integration/egress.cmake): records, and
 * refuses, every attempt of the process to reach a non-loopback address: connect(), sendto(),
 * sendmsg() to an IPv4/IPv6 address outside 127.0.0.0/8 and ::1, and host-name lookups
 * (getaddrinfo, gethostbyname) of names other than localhost. Each attempt appends one line to
 * the file named by $ETNA_EGRESS_LOG. Refusing means nothing leaves the machine even when the
 * test finds a leak. Unix sockets and loopback pass through untouched. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Only Etna's own processes are watched (the test's node, Playwright and Chromium are preloaded
 * too, through the environment, and are not what is under test). */
static int watched(void) {
  static int cached = -1;
  if (cached < 0) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cached = 0;
    if (n > 0) {
      exe[n] = 0;
      const char* base = strrchr(exe, '/');
      base = base ? base + 1 : exe;
      cached = strcmp(base, "etna") == 0;
    }
  }
  return cached;
}

static void record(const char* what, const char* detail) {
  const char* path = getenv("ETNA_EGRESS_LOG");
  if (!path) return;
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  char line[512];
  int n = snprintf(line, sizeof line, "pid %d %s %s\n", (int)getpid(), what, detail ? detail : "");
  if (n > 0) {
    ssize_t w = write(fd, line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
    (void)w;
  }
  close(fd);
}

/* 1 when `addr` is an internet address that is not loopback (the address to refuse). */
static int is_outside(const struct sockaddr* addr, socklen_t len, char* text, size_t text_len) {
  if (!addr) return 0;
  if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    const struct sockaddr_in* a = (const struct sockaddr_in*)addr;
    inet_ntop(AF_INET, &a->sin_addr, text, (socklen_t)text_len);
    return (ntohl(a->sin_addr.s_addr) >> 24) != 127;
  }
  if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6* a = (const struct sockaddr_in6*)addr;
    inet_ntop(AF_INET6, &a->sin6_addr, text, (socklen_t)text_len);
    if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) return 0;
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) return a->sin6_addr.s6_addr[12] != 127;
    return 1;
  }
  return 0;
}

static int is_local_name(const char* name) {
  if (!name) return 1;
  struct in6_addr buf;
  if (inet_pton(AF_INET, name, &buf) == 1 || inet_pton(AF_INET6, name, &buf) == 1) return 1; /* numeric: no lookup */
  if (strcasecmp(name, "localhost") == 0) return 1;
  size_t n = strlen(name);
  return n > 10 && strcasecmp(name + n - 10, ".localhost") == 0;
}

int connect(int fd, const struct sockaddr* addr, socklen_t len) {
  static int (*real)(int, const struct sockaddr*, socklen_t);
  if (!real) real = (int (*)(int, const struct sockaddr*, socklen_t))dlsym(RTLD_NEXT, "connect");
  char text[INET6_ADDRSTRLEN] = "";
  if (watched() && is_outside(addr, len, text, sizeof text)) {
    record("connect", text);
    errno = ENETUNREACH;
    return -1;
  }
  return real(fd, addr, len);
}

ssize_t sendto(int fd, const void* buf, size_t n, int flags, const struct sockaddr* addr, socklen_t len) {
  static ssize_t (*real)(int, const void*, size_t, int, const struct sockaddr*, socklen_t);
  if (!real) real = (ssize_t (*)(int, const void*, size_t, int, const struct sockaddr*, socklen_t))dlsym(RTLD_NEXT, "sendto");
  char text[INET6_ADDRSTRLEN] = "";
  if (watched() && is_outside(addr, len, text, sizeof text)) {
    record("sendto", text);
    errno = ENETUNREACH;
    return -1;
  }
  return real(fd, buf, n, flags, addr, len);
}

ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  static ssize_t (*real)(int, const struct msghdr*, int);
  if (!real) real = (ssize_t (*)(int, const struct msghdr*, int))dlsym(RTLD_NEXT, "sendmsg");
  char text[INET6_ADDRSTRLEN] = "";
  if (watched() && msg && is_outside((const struct sockaddr*)msg->msg_name, msg->msg_namelen, text, sizeof text)) {
    record("sendmsg", text);
    errno = ENETUNREACH;
    return -1;
  }
  return real(fd, msg, flags);
}

int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints, struct addrinfo** res) {
  static int (*real)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
  if (!real) real = (int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**))dlsym(RTLD_NEXT, "getaddrinfo");
  if (watched() && !is_local_name(node)) {
    record("lookup", node);
    return EAI_FAIL;
  }
  return real(node, service, hints, res);
}

struct hostent* gethostbyname(const char* name) {
  static struct hostent* (*real)(const char*);
  if (!real) real = (struct hostent* (*)(const char*))dlsym(RTLD_NEXT, "gethostbyname");
  if (watched() && !is_local_name(name)) {
    record("lookup", name);
    h_errno = HOST_NOT_FOUND;
    return NULL;
  }
  return real(name);
}
