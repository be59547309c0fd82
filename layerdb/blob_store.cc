#include "layerdb/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "layerdb/base/sys.h"

namespace strata::layerdb {

namespace {

constexpr char kTempDir[] = "tmp";

// Holes are made in blocks of this size, at offsets that are multiples of
// it: 4096 is the block size of ext4, xfs and btrfs as mkfs makes them, and
// a multiple of tmpfs's page. A filesystem with larger blocks allocates a
// block that is partly written, but reads are right on any.
constexpr size_t kHoleBlock = 4096;

bool IsZero(const char* p, size_t n) {
  static constexpr std::array<char, kHoleBlock> kZeros{};
  return std::memcmp(p, kZeros.data(), n) == 0;
}

// Writes `data` at `offset` (a multiple of kHoleBlock), skipping every
// kHoleBlock-sized block of zeros so that it stays a hole. A last block
// shorter than kHoleBlock is skipped too when it is all zeros.
// REQUIRES: `data` is a whole number of blocks or ends at the end of the
// content, and the caller ftruncates the file to the content's size (which
// fills a skipped end with a hole).
Status WriteSparse(int fd, off_t offset, std::string_view data) {
  size_t run = 0;  // start of the bytes not yet written
  for (size_t at = 0; at < data.size(); at += kHoleBlock) {
    size_t n = std::min(kHoleBlock, data.size() - at);
    if (!IsZero(data.data() + at, n)) continue;
    if (at > run)
      STRATA_RETURN_IF_ERROR(sys::PwriteFull(
          fd, std::as_bytes(std::span(data.substr(run, at - run))),
          offset + static_cast<off_t>(run)));
    run = at + n;
  }
  if (run == data.size()) return Ok();
  return sys::PwriteFull(fd, std::as_bytes(std::span(data.substr(run))),
                         offset + static_cast<off_t>(run));
}

std::string RelPath(const BlobKey& key) {
  std::string hex = key.ToHex();
  return hex.substr(0, 2) + "/" + hex.substr(2);
}

// True when the contents of `a` and `b` are byte-identical.
Result<bool> SameContent(int a, int b) {
  STRATA_ASSIGN_OR_RETURN(struct stat sa, sys::Fstat(a));
  STRATA_ASSIGN_OR_RETURN(struct stat sb, sys::Fstat(b));
  if (sa.st_size != sb.st_size) return false;
  std::vector<std::byte> ba(1 << 16), bb(1 << 16);
  for (off_t off = 0; off < sa.st_size;) {
    STRATA_ASSIGN_OR_RETURN(size_t na, sys::PreadFull(a, ba, off));
    STRATA_ASSIGN_OR_RETURN(size_t nb, sys::PreadFull(b, bb, off));
    if (na != nb || na == 0) return na == nb && off == sa.st_size;
    if (std::memcmp(ba.data(), bb.data(), na) != 0) return false;
    off += static_cast<off_t>(na);
  }
  return true;
}

Result<bool> SameContent(int fd, std::string_view data) {
  STRATA_ASSIGN_OR_RETURN(struct stat st, sys::Fstat(fd));
  if (static_cast<uint64_t>(st.st_size) != data.size()) return false;
  std::vector<std::byte> buf(std::min<size_t>(data.size(), 1 << 16));
  for (size_t off = 0; off < data.size();) {
    STRATA_ASSIGN_OR_RETURN(size_t n,
                            sys::PreadFull(fd, buf, static_cast<off_t>(off)));
    if (n == 0) return false;
    if (std::memcmp(buf.data(), data.data() + off, n) != 0) return false;
    off += n;
  }
  return true;
}

}  // namespace

Result<BlobStore> BlobStore::Open(const std::string& dir, bool create) {
  if (!create) {
    STRATA_ASSIGN_OR_RETURN(UniqueFd fd,
                            sys::Open(dir, O_RDONLY | O_DIRECTORY));
    return BlobStore(dir, std::move(fd));
  }
  STRATA_RETURN_IF_ERROR(sys::MakeDirs(dir + "/" + kTempDir));
  for (int i = 0; i < 256; ++i) {
    uint8_t b = static_cast<uint8_t>(i);
    std::string sub = dir + "/" + HexEncode(&b, 1);
    if (::mkdir(sub.c_str(), 0755) != 0 && errno != EEXIST)
      return Error::FromErrno("mkdir", sub);
  }
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, sys::Open(dir, O_RDONLY | O_DIRECTORY));
  return BlobStore(dir, std::move(fd));
}

std::string BlobStore::PathOf(const BlobKey& key) const {
  return dir_ + "/" + RelPath(key);
}

Result<UniqueFd> BlobStore::OpenBlob(const BlobKey& key) const {
  return sys::OpenAt(dirfd_.get(), RelPath(key), O_RDONLY);
}

Result<UniqueFd> BlobStore::TempFile(std::string* temp_path) const {
  int fd =
      ::openat(dirfd_.get(), kTempDir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0444);
  if (fd >= 0) return UniqueFd(fd);
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
    return Error::FromErrno("open", dir_ + "/" + kTempDir);
  // No O_TMPFILE here: a named temp file that gc removes if we are killed.
  std::string name = std::string(kTempDir) + "/blob.XXXXXX";
  std::vector<char> tmpl(name.begin(), name.end());
  tmpl.push_back('\0');
  std::string full = dir_ + "/" + tmpl.data();
  std::vector<char> path(full.begin(), full.end());
  path.push_back('\0');
  fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) return Error::FromErrno("mkostemp", full);
  *temp_path = path.data();
  if (::fchmod(fd, 0444) != 0) {
    Error e = Error::FromErrno("fchmod", full);
    ::unlink(path.data());
    ::close(fd);
    return e;
  }
  return UniqueFd(fd);
}

