// Tests of ImportOciLayout and ImportDockerArchive on layouts made by the
// real tools (umoci, skopeo), and on broken or hostile variants of them.

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "layerdb/base/temp_dir.h"
#include "layerdb/export_test_util.h"
#include "layerdb/hash.h"
#include "layerdb/importers.h"
#include "layerdb/mem_tree.h"
#include "layerdb/oci_manifest.h"
#include "layerdb/store.h"

namespace strata::layerdb {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using test_util::HaveTool;

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteText(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

// Runs a shell command; its output goes to `log` so a failure can show it.
bool Sh(const std::string& cmd, const std::string& log) {
  return std::system((cmd + " >>" + log + " 2>&1").c_str()) == 0;
}

// Builds, with umoci, a two-layer layout "DIR/img" tagged "latest":
//   layer 1: etc/a, etc/gone, bin/big (a blob-sized file), link -> etc/a
//   layer 2: etc/gone deleted (a whiteout), etc/new added
// Returns "" on success, else why it could not.
std::string BuildUmociLayout(const std::string& dir) {
  std::string log = dir + "/umoci.log";
  std::string img = dir + "/img", bundle = dir + "/bundle";
  std::string rootless = ::geteuid() == 0 ? "" : " --rootless";
  std::string repack =
      "umoci repack --refresh-bundle --image " + img + ":latest " + bundle;
  if (!Sh("umoci init --layout " + img, log) ||
      !Sh("umoci new --image " + img + ":latest", log) ||
      !Sh("umoci unpack" + rootless + " --image " + img + ":latest " + bundle,
          log))
    return "umoci init/new/unpack failed: " + ReadText(log);
  std::string rootfs = bundle + "/rootfs";
  fs::create_directories(rootfs + "/etc");
  fs::create_directories(rootfs + "/bin");
  WriteText(rootfs + "/etc/a", "hello\n");
  WriteText(rootfs + "/etc/gone", "bye\n");
  WriteText(rootfs + "/bin/big", std::string(size_t{64} * 1024, 'x'));
  fs::create_symlink("etc/a", rootfs + "/link");
  if (!Sh(repack, log))
    return "umoci repack (layer 1) failed: " + ReadText(log);
  fs::remove(rootfs + "/etc/gone");
  WriteText(rootfs + "/etc/new", "new\n");
  if (!Sh(repack, log))
    return "umoci repack (layer 2) failed: " + ReadText(log);
  return "";
}

const TreeNode* Find(const TreeNodePtr& root, std::string_view path) {
  return FindNode(*root, path);
}

// Edits an OCI layout in place, keeping every digest consistent.
class LayoutEditor {
 public:
  explicit LayoutEditor(std::string dir) : dir_(std::move(dir)) {}

  json Index() const { return json::parse(ReadText(dir_ + "/index.json")); }
  void SetIndex(const json& j) const {
    WriteText(dir_ + "/index.json", j.dump());
  }
  std::string BlobFile(const std::string& digest) const {
    return dir_ + "/blobs/sha256/" + digest.substr(7);
  }
  json Blob(const std::string& digest) const {
    return json::parse(ReadText(BlobFile(digest)));
  }
  // Stores `bytes` and returns a descriptor for it.
  json Put(const std::string& bytes, const std::string& media_type) const {
    std::string digest = Sha256::Of(bytes);
    WriteText(BlobFile(digest), bytes);
    return {
        {"mediaType", media_type}, {"digest", digest}, {"size", bytes.size()}};
  }
  std::string ManifestDigest() const {
    return Index()["manifests"][0]["digest"].get<std::string>();
  }
  json Manifest() const { return Blob(ManifestDigest()); }

  // Replaces the manifest (and index.json's descriptor of it).
  void SetManifest(const json& manifest) const {
    json desc =
        Put(manifest.dump(),
            manifest.value("mediaType",
                           "application/vnd.oci.image.manifest.v1+json"));
    json index = Index();
    index["manifests"][0]["digest"] = desc["digest"];
    index["manifests"][0]["size"] = desc["size"];
    SetIndex(index);
  }
  void EditConfig(const std::function<void(json&)>& edit) const {
    json manifest = Manifest();
    json config = Blob(manifest["config"]["digest"].get<std::string>());
    edit(config);
    json desc =
        Put(config.dump(), manifest["config"]["mediaType"].get<std::string>());
    manifest["config"]["digest"] = desc["digest"];
    manifest["config"]["size"] = desc["size"];
    SetManifest(manifest);
  }
  std::string LayerDigest(size_t i) const {
    return Manifest()["layers"][i]["digest"].get<std::string>();
  }

 private:
  std::string dir_;
};

class ImportOciTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto made = TempDir::Make("/tmp/strata-oci-fixture.");
    if (!made) {
      fixture_error = made.error().ToString();
      return;
    }
    fixture_scratch.emplace(std::move(*made));
    fixture_dir = fixture_scratch->path();
    if (!HaveTool("umoci")) {
      skip_reason = "umoci is not installed";
      return;
    }
    // umoci is there, so a fixture it cannot build is a failure, not a skip.
    fixture_error = BuildUmociLayout(fixture_dir);
  }
  static void TearDownTestSuite() { fixture_scratch.reset(); }

