#pragma once

// POSIX ACLs in the two forms strata meets them:
//  - the value of the `system.posix_acl_access` / `system.posix_acl_default`
//    xattrs, in the kernel's binary posix_acl_xattr format (what getxattr(2)
//    returns; include/uapi/linux/posix_acl_xattr.h): a little-endian u32
//    version 2, then entries {u16 tag, u16 perm, u32 id}. This is how the
//    store keeps ACLs (as ordinary Node xattrs), so that the FUSE daemon can
//    serve them as they are;
//  - libarchive's ACL entries, which tar carries as SCHILY.acl.access and
//    SCHILY.acl.default PAX records (GNU tar --acls, bsdtar).
//
// The exporter converts xattr -> archive_entry, the importer
// archive_entry -> xattr.
//
// libarchive keeps the access ACL's user::, group:: and other:: entries in
// the entry's permission bits: adding or parsing one of them overwrites
// those bits. When the ACL has a mask, the kernel's file mode carries the
// *mask* in its group bits (acl(5), "ACL_MASK"), while libarchive (like
// bsdtar) puts the group:: (owning group) permissions there. So
// AddAclToArchiveEntry changes the entry's group bits (libarchive writes its
// ACL text's group:: from the same bits, so the tar header cannot carry the
// mask), a tar header's mode may already be overwritten when the importer
// reads it, and ModeWithAccessAcl gives back the file mode as the kernel
// shows it, whichever form the ACL came in.
//
// Thread-safety: plain functions on values.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "layerdb/base/error.h"
#include "layerdb/node.h"

struct archive_entry;

namespace strata::layerdb {

inline constexpr std::string_view kAclAccessXattr = "system.posix_acl_access";
inline constexpr std::string_view kAclDefaultXattr = "system.posix_acl_default";

// Tag values as in the kernel (and libacl's ACL_USER_OBJ ... ACL_OTHER).
enum class AclTag : uint16_t {
  kUserObj = 0x01,
  kUser = 0x02,
  kGroupObj = 0x04,
  kGroup = 0x08,
  kMask = 0x10,
  kOther = 0x20,
};

// The id of entries that have no qualifier (all but kUser and kGroup).
inline constexpr uint32_t kAclUndefinedId = 0xffffffff;

struct AclEntry {
  AclTag tag = AclTag::kUserObj;
  uint16_t perm = 0;              // 4 read, 2 write, 1 execute
  uint32_t id = kAclUndefinedId;  // uid (kUser) or gid (kGroup)

  bool operator==(const AclEntry&) const = default;
};

// True for the two xattr names that hold POSIX ACLs.
bool IsAclXattr(std::string_view name);

// Parses a binary ACL xattr value. Entries come back in stored order.
// Errors: EINVAL (detail says why) when the version is not 2, the size is
// not 4 + 8n, a tag is unknown or a permission has bits other than rwx.
Result<std::vector<AclEntry>> ParseAclXattr(std::string_view value);

// The file mode the kernel shows for a file with the access ACL `acl`:
// `mode`'s file type and suid/sgid/sticky bits, the user bits from user::,
// the group bits from mask:: (from group:: when there is no mask) and the
// other bits from other::. Bits whose entry is missing stay as in `mode`.
uint32_t ModeWithAccessAcl(uint32_t mode, const std::vector<AclEntry>& acl);

// Encodes entries as a binary ACL xattr, sorted by tag then id (the order
// the kernel requires in setxattr(2) and produces in getxattr(2)); entries
// without a qualifier get kAclUndefinedId.
std::string EncodeAclXattr(const std::vector<AclEntry>& entries);

// Adds `acl` to `entry` as an access ACL (`xattr_name` == kAclAccessXattr)
// or a default ACL (kAclDefaultXattr). Call it after setting the entry's
// mode: user::, group:: and other:: of an access ACL replace the entry's
// permission bits (see the file comment). Ids are written numerically, with
// no user or group names. Errors: EINVAL for another xattr name or an entry
// libarchive refuses.
Status AddAclToArchiveEntry(archive_entry* entry, std::string_view xattr_name,
                            const std::vector<AclEntry>& acl);

struct ArchiveAcls {
  std::vector<Xattr> xattrs;  // binary system.posix_acl_* xattrs, if any
  uint32_t mode = 0;          // the file mode as the kernel would show it
};

// Reads the POSIX.1e ACLs of a tar entry (libarchive parsed them from
// SCHILY.acl.* or another archive format) as binary xattrs, and the entry's
// mode as ModeWithAccessAcl gives it for that access ACL. An access
// ACL with named entries but no mask gets the mask setfacl(1) would compute.
// An access ACL equivalent to the mode yields no xattr. NFSv4 ACLs are
// ignored. Errors: EINVAL when a named entry has no numeric id (an archive
// that names users only by name: resolving names against the host's
// passwd would be wrong for an image).
Result<ArchiveAcls> AclXattrsFromArchiveEntry(archive_entry* entry);

}  // namespace strata::layerdb
