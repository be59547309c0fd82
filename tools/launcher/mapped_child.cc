#include "tools/launcher/mapped_child.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "layerdb/base/unique_fd.h"
#include "tools/launcher/user_namespace.h"

namespace strata::launcher {

namespace {

// An Error crosses the pipe as its code, its op and its detail. The op is a
// string literal of this binary, at the same address in parent and child
// (fork copies the address space), so the pointer itself is sent.
struct WireError {
  int code;
  const char* op;
};

void SendError(int fd, const Error& e) {
  WireError w{e.code(), e.op()};
  (void)!::write(fd, &w, sizeof w);
  (void)!::write(fd, e.detail().data(), e.detail().size());
}

// Everything the child sent, read before waiting for it: a child blocked
// on a full pipe would never exit.
std::string ReadAll(int fd) {
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

Status Outcome(pid_t child, const std::string& wire) {
  int ws = 0;
  while (::waitpid(child, &ws, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) return Ok();
  WireError w{};
  if (wire.size() < sizeof w)
    return Error(EIO, "child",
                 WIFSIGNALED(ws)
                     ? "killed by signal " + std::to_string(WTERMSIG(ws))
                     : "failed without a reason");
  std::memcpy(&w, wire.data(), sizeof w);
  return Error(w.code, w.op, wire.substr(sizeof w));
}

// fork(2), the child killed when the caller dies (also if it already has).
Result<pid_t> ForkDyingWithParent() {
  pid_t parent = ::getpid();
  pid_t child = ::fork();
  if (child < 0) return Error::FromErrno("fork", "child");
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(1);
  }
  return child;
}

}  // namespace

Status RunInChild(const std::function<Status()>& body,
                  const std::function<void()>& meanwhile) {
  int err[2];
  if (::pipe2(err, O_CLOEXEC) != 0) return Error::FromErrno("pipe", "child");
  UniqueFd err_r(err[0]), err_w(err[1]);
  STRATA_ASSIGN_OR_RETURN(pid_t child, ForkDyingWithParent());
  if (child == 0) {
    Status s = body();
    if (!s) SendError(err_w.get(), s.error());
    _exit(s ? 0 : 1);
  }
  err_w.Reset();
  if (meanwhile) meanwhile();
  return Outcome(child, ReadAll(err_r.get()));
}

Status RunAsMappedRoot(const std::function<Status()>& body) {
  STRATA_ASSIGN_OR_RETURN(auto ns, MappedUserNamespace::Create());
  if (auto maps = ns.WaitForMaps(); !maps) return maps.error();
  return RunInChild(
      [&]() -> Status {
        STRATA_RETURN_IF_ERROR(ns.Enter());
        return body();
      },
      nullptr);
}

}  // namespace strata::launcher