  void SetUp() override {
    if (!skip_reason.empty()) GTEST_SKIP() << skip_reason;
    ASSERT_EQ(fixture_error, "");
    auto scratch = TempDir::Make("/tmp/strata-oci-test.");
    ASSERT_TRUE(scratch) << scratch.error().ToString();
    scratch_.emplace(std::move(*scratch));
    dir_ = scratch_->path();
    auto s = Store::Open(dir_ + "/store", Store::Mode::kReadWrite);
    ASSERT_TRUE(s) << s.error().ToString();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    scratch_.reset();
  }

  // A private copy of the umoci layout, at DIR/<name>, to break at will.
  std::string CopyLayout(const std::string& name = "img") {
    std::string dst = dir_ + "/" + name;
    fs::copy(fixture_dir + "/img", dst, fs::copy_options::recursive);
    return dst;
  }

  Result<ImportedImage> Import(const std::string& layout,
                               std::string_view ref = "",
                               std::string_view name = "") {
    return ImportOciLayout(*store_, layout, ref, name, ImportOptions{});
  }

  // The import failed with `code`, in one line naming what `needles` say,
  // and left the store as it was.
  void ExpectCleanFailure(const Result<ImportedImage>& r, int code,
                          const std::vector<std::string>& needles) {
    ASSERT_FALSE(r) << "import should have failed";
    std::string msg = r.error().ToString();
    EXPECT_EQ(r.error().code(), code) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const std::string& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos)
          << "\"" << n << "\" not in: " << msg;
    ExpectEmptyStore();
  }

  void ExpectEmptyStore() {
    auto images = store_->ListImages();
    auto layers = store_->ListLayers();
    ASSERT_TRUE(images && layers);
    EXPECT_TRUE(images->empty());
    EXPECT_TRUE(layers->empty()) << layers->size() << " layers left behind";
  }

  // The merged view of the umoci image: whiteout applied, files intact.
  void ExpectUmociView(const ImageInfo& image) {
    auto tree = store_->LoadTree(image.view);
    ASSERT_TRUE(tree) << tree.error().ToString();
    const TreeNode* a = Find(*tree, "etc/a");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->node.inline_data, "hello\n");
    ASSERT_NE(Find(*tree, "etc/new"), nullptr);
    EXPECT_EQ(Find(*tree, "etc/new")->node.inline_data, "new\n");
    EXPECT_EQ(Find(*tree, "etc/gone"), nullptr) << "whiteout not applied";
    ASSERT_NE(Find(*tree, "bin/big"), nullptr);
    EXPECT_EQ(Find(*tree, "bin/big")->node.attr.size, 64u * 1024);
    EXPECT_TRUE(Find(*tree, "bin/big")->node.flags & kFlagBlob);
    ASSERT_NE(Find(*tree, "link"), nullptr);
    EXPECT_EQ(Find(*tree, "link")->node.target, "etc/a");
  }

  static std::optional<TempDir> fixture_scratch;
  static std::string fixture_dir;
  static std::string skip_reason;    // a tool is missing
  static std::string fixture_error;  // the tools failed
  std::optional<TempDir> scratch_;
  std::string dir_;
  std::unique_ptr<Store> store_;
};

