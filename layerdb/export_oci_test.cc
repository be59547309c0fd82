// Tests of ExportOciLayout: the layout is checked by hand (digests, sizes,
// diff_ids, the index) and by the independent readers skopeo and umoci.

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <archive.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "layerdb/export_test_util.h"
#include "layerdb/exporters.h"
#include "layerdb/hash.h"

namespace strata::layerdb {
namespace {

using nlohmann::json;
using test_util::Find;
using test_util::HaveTool;
using test_util::Paths;
using test_util::ReadAll;
using test_util::ReadTar;
using test_util::RunShell;

// The bytes of a gzip file, decompressed by libarchive.
std::string Gunzip(const std::string& path) {
  archive* a = archive_read_new();
  archive_read_support_filter_gzip(a);
  archive_read_support_format_raw(a);
  std::string out;
  archive_entry* e = nullptr;
  if (archive_read_open_filename(a, path.c_str(), 65536) == ARCHIVE_OK &&
      archive_read_next_header(a, &e) == ARCHIVE_OK) {
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0)
      out.append(buf, static_cast<size_t>(n));
    if (n < 0) ADD_FAILURE() << archive_error_string(a);
  } else {
    ADD_FAILURE() << path << ": " << archive_error_string(a);
  }
  archive_read_free(a);
  return out;
}

class ExportOciTest : public test_util::StoreTest {
 protected:
  // Two layers: a base, and a change with a whiteout and an opaque dir.
  ImageInfo TwoLayerImage() {
    LayerBuilder base;
    EXPECT_TRUE(base.Add("bin", Meta(S_IFDIR | 0755, 0, 0, 1000000000)));
    EXPECT_TRUE(base.Add("bin/tool", File(std::string(200000, 't'), 0755)));
    EXPECT_TRUE(base.Add("etc", Meta(S_IFDIR | 0755)));
    EXPECT_TRUE(base.Add("etc/gone", File("gone")));
    EXPECT_TRUE(base.Add("etc/kept", File("kept")));
    EXPECT_TRUE(base.Add("var/cache/old", File("old")));
    LayerBuilder top;
    EXPECT_TRUE(top.Add("etc/.wh.gone", Node{}));
    EXPECT_TRUE(top.Add("var/cache", Meta(S_IFDIR | 0700)));
    EXPECT_TRUE(top.Add("var/cache/.wh..wh..opq", Node{}));
    EXPECT_TRUE(top.Add("var/cache/new", File("new")));
    return MakeImage("app:v1", {Commit(base), Commit(top)});
  }

  json ReadJson(const std::string& path) {
    return json::parse(ReadAll(path), nullptr, false);
  }

  std::string Blob(const std::string& dir, const std::string& digest) {
    return dir + "/blobs/sha256/" + digest.substr(7);
  }

  // Checks that a descriptor's blob exists with that digest and size.
  void ExpectBlob(const std::string& dir, const json& desc) {
    std::string bytes = ReadAll(Blob(dir, desc["digest"]));
    EXPECT_EQ(bytes.size(), desc["size"].get<size_t>()) << desc.dump();
    EXPECT_EQ(Sha256::Of(bytes), desc["digest"].get<std::string>());
  }

