// A local HTTP server that speaks the parts of the Hugging Face hub API `etna pull` uses:
// GET /api/models/{owner}/{repo}/tree/{rev} (a JSON listing with sizes and LFS sha256) and
// GET /{owner}/{repo}/resolve/{rev}/{file} (a redirect to /cdn/..., which serves the bytes with
// Range support). Repositories can be gated (401 without the right token), files can be served
// with a wrong checksum, and a file can be cut mid-way (the connection drops) a number of times.
// Binds 127.0.0.1 on a free port.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "etna/hub/sha256.h"

namespace etna::test {

class HubServer {
 public:
  struct File {
    std::string content;
    std::string sha256;     // listed digest ("" = real digest)
    bool lfs = true;
    int cuts = 0;           // drop the connection half-way this many times
    bool stall = false;     // after half: wait until release() (for interrupt tests)
  };

  HubServer() {
    server_.Get(R"(/api/models/([^/]+)/([^/]+)/tree/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> l(mu_);
      ++listings_;
      const std::string repo = req.matches[1].str() + "/" + req.matches[2].str();
      if (!authorised(repo, req, res)) return;
      auto it = repos_.find(repo);
      if (it == repos_.end()) {
        res.status = 404;
        res.set_content(R"({"error":"Repository not found"})", "application/json");
        return;
      }
      nlohmann::json arr = nlohmann::json::array();
      arr.push_back({{"type", "directory"}, {"path", "docs"}, {"oid", "0"}, {"size", 0}});
      for (const auto& [path, f] : it->second) {
        nlohmann::json e = {{"type", "file"}, {"path", path}, {"oid", "deadbeef"}, {"size", f.content.size()}};
        if (f.lfs) {
          etna::hub::Sha256 h;
          h.update(f.content.data(), f.content.size());
          e["lfs"] = {{"oid", f.sha256.empty() ? h.hex_digest() : f.sha256}, {"size", f.content.size()}, {"pointerSize", 134}};
        }
        arr.push_back(e);
      }
      res.set_content(arr.dump(), "application/json");
    });
    server_.Get(R"(/([^/]+)/([^/]+)/resolve/([^/]+)/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> l(mu_);
      const std::string repo = req.matches[1].str() + "/" + req.matches[2].str();
      if (!authorised(repo, req, res)) return;
      const std::string path = req.matches[4].str();
      auto it = repos_.find(repo);
      if (it == repos_.end() || !it->second.count(path)) {
        res.status = 404;
        res.set_content("Entry not found", "text/plain");
        return;
      }
      res.status = 302;
      res.set_header("Location", "/cdn/" + repo + "/" + path);
    });
    server_.Get(R"(/cdn/([^/]+)/([^/]+)/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      std::shared_ptr<std::string> data;
      bool cut = false, stall = false;
      {
        std::lock_guard<std::mutex> l(mu_);
        ++downloads_;
        if (req.has_header("Range")) ranges_.push_back(req.get_header_value("Range"));
        // The CDN never sees the hub token (curl drops Authorization on redirects only across
        // hosts; this one is the same host, so it is not asserted here).
        File& f = repos_[req.matches[1].str() + "/" + req.matches[2].str()][req.matches[3].str()];
        data = std::make_shared<std::string>(f.content);
        if (f.cuts > 0) {
          --f.cuts;
          cut = true;
        }
        stall = f.stall;
        f.stall = false;
      }
      const size_t half = data->size() / 2;
      res.set_content_provider(data->size(), "application/octet-stream",
                               [this, data, cut, stall, half](size_t offset, size_t length, httplib::DataSink& sink) {
                                 size_t end = offset + std::min<size_t>(length, 16384);
                                 if ((cut || stall) && offset < half && end > half) end = half;
                                 if ((cut || stall) && offset >= half) {
                                   if (stall) wait_for_release();
                                   return false;  // drops the connection
                                 }
                                 sink.write(data->data() + offset, end - offset);
                                 return true;
                               });
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~HubServer() {
    release();
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void add(const std::string& repo, const std::string& path, File f) {
    std::lock_guard<std::mutex> l(mu_);
    repos_[repo][path] = std::move(f);
  }
  void gate(const std::string& repo, const std::string& token) {
    std::lock_guard<std::mutex> l(mu_);
    gated_[repo] = token;
  }
  int downloads() {
    std::lock_guard<std::mutex> l(mu_);
    return downloads_;
  }
  std::vector<std::string> ranges() {
    std::lock_guard<std::mutex> l(mu_);
    return ranges_;
  }
  // True once a stalled file has sent its first half.
  bool stalled() { return stalled_.load(); }
  void release() {
    std::lock_guard<std::mutex> l(release_mu_);
    released_ = true;
    release_cv_.notify_all();
  }

 private:
  bool authorised(const std::string& repo, const httplib::Request& req, httplib::Response& res) {
    auto g = gated_.find(repo);
    if (g == gated_.end()) return true;
    if (req.get_header_value("Authorization") == "Bearer " + g->second) return true;
    res.status = 401;
    res.set_content(R"({"error":"Access to model )" + repo + R"( is restricted. You must have access to it and be authenticated to access it. Please log in."})",
                    "application/json");
    return false;
  }
  void wait_for_release() {
    stalled_ = true;
    std::unique_lock<std::mutex> l(release_mu_);
    release_cv_.wait(l, [this] { return released_; });
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, std::map<std::string, File>> repos_;
  std::map<std::string, std::string> gated_;
  int listings_ = 0, downloads_ = 0;
  std::vector<std::string> ranges_;
  std::atomic<bool> stalled_{false};
  std::mutex release_mu_;
  std::condition_variable release_cv_;
  bool released_ = false;
};

}  // namespace etna::test