std::optional<TempDir> ImportOciTest::fixture_scratch;
std::string ImportOciTest::fixture_dir;
std::string ImportOciTest::skip_reason;
std::string ImportOciTest::fixture_error;

TEST_F(ImportOciTest, UmociLayoutWithWhiteout) {
  std::string layout = CopyLayout();
  LayoutEditor ed(layout);
  auto r = Import(layout);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->image.name, "img:latest");
  EXPECT_EQ(r->image.manifest_digest, ed.ManifestDigest());
  ASSERT_EQ(r->layers.size(), 2u);
  ASSERT_EQ(r->image.layers.size(), 2u);
  json diff_ids = r->image.config["rootfs"]["diff_ids"];
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(r->layers[i].diff_id, diff_ids[i].get<std::string>());
    EXPECT_EQ(r->layers[i].compressed_digest, ed.LayerDigest(i));
    EXPECT_EQ(r->layers[i].media_type,
              "application/vnd.oci.image.layer.v1.tar+gzip");
    EXPECT_EQ(r->image.layers[i], r->layers[i].id);
  }
  ExpectUmociView(r->image);
  // The second layer itself records the deletion as a whiteout.
  auto top = store_->LoadTree(r->layers[1].id);
  ASSERT_TRUE(top);
  ASSERT_NE(Find(*top, "etc/gone"), nullptr);
  EXPECT_TRUE(Find(*top, "etc/gone")->node.is_whiteout());
  auto found = store_->FindImage("img:latest");
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->view, r->image.view);
}

TEST_F(ImportOciTest, RefsSelectAndNameTheImage) {
  std::string layout = CopyLayout("My Layout");
  LayoutEditor ed(layout);
  json index = ed.Index();
  json second = index["manifests"][0];
  second["annotations"]["org.opencontainers.image.ref.name"] = "v2";
  json third = index["manifests"][0];
  third["annotations"]["org.opencontainers.image.ref.name"] =
      "docker.io/library/web:1.0";
  index["manifests"].push_back(second);
  index["manifests"].push_back(third);
  ed.SetIndex(index);

  auto latest = Import(layout);  // several images: the one named "latest"
  ASSERT_TRUE(latest) << latest.error().ToString();
  EXPECT_EQ(latest->image.name, "my-layout:latest");
  auto v2 = Import(layout, "v2");
  ASSERT_TRUE(v2) << v2.error().ToString();
  EXPECT_EQ(v2->image.name, "my-layout:v2");
  auto full = Import(layout, "docker.io/library/web:1.0");
  ASSERT_TRUE(full) << full.error().ToString();
  EXPECT_EQ(full->image.name, "web:1.0");
  auto named = Import(layout, "v2", "example.com/team/app:7");
  ASSERT_TRUE(named) << named.error().ToString();
  EXPECT_EQ(named->image.name, "example.com/team/app:7");
  EXPECT_EQ(named->image.view, latest->image.view);
  auto layers = store_->ListLayers();
  ASSERT_TRUE(layers);
  EXPECT_EQ(layers->size(), 2u) << "layers are shared by diff_id";
}

