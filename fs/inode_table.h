#pragma once

// InodeTable: FUSE node ids ↔ Inodes, and st_ino → Inode so that every name
// of one object (hardlinks, a lower name and its copied-up twin) resolves to
// the same node. A node id is the Inode's address (as in libfuse's
// passthrough_hp); the root is FUSE_ROOT_ID. An Inode stays alive while the
// kernel holds a lookup on it or a child names it as parent.
//
// Thread-safety: all methods are thread-safe (one mutex, held briefly).

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "fs/inode.h"

namespace strata::fs {

class InodeTable {
 public:
  explicit InodeTable(std::shared_ptr<Inode> root);
  // Drops the kernel's references (the session is gone).
  ~InodeTable();
  InodeTable(const InodeTable&) = delete;
  InodeTable& operator=(const InodeTable&) = delete;

  const std::shared_ptr<Inode>& root() const { return root_; }

  // The live Inode with identity `st_ino`, or null.
  std::shared_ptr<Inode> Find(uint64_t st_ino);
  // The live Inode with identity `st_ino`, or `fresh` after registering it.
  std::shared_ptr<Inode> FindOrInsert(std::shared_ptr<Inode> fresh);
  // Forgets the identity (the object has no name left): later lookups of
  // `st_ino` make a new Inode; the old one lives on for open files.
  void Detach(const Inode& node);

  // Counts one kernel reference (a lookup reply) and returns the node id.
  uint64_t Ref(const std::shared_ptr<Inode>& node);
  // Drops `n` kernel references (FORGET).
  void Forget(uint64_t nodeid, uint64_t n);
  // The Inode of a node id the kernel holds. REQUIRES: a live node id.
  Inode& Get(uint64_t nodeid) const;
  std::shared_ptr<Inode> GetShared(uint64_t nodeid) const;

  // The node id of `node` if the kernel holds it (0 otherwise).
  uint64_t KnownNodeId(const Inode& node) const;

  size_t size() const;

 private:
  void SweepExpired();  // REQUIRES: mutex_ held

  std::shared_ptr<Inode> root_;
  mutable std::mutex mutex_;
  std::unordered_map<uint64_t, std::weak_ptr<Inode>>
      by_ino_;                         // GUARDED_BY(mutex_)
  size_t sweep_at_ = 1024;             // GUARDED_BY(mutex_)
  std::unordered_set<Inode*> pinned_;  // nlookup > 0; GUARDED_BY(mutex_)
};

}  // namespace strata::fs
