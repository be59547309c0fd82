#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <spdlog/spdlog.h>

#include "layerdb/base/sys.h"
#include "layerdb/hash.h"
#include "layerdb/hashing_input.h"
#include "layerdb/importers.h"
#include "layerdb/layer_builder.h"
#include "layerdb/posix_acl.h"
#include "layerdb/tar_import.h"

namespace strata::layerdb {

namespace {

// Files up to this size are read into memory and stored with BlobStore::Put,
// which confirms a dedup hit without writing; larger ones are streamed.
constexpr int64_t kBufferedMaxBytes = 16 << 20;
constexpr size_t kReadChunk = 1 << 20;

using ArchivePtr = std::unique_ptr<archive, decltype(&archive_read_free)>;

// The decompressed tar stream, hashed on the way (the OCI diff_id). It is
// read from the outer archive (format "raw", every filter), and feeds the
// inner archive (format tar, no filter): libarchive parses the tar and we
// still see every uncompressed byte, including padding after the end marker.
struct Uncompressed {
  explicit Uncompressed(archive* o) : outer(o) {}
  archive* outer;
  Sha256 digest;
  std::vector<char> buf = std::vector<char>(kReadChunk);
  bool eof = false;
};

la_ssize_t UncompressedRead(archive* inner, void* data, const void** out) {
  auto* u = static_cast<Uncompressed*>(data);
  if (u->eof) return 0;
  la_ssize_t n = archive_read_data(u->outer, u->buf.data(), u->buf.size());
  if (n < 0) {
    archive_set_error(inner, archive_errno(u->outer), "%s",
                      archive_error_string(u->outer));
    return -1;
  }
  if (n == 0) u->eof = true;
  u->digest.Update(u->buf.data(), static_cast<size_t>(n));
  *out = u->buf.data();
  return n;
}

// Seconds + nanoseconds as i64 nanoseconds, clamped: a hostile header can
// carry a time outside 1678..2262, which would overflow.
// For times before 1970 libarchive gives the fraction with the sign of the
// seconds ("-1.2" is -1 s and 200000000 ns), so it is subtracted then.
int64_t ToNs(int64_t sec, long nsec) {
  int64_t ns;
  int64_t frac = sec < 0 ? -static_cast<int64_t>(nsec) : nsec;
  if (__builtin_mul_overflow(sec, int64_t{1000000000}, &ns) ||
      __builtin_add_overflow(ns, frac, &ns))
    return sec < 0 ? INT64_MIN : INT64_MAX;
  return ns;
}

Error ArchiveError(archive* a, const std::string& label, const char* op) {
  const char* msg = archive_error_string(a);
  int code = archive_errno(a);
  // libarchive reports damaged input as -1, EILSEQ or EINVAL; to a caller
  // they all mean "the input is broken". Read errors of the file itself are
  // reported from HashingInput with their real errno.
  if (code != ENOMEM) code = EIO;
  return Error(code, op, label + ": " + (msg != nullptr ? msg : "unreadable"));
}

Status DrainUncompressed(Uncompressed& u, const std::string& label) {
  while (!u.eof) {
    la_ssize_t n = archive_read_data(u.outer, u.buf.data(), u.buf.size());
    if (n < 0) return ArchiveError(u.outer, label, "read tar");
    if (n == 0) u.eof = true;
    u.digest.Update(u.buf.data(), static_cast<size_t>(n));
  }
  return Ok();
}

class TarLayerReader {
 public:
  TarLayerReader(Store& store, const TarSource& src, const ImportOptions& opts)
      : store_(store),
        src_(src),
        raw_(src.fd, &opts, src.total_bytes),
        outer_(archive_read_new(), &archive_read_free),
        inner_(archive_read_new(), &archive_read_free),
        builder_(src.allow_external_links) {}

