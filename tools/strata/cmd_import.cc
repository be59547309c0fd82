// strata import dir|tar|oci|docker-archive: content into the store.
// Importers hold the store's shared lock from their first blob until the
// image is named, so a concurrent gc cannot collect what they wrote.

#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/core.h>

#include "layerdb/importers.h"
#include "tools/strata/commands.h"
#include "tools/strata/output.h"

namespace strata::cli {

namespace {

using layerdb::ImportOptions;
using layerdb::LayerInfo;
using layerdb::Store;

struct ImportArgs {
  std::string source;  // PATH, FILE or LAYOUT[:REF]
  std::string name;    // --name
};

// An open, locked store, ready to import into.
struct Session {
  std::unique_ptr<Store> store;
  UniqueFd lock;
};

Result<Session> BeginImport(const GlobalOptions& global,
                            const std::string& name) {
  // A bad name should fail before minutes of importing, not after.
  if (!name.empty()) STRATA_RETURN_IF_ERROR(layerdb::NormalizeImageName(name));
  Session s;
  STRATA_ASSIGN_OR_RETURN(s.store, OpenStore(global, Store::Mode::kReadWrite));
  STRATA_ASSIGN_OR_RETURN(s.lock, s.store->LockShared());
  return s;
}

// Names a single imported layer as an image and prints the image id.
Result<int> NameLayer(Store& store, const std::string& name,
                      const LayerInfo& layer) {
  STRATA_ASSIGN_OR_RETURN(
      layerdb::ImageInfo image,
      store.CreateImage(name, {layer.id}, layerdb::MakeImageConfig({layer})));
  fmt::print("{}\n", image.id);
  return 0;
}

Result<int> ImportDir(const GlobalOptions& global, const ImportArgs& a) {
  STRATA_ASSIGN_OR_RETURN(Session s, BeginImport(global, a.name));
  Progress progress("importing " + a.source);
  STRATA_ASSIGN_OR_RETURN(
      LayerInfo layer,
      layerdb::ImportDirLayer(*s.store, a.source,
                              ImportOptions{progress.Callback()}));
  progress.Finish();
  return NameLayer(*s.store, a.name, layer);
}

Result<int> ImportTar(const GlobalOptions& global, const ImportArgs& a) {
  STRATA_ASSIGN_OR_RETURN(Session s, BeginImport(global, a.name));
  Progress progress("importing " + (a.source == "-" ? "stdin" : a.source));
  STRATA_ASSIGN_OR_RETURN(
      LayerInfo layer,
      layerdb::ImportTarLayer(*s.store, a.source,
                              ImportOptions{progress.Callback()}));
  progress.Finish();
  return NameLayer(*s.store, a.name, layer);
}

// "LAYOUT:REF" names a ref only when LAYOUT is an existing directory, so
// that a layout path containing ':' still works. The ref may itself hold a
// ':' ("dir:bookworm:latest"), so the first split that names a directory
// wins; the whole argument as a directory wins over any split.
std::pair<std::string, std::string> SplitLayoutRef(const std::string& arg) {
  std::error_code ec;
  if (std::filesystem::is_directory(arg, ec)) return {arg, ""};
  for (size_t colon = arg.find(':'); colon != std::string::npos;
       colon = arg.find(':', colon + 1)) {
    std::string dir = arg.substr(0, colon);
    if (std::filesystem::is_directory(dir, ec))
      return {dir, arg.substr(colon + 1)};
  }
  return {arg, ""};
}

Result<int> ImportOci(const GlobalOptions& global, const ImportArgs& a) {
  auto [layout, ref] = SplitLayoutRef(a.source);
  STRATA_ASSIGN_OR_RETURN(Session s, BeginImport(global, a.name));
  Progress progress("importing " + layout);
  STRATA_ASSIGN_OR_RETURN(
      layerdb::ImportedImage imported,
      layerdb::ImportOciLayout(*s.store, layout, ref, a.name,
                               ImportOptions{progress.Callback()}));
  progress.Finish();
  fmt::print("{}\n", imported.image.id);
  return 0;
}

Result<int> ImportDockerArchive(const GlobalOptions& global,
                                const ImportArgs& a) {
  STRATA_ASSIGN_OR_RETURN(Session s, BeginImport(global, a.name));
  Progress progress("importing " + a.source);
  STRATA_ASSIGN_OR_RETURN(
      std::vector<layerdb::ImportedImage> imported,
      layerdb::ImportDockerArchive(*s.store, a.source, a.name,
                                   ImportOptions{progress.Callback()}));
  progress.Finish();
  for (const layerdb::ImportedImage& i : imported)
    fmt::print("{}\n", i.image.id);
  return 0;
}

using ImportFn = Result<int> (*)(const GlobalOptions&, const ImportArgs&);

void AddImport(CLI::App& import, Context& ctx, const std::string& name,
               const std::string& description, const std::string& source,
               bool name_required, ImportFn fn) {
  auto args = std::make_shared<ImportArgs>();
  CLI::App* cmd = AddCommand(import, name, description, ctx);
  // Positional names must be plain words; the help text shows the form.
  std::string word = source.substr(0, source.find('['));
  cmd->add_option(word, args->source, source)->required();
  CLI::Option* n =
      cmd->add_option("--name", args->name, "image name, N[:T] (tag: latest)");
  if (name_required) n->required();
  cmd->callback([&ctx, args, fn] {
    ctx.action = [&ctx, args, fn] { return fn(ctx.global, *args); };
  });
}

}  // namespace

void AddImportCommands(CLI::App& app, Context& ctx) {
  CLI::App* import = AddCommand(app, "import", "bring content in", ctx);
  import->require_subcommand(1);
  AddImport(*import, ctx, "dir", "a host directory tree as a one-layer image",
            "PATH", true, ImportDir);
  AddImport(*import, ctx, "tar",
            "a layer tarball (plain, gzip or zstd; - for stdin) as a "
            "one-layer image",
            "FILE", true, ImportTar);
  AddImport(*import, ctx, "oci",
            "an OCI image layout; :REF picks a manifest by its ref name",
            "LAYOUT[:REF]", false, ImportOci);
  AddImport(*import, ctx, "docker-archive",
            "a docker save archive (images keep their RepoTags unless --name)",
            "FILE", false, ImportDockerArchive);
}

}  // namespace strata::cli