TEST_F(ImportOciTest, UnknownRefListsAvailableRefs) {
  std::string layout = CopyLayout();
  ExpectCleanFailure(Import(layout, "nope"), ENOENT,
                     {"\"nope\"", "available refs: \"latest\""});
  // No ref, several images, none of them "latest".
  LayoutEditor ed(layout);
  json index = ed.Index();
  index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] =
      "a";
  index["manifests"].push_back(index["manifests"][0]);
  index["manifests"][1]["annotations"]["org.opencontainers.image.ref.name"] =
      "b";
  ed.SetIndex(index);
  ExpectCleanFailure(Import(layout), EINVAL,
                     {"none is named \"latest\"", "\"a\", \"b\""});
}

TEST_F(ImportOciTest, ModifiedLayerBlobIsRefused) {
  for (size_t which : {0u, 1u}) {
    SCOPED_TRACE(which);
    std::string layout = CopyLayout("img" + std::to_string(which));
    LayoutEditor ed(layout);
    std::string digest = ed.LayerDigest(which);
    std::string blob = ReadText(ed.BlobFile(digest));
    // The gzip header's MTIME (bytes 4-7): the layer still decompresses
    // to the same tar, so only the digest can tell (a bit flipped in the
    // deflate stream could fail decoding first).
    ASSERT_EQ(blob.substr(0, 2), std::string("\x1f\x8b"));
    blob[5] ^= 0x01;
    WriteText(ed.BlobFile(digest), blob);
    ExpectCleanFailure(Import(layout), EIO,
                       {oci::ShortDigest(digest), "expected " + digest});
  }
}

TEST_F(ImportOciTest, MissingBlobsNameTheirReferrer) {
  std::string layout = CopyLayout();
  LayoutEditor ed(layout);
  std::string manifest = ed.ManifestDigest();
  std::string layer = ed.LayerDigest(1);
  fs::remove(ed.BlobFile(layer));
  ExpectCleanFailure(
      Import(layout), ENOENT,
      {"manifest " + manifest + " references missing layer " + layer});
  std::string config = ed.Manifest()["config"]["digest"].get<std::string>();
  fs::remove(ed.BlobFile(config));
  ExpectCleanFailure(Import(layout), ENOENT,
                     {"references missing config " + config});
  fs::remove(ed.BlobFile(manifest));
  ExpectCleanFailure(Import(layout), ENOENT,
                     {"index.json references missing manifest " + manifest});
}

TEST_F(ImportOciTest, DiffIdsMustMatchTheLayers) {
  std::string layout = CopyLayout();
  LayoutEditor ed(layout);
  std::string wrong = Sha256::Of("not this layer");
  ed.EditConfig([&](json& c) { c["rootfs"]["diff_ids"][1] = wrong; });
  ExpectCleanFailure(Import(layout), EIO,
                     {oci::ShortDigest(ed.LayerDigest(1)), "diff_id " + wrong});
  ed.EditConfig([&](json& c) { c["rootfs"]["diff_ids"].push_back(wrong); });
  ExpectCleanFailure(Import(layout), EINVAL,
                     {"lists 2 layers but config", "lists 3 diff_ids"});
}

TEST_F(ImportOciTest, DigestsNeverBecomePaths) {
  std::string layout = CopyLayout();
  LayoutEditor ed(layout);
  json index = ed.Index();
  json good = index;
  index["manifests"][0]["digest"] = "sha256:../../../../../../etc/passwd";
  ed.SetIndex(index);
  ExpectCleanFailure(Import(layout), EINVAL, {"index.json", "invalid digest"});

  index["manifests"][0]["digest"] = "sha512:" + std::string(128, 'a');
  ed.SetIndex(index);
  ExpectCleanFailure(Import(layout), ENOTSUP, {"\"sha512\"", "only sha256"});

  ed.SetIndex(good);
  json manifest = ed.Manifest();
  manifest["layers"][1]["digest"] = "sha256:../" + std::string(61, 'a');
  ed.SetManifest(manifest);
  ExpectCleanFailure(Import(layout), EINVAL,
                     {"manifest sha256:", "invalid digest"});
}