  Result<LayerInfo> Run() {
    STRATA_RETURN_IF_ERROR(OpenStreams());
    STRATA_RETURN_IF_ERROR(ReadMembers());
    STRATA_RETURN_IF_ERROR(DrainUncompressed(*uncompressed_, src_.label));
    STRATA_RETURN_IF_ERROR(DrainRaw());
    LayerInfo info;
    info.compressed_digest = raw_.digest.FinishDigest();
    info.diff_id = uncompressed_->digest.FinishDigest();
    info.media_type = src_.media_type;
    info.source = src_.source.empty() ? src_.label : src_.source;
    STRATA_RETURN_IF_ERROR(Verify(info));
    return store_.CommitLayer(builder_, std::move(info));
  }

 private:
  Status OpenStreams() {
    archive* o = outer_.get();
    archive_read_support_filter_all(o);
    archive_read_support_format_raw(o);
    if (archive_read_open(o, &raw_, nullptr, HashingRead, nullptr) !=
        ARCHIVE_OK)
      return RawError("open");
    archive_entry* e;
    int rc = archive_read_next_header(o, &e);
    if (rc == ARCHIVE_EOF)
      return Error(EIO, "read tar", src_.label + ": empty input");
    if (rc != ARCHIVE_OK) return RawError("read tar");
    uncompressed_ = std::make_unique<Uncompressed>(o);
    archive* i = inner_.get();
    archive_read_support_format_tar(i);
    archive_read_support_format_gnutar(i);
    if (archive_read_open(i, uncompressed_.get(), nullptr, UncompressedRead,
                          nullptr) != ARCHIVE_OK)
      return ArchiveError(i, src_.label, "read tar");
    return Ok();
  }

  Error RawError(const char* op) {
    if (raw_.error != 0) return Error(raw_.error, op, src_.label);
    return ArchiveError(outer_.get(), src_.label, op);
  }

  Status ReadMembers() {
    archive_entry* e;
    for (;;) {
      int rc = archive_read_next_header(inner_.get(), &e);
      if (rc == ARCHIVE_EOF) return Ok();
      if (rc == ARCHIVE_WARN) {
        spdlog::warn("{}: {}", src_.label, archive_error_string(inner_.get()));
      } else if (rc != ARCHIVE_OK) {
        return ArchiveError(inner_.get(), src_.label, "read tar");
      }
      Status s = AddMember(e);
      if (!s) return s.error().WithContext(src_.label);
    }
  }

  Status AddMember(archive_entry* e) {
    const char* name = archive_entry_pathname(e);
    if (name == nullptr)
      return Error(EINVAL, "member", "member without a name");
    if (const char* link = archive_entry_hardlink(e); link != nullptr)
      return builder_.AddHardlink(name, link);
    STRATA_ASSIGN_OR_RETURN(Node node, NodeFromEntry(e, name));
    return builder_.Add(name, std::move(node));
  }

  Result<Node> NodeFromEntry(archive_entry* e, const char* name) {
    Node n;
    mode_t type = archive_entry_filetype(e);
    n.attr.mode = static_cast<uint32_t>(type | (archive_entry_perm(e) & 07777));
    int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
    if (uid < 0 || uid > UINT32_MAX || gid < 0 || gid > UINT32_MAX)
      return Error(EINVAL, "member",
                   std::string(name) + ": owner out of range");
    n.attr.uid = static_cast<uint32_t>(uid);
    n.attr.gid = static_cast<uint32_t>(gid);
    n.attr.mtime_ns = ToNs(archive_entry_mtime(e), archive_entry_mtime_nsec(e));
    // 0 = not recorded (most tars carry only mtime); readers show mtime
    // then, and exports do not invent atime/ctime records.
    if (archive_entry_atime_is_set(e))
      n.attr.atime_ns =
          ToNs(archive_entry_atime(e), archive_entry_atime_nsec(e));
    if (archive_entry_ctime_is_set(e))
      n.attr.ctime_ns =
          ToNs(archive_entry_ctime(e), archive_entry_ctime_nsec(e));
    ReadXattrs(e, n);
    STRATA_RETURN_IF_ERROR(ReadAcls(e, name, n));
    switch (type) {
      case AE_IFREG:
        STRATA_RETURN_IF_ERROR(ReadContent(e, name, n));
        break;
      case AE_IFLNK: {
        const char* t = archive_entry_symlink(e);
        n.target = t != nullptr ? t : "";
        n.attr.size = n.target.size();
        break;
      }
      case AE_IFCHR:
      case AE_IFBLK:
        n.attr.rdev =
            makedev(static_cast<unsigned>(archive_entry_rdevmajor(e)),
                    static_cast<unsigned>(archive_entry_rdevminor(e)));
        break;
      case AE_IFDIR:
      case AE_IFIFO:
      case AE_IFSOCK:
        break;
      default:
        return Error(EINVAL, "member",
                     std::string(name) + ": unknown file type");
    }
    return n;
  }

