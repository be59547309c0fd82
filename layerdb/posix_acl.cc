#include "layerdb/posix_acl.h"

#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <optional>

#include <archive.h>
#include <archive_entry.h>

namespace strata::layerdb {

namespace {

// include/uapi/linux/posix_acl_xattr.h
constexpr uint32_t kXattrVersion = 2;
constexpr size_t kHeaderSize = 4;
constexpr size_t kEntrySize = 8;

// libarchive's permission bits are the POSIX rwx bits.
static_assert(ARCHIVE_ENTRY_ACL_READ == 4 && ARCHIVE_ENTRY_ACL_WRITE == 2 &&
              ARCHIVE_ENTRY_ACL_EXECUTE == 1);

Error BadAcl(std::string why) {
  return Error(EINVAL, "parse ACL xattr", std::move(why));
}

uint32_t LoadLe(const char* p, size_t n) {
  uint32_t v = 0;
  for (size_t i = n; i-- > 0;)
    v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

void StoreLe(std::string& out, uint32_t v, size_t n) {
  for (size_t i = 0; i < n; ++i)
    out.push_back(static_cast<char>(v >> (8 * i)));
}

bool IsNamed(AclTag tag) {
  return tag == AclTag::kUser || tag == AclTag::kGroup;
}

std::optional<AclTag> TagFromKernel(uint32_t tag) {
  switch (tag) {
    case 0x01:
      return AclTag::kUserObj;
    case 0x02:
      return AclTag::kUser;
    case 0x04:
      return AclTag::kGroupObj;
    case 0x08:
      return AclTag::kGroup;
    case 0x10:
      return AclTag::kMask;
    case 0x20:
      return AclTag::kOther;
    default:
      return std::nullopt;
  }
}

int ToArchiveTag(AclTag tag) {
  switch (tag) {
    case AclTag::kUserObj:
      return ARCHIVE_ENTRY_ACL_USER_OBJ;
    case AclTag::kUser:
      return ARCHIVE_ENTRY_ACL_USER;
    case AclTag::kGroupObj:
      return ARCHIVE_ENTRY_ACL_GROUP_OBJ;
    case AclTag::kGroup:
      return ARCHIVE_ENTRY_ACL_GROUP;
    case AclTag::kMask:
      return ARCHIVE_ENTRY_ACL_MASK;
    case AclTag::kOther:
      return ARCHIVE_ENTRY_ACL_OTHER;
  }
  return 0;
}

std::optional<AclTag> FromArchiveTag(int tag) {
  switch (tag) {
    case ARCHIVE_ENTRY_ACL_USER_OBJ:
      return AclTag::kUserObj;
    case ARCHIVE_ENTRY_ACL_USER:
      return AclTag::kUser;
    case ARCHIVE_ENTRY_ACL_GROUP_OBJ:
      return AclTag::kGroupObj;
    case ARCHIVE_ENTRY_ACL_GROUP:
      return AclTag::kGroup;
    case ARCHIVE_ENTRY_ACL_MASK:
      return AclTag::kMask;
    case ARCHIVE_ENTRY_ACL_OTHER:
      return AclTag::kOther;
    default:
      return std::nullopt;
  }
}

// The qualifier of a named libarchive entry: its id, else a numeric name.
// The id of a named entry. GNU tar (1.34) writes ACL text with names only
// ("user:daemon:r--"), even with --numeric-owner; like GNU tar when it
// extracts, a name is then resolved in the host's user and group databases.
Result<uint32_t> ArchiveQualifier(int id, const char* name, bool user) {
  if (id >= 0) return static_cast<uint32_t>(id);
  std::string_view n = name != nullptr ? name : "";
  uint32_t v = 0;
  auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
  if (!n.empty() && ec == std::errc() && end == n.data() + n.size()) return v;
  std::vector<char> buf(16384);
  std::string key(n);
  if (user) {
    struct passwd pw, *found = nullptr;
    if (getpwnam_r(key.c_str(), &pw, buf.data(), buf.size(), &found) == 0 &&
        found != nullptr)
      return static_cast<uint32_t>(found->pw_uid);
  } else {
    struct group gr, *found = nullptr;
    if (getgrnam_r(key.c_str(), &gr, buf.data(), buf.size(), &found) == 0 &&
        found != nullptr)
      return static_cast<uint32_t>(found->gr_gid);
  }
  return Error(EINVAL, "read ACL",
               std::string(user ? "user" : "group") + " \"" + key +
                   "\" has no numeric id and is unknown on this host");
}

// Reads the entries of one ACL type from `entry`.
Result<std::vector<AclEntry>> ReadArchiveAcl(archive_entry* entry, int type) {
  std::vector<AclEntry> out;
  if (archive_entry_acl_reset(entry, type) <= 0) return out;
  int got_type = 0, perm = 0, tag = 0, id = -1;
  const char* name = nullptr;
  int r;
  while ((r = archive_entry_acl_next(entry, type, &got_type, &perm, &tag, &id,
                                     &name)) == ARCHIVE_OK) {
    std::optional<AclTag> t = FromArchiveTag(tag);
    if (!t)
      return Error(EINVAL, "read ACL", "unknown tag " + std::to_string(tag));
    AclEntry e{*t, static_cast<uint16_t>(perm & 7), kAclUndefinedId};
    if (IsNamed(*t)) {
      STRATA_ASSIGN_OR_RETURN(e.id,
                              ArchiveQualifier(id, name, *t == AclTag::kUser));
    }
    out.push_back(e);
  }
  if (r == ARCHIVE_FATAL) return Error(ENOMEM, "read ACL");
  return out;
}

// The kernel refuses named entries without a mask; setfacl(1) computes one
// as the union of the group class (named users, owning group, named groups).
void AddMissingMask(std::vector<AclEntry>& acl) {
  uint16_t group_class = 0;
  bool named = false, has_mask = false;
  for (const AclEntry& e : acl) {
    named |= IsNamed(e.tag);
    has_mask |= e.tag == AclTag::kMask;
    if (IsNamed(e.tag) || e.tag == AclTag::kGroupObj) group_class |= e.perm;
  }
  if (named && !has_mask)
    acl.push_back({AclTag::kMask, group_class, kAclUndefinedId});
}

}  // namespace

uint32_t ModeWithAccessAcl(uint32_t mode, const std::vector<AclEntry>& acl) {
  std::optional<uint16_t> user, group_obj, mask, other;
  for (const AclEntry& e : acl) {
    if (e.tag == AclTag::kUserObj) user = e.perm;
    if (e.tag == AclTag::kGroupObj) group_obj = e.perm;
    if (e.tag == AclTag::kMask) mask = e.perm;
    if (e.tag == AclTag::kOther) other = e.perm;
  }
  std::optional<uint16_t> group = mask ? mask : group_obj;
  auto set = [&mode](std::optional<uint16_t> perm, int shift) {
    if (!perm) return;
    mode =
        (mode & ~(7u << shift)) | ((static_cast<uint32_t>(*perm) & 7) << shift);
  };
  set(user, 6);
  set(group, 3);
  set(other, 0);
  return mode;
}

bool IsAclXattr(std::string_view name) {
  return name == kAclAccessXattr || name == kAclDefaultXattr;
}

Result<std::vector<AclEntry>> ParseAclXattr(std::string_view value) {
  if (value.size() < kHeaderSize ||
      (value.size() - kHeaderSize) % kEntrySize != 0)
    return BadAcl("size " + std::to_string(value.size()) +
                  " is not 4 + 8n bytes");
  uint32_t version = LoadLe(value.data(), 4);
  if (version != kXattrVersion)
    return BadAcl("version " + std::to_string(version) + ", want 2");
  std::vector<AclEntry> out;
  for (size_t off = kHeaderSize; off < value.size(); off += kEntrySize) {
    const char* p = value.data() + off;
    uint32_t tag = LoadLe(p, 2);
    uint32_t perm = LoadLe(p + 2, 2);
    std::optional<AclTag> t = TagFromKernel(tag);
    if (!t) return BadAcl("unknown tag " + std::to_string(tag));
    if ((perm & ~7u) != 0)
      return BadAcl("permission " + std::to_string(perm) + " is not rwx");
    out.push_back({*t, static_cast<uint16_t>(perm), LoadLe(p + 4, 4)});
  }
  return out;
}

std::string EncodeAclXattr(const std::vector<AclEntry>& entries) {
  std::vector<AclEntry> sorted = entries;
  for (AclEntry& e : sorted)
    if (!IsNamed(e.tag)) e.id = kAclUndefinedId;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const AclEntry& a, const AclEntry& b) {
                     if (a.tag != b.tag) return a.tag < b.tag;
                     return a.id < b.id;
                   });
  std::string out;
  out.reserve(kHeaderSize + kEntrySize * sorted.size());
  StoreLe(out, kXattrVersion, 4);
  for (const AclEntry& e : sorted) {
    StoreLe(out, static_cast<uint16_t>(e.tag), 2);
    StoreLe(out, e.perm, 2);
    StoreLe(out, e.id, 4);
  }
  return out;
}