TEST_F(ImportOciTest, JsonBlobsAreVerifiedAndBounded) {
  std::string layout = CopyLayout();
  LayoutEditor ed(layout);
  json index = ed.Index();
  json good = index;
  index["manifests"][0]["size"] = 5 << 20;
  ed.SetIndex(index);
  ExpectCleanFailure(Import(layout), EFBIG, {"4 MiB"});

  // A manifest whose bytes changed under an unchanged descriptor.
  ed.SetIndex(good);
  std::string digest = ed.ManifestDigest();
  std::string text = ReadText(ed.BlobFile(digest));
  text[text.find("layers")] = 'L';
  WriteText(ed.BlobFile(digest), text);
  ExpectCleanFailure(Import(layout), EIO,
                     {"manifest " + digest, "content has digest"});
}

TEST_F(ImportOciTest, DeeplyNestedJsonIsRefused) {
  std::string layout = CopyLayout();
  LayoutEditor ed(layout);
  json deep = 1;
  for (int i = 0; i < 100; ++i)
    deep = json::array({deep});
  ed.EditConfig([&](json& c) { c["deep"] = deep; });
  std::string config = ed.Manifest()["config"]["digest"].get<std::string>();
  ExpectCleanFailure(Import(layout), EINVAL,
                     {"config " + config, "nested too deeply"});
}

TEST_F(ImportOciTest, UnknownIndexEntriesAreSkipped) {
  std::string layout = CopyLayout();
  LayoutEditor ed(layout);
  json index = ed.Index();
  index["manifests"].push_back(
      {{"mediaType", "application/vnd.example.signature.v1+json"},
       {"digest", "sha512:" + std::string(128, '0')},
       {"size", 1}});
  ed.SetIndex(index);
  auto r = Import(layout);  // the only image entry, though two entries
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->image.name, "img:latest");
}

TEST_F(ImportOciTest, UnknownConfigMediaTypeIsAnError) {
  std::string layout = CopyLayout();
  LayoutEditor ed(layout);
  json manifest = ed.Manifest();
  manifest["config"]["mediaType"] = "application/vnd.example.thing+json";
  ed.SetManifest(manifest);
  ExpectCleanFailure(Import(layout), EINVAL, {"not an image config"});
}

TEST_F(ImportOciTest, NestedIndexPicksTheHostPlatform) {
  std::string layout = CopyLayout();
  LayoutEditor ed(layout);
  json index = ed.Index();
  json mine = index["manifests"][0];
  mine.erase("annotations");
  mine["platform"] = {{"os", "linux"},
                      {"architecture", oci::HostArchitecture()}};
  // Another platform, whose blob is absent: it must not even be read.
  json other = {{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                {"digest", Sha256::Of("elsewhere")},
                {"size", 10},
                {"platform", {{"os", "linux"}, {"architecture", "mips64"}}}};
  json nested = {{"schemaVersion", 2},
                 {"mediaType", "application/vnd.oci.image.index.v1+json"},
                 {"manifests", json::array({other, mine})}};
  json desc = ed.Put(nested.dump(), nested["mediaType"].get<std::string>());
  desc["annotations"] = {{"org.opencontainers.image.ref.name", "multi"}};
  index["manifests"] = json::array({desc});
  ed.SetIndex(index);
  auto r = Import(layout);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->image.name, "img:multi");
  EXPECT_EQ(r->image.manifest_digest, mine["digest"].get<std::string>());
  ExpectUmociView(r->image);

  // Without the host's platform: an error that lists what there is.
  ASSERT_TRUE(store_->RemoveImage("img:multi"));
  nested["manifests"] = json::array({other});
  desc = ed.Put(nested.dump(), nested["mediaType"].get<std::string>());
  index["manifests"] = json::array({desc});
  ed.SetIndex(index);
  auto missing = Import(layout);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ENOENT);
  EXPECT_NE(missing.error().ToString().find("linux/mips64"), std::string::npos)
      << missing.error().ToString();
}