  // ACLs travel as SCHILY.acl.* records, not xattrs; the store keeps them
  // as the kernel's system.posix_acl_* xattrs. A tar made with --xattrs may
  // also carry the numeric binary form as SCHILY.xattr.system.posix_acl_*
  // (GNU tar 1.34 --xattrs --acls writes both): that one wins.
  // The permission bits then follow the access ACL that was kept, as the
  // kernel's do (the group bits are the mask): libarchive has overwritten
  // the header's bits with the SCHILY.acl.access text's user::, group:: and
  // other::, and GNU tar's header has the mask where bsdtar's has group::.
  Status ReadAcls(archive_entry* e, const char* name, Node& n) const {
    auto acls = AclXattrsFromArchiveEntry(e);
    if (!acls) return acls.error().WithContext(name);
    for (Xattr& x : acls->xattrs) {
      bool have = std::any_of(n.xattrs.begin(), n.xattrs.end(),
                              [&](const Xattr& o) { return o.name == x.name; });
      if (!have) n.xattrs.push_back(std::move(x));
    }
    uint32_t mode = acls->mode;
    auto access =
        std::find_if(n.xattrs.begin(), n.xattrs.end(),
                     [](const Xattr& x) { return x.name == kAclAccessXattr; });
    if (access != n.xattrs.end()) {
      auto acl = ParseAclXattr(access->value);
      if (acl) {
        mode = ModeWithAccessAcl(mode, *acl);
      } else {
        spdlog::warn(
            "import tar: unreadable ACL xattr, mode not taken from it: "
            "input={} path={} {}",
            src_.label, name, acl.error().ToString());
      }
    }
    n.attr.mode = (n.attr.mode & S_IFMT) | (mode & 07777);
    return Ok();
  }

  // libarchive writes each xattr twice in PAX (SCHILY.xattr.* and
  // LIBARCHIVE.xattr.*) and reads both back; keep one, the last.
  static void ReadXattrs(archive_entry* e, Node& n) {
    archive_entry_xattr_reset(e);
    const char* xname;
    const void* value;
    size_t size;
    while (archive_entry_xattr_next(e, &xname, &value, &size) == ARCHIVE_OK) {
      std::string v(static_cast<const char*>(value), size);
      auto same = std::find_if(n.xattrs.begin(), n.xattrs.end(),
                               [&](const Xattr& x) { return x.name == xname; });
      if (same != n.xattrs.end()) {
        same->value = std::move(v);
      } else {
        n.xattrs.push_back({xname, std::move(v)});
      }
    }
  }

