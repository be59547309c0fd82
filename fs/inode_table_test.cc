#include "fs/inode_table.h"

#include <sys/stat.h>

#include <fuse_lowlevel.h>
#include <gtest/gtest.h>

namespace strata::fs {
namespace {

std::shared_ptr<Inode> NewInode(uint64_t ino) {
  return std::make_shared<Inode>(ino, S_IFREG);
}

TEST(InodeTableTest, RootIsFuseRootId) {
  InodeTable t(std::make_shared<Inode>(1, S_IFDIR));
  EXPECT_EQ(t.Ref(t.root()), FUSE_ROOT_ID);
  EXPECT_EQ(&t.Get(FUSE_ROOT_ID), t.root().get());
  t.Forget(FUSE_ROOT_ID, 1000);  // never dropped
  EXPECT_EQ(t.GetShared(FUSE_ROOT_ID), t.root());
}

TEST(InodeTableTest, OneNodePerIdentity) {
  InodeTable t(std::make_shared<Inode>(1, S_IFDIR));
  auto a = t.FindOrInsert(NewInode(42));
  auto b = t.FindOrInsert(NewInode(42));  // a second name of the same file
  EXPECT_EQ(a, b);
  EXPECT_EQ(t.Find(42), a);
  EXPECT_EQ(t.Ref(a), t.Ref(b));
}

TEST(InodeTableTest, ForgetReleasesTheLastKernelReference) {
  InodeTable t(std::make_shared<Inode>(1, S_IFDIR));
  std::weak_ptr<Inode> weak;
  uint64_t id = 0;
  {
    auto a = t.FindOrInsert(NewInode(7));
    weak = a;
    id = t.Ref(a);
    t.Ref(a);
    EXPECT_EQ(t.KnownNodeId(*a), id);
  }
  EXPECT_FALSE(weak.expired());  // the kernel still holds two lookups
  t.Forget(id, 1);
  EXPECT_FALSE(weak.expired());
  t.Forget(id, 1);
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(t.Find(7), nullptr);
}

TEST(InodeTableTest, DetachLetsANewObjectTakeTheIdentity) {
  InodeTable t(std::make_shared<Inode>(1, S_IFDIR));
  auto old_node = t.FindOrInsert(NewInode(9));
  t.Ref(old_node);
  t.Detach(*old_node);  // unlinked, but open
  EXPECT_EQ(t.Find(9), nullptr);
  auto fresh = t.FindOrInsert(NewInode(9));
  EXPECT_NE(fresh, old_node);
  EXPECT_EQ(t.Find(9), fresh);
}

}  // namespace
}  // namespace strata::fs
