// The browser app served by `etna serve`: the embedded files of web/ (index.html, style.css,
// js/...) with a strict Content-Security-Policy (the page can reach nothing but this server),
// GET /api/status, and /api/conversations (chat history kept as JSON files in the data folder).
#pragma once
#include <cstddef>
#include <filesystem>

#include <httplib.h>

#include "etna/server/http_server.h"
#include "etna/server/openai_api.h"

namespace etna::server {

struct WebOptions {
  std::filesystem::path data_dir;                // conversations live in <data_dir>/conversations/
  OpenAIService* openai = nullptr;               // model and generation figures; null = no model
  std::size_t max_conversation_bytes = 8u << 20;  // larger conversations get 413
  std::size_t max_conversations = 1000;           // a new one past this gets 507 (delete some first)
};

// Registers the app's assets, /api/status and /api/conversations[/{id}] (before start). `openai`
// must outlive the server. Asset paths need no API key; /api/ routes follow the server's setting.
void register_web_routes(HttpServer& server, WebOptions options);

// Answers GET / with index.html when the request accepts text/html (a browser) and returns true;
// returns false otherwise, so the caller can answer API clients (Qdrant's version banner).
bool serve_web_index(const httplib::Request& req, httplib::Response& res);

// True for conversation ids of 1..64 characters of [A-Za-z0-9_-].
bool valid_conversation_id(const std::string& id);

}  // namespace etna::server