TEST_F(ImportOciTest, HostileCorpusLayouts) {
  // __FILE__ is absolute under CMake: the corpus script of this checkout.
  std::string script = fs::path(__FILE__).parent_path().parent_path() /
                       "tests/fixtures/hostile/make-corpus";
  if (!fs::exists(script) || !HaveTool("python3"))
    GTEST_SKIP() << "tests/fixtures/hostile/make-corpus or python3 not found";
  std::string corpus = dir_ + "/corpus";
  ASSERT_TRUE(Sh("python3 " + script + " " + corpus, dir_ + "/corpus.log"))
      << "make-corpus failed: " << ReadText(dir_ + "/corpus.log");
  ExpectCleanFailure(Import(corpus + "/oci-bad-digest"), EIO, {"digest"});
  ExpectCleanFailure(Import(corpus + "/oci-missing-blob"), ENOENT,
                     {"references missing layer"});
  auto r = Import(corpus + "/oci-good");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->image.name, "oci-good:latest");
}

// --- docker-archive -------------------------------------------------------

struct ArchiveMember {
  std::string name;
  std::string data;  // file content, or symlink target
  bool symlink = false;
};

std::string MakeArchive(const std::vector<ArchiveMember>& members) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax(a);
  test_util::ArchiveWriteToString(a, &out);
  for (const ArchiveMember& m : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.name.c_str());
    archive_entry_set_mode(e,
                           m.symlink ? (AE_IFLNK | 0777) : (AE_IFREG | 0644));
    if (m.symlink) {
      archive_entry_set_symlink(e, m.data.c_str());
    } else {
      archive_entry_set_size(e, static_cast<la_int64_t>(m.data.size()));
    }
    archive_write_header(a, e);
    if (!m.symlink) archive_write_data(a, m.data.data(), m.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

class ImportDockerArchiveTest : public ImportOciTest {
 protected:
  static void SetUpTestSuite() {
    ImportOciTest::SetUpTestSuite();
    if (!skip_reason.empty() || !fixture_error.empty()) return;
    if (!HaveTool("skopeo")) {
      skip_reason = "skopeo is not installed";
      return;
    }
    std::string log = fixture_dir + "/skopeo.log";
    if (!Sh("skopeo --insecure-policy copy -q oci:" + fixture_dir +
                "/img:latest docker-archive:" + fixture_dir +
                "/save.tar:foo/bar:v1",
            log))
      fixture_error = "skopeo copy failed: " + ReadText(log);
  }

  Result<std::vector<ImportedImage>> ImportArchive(const std::string& file,
                                                   std::string_view name = "") {
    auto r = ImportDockerArchive(*store_, file, name, ImportOptions{});
    for (const auto& entry : fs::directory_iterator(dir_ + "/store"))
      EXPECT_FALSE(entry.path().filename().string().starts_with("tmp-import-"))
          << entry.path() << " left behind";
    return r;
  }

  void ExpectCleanArchiveFailure(const Result<std::vector<ImportedImage>>& r,
                                 int code,
                                 const std::vector<std::string>& needles) {
    ASSERT_FALSE(r) << "import should have failed";
    ExpectCleanFailure(r.error(), code, needles);
  }
  using ImportOciTest::ExpectCleanFailure;
  void ExpectCleanFailure(const Error& e, int code,
                          const std::vector<std::string>& needles) {
    ExpectCleanFailure(Result<ImportedImage>(e), code, needles);
  }

  // Extracts the skopeo archive to DIR/x for editing; Repack makes it a tar.
  std::string Unpack() {
    std::string x = dir_ + "/x";
    fs::remove_all(x);
    fs::create_directories(x);
    EXPECT_TRUE(Sh("tar -C " + x + " -xf " + fixture_dir + "/save.tar",
                   dir_ + "/tar.log"));
    return x;
  }
  std::string Repack(const std::string& tree, const std::string& name) {
    std::string out = dir_ + "/" + name;
    EXPECT_TRUE(Sh("tar -C " + tree + " -cf " + out + " .", dir_ + "/tar.log"));
    return out;
  }
};

TEST_F(ImportDockerArchiveTest, SkopeoArchiveMatchesTheLayout) {
  auto oci = Import(CopyLayout());
  ASSERT_TRUE(oci) << oci.error().ToString();
  auto r = ImportArchive(fixture_dir + "/save.tar");
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->size(), 1u);
  const ImportedImage& img = (*r)[0];
  EXPECT_EQ(img.image.name, "foo/bar:v1");
  ASSERT_EQ(img.layers.size(), 2u);
  for (size_t i = 0; i < 2; ++i)
    EXPECT_EQ(img.layers[i].diff_id, oci->layers[i].diff_id);
  EXPECT_EQ(img.image.layers, oci->image.layers);
  EXPECT_EQ(img.image.view, oci->image.view);
  ExpectUmociView(img.image);
}

