#include "layerdb/tree_reader.h"

#include <string>
#include <utility>

#include "layerdb/keys.h"
#include "layerdb/mem_tree.h"

namespace strata::layerdb {

namespace {

// A dirent value is ino (u64) ‖ type (u8); a dirseq value adds the name.
constexpr size_t kDirentValueBytes = 9;
// tree ‖ parent ‖ seq
constexpr size_t kDirSeqKeyBytes = 20;
// Readdir offsets are dirseq numbers, which are u32 (tree_io.cc).
constexpr uint64_t kEndOffset = UINT32_MAX;

// Only built on failure, so the read path stays allocation-free.
Error Damaged(const char* op, TreeId tree, uint64_t ino, const char* what) {
  return Error(EIO, op,
               "tree " + std::to_string(tree) + " inode " +
                   std::to_string(ino) + ": " + what);
}

keys::KeyBuf NodeKey(TreeId tree, uint64_t ino) {
  keys::KeyBuf k;
  k.PutBE64(tree);
  k.PutBE64(ino);
  return k;
}

}  // namespace

TreeReader::TreeReader(const Store& store, lmdb::Txn txn)
    : store_(&store),
      txn_(std::move(txn)),
      nodes_(store.index().dbis().nodes),
      dirents_(store.index().dbis().dirents),
      dirseq_(store.index().dbis().dirseq) {}

Result<TreeReader> TreeReader::Begin(const Store& store) {
  STRATA_ASSIGN_OR_RETURN(lmdb::Txn txn, store.index().BeginRead());
  return TreeReader(store, std::move(txn));
}

Result<std::optional<std::string_view>> TreeReader::NodeBytes(
    TreeId tree, uint64_t ino) const {
  return txn_.Get(nodes_, NodeKey(tree, ino).view());
}

Result<NodeView> TreeReader::RequireNode(TreeId tree, uint64_t ino,
                                         const char* op) const {
  STRATA_ASSIGN_OR_RETURN(auto bytes, NodeBytes(tree, ino));
  if (!bytes) return Error(ENOENT, op);
  auto node = NodeView::Parse(*bytes);
  if (!node) return Damaged(op, tree, ino, "malformed node record");
  return *node;
}

Result<std::optional<Entry>> TreeReader::Lookup(TreeId tree, uint64_t dir,
                                                std::string_view name) const {
  if (name.size() > kMaxNameLen) return Error(ENAMETOOLONG, "lookup");
  keys::KeyBuf k;
  k.PutBE64(tree);
  k.PutBE64(dir);
  k.Append(name);
  STRATA_ASSIGN_OR_RETURN(auto value, txn_.Get(dirents_, k.view()));
  if (!value) return std::optional<Entry>();
  if (value->size() < kDirentValueBytes)
    return Damaged("lookup", tree, dir, "malformed directory entry");
  uint64_t ino = keys::DirentIno(*value);
  // The entry exists, so its node must: absence here is damage, not ENOENT.
  auto node = RequireNode(tree, ino, "lookup");
  if (!node) {
    if (node.error().code() != ENOENT) return node.error();
    return Damaged("lookup", tree, dir, "entry names a missing inode");
  }
  return std::optional<Entry>(Entry{ino, node->attr()});
}

Result<std::optional<Attr>> TreeReader::GetAttr(TreeId tree,
                                                uint64_t ino) const {
  STRATA_ASSIGN_OR_RETURN(auto node, GetNode(tree, ino));
  if (!node) return std::optional<Attr>();
  return std::optional<Attr>(node->attr());
}

Result<std::optional<NodeView>> TreeReader::GetNode(TreeId tree,
                                                    uint64_t ino) const {
  STRATA_ASSIGN_OR_RETURN(auto bytes, NodeBytes(tree, ino));
  if (!bytes) return std::optional<NodeView>();
  auto node = NodeView::Parse(*bytes);
  if (!node) return Damaged("get node", tree, ino, "malformed node record");
  return std::optional<NodeView>(*node);
}

Status TreeReader::ReadDir(TreeId tree, uint64_t dir, uint64_t offset,
                           FunctionRef<bool(const DirEntry&)> fn) const {
  STRATA_ASSIGN_OR_RETURN(NodeView d, RequireNode(tree, dir, "readdir"));
  if (!d.attr().is_dir()) return Error(ENOTDIR, "readdir");
  if (offset >= kEndOffset) return Ok();
  keys::KeyBuf k;
  k.PutBE64(tree);
  k.PutBE64(dir);
  // The entry with seq s resumes at offset s, so offset o starts at seq o+1:
  // one MDB_SET_RANGE seek, O(log n) whatever the offset.
  k.PutBE32(static_cast<uint32_t>(offset + 1));
  const std::string_view prefix = k.view().substr(0, 16);
  STRATA_ASSIGN_OR_RETURN(lmdb::Cursor cur, lmdb::Cursor::Open(txn_, dirseq_));
  STRATA_ASSIGN_OR_RETURN(auto kv, cur.SeekRange(k.view()));
  while (kv && kv->first.size() == kDirSeqKeyBytes &&
         kv->first.starts_with(prefix)) {
    const std::string_view value = kv->second;
    if (value.size() <= kDirentValueBytes)
      return Damaged("readdir", tree, dir, "malformed readdir record");
    DirEntry e;
    e.name = value.substr(kDirentValueBytes);
    e.ino = keys::DirentIno(value);
    e.type = keys::DirentType(value);
    e.next_offset = keys::GetBE32(kv->first.substr(16));
    if (!fn(e)) break;
    STRATA_ASSIGN_OR_RETURN(kv, cur.Next());
  }
  return Ok();
}

Status TreeReader::ReadDirPlus(
    TreeId tree, uint64_t dir, uint64_t offset,
    FunctionRef<bool(const DirEntry&, const Attr&)> fn) const {
  Status probe;
  auto with_attr = [&](const DirEntry& e) {
    auto node = RequireNode(tree, e.ino, "readdirplus");
    if (!node) {
      probe =
          node.error().code() == ENOENT
              ? Damaged("readdirplus", tree, dir, "entry names a missing inode")
              : node.error();
      return false;
    }
    return fn(e, node->attr());
  };
  STRATA_RETURN_IF_ERROR(ReadDir(tree, dir, offset, with_attr));
  return probe;
}

Result<std::optional<std::string_view>> TreeReader::ReadLink(
    TreeId tree, uint64_t ino) const {
  STRATA_ASSIGN_OR_RETURN(auto node, GetNode(tree, ino));
  if (!node) return std::optional<std::string_view>();
  if (!node->attr().is_symlink()) return Error(EINVAL, "readlink");
  return std::optional<std::string_view>(node->target());
}

Status TreeReader::ListXattrs(
    TreeId tree, uint64_t ino,
    FunctionRef<bool(std::string_view name)> fn) const {
  STRATA_ASSIGN_OR_RETURN(NodeView node, RequireNode(tree, ino, "listxattr"));
  uint32_t seen = 0;
  bool stopped = false;
  node.ForEachXattr([&](std::string_view name, std::string_view) {
    ++seen;
    stopped = !fn(name);
    return !stopped;
  });
  if (!stopped && seen != node.xattr_count())
    return Damaged("listxattr", tree, ino, "malformed xattr list");
  return Ok();
}

Result<std::optional<std::string_view>> TreeReader::GetXattr(
    TreeId tree, uint64_t ino, std::string_view name) const {
  STRATA_ASSIGN_OR_RETURN(NodeView node, RequireNode(tree, ino, "getxattr"));
  return node.GetXattr(name);
}

Result<FileContent> TreeReader::OpenContent(TreeId tree, uint64_t ino) const {
  STRATA_ASSIGN_OR_RETURN(NodeView node, RequireNode(tree, ino, "open"));
  if (node.attr().is_dir()) return Error(EISDIR, "open");
  if (!node.attr().is_reg()) return Error(EINVAL, "open", "not a regular file");
  FileContent c;
  c.size = node.attr().size;
  if (node.flags() & kFlagBlob) {
    auto fd = store_->blobs().OpenBlob(node.blob());
    if (!fd) {
      if (fd.error().code() != ENOENT) return fd.error();
      return Error(EIO, "open",
                   "tree " + std::to_string(tree) + " inode " +
                       std::to_string(ino) + ": blob " + node.blob().ToHex() +
                       " is missing");
    }
    c.fd = std::move(*fd);
    return c;
  }
  if (node.flags() & kFlagInline) {
    c.inline_data.assign(node.inline_data());
    return c;
  }
  if (c.size != 0) return Damaged("open", tree, ino, "file has no content");
  return c;
}

}  // namespace strata::layerdb
