#pragma once

// The FUSE_HANDLE_KILLPRIV_V2 handshake, which libfuse 3.14 can neither
// negotiate (its fuse_common.h has no capability for it) nor report (its
// do_write keeps only FUSE_WRITE_CACHE of write_flags, its do_open drops
// open_flags). We read requests and write replies through libfuse's custom
// io (fuse_session_custom_io, 3.14) and do both at the wire:
//  - the INIT reply gets FUSE_HANDLE_KILLPRIV_V2 when the kernel offers it.
//    The kernel then sets SB_NOSEC (fs/fuse/inode.c process_init_reply), so
//    a file found without suid/sgid/security.capability gets S_NOSEC and
//    write(2) stops asking GETXATTR security.capability every time
//    (file_remove_privs). In return the server kills those privileges
//    when a request says so.
//  - a WRITE with FUSE_WRITE_KILL_SUIDGID and an OPEN/CREATE with
//    FUSE_OPEN_KILL_SUIDGID are remembered for the worker thread that
//    processes them (libfuse's loop reads and processes a request on one
//    thread), and answered by RequestKillsPrivs(). SETATTR's
//    FATTR_KILL_SUIDGID needs no help: libfuse passes it as
//    FUSE_SET_ATTR_KILL_SUID (the same bit).
// The kernel sets these flags only for callers without CAP_FSETID.
//
// FUSE passthrough (FUSE_PASSTHROUGH, protocol 7.40, Linux 6.9) is newer
// than libfuse 3.14 too, and done here the same way:
//  - the INIT request says whether the kernel offers it
//    (PassthroughOffered); when the session wants it (WantPassthrough,
//    from the init callback) the INIT reply gets the flag and a stack depth
//    of 1 (our backing files are on ordinary filesystems);
//  - an OPEN or CREATE reply gets FOPEN_PASSTHROUGH and a backing id when
//    the thread that answers it said so (AnswerWithBacking; see
//    fs/backing_files.h for the ids).
//
// Thread-safety: the hooks run on libfuse's worker threads concurrently.

#include <sys/types.h>
#include <sys/uio.h>

namespace strata::fs::wire {

// The fuse_custom_io callbacks (same signatures); userdata is unused.
ssize_t Read(int fd, void* buf, size_t len, void* userdata);
ssize_t Writev(int fd, struct iovec* iov, int count, void* userdata);
ssize_t SpliceSend(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                   unsigned int flags, void* userdata);

// True while this thread processes a WRITE, OPEN or CREATE whose caller
// lacks CAP_FSETID, on a mount that negotiated FUSE_HANDLE_KILLPRIV_V2.
bool RequestKillsPrivs();

// Whether the kernel's INIT offered FUSE_PASSTHROUGH.
bool PassthroughOffered();

// From the init callback: answer INIT with FUSE_PASSTHROUGH.
void WantPassthrough();

// The OPEN or CREATE this thread answers next uses backing file
// `backing_id` (registered with FUSE_DEV_IOC_BACKING_OPEN).
void AnswerWithBacking(int backing_id);

}  // namespace strata::fs::wire
