#include "layerdb/node.h"

#include <cstring>

namespace strata::layerdb {

namespace {

// Record layout, version 1 (all integers little-endian, see docs/format.md):
//   u8 version, u8 flags, Attr (56 bytes: mode uid gid nlink u32, size u64,
//   mtime atime ctime i64, rdev u64), [blob: 16-byte hash + u32 variant],
//   [inline: varint len + bytes], varint len + target,
//   varint xattr count, then count × (varint len + name, varint len + value).
constexpr uint8_t kRecordVersion = 1;
constexpr size_t kAttrBytes = 56;

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

bool GetVarint(std::string_view& in, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    auto b = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

void PutString(std::string& out, std::string_view s) {
  PutVarint(out, s.size());
  out.append(s);
}

template <class T>
void PutFixed(std::string& out, T v) {
  char buf[sizeof v];
  std::memcpy(buf, &v, sizeof v);
  out.append(buf, sizeof v);
}

template <class T>
T GetFixed(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

Error Malformed(const char* what) {
  return Error(EIO, "decode node", std::string("malformed record: ") + what);
}

}  // namespace

namespace internal {
bool ReadString(std::string_view& in, std::string_view& out) {
  uint64_t len;
  if (!GetVarint(in, len) || len > in.size()) return false;
  out = in.substr(0, len);
  in.remove_prefix(len);
  return true;
}
}  // namespace internal

std::string EncodeNode(const Node& node) {
  std::string out;
  out.reserve(2 + kAttrBytes + 24 + node.inline_data.size() +
              node.target.size());
  out.push_back(static_cast<char>(kRecordVersion));
  out.push_back(static_cast<char>(node.flags));
  const Attr& a = node.attr;
  PutFixed(out, a.mode);
  PutFixed(out, a.uid);
  PutFixed(out, a.gid);
  PutFixed(out, a.nlink);
  PutFixed(out, a.size);
  PutFixed(out, a.mtime_ns);
  PutFixed(out, a.atime_ns);
  PutFixed(out, a.ctime_ns);
  PutFixed(out, a.rdev);
  if (node.flags & kFlagBlob) {
    out.append(reinterpret_cast<const char*>(node.blob.hash.data()), 16);
    PutFixed(out, node.blob.variant);
  }
  if (node.flags & kFlagInline) PutString(out, node.inline_data);
  PutString(out, node.target);
  PutVarint(out, node.xattrs.size());
  for (const Xattr& x : node.xattrs) {
    PutString(out, x.name);
    PutString(out, x.value);
  }
  return out;
}

Result<NodeView> NodeView::Parse(std::string_view in) {
  if (in.size() < 2 + kAttrBytes) return Malformed("short");
  if (static_cast<uint8_t>(in[0]) != kRecordVersion)
    return Malformed("unknown record version");
  NodeView v;
  v.flags_ = static_cast<uint8_t>(in[1]);
  const char* p = in.data() + 2;
  v.attr_.mode = GetFixed<uint32_t>(p);
  v.attr_.uid = GetFixed<uint32_t>(p + 4);
  v.attr_.gid = GetFixed<uint32_t>(p + 8);
  v.attr_.nlink = GetFixed<uint32_t>(p + 12);
  v.attr_.size = GetFixed<uint64_t>(p + 16);
  v.attr_.mtime_ns = GetFixed<int64_t>(p + 24);
  v.attr_.atime_ns = GetFixed<int64_t>(p + 32);
  v.attr_.ctime_ns = GetFixed<int64_t>(p + 40);
  v.attr_.rdev = GetFixed<uint64_t>(p + 48);
  in.remove_prefix(2 + kAttrBytes);
  if (v.flags_ & kFlagBlob) {
    if (in.size() < 20) return Malformed("short blob key");
    std::memcpy(v.blob_.hash.data(), in.data(), 16);
    v.blob_.variant = GetFixed<uint32_t>(in.data() + 16);
    in.remove_prefix(20);
  }
  if ((v.flags_ & kFlagInline) && !internal::ReadString(in, v.inline_data_))
    return Malformed("inline data");
  if (!internal::ReadString(in, v.target_)) return Malformed("target");
  uint64_t count;
  if (!GetVarint(in, count) || count > in.size())
    return Malformed("xattr count");
  v.xattr_count_ = static_cast<uint32_t>(count);
  v.xattrs_ = in;
  return v;
}

std::optional<std::string_view> NodeView::GetXattr(
    std::string_view name) const {
  std::optional<std::string_view> found;
  ForEachXattr([&](std::string_view n, std::string_view value) {
    if (n != name) return true;
    found = value;
    return false;
  });
  return found;
}

Result<Node> DecodeNode(std::string_view bytes) {
  STRATA_ASSIGN_OR_RETURN(NodeView v, NodeView::Parse(bytes));
  Node n;
  n.attr = v.attr();
  n.flags = v.flags();
  n.blob = v.blob();
  n.inline_data = std::string(v.inline_data());
  n.target = std::string(v.target());
  bool ok = true;
  uint32_t seen = 0;
  v.ForEachXattr([&](std::string_view name, std::string_view value) {
    n.xattrs.push_back({std::string(name), std::string(value)});
    ++seen;
    return true;
  });
  ok = seen == v.xattr_count();
  if (!ok) return Malformed("xattrs");
  return n;
}

}  // namespace strata::layerdb
