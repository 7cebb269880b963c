// `etna pull OWNER/REPO[:QUANT|:FILE]` or `etna pull URL`: downloads a model into the library
// (see etna/hub/pull.h). A progress bar with rate and ETA on a terminal, plain lines otherwise;
// Ctrl-C stops and keeps the partial file, so the same command resumes.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/model_ref.h"
#include "etna/base/error.h"
#include "etna/hub/pull.h"

namespace etna::cli {
namespace {

std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted.store(true); }

std::string human(double n) {
  if (n >= double(1ull << 30)) return fmt::format("{:.2f} GiB", n / double(1ull << 30));
  if (n >= double(1ull << 20)) return fmt::format("{:.1f} MiB", n / double(1ull << 20));
  if (n >= double(1ull << 10)) return fmt::format("{:.1f} KiB", n / double(1ull << 10));
  return fmt::format("{:.0f} B", n);
}

std::string eta(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "--:--";
  const long s = static_cast<long>(seconds);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) : fmt::format("{:02}:{:02}", s / 60, s % 60);
}

bool offline_env() {
  for (const char* k : {"ETNA_OFFLINE", "HF_HUB_OFFLINE"})
    if (const char* v = std::getenv(k); v && *v && std::string(v) != "0") return true;
  return false;
}

CommandRegistrar reg(24, [](CLI::App& root) {
  struct Opts {
    std::string ref, name, data, revision = "main", sha256, endpoint;
    bool offline = false, quiet = false;
  };
  auto o = std::make_shared<Opts>();
  auto* c = root.add_subcommand("pull", "Download a model from a Hugging Face-compatible hub (or a URL) into the library");
  c->add_option("ref", o->ref, "OWNER/REPO[:QUANT|:FILE] (e.g. bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M) or a URL")->required();
  c->add_option("--name", o->name, "library name (default: the GGUF file name without .gguf)");
  c->add_option("--revision", o->revision, "hub branch, tag or commit")->capture_default_str();
  c->add_option("--sha256", o->sha256, "expected sha256 of a URL download");
  c->add_option("--endpoint", o->endpoint, "hub address (default $HF_ENDPOINT or https://huggingface.co)");
  c->add_option("--data", o->data, "Data directory (default $ETNA_DATA or ~/.local/share/etna)");
  c->add_flag("--offline", o->offline, "refuse to use the network (also $ETNA_OFFLINE=1 or $HF_HUB_OFFLINE=1)");
  c->add_flag("-q,--quiet", o->quiet, "no progress output");
  c->callback([o] {
    if (o->offline || offline_env())
      fail(ErrorKind::unavailable, "pull needs the network, and offline mode is on (--offline, ETNA_OFFLINE or HF_HUB_OFFLINE)");
    const auto lib = model_library(o->data);
    hub::PullOptions po;
    po.endpoint = o->endpoint;
    po.revision = o->revision;
    po.name = o->name;
    po.sha256 = o->sha256;
    po.cancel = &g_interrupted;
    const bool tty = isatty(STDERR_FILENO) != 0;
    int last_decile = -1;
    std::string last_file;
    if (!o->quiet) {
      po.note = [](const std::string& s) { std::fprintf(stderr, "etna: %s\n", s.c_str()); };
      po.progress = [tty, &last_decile, &last_file](const hub::PullProgress& p) {
        if (p.file != last_file) {
          last_file = p.file;
          last_decile = -1;
        }
        const double frac = p.file_total > 0 ? double(p.file_done) / double(p.file_total) : 0;
        const double left = p.total > p.done ? double(p.total - p.done) : 0;
        const std::string rate = human(p.bytes_per_second) + "/s";
        const std::string when = p.bytes_per_second > 0 ? eta(left / p.bytes_per_second) : "--:--";
        if (tty) {
          constexpr int kWidth = 30;
          const int fill = static_cast<int>(frac * kWidth);
          std::string bar(static_cast<size_t>(fill), '#');
          bar.resize(kWidth, '.');
          std::fprintf(stderr, "\r%-32.32s [%s] %3.0f%% %s / %s  %s  ETA %s\x1b[K", p.file.c_str(), bar.c_str(), frac * 100,
                       human(double(p.file_done)).c_str(), human(double(p.file_total)).c_str(), rate.c_str(), when.c_str());
          if (p.finished_file) std::fputc('\n', stderr);
        } else {
          const int decile = static_cast<int>(frac * 10);
          if (decile == last_decile && !p.finished_file) return;
          last_decile = decile;
          std::fprintf(stderr, "etna: %s %.0f%% (%s of %s, %s, ETA %s)%s\n", p.file.c_str(), frac * 100,
                       human(double(p.file_done)).c_str(), human(double(p.file_total)).c_str(), rate.c_str(), when.c_str(),
                       p.finished_file ? " done" : "");
        }
        std::fflush(stderr);
      };
    }
    struct sigaction sa {}, old_int {}, old_term {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    struct Restore {
      struct sigaction a, b;
      ~Restore() {
        sigaction(SIGINT, &a, nullptr);
        sigaction(SIGTERM, &b, nullptr);
      }
    } restore{old_int, old_term};
    if (tty && !o->quiet) std::fputc('\n', stderr);
    const auto m = hub::pull(lib, o->ref, po);
    std::printf("pulled %s (%s, %s, %zu file%s), licence %s\n", m.name.c_str(), m.architecture.empty() ? "-" : m.architecture.c_str(),
                m.quantisation.empty() ? "-" : m.quantisation.c_str(), m.files.size(), m.files.size() == 1 ? "" : "s",
                m.licence.summary().c_str());
  });
});

}  // namespace
}  // namespace etna::cli