TEST_F(ImportDockerArchiveTest, SkopeoArchiveIntoAnEmptyStore) {
  auto r = ImportArchive(fixture_dir + "/save.tar");
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].image.name, "foo/bar:v1");
  EXPECT_EQ((*r)[0].layers[0].media_type,
            "application/vnd.oci.image.layer.v1.tar");
  ExpectUmociView((*r)[0].image);
}

TEST_F(ImportDockerArchiveTest, GzipArchiveWithAName) {
  std::string gz = dir_ + "/save.tar.gz";
  ASSERT_TRUE(Sh("cp " + fixture_dir + "/save.tar " + dir_ + " && gzip " +
                     dir_ + "/save.tar",
                 dir_ + "/gz.log"));
  auto r = ImportArchive(gz, "renamed:2");
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].image.name, "renamed:2");
  auto old = store_->FindImage("foo/bar:v1");
  ASSERT_TRUE(old);
  EXPECT_FALSE(*old) << "a given name replaces the RepoTags";
  ExpectUmociView((*r)[0].image);
}

TEST_F(ImportDockerArchiveTest, EveryRepoTagOfEveryImage) {
  std::string x = Unpack();
  json manifest = json::parse(ReadText(x + "/manifest.json"));
  manifest[0]["RepoTags"] = {"docker.io/library/one:1", "one:latest"};
  json second = manifest[0];
  second["RepoTags"] = {"registry.example:5000/two:x"};
  manifest.push_back(second);
  WriteText(x + "/manifest.json", manifest.dump());
  std::string file = Repack(x, "two.tar");

  ExpectCleanArchiveFailure(ImportArchive(file, "solo"), EINVAL,
                            {"holds 2 images"});
  auto r = ImportArchive(file);
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->size(), 2u);
  for (const char* n : {"one:1", "one:latest", "registry.example:5000/two:x"}) {
    auto img = store_->FindImage(n);
    ASSERT_TRUE(img && *img) << n;
    EXPECT_EQ((*img)->view, (*r)[0].image.view) << n;
  }
}

TEST_F(ImportDockerArchiveTest, DockerOciFormIsReadAsALayout) {
  std::string layout = CopyLayout();
  LayoutEditor ed(layout);
  json index = ed.Index();
  index["manifests"][0]["annotations"]["io.containerd.image.name"] =
      "docker.io/library/ocitest:1";
  ed.SetIndex(index);
  std::string file = Repack(layout, "oci-form.tar");
  auto r = ImportArchive(file);
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].image.name, "ocitest:1");
  EXPECT_EQ((*r)[0].image.manifest_digest, ed.ManifestDigest());
  ExpectUmociView((*r)[0].image);

  // Its blobs are verified as in a layout.
  std::string digest = ed.LayerDigest(1);
  std::string blob = ReadText(ed.BlobFile(digest));
  blob[blob.size() / 2] ^= 0x01;
  WriteText(ed.BlobFile(digest), blob);
  ASSERT_TRUE(store_->RemoveImage("ocitest:1"));
  auto bad = ImportArchive(Repack(layout, "oci-bad.tar"));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), EIO) << bad.error().ToString();
}