  Status ReadContent(archive_entry* e, const char* name, Node& n) {
    int64_t size = archive_entry_size(e);
    if (size < 0) size = 0;
    n.attr.size = static_cast<uint64_t>(size);
    if (size <= kBufferedMaxBytes) {
      std::string data;
      data.resize(static_cast<size_t>(size));
      size_t got = 0;
      while (got < data.size()) {
        la_ssize_t r = archive_read_data(inner_.get(), data.data() + got,
                                         data.size() - got);
        if (r < 0)
          return ArchiveError(inner_.get(), std::string(name), "read member");
        if (r == 0) break;
        got += static_cast<size_t>(r);
      }
      if (got != data.size())
        return Error(EIO, "read member", std::string(name) + ": truncated");
      if (n.attr.size <= kInlineMaxBytes) {
        n.flags |= kFlagInline;
        n.inline_data = std::move(data);
        return Ok();
      }
      STRATA_ASSIGN_OR_RETURN(n.blob, store_.blobs().Put(data));
      n.flags |= kFlagBlob;
      return Ok();
    }
    STRATA_ASSIGN_OR_RETURN(BlobStore::Writer w, store_.blobs().NewWriter());
    for (;;) {
      la_ssize_t r =
          archive_read_data(inner_.get(), chunk_.data(), chunk_.size());
      if (r < 0)
        return ArchiveError(inner_.get(), std::string(name), "read member");
      if (r == 0) break;
      STRATA_RETURN_IF_ERROR(
          w.Write(std::string_view(chunk_.data(), static_cast<size_t>(r))));
    }
    if (w.size() != n.attr.size)
      return Error(EIO, "read member", std::string(name) + ": truncated");
    STRATA_ASSIGN_OR_RETURN(n.blob, w.Commit());
    n.flags |= kFlagBlob;
    return Ok();
  }

  Status DrainRaw() {
    while (archive_read_data(outer_.get(), chunk_.data(), chunk_.size()) > 0) {
    }
    // The outer archive stops at the end of the compressed stream; hash any
    // bytes after it too so the digest covers the whole input.
    for (;;) {
      ssize_t n = ::read(raw_.fd, chunk_.data(), chunk_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Error::FromErrno("read", src_.label);
      if (n == 0) return Ok();
      raw_.digest.Update(chunk_.data(), static_cast<size_t>(n));
    }
  }

  Status Verify(const LayerInfo& info) const {
    if (!src_.expect_compressed_digest.empty() &&
        info.compressed_digest != src_.expect_compressed_digest)
      return Error(EIO, "verify layer",
                   src_.label + ": content has digest " +
                       info.compressed_digest + ", expected " +
                       src_.expect_compressed_digest);
    if (!src_.expect_diff_id.empty() && info.diff_id != src_.expect_diff_id)
      return Error(EIO, "verify layer",
                   src_.label + ": uncompressed content has digest " +
                       info.diff_id + ", but the config lists diff_id " +
                       src_.expect_diff_id);
    return Ok();
  }

  Store& store_;
  const TarSource& src_;
  HashingInput raw_;
  ArchivePtr outer_;
  ArchivePtr inner_;
  std::unique_ptr<Uncompressed> uncompressed_;
  LayerBuilder builder_;
  std::vector<char> chunk_ = std::vector<char>(kReadChunk);
};

std::string AbsolutePath(const std::string& path) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

}  // namespace

Result<LayerInfo> ImportTarSource(Store& store, const TarSource& src,
                                  const ImportOptions& opts) {
  TarLayerReader reader(store, src, opts);
  return reader.Run();
}

Result<LayerInfo> ImportTarLayer(Store& store, const std::string& path,
                                 const ImportOptions& opts,
                                 bool allow_external_links) {
  UniqueFd owned;
  TarSource src;
  src.label = path == "-" ? "stdin" : path;
  src.source = "tar:" + (path == "-" ? std::string("-") : AbsolutePath(path));
  src.allow_external_links = allow_external_links;
  if (path == "-") {
    src.fd = STDIN_FILENO;
  } else {
    STRATA_ASSIGN_OR_RETURN(owned, sys::Open(path, O_RDONLY));
    STRATA_ASSIGN_OR_RETURN(struct stat st, sys::Fstat(owned.get()));
    if (S_ISDIR(st.st_mode))
      return Error(EISDIR, "import tar", path + " is a directory");
    src.fd = owned.get();
    src.total_bytes = static_cast<uint64_t>(st.st_size);
  }
  STRATA_ASSIGN_OR_RETURN(UniqueFd lock, store.LockShared());
  return ImportTarSource(store, src, opts);
}

}  // namespace strata::layerdb
