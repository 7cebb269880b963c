// `etna pull`: downloads a model from a Hugging Face-compatible hub (or a plain URL) into the
// library. The hub's HTTP API: GET {endpoint}/api/models/{repo}/tree/{revision}?recursive=true
// lists files with sizes and LFS sha256; GET {endpoint}/{repo}/resolve/{revision}/{file}
// downloads one (following redirects). HF_ENDPOINT and HF_TOKEN are read as the ecosystem does.
// Downloads go to "<file>.part" and resume with Range; dropped connections are retried with
// back-off; the sha256 is verified before a file is moved into place.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "etna/hub/library.h"

namespace etna::hub {

struct RepoFile {
  std::string path;
  uint64_t size = 0;
  std::string sha256;  // LFS files only; "" otherwise
};

struct PullRef {
  bool is_url = false;
  std::string url;   // is_url
  std::string repo;  // "owner/name"
  std::string tag;   // quant tag or file name after ':' ("" = choose)
};
// "owner/name[:TAG]" or an http(s) URL. Throws etna::Error(invalid_argument).
PullRef parse_pull_ref(std::string_view ref);

// The files to download for `tag` (case-insensitive quant tag like "Q4_K_M", or a file path):
// every shard of a split GGUF ("-00001-of-0000N") as one model, then the model card and licence
// files. Without a tag: the only GGUF, else the Q4_K_M one, else an error listing the choices.
// A repository without GGUF files gives its safetensors, JSON and tokenizer files (for convert).
// Throws etna::Error(not_found / invalid_argument) naming the available tags.
std::vector<RepoFile> choose_files(const std::vector<RepoFile>& files, const std::string& tag);

struct PullProgress {
  std::string file;              // file being downloaded
  uint64_t file_done = 0, file_total = 0;
  uint64_t done = 0, total = 0;  // over every file of the pull
  double bytes_per_second = 0;
  bool finished_file = false;    // this report closes `file`
};

struct PullOptions {
  std::string endpoint;   // "" = $HF_ENDPOINT or https://huggingface.co
  std::string token;      // "" = $HF_TOKEN (or $HUGGING_FACE_HUB_TOKEN)
  std::string revision = "main";
  std::string name;       // library name ("" = from the file name)
  std::string sha256;     // URL pulls: expected digest ("" = record what arrives)
  int retries = 5;        // per file, after a dropped connection or a 5xx
  int retry_delay_ms = 1000;  // first back-off, doubled each retry ($ETNA_PULL_RETRY_MS overrides)
  std::optional<uint64_t> free_space;  // bytes free for the check ($ETNA_FREE_SPACE_BYTES overrides statvfs)
  const std::atomic<bool>* cancel = nullptr;  // set to stop; the .part file stays for resuming
  std::function<void(const PullProgress&)> progress;  // about 4 times a second and at each file's end
  std::function<void(const std::string&)> note;       // one-line status messages
};

// The hub endpoint and token PullOptions resolve to.
std::string resolve_endpoint(const PullOptions& o);

// Lists a repository's files (follows the API's pagination). Throws etna::Error: (not_found)
// for 404, (invalid_argument) for a gated/private repo without access (401/403), (io) otherwise.
std::vector<RepoFile> list_repo(const PullOptions& o, const std::string& repo);

// Pulls `ref` into `library` and returns the saved manifest. A model already complete in the
// library is verified by size and returned unchanged. Throws etna::Error with one clear message;
// on cancel, Error(unavailable) "interrupted" and the partial file stays.
Manifest pull(const Library& library, const std::string& ref, const PullOptions& o);

}  // namespace etna::hub