Status AddAclToArchiveEntry(archive_entry* entry, std::string_view xattr_name,
                            const std::vector<AclEntry>& acl) {
  int type;
  if (xattr_name == kAclAccessXattr) {
    type = ARCHIVE_ENTRY_ACL_TYPE_ACCESS;
  } else if (xattr_name == kAclDefaultXattr) {
    type = ARCHIVE_ENTRY_ACL_TYPE_DEFAULT;
  } else {
    return Error(EINVAL, "add ACL",
                 "\"" + std::string(xattr_name) + "\" is not an ACL xattr");
  }
  for (const AclEntry& e : acl) {
    int id = -1;
    if (IsNamed(e.tag)) {
      // libarchive keeps ids as int; a larger one would be written as 0.
      if (e.id > static_cast<uint32_t>(INT_MAX))
        return Error(EINVAL, "add ACL",
                     "id " + std::to_string(e.id) + " is too large for tar");
      id = static_cast<int>(e.id);
    }
    if (archive_entry_acl_add_entry(entry, type, e.perm, ToArchiveTag(e.tag),
                                    id, nullptr) != ARCHIVE_OK)
      return Error(EINVAL, "add ACL",
                   "libarchive refused an entry of " + std::string(xattr_name));
  }
  return Ok();
}

Result<ArchiveAcls> AclXattrsFromArchiveEntry(archive_entry* entry) {
  ArchiveAcls out;
  out.mode = archive_entry_mode(entry);
  STRATA_ASSIGN_OR_RETURN(std::vector<AclEntry> access,
                          ReadArchiveAcl(entry, ARCHIVE_ENTRY_ACL_TYPE_ACCESS));
  if (!access.empty()) {
    AddMissingMask(access);
    out.mode = ModeWithAccessAcl(out.mode, access);
    out.xattrs.push_back(
        {std::string(kAclAccessXattr), EncodeAclXattr(access)});
  }
  STRATA_ASSIGN_OR_RETURN(
      std::vector<AclEntry> dflt,
      ReadArchiveAcl(entry, ARCHIVE_ENTRY_ACL_TYPE_DEFAULT));
  if (!dflt.empty()) {
    AddMissingMask(dflt);
    out.xattrs.push_back({std::string(kAclDefaultXattr), EncodeAclXattr(dflt)});
  }
  return out;
}

}  // namespace strata::layerdb
