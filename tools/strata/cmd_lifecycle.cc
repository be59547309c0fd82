// strata gc, fsck, df: the store's lifecycle (design §1, "Lifecycle").

#include <memory>
#include <string>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "layerdb/lifecycle.h"
#include "tools/strata/commands.h"
#include "tools/strata/output.h"

namespace strata::cli {

namespace {

using layerdb::Store;

std::string Plural(uint64_t n, const char* noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

Result<int> Gc(const GlobalOptions& global) {
  STRATA_ASSIGN_OR_RETURN(auto store,
                          OpenStore(global, Store::Mode::kReadWrite));
  // The lifecycle API reports no progress; say what we wait for.
  Progress progress("gc: collecting");
  progress.Update(0, 0);
  STRATA_ASSIGN_OR_RETURN(layerdb::GcReport r, layerdb::CollectGarbage(*store));
  progress.Finish();
  fmt::print("removed {}, {}, {}; freed {}\n",
             Plural(r.layers_removed, "layer"), Plural(r.views_removed, "view"),
             Plural(r.blobs_removed, "blob"), HumanSize(r.bytes_freed));
  return 0;
}

Result<int> Fsck(const GlobalOptions& global, bool repair) {
  STRATA_ASSIGN_OR_RETURN(auto store,
                          OpenStore(global, repair ? Store::Mode::kReadWrite
                                                   : Store::Mode::kReadOnly));
  Progress progress("fsck: checking");
  progress.Update(0, 0);
  STRATA_ASSIGN_OR_RETURN(layerdb::FsckReport r,
                          layerdb::CheckStore(*store, repair));
  progress.Finish();
  uint64_t left = 0;
  for (const layerdb::FsckProblem& p : r.problems) {
    fmt::print("{}: {}\n", p.repaired ? "repaired" : "problem", p.what);
    if (!p.repaired) ++left;
  }
  fmt::print("checked {} and {}: {}, {} repaired\n",
             Plural(r.blobs_checked, "blob"), Plural(r.nodes_checked, "node"),
             Plural(r.problems.size(), "problem"), r.problems.size() - left);
  if (left == 0) return 0;
  return Error(
      EUCLEAN, "fsck",
      Plural(left, "problem") +
          (repair ? " could not be repaired"
                  : " found (strata fsck --repair fixes what it can)"));
}

Result<int> Df(const GlobalOptions& global, bool as_json) {
  STRATA_ASSIGN_OR_RETURN(auto store,
                          OpenStore(global, Store::Mode::kReadOnly));
  STRATA_ASSIGN_OR_RETURN(layerdb::DiskUsage du,
                          layerdb::MeasureDiskUsage(*store));
  if (as_json) {
    PrintJson({{"images", du.images},
               {"layers", du.layers},
               {"blobs", du.blobs},
               {"logical_bytes", du.logical_bytes},
               {"layer_bytes", du.layer_bytes},
               {"stored_bytes", du.stored_bytes},
               {"blob_bytes", du.blob_bytes},
               {"index_bytes", du.index_bytes},
               {"inline_bytes", du.inline_bytes},
               {"dedup_saved", du.dedup_saved}});
    return 0;
  }
  Table table(
      {"IMAGES", "LAYERS", "BLOBS", "LOGICAL", "STORED", "SAVED BY DEDUP"});
  table.AddRow({std::to_string(du.images), std::to_string(du.layers),
                std::to_string(du.blobs), HumanSize(du.logical_bytes),
                HumanSize(du.stored_bytes), HumanSize(du.dedup_saved)});
  table.Print();
  return 0;
}

struct LifecycleArgs {
  bool repair = false;
  bool json = false;
};

}  // namespace

void AddLifecycleCommands(CLI::App& app, Context& ctx) {
  auto a = std::make_shared<LifecycleArgs>();
  CLI::App* gc = AddCommand(
      app, "gc", "remove layers, views and blobs no image uses", ctx);
  gc->callback([&ctx] { ctx.action = [&ctx] { return Gc(ctx.global); }; });

  CLI::App* fsck =
      AddCommand(app, "fsck",
                 "re-hash blobs and check the index; exit 1 on problems", ctx);
  fsck->add_flag("--repair", a->repair,
                 "remove corrupt blobs and the images that use them");
  fsck->callback([&ctx, a] {
    ctx.action = [&ctx, a] { return Fsck(ctx.global, a->repair); };
  });

  CLI::App* df = AddCommand(
      app, "df", "logical size, stored size, what deduplication saved", ctx);
  df->add_flag("--json", a->json, "print JSON");
  df->callback([&ctx, a] {
    ctx.action = [&ctx, a] { return Df(ctx.global, a->json); };
  });
}

}  // namespace strata::cli