Result<BlobKey> BlobStore::LinkInto(int fd, const std::string& temp_path,
                                    BlobKey key) const {
  for (;; ++key.variant) {
    std::string rel = RelPath(key);
    int rc;
    if (temp_path.empty()) {
      std::string proc = "/proc/self/fd/" + std::to_string(fd);
      rc = ::linkat(AT_FDCWD, proc.c_str(), dirfd_.get(), rel.c_str(),
                    AT_SYMLINK_FOLLOW);
    } else {
      rc = ::linkat(AT_FDCWD, temp_path.c_str(), dirfd_.get(), rel.c_str(), 0);
    }
    if (rc == 0) break;
    if (errno != EEXIST) return Error::FromErrno("linkat", PathOf(key));
    STRATA_ASSIGN_OR_RETURN(UniqueFd existing, OpenBlob(key));
    STRATA_ASSIGN_OR_RETURN(bool same, SameContent(fd, existing.get()));
    if (same) break;
  }
  if (!temp_path.empty()) ::unlink(temp_path.c_str());
  return key;
}

Result<BlobKey> BlobStore::Put(std::string_view data) {
  BlobKey key = Xxh128::Of(data);
  // Fast path: the blob exists (dedup); confirm by bytes before trusting it.
  for (;; ++key.variant) {
    auto existing = OpenBlob(key);
    if (!existing) {
      if (existing.error().code() == ENOENT) break;
      return existing.error();
    }
    STRATA_ASSIGN_OR_RETURN(bool same, SameContent(existing->get(), data));
    if (same) return key;
  }
  std::string temp_path;
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, TempFile(&temp_path));
  Status w = WriteSparse(fd.get(), 0, data);
  if (w) w = sys::Ftruncate(fd.get(), static_cast<off_t>(data.size()));
  if (!w) {
    if (!temp_path.empty()) ::unlink(temp_path.c_str());
    return w.error().WithContext("blob " + key.ToHex());
  }
  return LinkInto(fd.get(), temp_path, key);
}

Result<BlobStore::Writer> BlobStore::NewWriter() const {
  std::string temp_path;
  STRATA_ASSIGN_OR_RETURN(UniqueFd fd, TempFile(&temp_path));
  return Writer(this, std::move(fd), std::move(temp_path));
}

BlobStore::Writer::~Writer() {
  if (fd_.valid() && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

Status BlobStore::Writer::Write(std::string_view data) {
  hash_.Update(data.data(), data.size());
  // Where tail_ goes in the file: a multiple of kHoleBlock.
  off_t at = static_cast<off_t>(size_ - tail_.size());
  size_ += data.size();
  if (!tail_.empty()) {
    size_t fill = std::min(kHoleBlock - tail_.size(), data.size());
    tail_.append(data.substr(0, fill));
    data.remove_prefix(fill);
    if (tail_.size() < kHoleBlock) return Ok();
    STRATA_RETURN_IF_ERROR(WriteSparse(fd_.get(), at, tail_));
    at += static_cast<off_t>(kHoleBlock);
    tail_.clear();
  }
  size_t whole = data.size() - data.size() % kHoleBlock;
  STRATA_RETURN_IF_ERROR(WriteSparse(fd_.get(), at, data.substr(0, whole)));
  tail_.assign(data.substr(whole));
  return Ok();
}

Result<BlobKey> BlobStore::Writer::Commit() {
  off_t at = static_cast<off_t>(size_ - tail_.size());
  STRATA_RETURN_IF_ERROR(WriteSparse(fd_.get(), at, tail_));
  STRATA_RETURN_IF_ERROR(sys::Ftruncate(fd_.get(), static_cast<off_t>(size_)));
  auto key = store_->LinkInto(fd_.get(), temp_path_, hash_.Finish());
  temp_path_.clear();
  fd_.Reset();
  return key;
}

Status BlobStore::Sync() const {
  return sys::SyncFs(dirfd_.get());
}

Status BlobStore::ForEach(
    const std::function<Status(const BlobKey&, const std::string&)>& fn) const {
  for (int i = 0; i < 256; ++i) {
    uint8_t b = static_cast<uint8_t>(i);
    std::string prefix = HexEncode(&b, 1);
    std::string sub = dir_ + "/" + prefix;
    auto names = sys::ListDir(sub);
    if (!names) {
      if (names.error().code() == ENOENT) continue;
      return names.error();
    }
    for (const std::string& name : *names) {
      auto key = BlobKey::FromHex(prefix + name);
      if (!key) continue;  // not ours; fsck reports stray files
      STRATA_RETURN_IF_ERROR(fn(*key, sub + "/" + name));
    }
  }
  return Ok();
}

Status BlobStore::RemoveStaleTemps() const {
  std::string tmp = dir_ + "/" + kTempDir;
  STRATA_ASSIGN_OR_RETURN(auto names, sys::ListDir(tmp));
  for (const std::string& n : names)
    ::unlinkat(dirfd_.get(), (std::string(kTempDir) + "/" + n).c_str(), 0);
  return Ok();
}

}  // namespace strata::layerdb
