#include "fs/inode_table.h"

#include <vector>

#include <fuse_lowlevel.h>

namespace strata::fs {

InodeTable::InodeTable(std::shared_ptr<Inode> root) : root_(std::move(root)) {
  by_ino_[root_->st_ino] = root_;
}

InodeTable::~InodeTable() {
  std::vector<std::shared_ptr<Inode>> pinned;
  {
    std::lock_guard lock(mutex_);
    for (Inode* node : pinned_)
      pinned.push_back(std::move(node->pin));
    pinned_.clear();
  }
  // Released here, outside the mutex (destructors may run).
}

std::shared_ptr<Inode> InodeTable::Find(uint64_t st_ino) {
  std::lock_guard lock(mutex_);
  auto it = by_ino_.find(st_ino);
  if (it == by_ino_.end()) return nullptr;
  return it->second.lock();
}

std::shared_ptr<Inode> InodeTable::FindOrInsert(std::shared_ptr<Inode> fresh) {
  std::lock_guard lock(mutex_);
  auto& slot = by_ino_[fresh->st_ino];
  if (auto live = slot.lock()) return live;
  slot = fresh;
  if (by_ino_.size() >= sweep_at_) SweepExpired();
  return fresh;
}

void InodeTable::Detach(const Inode& node) {
  std::lock_guard lock(mutex_);
  auto it = by_ino_.find(node.st_ino);
  if (it == by_ino_.end()) return;
  auto live = it->second.lock();
  if (!live || live.get() == &node) by_ino_.erase(it);
}

uint64_t InodeTable::Ref(const std::shared_ptr<Inode>& node) {
  if (node == root_) return FUSE_ROOT_ID;
  std::lock_guard lock(mutex_);
  if (node->nlookup++ == 0) {
    node->pin = node;
    pinned_.insert(node.get());
  }
  return reinterpret_cast<uint64_t>(node.get());
}

void InodeTable::Forget(uint64_t nodeid, uint64_t n) {
  if (nodeid == FUSE_ROOT_ID) return;
  std::shared_ptr<Inode> dropped;  // released after the mutex
  std::lock_guard lock(mutex_);
  Inode* node = reinterpret_cast<Inode*>(nodeid);
  node->nlookup = n >= node->nlookup ? 0 : node->nlookup - n;
  if (node->nlookup == 0) {
    dropped = std::move(node->pin);
    pinned_.erase(node);
  }
}

Inode& InodeTable::Get(uint64_t nodeid) const {
  if (nodeid == FUSE_ROOT_ID) return *root_;
  return *reinterpret_cast<Inode*>(nodeid);
}

std::shared_ptr<Inode> InodeTable::GetShared(uint64_t nodeid) const {
  if (nodeid == FUSE_ROOT_ID) return root_;
  std::lock_guard lock(mutex_);
  Inode* node = reinterpret_cast<Inode*>(nodeid);
  if (node->pin) return node->pin;
  return nullptr;
}

uint64_t InodeTable::KnownNodeId(const Inode& node) const {
  if (&node == root_.get()) return FUSE_ROOT_ID;
  std::lock_guard lock(mutex_);
  return node.nlookup > 0 ? reinterpret_cast<uint64_t>(&node) : 0;
}

size_t InodeTable::size() const {
  std::lock_guard lock(mutex_);
  return by_ino_.size();
}

void InodeTable::SweepExpired() {
  std::erase_if(by_ino_, [](const auto& kv) { return kv.second.expired(); });
  sweep_at_ = std::max<size_t>(1024, by_ino_.size() * 2);
}

}  // namespace strata::fs
