#include "tools/launcher/terminal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <optional>

namespace strata::launcher {

namespace {

std::atomic<bool> g_winch{false};

void OnWinch(int) {
  g_winch = true;
}

void CopyWindowSize(int from, int to) {
  struct winsize ws {};
  if (::ioctl(from, TIOCGWINSZ, &ws) == 0) ::ioctl(to, TIOCSWINSZ, &ws);
}

// Writes all of `n` bytes (the peer is a terminal: short writes happen).
bool WriteAll(int fd, const char* buf, ssize_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, buf, static_cast<size_t>(n));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    buf += w;
    n -= w;
  }
  return true;
}

// stdin's terminal in raw mode for as long as this lives: every key,
// ^C included, goes to the container's terminal, whose line discipline
// turns it into the container's signal.
class RawMode {
 public:
  RawMode() {
    if (::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    struct termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~RawMode() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  RawMode(const RawMode&) = delete;
  RawMode& operator=(const RawMode&) = delete;

 private:
  struct termios saved_ {};
  bool active_ = false;
};

}  // namespace

Result<PtyPair> OpenPty(int size_of) {
  PtyPair p;
  p.master.Reset(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!p.master.valid()) return Error::FromErrno("open", "/dev/ptmx");
  if (::unlockpt(p.master.get()) != 0)
    return Error::FromErrno("unlockpt", "/dev/ptmx");
  // TIOCGPTPEER opens the peer without a path lookup (Linux 4.13).
  p.slave.Reset(
      ::ioctl(p.master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!p.slave.valid()) return Error::FromErrno("open", "pty peer");
  CopyWindowSize(size_of, p.master.get());
  return p;
}

Status AttachTerminal(int slave) {
  if (::ioctl(slave, TIOCSCTTY, 0) != 0)
    return Error::FromErrno("ioctl", "TIOCSCTTY");
  for (int fd = 0; fd < 3; ++fd)
    if (::dup2(slave, fd) < 0) return Error::FromErrno("dup2", "terminal");
  return Ok();
}

// One byte of payload and room for one fd: the message both ends use.
struct FdMessage {
  char byte = 't';
  struct iovec iov {};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr msg {};

  FdMessage() {
    iov = {&byte, 1};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
  }
  FdMessage(const FdMessage&) = delete;
  FdMessage& operator=(const FdMessage&) = delete;
};

Status SendFd(int sock, int fd) {
  FdMessage m;
  struct cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  if (::sendmsg(sock, &m.msg, MSG_NOSIGNAL) != 1)
    return Error::FromErrno("sendmsg", "terminal");
  return Ok();
}

Result<std::optional<UniqueFd>> ReceiveFd(int sock) {
  FdMessage m;
  ssize_t n;
  while ((n = ::recvmsg(sock, &m.msg, MSG_CMSG_CLOEXEC)) < 0 &&
         errno == EINTR) {
  }
  if (n < 0) return Error::FromErrno("recvmsg", "terminal");
  struct cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  if (n == 0 || c == nullptr || c->cmsg_type != SCM_RIGHTS)
    return std::optional<UniqueFd>();
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return std::optional<UniqueFd>(UniqueFd(fd));
}

void ProxyTerminal(int master) {
  RawMode raw;
  struct sigaction sa {};
  sa.sa_handler = OnWinch;  // no SA_RESTART: poll wakes up for it
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGWINCH, &sa, nullptr);
  CopyWindowSize(STDIN_FILENO, master);
  struct pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {master, POLLIN, 0}};
  char buf[16384];
  while (true) {
    if (g_winch.exchange(false)) CopyWindowSize(STDIN_FILENO, master);
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) {
      ssize_t n = ::read(master, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      // EIO: every process of the container closed its side.
      if (n <= 0 || !WriteAll(STDOUT_FILENO, buf, n)) break;
    }
    if (fds[0].revents != 0) {
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fds[0].fd = -1;  // stdin ended: keep showing output
        continue;
      }
      if (!WriteAll(master, buf, n)) break;
    }
  }
  sa.sa_handler = SIG_DFL;
  ::sigaction(SIGWINCH, &sa, nullptr);
}

}  // namespace strata::launcher
