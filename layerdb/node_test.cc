#include "layerdb/node.h"

#include <gtest/gtest.h>

namespace strata::layerdb {
namespace {

TEST(NodeTest, RoundTripsEveryField) {
  Node n;
  n.attr.mode = S_IFREG | 04755;
  n.attr.uid = 1000;
  n.attr.gid = 100;
  n.attr.size = 5;
  n.attr.mtime_ns = -1234567890123;
  n.attr.rdev = 0x0103;
  n.flags = kFlagInline;
  n.inline_data = "hello";
  n.xattrs = {{"security.capability", std::string("\x01\x00\x00\x02", 4)},
              {"user.a", ""}};
  auto d = DecodeNode(EncodeNode(n));
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(d->attr.mode, n.attr.mode);
  EXPECT_EQ(d->attr.mtime_ns, n.attr.mtime_ns);
  EXPECT_EQ(d->attr.rdev, n.attr.rdev);
  EXPECT_EQ(d->inline_data, "hello");
  EXPECT_EQ(d->xattrs, n.xattrs);
}

TEST(NodeTest, ViewFindsXattrWithoutCopy) {
  Node n;
  n.attr.mode = S_IFLNK | 0777;
  n.target = "usr/lib";
  n.xattrs = {{"user.x", "1"}, {"user.y", "2"}};
  std::string enc = EncodeNode(n);
  auto v = NodeView::Parse(enc);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->target(), "usr/lib");
  EXPECT_EQ(v->GetXattr("user.y"), "2");
  EXPECT_FALSE(v->GetXattr("user.z"));
}

TEST(NodeTest, TruncatedRecordIsEio) {
  Node n;
  n.attr.mode = S_IFREG | 0644;
  n.flags = kFlagBlob;
  std::string enc = EncodeNode(n);
  for (size_t len = 0; len < enc.size(); ++len) {
    auto v = NodeView::Parse(std::string_view(enc).substr(0, len));
    ASSERT_FALSE(v) << len;
    EXPECT_EQ(v.error().code(), EIO);
  }
}

}  // namespace
}  // namespace strata::layerdb