TEST_F(ImportDockerArchiveTest, ModifiedLayerOrConfigIsRefused) {
  std::string x = Unpack();
  json manifest = json::parse(ReadText(x + "/manifest.json"));
  std::string layer = x + "/" + manifest[0]["Layers"][1].get<std::string>();
  std::string data = ReadText(layer);
  data[data.find("new\n")] = 'N';
  fs::remove(layer);
  WriteText(layer, data);
  ExpectCleanArchiveFailure(ImportArchive(Repack(x, "bad-layer.tar")), EIO,
                            {"layer sha256:", "diff_id"});

  x = Unpack();  // fresh copy over the old one
  std::string config = x + "/" + manifest[0]["Config"].get<std::string>();
  json c = json::parse(ReadText(config));
  c["config"]["Cmd"] = {"/bin/evil"};
  fs::remove(config);
  WriteText(config, c.dump());
  ExpectCleanArchiveFailure(ImportArchive(Repack(x, "bad-config.tar")), EIO,
                            {"config \"", "but its name says"});
}

TEST_F(ImportDockerArchiveTest, LinksCannotLeaveTheArchive) {
  std::string config = ReadText(fixture_dir + "/img/blobs/sha256/" +
                                LayoutEditor(fixture_dir + "/img")
                                    .Manifest()["config"]["digest"]
                                    .get<std::string>()
                                    .substr(7));
  std::string config_name = Sha256::Of(config).substr(7) + ".json";
  for (const auto& [member, target] :
       std::vector<std::pair<std::string, std::string>>{
           {"l1/layer.tar", "/etc/passwd"},
           {"l1/layer.tar", "../../../../../../etc/passwd"},
           {"../escape.tar", ""}}) {
    SCOPED_TRACE(member + " -> " + target);
    json manifest = json::array();
    manifest.push_back({{"Config", config_name},
                        {"RepoTags", {"evil:1"}},
                        {"Layers", {member, member}}});
    std::vector<ArchiveMember> members = {{"manifest.json", manifest.dump()},
                                          {config_name, config}};
    if (!target.empty()) members.push_back({member, target, true});
    std::string file = dir_ + "/evil.tar";
    WriteText(file, MakeArchive(members));
    ExpectCleanArchiveFailure(
        ImportArchive(file), EINVAL,
        {member == "../escape.tar" ? "\"../escape.tar\""
                                   : "outside the archive"});
  }
}

// skopeo writes Docker schema 2 manifests into OCI layouts too.
TEST_F(ImportDockerArchiveTest, DockerMediaTypesInALayout) {
  std::string layout = dir_ + "/v2s2";
  ASSERT_TRUE(Sh("skopeo --insecure-policy copy -q --format v2s2 oci:" +
                     fixture_dir + "/img:latest oci:" + layout + ":latest",
                 dir_ + "/skopeo.log"))
      << ReadText(dir_ + "/skopeo.log");
  auto r = Import(layout);
  ASSERT_TRUE(r) << r.error().ToString();
  ASSERT_EQ(r->layers.size(), 2u);
  EXPECT_EQ(r->layers[0].media_type,
            "application/vnd.docker.image.rootfs.diff.tar.gzip");
  EXPECT_EQ(r->image.name, "v2s2:latest");
  ExpectUmociView(r->image);
}

TEST_F(ImportDockerArchiveTest, NotAnArchive) {
  std::string file = dir_ + "/junk.tar";
  WriteText(file, std::string(4096, 'j'));
  ExpectCleanArchiveFailure(ImportArchive(file), EIO, {file});
  WriteText(file, MakeArchive({{"hello", "world"}}));
  ExpectCleanArchiveFailure(ImportArchive(file), EINVAL,
                            {"not a docker save archive"});
}

}  // namespace
}  // namespace strata::layerdb
