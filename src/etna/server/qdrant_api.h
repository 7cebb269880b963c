// Qdrant-compatible REST API over Etna's vector store, shaped so the official Qdrant clients work
// unmodified: collections, points (upsert, retrieve, delete, search, query, scroll, count),
// payload operations, payload indexes and snapshots. Responses use Qdrant's envelope
// {"result": ..., "status": "ok", "time": seconds}; errors {"status": {"error": "..."}, "time": ...}.
//
// Also: named and sparse vectors, the Query API (nested prefetch, rrf/dbsf fusion, recommend,
// discover, context, order_by), recommend/discover endpoints, groups, aliases, PATCH of a
// collection, text and datetime payload indexes (docs/api.md lists the forms).
// Etna extensions (documented in README): distance "Hamming" and "Jaccard" for binary (0/1)
// vectors. Not supported (answered with a clear error naming it): multi-vectors, lookup_from /
// with_lookup, sample and formula queries, geo, snapshot upload over HTTP, remote snapshot URLs.
#pragma once
#include <string>

#include "etna/server/http_server.h"
#include "etna/store/database.h"

namespace etna::server {

// The Qdrant API version Etna reports on GET / (clients warn when their minor version differs
// from the server's by more than one).
inline constexpr const char* kQdrantCompatVersion = "1.18.0";

// Registers every Qdrant route on `server`. `db` must outlive the server. GET / answers
// Qdrant's {"title", "version"} (the JS client checks it on construction).
void register_qdrant_routes(HttpServer& server, store::Database& db);

}  // namespace etna::server
