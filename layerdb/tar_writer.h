#pragma once

// The tar side of the exporters (internal to layerdb; the public entry
// points are in exporters.h):
//  - TarStream: one libarchive writer (PAX, optionally gzip)
//    whose output bytes go to a callback;
//  - WriteTreeAsTar: writes a loaded tree (a view or a layer) as tar
//    members, in name order, to one or more TarStreams at once;
//  - OutputFile: where a finished export lands, atomically.
//
// Output is deterministic: the same tree gives the same bytes (no invented
// timestamps, no user or group names, no gzip header time, no padding to a
// 10240-byte record).
//
// Thread-safety: none; one exporting thread per object.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "layerdb/base/error.h"
#include "layerdb/base/unique_fd.h"
#include "layerdb/blob_store.h"
#include "layerdb/mem_tree.h"
#include "layerdb/store.h"

struct archive;
struct archive_entry;

namespace strata::layerdb {

enum class TarCompression { kNone, kGzip };

// gzip level of OCI layer blobs: zlib's default (6), which is also what
// docker, containerd and umoci write. Measured with gzip(1) on a 530 MB tar
// of /usr/bin and /usr/share/doc (Debian 12): level 1 gave 245.7 MB in
// 18.7 s, level 6 227.3 MB in 44.1 s. A layer is compressed once and
// downloaded many times, so 7.5% fewer bytes are worth 2.4x the CPU.
inline constexpr int kGzipLevel = 6;

// Receives the archive's output bytes. Its error is reported as the
// export's error (with its errno), not libarchive's paraphrase of it.
using TarConsumer = std::function<Status(std::string_view)>;

class TarStream {
 public:
  // A PAX tar writer: a PAX header where ustar cannot hold a field
  // (sub-second times, atime, ctime, xattrs, ACLs, long names, large ids);
  // xattrs as SCHILY.xattr.* only; names that are valid UTF-8 written as
  // they are and others as bytes (hdrcharset=BINARY), whatever the
  // caller's locale.
  // `label` names the output in errors. Errors: ENOMEM, EINVAL.
  static Result<std::unique_ptr<TarStream>> Open(TarConsumer out,
                                                 TarCompression compression,
                                                 std::string label);
  ~TarStream();
  TarStream(const TarStream&) = delete;
  TarStream& operator=(const TarStream&) = delete;
  TarStream(TarStream&&) = delete;
  TarStream& operator=(TarStream&&) = delete;

  // `what` names the member in errors. Errors: the consumer's, or EIO.
  Status WriteHeader(archive_entry* entry, const std::string& what);
  Status WriteData(std::string_view data, const std::string& what);
  // Writes the end-of-archive blocks (and the gzip trailer). The stream is
  // spent afterwards.
  Status Finish();

 private:
  TarStream(TarConsumer out, std::string label);
  static ssize_t WriteCallback(archive* a, void* self, const void* buf,
                               size_t len);
  Error ToError(const char* op, const std::string& what) const;

  TarConsumer out_;
  std::string label_;
  archive* archive_ = nullptr;
  std::optional<Error> out_error_;  // the consumer's, kept for ToError
};

// What kind of tree is written; a view is a merged image, a layer a
// changeset with whiteouts (`.wh.NAME`), opaque markers (`.wh..wh..opq`),
// implicit directories (written as plain directories) and hardlinks to
// lower layers.
enum class TreeKind { kView, kLayer };

// Writes every member of `root` to each stream (one walk; each blob is read
// once). Names have no "./" prefix; directories end in "/"; the root has
// no member, except in a layer whose root carries attributes ("./").
// Sockets cannot be stored in tar and are skipped with a warning.
// Errors: ENOENT (a blob is missing), EIO (a blob is truncated or a record
// is inconsistent), plus any stream's error; the detail names the blob and
// the path ("blob <hex> of /usr/bin/x: ...").
Status WriteTreeAsTar(const TreeNode& root, TreeKind kind,
                      const BlobStore& blobs,
                      std::span<TarStream* const> streams);

// A file written by temp file + fsync + rename, so that a failed export
// leaves no partial output; or stdout, for "-". The destructor removes an
// uncommitted temp file.
class OutputFile {
 public:
  // Creates a temp file beside `path` (mode 0666 less the umask).
  // Errors: as open(2) on the directory of `path`.
  static Result<OutputFile> Create(const std::string& path);
  OutputFile(OutputFile&& o) noexcept;
  OutputFile& operator=(OutputFile&&) = delete;
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  ~OutputFile();

  // Errors: as write(2), naming the output.
  Status Write(std::string_view data);
  // fsync, close and rename into place (and fsync the directory). Nothing
  // for stdout. Errors: as fsync(2), rename(2).
  Status Commit();
  // Like Commit, but renames to `final_path` (which may only be known once
  // the content is written: a digest).
  Status CommitAs(const std::string& final_path);
  const std::string& path() const { return path_; }

 private:
  OutputFile(std::string path, std::string temp, UniqueFd fd)
      : path_(std::move(path)), temp_(std::move(temp)), fd_(std::move(fd)) {}
  std::string path_;
  std::string temp_;  // empty for stdout or once committed
  UniqueFd fd_;
};

// Takes the store's shared lock for the length of an export, so that gc
// cannot sweep the blobs it is reading (an image may be removed meanwhile).
// A store whose lock file the caller may not open (a read-only store of
// another user) is exported without the lock: returns an invalid fd.
Result<UniqueFd> LockForExport(const Store& store);

}  // namespace strata::layerdb
