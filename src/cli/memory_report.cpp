#include "cli/memory_report.h"

#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "etna/base/error.h"
#include "etna/engine/memory.h"
#include "etna/model/model.h"

namespace etna::cli {

void print_memory_report(const std::string& path, int n_ctx, const std::string& cache_type, bool as_json) {
  const model::KvType type = model::parse_kv_type(cache_type);
  if (n_ctx < 0) fail(ErrorKind::invalid_argument, "--ctx must be positive (got {})", n_ctx);
  auto model = model::Model::load(path);
  if (n_ctx == 0) n_ctx = model->config().n_ctx_train > 0 ? model->config().n_ctx_train : 2048;
  const engine::MemoryEstimate m = engine::estimate_memory(*model, n_ctx, type);
  std::string out;
  if (as_json) {
    nlohmann::ordered_json j{{"model", path},
                             {"n_ctx", m.n_ctx},
                             {"n_batch", m.n_batch},
                             {"cache_type", model::kv_type_name(type)},
                             {"weights_bytes", m.weights},
                             {"kv_bytes_per_token", m.kv_per_token},
                             {"kv_bytes", m.kv_total},
                             {"scratch_bytes", m.scratch},
                             {"total_bytes", m.total()},
                             {"repacked_matrices", model->repacked_matrices()},
                             {"repacked_bytes", model->repacked_bytes()},
                             {"huge_page_bytes", model->huge_page_bytes()}};
    out = j.dump() + "\n";
  } else {
    auto mib = [](uint64_t b) { return fmt::format("{:10.2f} MiB  ({} bytes)", b / 1048576.0, b); };
    out += fmt::format("model            {}\n", path);
    out += fmt::format("context          {} tokens, KV cache {}, batch {}\n", m.n_ctx, model::kv_type_name(type), m.n_batch);
    out += fmt::format("weights          {}\n", mib(m.weights));
    out += fmt::format("KV per token     {:10.2f} KiB  ({} bytes)\n", m.kv_per_token / 1024.0, m.kv_per_token);
    out += fmt::format("KV for context   {}\n", mib(m.kv_total));
    out += fmt::format("scratch (est.)   {}\n", mib(m.scratch));
    out += fmt::format("total            {}\n", mib(m.total()));
    out += fmt::format("repacked         {}  in {} matrices (8-row groups, in place of the mapped rows{})\n",
                       mib(model->repacked_bytes()), model->repacked_matrices(),
                       model::Model::repack_enabled() ? "" : "; off: --no-repack");
    out += fmt::format("huge pages       {}  moved from the file mapping to anonymous huge pages{}\n",
                       mib(model->huge_page_bytes()), model->huge_page_bytes() ? "" : " (none: not offered, ETNA_HUGE_PAGES=0 or too little memory)");
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

}  // namespace etna::cli