  json Manifest(const std::string& dir, const std::string& tag) {
    json index = ReadJson(dir + "/index.json");
    for (const json& m : index["manifests"])
      if (m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        return ReadJson(Blob(dir, m["digest"]));
    ADD_FAILURE() << "no manifest for " << tag << " in " << index.dump();
    return json();
  }
};

TEST_F(ExportOciTest, WritesAVerifiableLayout) {
  ImageInfo img = TwoLayerImage();
  std::string dir = Out("oci");
  Status s = ExportOciLayout(*store_, img, dir, "v1");
  ASSERT_TRUE(s) << s.error().ToString();

  EXPECT_EQ(ReadJson(dir + "/oci-layout"),
            json({{"imageLayoutVersion", "1.0.0"}}));
  json index = ReadJson(dir + "/index.json");
  EXPECT_EQ(index["schemaVersion"], 2);
  ASSERT_EQ(index["manifests"].size(), 1u);
  const json& entry = index["manifests"][0];
  EXPECT_EQ(entry["mediaType"], "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(entry["annotations"]["org.opencontainers.image.ref.name"], "v1");
  EXPECT_EQ(entry["platform"],
            json({{"architecture", "amd64"}, {"os", "linux"}}));
  ExpectBlob(dir, entry);

  json manifest = ReadJson(Blob(dir, entry["digest"]));
  EXPECT_EQ(manifest["schemaVersion"], 2);
  EXPECT_EQ(manifest["mediaType"], entry["mediaType"]);
  EXPECT_EQ(manifest["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json");
  ExpectBlob(dir, manifest["config"]);
  json config = ReadJson(Blob(dir, manifest["config"]["digest"]));
  EXPECT_EQ(config["config"], img.config["config"]);
  EXPECT_EQ(config["architecture"], "amd64");
  EXPECT_EQ(config["rootfs"]["type"], "layers");

  ASSERT_EQ(manifest["layers"].size(), 2u);
  ASSERT_EQ(config["rootfs"]["diff_ids"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const json& layer = manifest["layers"][i];
    EXPECT_EQ(layer["mediaType"],
              "application/vnd.oci.image.layer.v1.tar+gzip");
    ExpectBlob(dir, layer);
    std::string tar = Gunzip(Blob(dir, layer["digest"]));
    EXPECT_EQ(Sha256::Of(tar), config["rootfs"]["diff_ids"][i]) << i;
  }
  auto top = ReadTar(Blob(dir, manifest["layers"][1]["digest"]));
  // Implicit parents (etc/, var/) are not written.
  EXPECT_EQ(Paths(top), (std::vector<std::string>{"etc/.wh.gone", "var/cache/",
                                                  "var/cache/.wh..wh..opq",
                                                  "var/cache/new"}));
  EXPECT_EQ(Find(top, "var/cache/new")->data, "new");
}

TEST_F(ExportOciTest, LayerDiffIdEqualsTheLayerTarExport) {
  ImageInfo img = TwoLayerImage();
  std::string dir = Out("oci");
  ASSERT_TRUE(ExportOciLayout(*store_, img, dir, "v1"));
  ASSERT_TRUE(ExportLayerTar(*store_, img.layers[0], Out("base.tar")));
  json config = ReadJson(Blob(dir, Manifest(dir, "v1")["config"]["digest"]));
  EXPECT_EQ(Sha256::Of(ReadAll(Out("base.tar"))),
            config["rootfs"]["diff_ids"][0]);
}

TEST_F(ExportOciTest, DigestsAreDeterministic) {
  ImageInfo img = TwoLayerImage();
  ASSERT_TRUE(ExportOciLayout(*store_, img, Out("a"), "v1"));
  // gzip headers would record the second of the export; cross one.
  ::sleep(1);
  ASSERT_TRUE(ExportOciLayout(*store_, img, Out("b"), "v1"));
  EXPECT_EQ(ReadAll(Out("a") + "/index.json"),
            ReadAll(Out("b") + "/index.json"));
  json layer = Manifest(Out("a"), "v1")["layers"][0];
  std::string gz = ReadAll(Blob(Out("a"), layer["digest"]));
  ASSERT_GT(gz.size(), 10u);
  EXPECT_EQ(gz.substr(0, 3), std::string("\x1f\x8b\x08", 3));
  EXPECT_EQ(gz.substr(4, 4), std::string(4, '\0'));  // no mtime
}

TEST_F(ExportOciTest, AddsToAnExistingLayoutAndReplacesTheTag) {
  ImageInfo img = TwoLayerImage();
  LayerBuilder b;
  ASSERT_TRUE(b.Add("only", File("one file")));
  ImageInfo other = MakeImage("other", {Commit(b)});
  std::string dir = Out("oci");
  ASSERT_TRUE(ExportOciLayout(*store_, img, dir, "one"));
  ASSERT_TRUE(ExportOciLayout(*store_, other, dir, "two"));
  ASSERT_TRUE(ExportOciLayout(*store_, other, dir, "one"));
  json index = ReadJson(dir + "/index.json");
  ASSERT_EQ(index["manifests"].size(), 2u);
  EXPECT_EQ(
      index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
      "two");
  EXPECT_EQ(
      index["manifests"][1]["annotations"]["org.opencontainers.image.ref.name"],
      "one");
  EXPECT_EQ(index["manifests"][0]["digest"], index["manifests"][1]["digest"]);
  // No temp files left among the blobs.
  for (const auto& e :
       std::filesystem::directory_iterator(dir + "/blobs/sha256"))
    EXPECT_EQ(e.path().filename().string().size(), 64u) << e.path();
}

TEST_F(ExportOciTest, RefusesAnotherLayoutVersionAndAnEmptyTag) {
  ImageInfo img = TwoLayerImage();
  std::string dir = Out("oci");
  std::filesystem::create_directories(dir);
  {
    std::FILE* f = std::fopen((dir + "/oci-layout").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("{\"imageLayoutVersion\":\"2.0.0\"}", f);
    std::fclose(f);
  }
  Status s = ExportOciLayout(*store_, img, dir, "v1");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), EINVAL);
  Status empty = ExportOciLayout(*store_, img, Out("oci2"), "");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), EINVAL);
}

TEST_F(ExportOciTest, SkopeoInspectsTheLayout) {
  if (!HaveTool("skopeo")) GTEST_SKIP() << "skopeo is not installed";
  ImageInfo img = TwoLayerImage();
  std::string dir = Out("oci");
  ASSERT_TRUE(ExportOciLayout(*store_, img, dir, "v1"));
  auto [rc, out] = RunShell("skopeo inspect oci:" + dir + ":v1 2>&1");
  ASSERT_EQ(rc, 0) << out;
  json info = json::parse(out, nullptr, false);
  ASSERT_FALSE(info.is_discarded()) << out;
  json manifest = Manifest(dir, "v1");
  ASSERT_EQ(info["Layers"].size(), 2u);
  EXPECT_EQ(info["Layers"][0], manifest["layers"][0]["digest"]);
  EXPECT_EQ(info["Layers"][1], manifest["layers"][1]["digest"]);
  EXPECT_EQ(info["Architecture"], "amd64");
  EXPECT_EQ(info["Os"], "linux");
  EXPECT_EQ(info["Env"], json({"PATH=/bin"}));
}

TEST_F(ExportOciTest, UmociUnpacksTheMergedTree) {
  if (!HaveTool("umoci")) GTEST_SKIP() << "umoci is not installed";
  ImageInfo img = TwoLayerImage();
  std::string dir = Out("oci");
  ASSERT_TRUE(ExportOciLayout(*store_, img, dir, "v1"));
  auto [lrc, tags] = RunShell("umoci ls --layout " + dir + " 2>&1");
  ASSERT_EQ(lrc, 0) << tags;
  EXPECT_EQ(tags, "v1\n");
  // umoci checks every layer's diff_id while it unpacks.
  std::string bundle = Out("bundle");
  std::string rootless = ::geteuid() == 0 ? "" : " --rootless";
  auto [rc, out] = RunShell("umoci unpack" + rootless + " --image " + dir +
                            ":v1 " + bundle + " 2>&1");
  ASSERT_EQ(rc, 0) << out;
  std::string rootfs = bundle + "/rootfs";
  EXPECT_EQ(ReadAll(rootfs + "/bin/tool"), std::string(200000, 't'));
  EXPECT_EQ(ReadAll(rootfs + "/etc/kept"), "kept");
  EXPECT_FALSE(std::filesystem::exists(rootfs + "/etc/gone"));
  EXPECT_FALSE(std::filesystem::exists(rootfs + "/var/cache/old"));
  EXPECT_EQ(ReadAll(rootfs + "/var/cache/new"), "new");
  struct stat st {};
  ASSERT_EQ(::stat((rootfs + "/bin/tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

}  // namespace
}  // namespace strata::layerdb
